"""A small sqlite journal of submissions, so a restarted process loses none of them.

A submission is written twice: as an *intent* (name, token, script) before the scheduler
command runs, and with its job id once the scheduler answered. A process killed between
the two leaves an unresolved intent, which ``reconnect()`` resolves by looking the token
up on the scheduler. Every status change is written after the poll that saw it. A status
never moves backwards: a finished job stays finished even if an older process writes a
stale answer later.

Rows are keyed by the submission (its script's absolute path), not by job id: job ids
get reused (local ids are PIDs), and a new job whose id equals an old finished one's must
still get its own row. A lookup by job id takes the newest row with that id.

A journal that cannot be written is an error the caller hears about (``JournalError``),
never a silent loss: sqlite keeps writing happily into a file that was deleted (the
inode lives on) or made read-only (root may write anyway), so both are checked here.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .errors import ClusterAPIError
from .models import JobRecord

JOURNAL_FILE = "cluster_api_journal.sqlite3"
_TERMINAL = ("done", "failed", "killed")
INTENT = "intent"  # the status of a row whose submission has no job id yet

_SCHEMA = """
CREATE TABLE IF NOT EXISTS jobs (
    executor TEXT NOT NULL,
    key      TEXT NOT NULL,
    token    TEXT NOT NULL,
    job_id   TEXT,
    name     TEXT NOT NULL,
    status   TEXT NOT NULL,
    record   TEXT NOT NULL,
    updated  REAL NOT NULL,
    PRIMARY KEY (executor, key)
);
CREATE INDEX IF NOT EXISTS jobs_by_id ON jobs (executor, job_id);
"""
# The first layout, keyed by job id: its rows become rows keyed by "job:<id>".
_MIGRATE_V1 = """
ALTER TABLE jobs RENAME TO jobs_v1;
{schema}
INSERT OR IGNORE INTO jobs (executor, key, token, job_id, name, status, record, updated)
    SELECT executor, 'job:' || job_id, '', job_id, name, status, record, updated FROM jobs_v1;
DROP TABLE jobs_v1;
"""
_UPSERT = f"""
INSERT INTO jobs (executor, key, token, job_id, name, status, record, updated)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (executor, key) DO UPDATE SET
    job_id = excluded.job_id, name = excluded.name, status = excluded.status,
    record = excluded.record, updated = excluded.updated
WHERE jobs.status NOT IN {_TERMINAL!r}
"""


class JournalError(ClusterAPIError):
    """The journal file cannot be read or written (corrupt, deleted, read-only)."""


@dataclass
class Intent:
    """A submission written before its scheduler command ran, not resolved since."""

    key: str
    token: str
    record: JobRecord  # as it would have been tracked; job_id still ""


def journal_key(record: JobRecord) -> str:
    """The row a record lives in: its submission's key, or its job id for a job that was
    tracked by id rather than submitted through a journal."""
    return record._journal_key or f"job:{record.job_id}"


class Journal:
    """The jobs one executor type submitted from one ``log_directory``."""

    def __init__(self, directory: str, executor: str) -> None:
        self.path = os.path.join(directory, JOURNAL_FILE)
        self.executor = executor
        try:
            os.makedirs(directory, exist_ok=True)
            # Create the file private before sqlite opens it: it holds commands and env.
            fd = os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600)
            os.close(fd)
            self._identity = _identity(self.path)
            self._db = sqlite3.connect(self.path, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise JournalError(f"cannot open the job journal {self.path}: {exc}") from exc
        try:
            self._db.execute("PRAGMA journal_mode=WAL")
            with self._db:
                columns = {row[1] for row in self._db.execute("PRAGMA table_info(jobs)")}
                if columns and "key" not in columns:
                    self._db.executescript(_MIGRATE_V1.format(schema=_SCHEMA))
                else:
                    self._db.executescript(_SCHEMA)
        except sqlite3.Error as exc:
            self._db.close()
            raise JournalError(
                f"the job journal {self.path} is unreadable ({exc}); move it aside to start "
                "a new one (jobs it recorded are then only found through the scheduler)"
            ) from exc

    # -- writing -----------------------------------------------------------------------
    def intend(self, key: str, token: str, record: JobRecord) -> None:
        """Record a submission about to be handed to the scheduler (no job id yet)."""
        record._journal_key = key
        self._write(
            [(self.executor, key, token, None, record.name, INTENT, _dump(record), time.time())]
        )

    def save(self, records: Iterable[JobRecord]) -> None:
        """Write these records (a job id resolves its submission's intent)."""
        now = time.time()
        rows = [
            (
                self.executor,
                journal_key(r),
                "",
                r.job_id,
                r.name,
                r.status.value,
                _dump(r),
                now,
            )
            for r in records
        ]
        self._write(rows)

    def discard(self, key: str) -> None:
        """Forget an intent whose submission certainly never reached the scheduler."""
        self._check_writable()
        self._execute(
            "DELETE FROM jobs WHERE executor = ? AND key = ? AND status = ?",
            (self.executor, key, INTENT),
        )

    def _write(self, rows: Sequence[tuple[object, ...]]) -> None:
        if not rows:
            return
        self._check_writable()
        try:
            with self._db:
                self._db.executemany(_UPSERT, rows)
        except sqlite3.Error as exc:
            raise JournalError(f"cannot write the job journal {self.path}: {exc}") from exc

    def _check_writable(self) -> None:
        try:
            current = _identity(self.path)
            mode = os.stat(self.path).st_mode
        except OSError as exc:
            raise JournalError(f"the job journal {self.path} is gone: {exc}") from exc
        if current != self._identity:
            raise JournalError(f"the job journal {self.path} was replaced by another file")
        if not mode & stat.S_IWUSR or not os.access(self.path, os.W_OK):
            raise JournalError(f"the job journal {self.path} is read-only")

    # -- reading -----------------------------------------------------------------------
    def unfinished(self, name_prefix: str | None) -> list[JobRecord]:
        """Submitted records not yet terminal, oldest first, optionally only names with
        this prefix (unresolved intents are not among them: see ``intents``)."""
        return self._records("status NOT IN (?, ?, ?, ?)", [*_TERMINAL, INTENT], name_prefix)

    def finished_since(self, name_prefix: str | None, seconds: float) -> list[JobRecord]:
        """Records that became terminal in the last ``seconds``, oldest first."""
        return self._records(
            "status IN (?, ?, ?) AND updated >= ?",
            [*_TERMINAL, time.time() - seconds],
            name_prefix,
        )

    def intents(self, name_prefix: str | None) -> list[Intent]:
        """Submissions whose scheduler command never answered here, oldest first."""
        query = "SELECT key, token, record FROM jobs WHERE executor = ? AND status = ?"
        params: list[object] = [self.executor, INTENT]
        query, params = _with_prefix(query, params, name_prefix)
        rows = self._execute(query + " ORDER BY updated, rowid", params)
        return [Intent(key, token, _load(key, text)) for key, token, text in rows]

    def get(self, job_id: str) -> JobRecord | None:
        """The newest record with this job id (ids get reused)."""
        rows = self._execute(
            "SELECT key, record FROM jobs WHERE executor = ? AND job_id = ? "
            "ORDER BY updated DESC, rowid DESC LIMIT 1",
            (self.executor, job_id),
        )
        return _load(*rows[0]) if rows else None

    def _records(
        self, condition: str, params: list[object], name_prefix: str | None
    ) -> list[JobRecord]:
        query = f"SELECT key, record FROM jobs WHERE executor = ? AND {condition}"
        query, params = _with_prefix(query, [self.executor, *params], name_prefix)
        rows = self._execute(query + " ORDER BY updated, rowid", params)
        return [_load(key, text) for key, text in rows]

    def _execute(self, query: str, params: Iterable[object]) -> list[tuple[str, ...]]:
        try:
            with self._db:
                return list(self._db.execute(query, tuple(params)).fetchall())
        except sqlite3.Error as exc:
            raise JournalError(f"cannot use the job journal {self.path}: {exc}") from exc

    def close(self) -> None:
        self._db.close()


def _with_prefix(
    query: str, params: list[object], name_prefix: str | None
) -> tuple[str, list[object]]:
    if name_prefix:
        return query + " AND substr(name, 1, ?) = ?", [*params, len(name_prefix), name_prefix]
    return query, params


def _identity(path: str) -> tuple[int, int]:
    info = os.stat(path)
    return (info.st_dev, info.st_ino)


def _dump(record: JobRecord) -> str:
    return json.dumps(record.to_dict())


def _load(key: str, text: str) -> JobRecord:
    record = JobRecord.from_dict(json.loads(text))
    record._journal_key = key
    return record
