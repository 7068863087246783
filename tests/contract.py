"""The contract every scheduler keeps, written once over an abstract :class:`Row`.

A row is one scheduler and the means to make it say each thing the contract is about:
the batch schedulers' rows answer from scripted command output
(``test_scheduler_contract.py``, nothing starts a process); the local executor's row runs
real jobs, because its status comes from its supervisor processes and their events files,
not from commands (``test_scheduler_contract_local.py``, marked integration). A test
module runs the contract by importing the ``test_*`` functions below and providing a
``row`` fixture; each function states a promise and leaves to the row only how to stage
it, and what the promise looks like where the schedulers must differ (a batch scheduler's
answer names a history command, the local executor's end comes from its exit file).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path

from cluster_api import JobStatus
from cluster_api.core import Executor
from cluster_api.models import JobRecord


class Row(ABC):
    """One scheduler under the contract; ``label`` is the id a batch scheduler's scripted
    answer hands out (the local executor's ids are PIDs: it uses the label to tell its
    jobs apart)."""

    @abstractmethod
    def make(self) -> Executor:
        """A fresh executor on this row's scheduler (its journal and logs in tmp_path)."""

    @abstractmethod
    async def submit(self, executor: Executor, label: str) -> JobRecord:
        """Submit a job that keeps running until the test ends it."""

    @abstractmethod
    def check_submitted(self, executor: Executor, record: JobRecord, label: str) -> None:
        """The id is the one the scheduler gave; the script holds what it needs."""

    @abstractmethod
    def run(self, record: JobRecord) -> None:
        """Let the job be seen running."""

    @abstractmethod
    def end(self, record: JobRecord) -> None:
        """Let the job end by itself with exit 0."""

    @abstractmethod
    async def poll(self, executor: Executor, record: JobRecord) -> dict[str, JobStatus]:
        """Poll until the record took in what the scheduler says now; the last answer."""

    @abstractmethod
    async def forget(self, executor: Executor, record: JobRecord, code: int) -> None:
        """The scheduler loses the job; its history says it failed with ``code``."""

    @abstractmethod
    def check_told_by_history(self, executor: Executor, record: JobRecord) -> None:
        """The job's end came from its history, asked once."""

    @abstractmethod
    async def cancel_answer(
        self, executor: Executor, accepted: JobRecord, ended: JobRecord
    ) -> None:
        """Stage a cancel that the scheduler accepts for ``accepted`` and refuses for
        ``ended``, which has already ended (exit 3) without the executor knowing yet."""

    @abstractmethod
    def check_not_relabelled(self, ended: JobRecord) -> None:
        """The job that had ended before the cancel keeps the end that is really its."""

    @abstractmethod
    def check_cancel_sent_once(self, accepted: JobRecord) -> None:
        """What the scheduler was asked to stop was asked once and is stopped."""

    @abstractmethod
    async def left_running(self, name: str) -> str:
        """A job of ours called ``name`` runs, unknown to the executor made next; its id."""

    @abstractmethod
    async def garble(self, executor: Executor, record: JobRecord) -> JobStatus:
        """Make garbage of what the executor reads next about the job; the status the
        record must show after it: what the scheduler's readable answers say (a batch
        scheduler's query is refused whole, so the record keeps its status; the local
        executor skips each damaged line of the job's events and applies the rest)."""

    @abstractmethod
    async def poll_garbage(self, executor: Executor) -> None:
        """Poll once over the garbage: refused or skipped as that scheduler must."""


async def test_submit_writes_directives_and_reads_the_id(row: Row) -> None:
    executor = row.make()
    record = await row.submit(executor, "101")
    row.check_submitted(executor, record, "101")
    assert executor.jobs[record.job_id] is record


async def test_poll_follows_the_job_to_its_end(row: Row) -> None:
    executor = row.make()
    record = await row.submit(executor, "101")
    row.run(record)
    assert await row.poll(executor, record) == {record.job_id: JobStatus.RUNNING}
    row.end(record)
    await row.poll(executor, record)
    assert (record.status, record.exit_code) == (JobStatus.DONE, 0)


async def test_a_job_the_scheduler_forgot_ends_as_its_history_says(row: Row) -> None:
    executor = row.make()
    record = await row.submit(executor, "101")
    await row.forget(executor, record, 3)
    await row.poll(executor, record)
    assert (record.status, record.exit_code) == (JobStatus.FAILED, 3)
    row.check_told_by_history(executor, record)


async def test_cancel_kills_only_what_the_scheduler_accepted(row: Row) -> None:
    executor = row.make()
    killed = await row.submit(executor, "101")
    ended = await row.submit(executor, "102")
    await row.cancel_answer(executor, killed, ended)
    await executor.cancel_all()
    assert killed.status is JobStatus.KILLED  # at once, before any poll
    row.check_not_relabelled(ended)
    row.check_cancel_sent_once(killed)


async def test_reconnect_adopts_our_unfinished_jobs(row: Row) -> None:
    executor = row.make()
    job_id = await row.left_running("found")
    adopted = await executor.reconnect()
    assert [(r.job_id, r.name, r.status) for r in adopted] == [
        (job_id, "capi-found", JobStatus.RUNNING)
    ]
    assert adopted[0].metadata["reconnected"] is True


async def test_garbage_status_output_changes_nothing(row: Row) -> None:
    executor = row.make()
    record = await row.submit(executor, "101")
    status = await row.garble(executor, record)
    await row.poll_garbage(executor)
    assert record.status is status
    assert not executor.is_unseen(record.job_id)


def script_of(record: JobRecord) -> str:
    assert record.script_path is not None
    return Path(record.script_path).read_text()
