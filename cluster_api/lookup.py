"""Finding jobs again from a new process: by id, by this config's journal, or as they
are journalled by another process.

The ``cluster-api`` command is built on these, and a script that picks up another
process's jobs can use them the same way.
"""

from __future__ import annotations

import time
from collections.abc import Sequence

from .core import Executor
from .journal import Journal
from .models import JobRecord

__all__ = ["JournalFollower", "find_jobs"]


async def find_jobs(
    executor: Executor, job_ids: Sequence[str]
) -> tuple[list[JobRecord], list[str]]:
    """The named jobs and the ids among them nobody knows, or, with no ids, this prefix's
    unfinished jobs; all freshly polled.

    An id is known when it is tracked, in the journal, or reported by the scheduler (a job
    of another prefix or program); any other id is unknown, and is not tracked further.
    A malformed id is a ValueError from `Executor.track`.
    """
    if not job_ids:
        # Jobs that ended within the retention window are shown too, so a quick job
        # submitted a moment ago is seen to finish rather than vanish.
        window = executor.config.completed_retention_minutes
        return await executor.reconnect(finished_within_minutes=window), []
    await executor.reconnect()
    known = executor.jobs
    records: list[JobRecord] = []
    fresh: list[JobRecord] = []
    for job_id in dict.fromkeys(job_ids):
        record = known.get(job_id)
        if record is None:
            record = executor.track(job_id)
            fresh.append(record)
        records.append(record)
    if fresh:
        await executor.poll_strict()  # an outage must not make these look unknown
    unknown = [
        r.job_id
        for r in fresh
        if r.metadata.get("tracked") and not r.is_terminal and executor.is_unseen(r.job_id)
    ]
    for job_id in unknown:
        executor.remove_job(job_id)
    return [r for r in records if r.job_id not in unknown], unknown


class JournalFollower:
    """Finds jobs this config's journal recorded after the executor last looked: the
    journal is where every `cluster-api submit` writes its job first, so following it
    costs no scheduler query."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._journal = Journal(executor.config.log_directory, executor.name)
        self._since = time.time()

    def new_jobs(self) -> list[JobRecord]:
        """This prefix's journalled jobs not tracked yet, now tracked: the unfinished ones
        and those that ended since the follower started (a quick job may end before it
        is seen running)."""
        tracked = self._executor.jobs
        prefix = self._executor.config.job_name_prefix
        ended = self._journal.finished_since(prefix, time.time() - self._since)
        found = [*ended, *self._journal.unfinished(prefix)]
        return [self._executor.track(r.job_id) for r in found if r.job_id not in tracked]

    def close(self) -> None:
        self._journal.close()
