"""The local executor under the scheduler contract (the tests are in ``contract.py``).

Its status comes from no command: each job is a supervisor process whose PID is the job
id, which writes how the job went into the job's events file (its history, with the
exit file the script leaves), and the executor reads that file. So this row runs real
jobs and is marked integration. Each job waits for its release file and exits with the
code written there: the test decides when and how a job ends, and waits on the executor
for what follows, never for a fixed time.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from contract import (  # noqa: F401 (its tests are collected here, over the local row)
    Row,
    script_of,
    test_a_job_the_scheduler_forgot_ends_as_its_history_says,
    test_cancel_kills_only_what_the_scheduler_accepted,
    test_garbage_status_output_changes_nothing,
    test_poll_follows_the_job_to_its_end,
    test_reconnect_adopts_our_unfinished_jobs,
    test_submit_writes_directives_and_reads_the_id,
)

from cluster_api import ClusterConfig, JobStatus, LocalExecutor, ResourceSpec
from cluster_api.core import Executor
from cluster_api.executors.local_supervisor import (
    events_path,
    process_gone,
    read_events,
    supervised_script,
)
from cluster_api.models import JobRecord
from cluster_api.script import exit_file_path
from cluster_api.testing.fake import FakeRunner

pytestmark = pytest.mark.integration  # every job here is a real process

WAIT = 10.0  # upper bound for what a few short processes take
# Waits for its release file, then exits with the code written in it.
HELD = 'until [ -s release.{label} ]; do sleep 0.01; done; exit "$(cat release.{label})"'
# Lines a damaged events file could hold: none may crash the executor or end the job.
GARBAGE = [
    b'{"event": "end", "sta',  # torn by a crash
    b"\0\0\0\0\0\0\0\0",  # blocks a power cut left unwritten
    b"[1, 2]",
    b'{"event": "end", "status": "exploded", "exit_code": 3}',
    b'{"event": "end", "index": [1], "status": "failed", "exit_code": 3}',
    b'{"event": "end", "index": 7, "status": "failed", "exit_code": 3}',
    b'{"event": "finished", "dependency_failed": 5}',
    b'{"event": "teleported"}',
]


class LocalRow(Row):
    """The local executor under the contract: its jobs are real, held until released."""

    def __init__(self, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
        self.work = tmp_path / "work"
        self.work.mkdir()
        self.logs = str(tmp_path / "logs")
        self.caplog = caplog
        self.executors: list[LocalExecutor] = []
        self.labels: dict[str, str] = {}  # job id -> the label its release file bears
        self.settled: Callable[[JobRecord], bool] = lambda r: r.status is not JobStatus.PENDING

    def make(self) -> LocalExecutor:
        config = ClusterConfig(
            executor="local", log_directory=self.logs, journal=True, poll_interval=0.05
        )
        executor = LocalExecutor(config)
        self.executors.append(executor)
        return executor

    async def _submit(self, executor: Executor, name: str, label: str) -> JobRecord:
        resources = ResourceSpec(work_dir=str(self.work))
        record = await executor.submit(HELD.format(label=label), name, resources=resources)
        self.labels[record.job_id] = label
        return record

    async def submit(self, executor: Executor, label: str) -> JobRecord:
        return await self._submit(executor, f"job{label}", label)

    def release(self, record: JobRecord, code: int) -> None:
        path = self.work / f"release.{self.labels[record.job_id]}"
        draft = path.with_name(f"{path.name}.draft")
        draft.write_text(str(code))
        draft.rename(path)  # the job reads the code whole

    async def until(self, executor: Executor, done: Callable[[], bool]) -> dict[str, JobStatus]:
        """Poll (woken early by the job's events) until ``done()``; the last answer."""
        deadline = time.monotonic() + WAIT
        statuses = await executor.poll()
        while not done() and time.monotonic() < deadline:
            await executor.wait_for_change(0.05)
            statuses = await executor.poll()
        return statuses

    def check_submitted(self, executor: Executor, record: JobRecord, label: str) -> None:
        assert record.script_path is not None
        # the id is the PID of the process that supervises this very script
        assert supervised_script(int(record.job_id)) == os.path.abspath(record.script_path)
        assert executor.build_header(record.name) == []  # no directives: the command itself
        assert HELD.format(label=label) in script_of(record)

    def run(self, record: JobRecord) -> None:
        self.settled = lambda r: r.status is not JobStatus.PENDING  # it starts by itself

    def end(self, record: JobRecord) -> None:
        self.release(record, 0)
        self.settled = lambda r: r.status.is_terminal

    async def poll(self, executor: Executor, record: JobRecord) -> dict[str, JobStatus]:
        return await self.until(executor, lambda: self.settled(record))

    async def forget(self, executor: Executor, record: JobRecord, code: int) -> None:
        """Its supervisor dies unrecorded (SIGKILL) while the job runs; the job then ends
        by itself and only its exit file tells how."""
        await self.until(executor, lambda: record.status is JobStatus.RUNNING)
        os.kill(int(record.job_id), signal.SIGKILL)
        self.release(record, code)
        assert record.script_path is not None
        exit_file = Path(exit_file_path(record.script_path))
        deadline = time.monotonic() + WAIT
        while not exit_file.exists() and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        self.settled = lambda r: r.status.is_terminal

    def check_told_by_history(self, executor: Executor, record: JobRecord) -> None:
        assert record.metadata["resolved_from"] == "exit_file"

    async def cancel_answer(
        self, executor: Executor, accepted: JobRecord, ended: JobRecord
    ) -> None:
        """``ended`` exits 3 and its supervisor records that while the event loop is
        blocked: the executor learns of it only when it cancels."""
        both = (accepted, ended)
        await self.until(executor, lambda: all(r.status is JobStatus.RUNNING for r in both))
        self.release(ended, 3)
        assert ended.script_path is not None
        events = events_path(os.path.abspath(ended.script_path))
        deadline = time.monotonic() + WAIT
        while not any(e.get("event") == "finished" for e in read_events(events)[0]):
            assert time.monotonic() < deadline, "the job did not end"
            time.sleep(0.01)  # blocking on purpose: the executor must not hear of it
        assert ended.status is JobStatus.RUNNING

    def check_not_relabelled(self, ended: JobRecord) -> None:
        assert (ended.status, ended.exit_code) == (JobStatus.FAILED, 3)  # as its events say

    def check_cancel_sent_once(self, accepted: JobRecord) -> None:
        """Signalled once, and gone when cancel returned: the supervisor and the job."""
        assert process_gone(int(accepted.job_id))
        assert process_gone(accepted.metadata["pid"])
        assert accepted.exit_code == 128 + signal.SIGTERM

    async def left_running(self, name: str) -> str:
        """Another executor (another program, as far as the journal knows) submits it."""
        other = self.make()
        record = await self._submit(other, name, name)
        await self.until(other, lambda: record.status is JobStatus.RUNNING)
        return record.job_id

    async def garble(self, executor: Executor, record: JobRecord) -> JobStatus:
        """Damaged lines in the events file, then the job ends with exit 0: the executor
        reads them all at once, skips and logs each damaged line, and takes the end."""
        await self.until(executor, lambda: record.status is JobStatus.RUNNING)
        assert record.script_path is not None
        with open(events_path(os.path.abspath(record.script_path)), "ab") as events:
            events.write(b"".join(line + b"\n" for line in GARBAGE))
        self.release(record, 0)
        self.settled = lambda r: r.status.is_terminal
        return JobStatus.DONE

    async def poll_garbage(self, executor: Executor) -> None:
        (record,) = executor.jobs.values()
        with self.caplog.at_level(logging.WARNING, logger="cluster_api"):
            await self.poll(executor, record)
        assert record.exit_code == 0
        skipped = [r for r in self.caplog.records if "skipped" in r.getMessage()]
        assert len(skipped) == len(GARBAGE), self.caplog.text
        assert not [r for r in self.caplog.records if r.levelno >= logging.ERROR]  # no crash

    async def close(self) -> None:
        """Leave no job running, whatever the test did: cancel them, and release each
        one (a job whose process outlived a failed check then exits by itself)."""
        for executor in self.executors:
            await executor.cancel_all()
        for label in self.labels.values():
            release = self.work / f"release.{label}"
            if not release.exists():
                release.write_text("1")


@pytest.fixture
async def row(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> AsyncIterator[LocalRow]:
    local = LocalRow(tmp_path, caplog)
    try:
        yield local
    finally:
        await local.close()


async def test_the_local_executor_runs_no_scheduler_command(row: LocalRow) -> None:
    """Why the local row runs real jobs, and why it has no pure-translation test: it
    submits, follows and cancels its jobs through processes and their files, never
    through a command (the batch schedulers' only way)."""
    config = ClusterConfig(executor="local", log_directory=row.logs, journal=True)
    with FakeRunner().patch() as commands:  # nothing scripted: any command fails the test
        executor = LocalExecutor(config)
        row.executors.append(executor)
        done = await row.submit(executor, "1")
        cancelled = await row.submit(executor, "2")
        row.end(done)
        await row.poll(executor, done)
        await executor.cancel(cancelled.job_id)
    assert (done.status, cancelled.status) == (JobStatus.DONE, JobStatus.KILLED)
    assert commands.calls == []


async def test_an_array_whose_supervisor_died_ends_as_each_element_did(row: LocalRow) -> None:
    """The forgotten job as an array: the element that had started ends as its exit
    file says; the one not started yet fails at once, as nothing will ever start it."""
    executor = row.make()
    resources = ResourceSpec(work_dir=str(row.work))
    array = await executor.submit_array(
        HELD.format(label="arr"), "arr", (1, 2), resources=resources, max_concurrent=1
    )
    row.labels[array.job_id] = "arr"
    first = array.array_elements[1]
    await row.until(executor, lambda: first.status is JobStatus.RUNNING)
    os.kill(int(array.job_id), signal.SIGKILL)
    row.release(array, 0)
    await row.until(executor, lambda: array.status.is_terminal)
    ends = {i: (e.status, e.exit_code) for i, e in array.array_elements.items()}
    assert ends == {1: (JobStatus.DONE, 0), 2: (JobStatus.FAILED, None)}
    assert array.status is JobStatus.FAILED


async def test_a_job_whose_supervisor_died_is_still_cancelled(row: LocalRow) -> None:
    """What its supervisor started runs on, so a cancel stops that, and the job ends
    KILLED only once it is gone."""
    executor = row.make()
    record = await row.submit(executor, "1")
    await row.until(executor, lambda: record.status is JobStatus.RUNNING)
    os.kill(int(record.job_id), signal.SIGKILL)
    await row.until(executor, lambda: "executor_error" in record.metadata)
    assert record.status is JobStatus.RUNNING  # its process runs on
    await executor.cancel(record.job_id)
    assert process_gone(record.metadata["pid"])
    assert record.status is JobStatus.KILLED
    await row.poll(executor, record)
    assert (record.status, record.exit_code) == (JobStatus.KILLED, 128 + signal.SIGTERM)
