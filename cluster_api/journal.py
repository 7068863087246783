"""A small sqlite journal of submitted jobs, so a restarted process loses none of them.

Every submission is written before ``submit()`` returns, and every status change after
the poll that saw it. A status in the journal never moves backwards: a finished job stays
finished even if an older process writes a stale answer later.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterable

from .models import JobRecord

JOURNAL_FILE = "cluster_api_journal.sqlite3"
_TERMINAL = ("done", "failed", "killed")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    executor TEXT NOT NULL,
    job_id   TEXT NOT NULL,
    name     TEXT NOT NULL,
    status   TEXT NOT NULL,
    record   TEXT NOT NULL,
    updated  REAL NOT NULL,
    PRIMARY KEY (executor, job_id)
)
"""
_UPSERT = f"""
INSERT INTO jobs (executor, job_id, name, status, record, updated)
VALUES (?, ?, ?, ?, ?, ?)
ON CONFLICT (executor, job_id) DO UPDATE SET
    name = excluded.name, status = excluded.status,
    record = excluded.record, updated = excluded.updated
WHERE jobs.status NOT IN {_TERMINAL!r}
"""


class Journal:
    """The jobs one executor type submitted from one ``log_directory``."""

    def __init__(self, directory: str, executor: str) -> None:
        os.makedirs(directory, exist_ok=True)
        self.path = os.path.join(directory, JOURNAL_FILE)
        self.executor = executor
        # Create the file private before sqlite opens it: it holds commands and env.
        fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        self._db = sqlite3.connect(self.path, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(_SCHEMA)
        self._db.commit()

    def save(self, records: Iterable[JobRecord]) -> None:
        now = time.time()
        rows = [
            (self.executor, r.job_id, r.name, r.status.value, json.dumps(r.to_dict()), now)
            for r in records
        ]
        if rows:
            with self._db:
                self._db.executemany(_UPSERT, rows)

    def unfinished(self, name_prefix: str | None) -> list[JobRecord]:
        """Records not yet terminal, oldest first, optionally only names with this prefix."""
        query = "SELECT record FROM jobs WHERE executor = ? AND status NOT IN (?, ?, ?)"
        params: list[object] = [self.executor, *_TERMINAL]
        if name_prefix:
            query += " AND substr(name, 1, ?) = ?"
            params += [len(name_prefix), name_prefix]
        rows = self._db.execute(query + " ORDER BY updated, rowid", params).fetchall()
        return [JobRecord.from_dict(json.loads(row[0])) for row in rows]

    def finished_since(self, name_prefix: str | None, seconds: float) -> list[JobRecord]:
        """Records that became terminal in the last ``seconds``, oldest first."""
        query = (
            "SELECT record FROM jobs WHERE executor = ? AND status IN (?, ?, ?) AND updated >= ?"
        )
        params: list[object] = [self.executor, *_TERMINAL, time.time() - seconds]
        if name_prefix:
            query += " AND substr(name, 1, ?) = ?"
            params += [len(name_prefix), name_prefix]
        rows = self._db.execute(query + " ORDER BY updated, rowid", params).fetchall()
        return [JobRecord.from_dict(json.loads(row[0])) for row in rows]

    def get(self, job_id: str) -> JobRecord | None:
        row = self._db.execute(
            "SELECT record FROM jobs WHERE executor = ? AND job_id = ?", (self.executor, job_id)
        ).fetchone()
        return JobRecord.from_dict(json.loads(row[0])) if row else None

    def close(self) -> None:
        self._db.close()
