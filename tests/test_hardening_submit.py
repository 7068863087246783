"""Submission never loses or duplicates a job (issue #11 items 3-5, #16 item 12).

The scheduler is a fake runner (``Executor._call`` patched) that keeps a job table, so a
lost answer, a failed lookup or a process that dies mid-submit are plain data. Waits in
retry loops go through ``Executor._sleep``, recorded here instead of slept.
"""

from __future__ import annotations

import asyncio
import fnmatch
import json
import logging
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest

import cluster_api.executors.lsf as lsf_module
import cluster_api.executors.slurm as slurm_module
from cluster_api import (
    ClusterAPIError,
    ClusterConfig,
    CommandFailedError,
    CommandTimeoutError,
    JobStatus,
    LSFExecutor,
    ResourceSpec,
    SubmitError,
)
from cluster_api.core import Executor
from cluster_api.executors.slurm import SlurmExecutor
from cluster_api.journal import JOURNAL_FILE, Journal
from cluster_api.models import JobRecord
from cluster_api.testing.fake import FakeRunner

LSF_DOWN = CommandFailedError(
    "bjobs exited 255: LSF is down. Please wait ...",
    stdout="",
    returncode=255,
    stderr="LSF is down. Please wait ...",
)
BSUB_TIMEOUT = CommandTimeoutError("bsub timed out after 100s")


@pytest.fixture
def sleeps() -> Iterator[list[float]]:
    """Every retry wait, recorded instead of slept."""
    waited: list[float] = []

    async def record(seconds: float) -> None:
        waited.append(seconds)

    with patch.object(Executor, "_sleep", side_effect=record, create=True):
        yield waited


@dataclass
class FakeJob:
    name: str
    token: str
    stat: str = "PEND"
    exit_code: str = ""


class FakeLSF:
    """A scripted LSF with a job table. ``bsub`` takes ``-J``/``-Jd`` from its argv and
    hands out ids; ``bsub_fault`` (an exception, or a list used up one per call) makes
    it fail *after* the job exists, as a lost answer does. Token lookups answer
    ``lookups`` (one item per call: an exception, a text, or ``None`` for the truth)."""

    def __init__(self, runner: FakeRunner) -> None:
        self.runner = runner
        self.next_id = 101
        self.jobs: dict[str, FakeJob] = {}
        self.bsub_fault: list[BaseException | None] = []
        self.refuse: CommandFailedError | None = None
        self.lookups: list[BaseException | str | None] = []
        runner.on("bsub", self.bsub).on("bjobs", self._bjobs)
        for program in ("bkill", "bhist"):
            runner.on(program, "")

    def _bjobs(self, cmd: list[str]) -> str | BaseException:
        if "jobid job_description" in cmd:
            answer = self.lookups.pop(0) if self.lookups else None
            if answer is not None:
                return answer
            pattern = cmd[cmd.index("-J") + 1]
            return self.json(
                {"JOBID": job_id, "JOB_DESCRIPTION": job.token}
                for job_id, job in self.jobs.items()
                if fnmatch.fnmatchcase(job.name, pattern)
            )
        wanted = [word for word in cmd if word.isdigit()]
        return self.json(self.record(job_id) for job_id in wanted if job_id in self.jobs)

    def bsub(self, cmd: list[str]) -> str:
        if self.refuse is not None:
            raise self.refuse
        job_id, self.next_id = str(self.next_id), self.next_id + 1
        self.jobs[job_id] = FakeJob(cmd[cmd.index("-J") + 1], cmd[cmd.index("-Jd") + 1])
        fault = self.bsub_fault.pop(0) if self.bsub_fault else None
        if fault is not None:
            raise fault
        return f"Job <{job_id}> is submitted to queue <normal>."

    def record(self, job_id: str) -> dict[str, str]:
        job = self.jobs[job_id]
        return {
            "JOBID": job_id,
            "JOBINDEX": "0",
            "JOB_NAME": job.name,
            "STAT": job.stat,
            "EXIT_CODE": job.exit_code,
        }

    @staticmethod
    def json(records: Any) -> str:
        rows = list(records)
        return json.dumps({"COMMAND": "bjobs", "JOBS": len(rows), "RECORDS": rows})

    def count(self, program: str) -> int:
        return len(self.runner.argvs(program))


@pytest.fixture
def fake(runner: FakeRunner) -> FakeLSF:
    return FakeLSF(runner)


def lsf(work_dir: str, **config: Any) -> LSFExecutor:
    return LSFExecutor(ClusterConfig(executor="lsf", log_directory=work_dir, **config))


def scripts(work_dir: str) -> list[str]:
    return sorted(name for name in os.listdir(work_dir) if name.endswith(".sh"))


def res(work_dir: str) -> ResourceSpec:
    return ResourceSpec(work_dir=work_dir)


# -- item 3: a failed lookup is not "not found" ------------------------------------------
async def test_lsf_lookup_failures_are_retried_instead_of_resubmitting(
    fake: FakeLSF, work_dir: str, sleeps: list[float]
) -> None:
    fake.bsub_fault = [BSUB_TIMEOUT]
    fake.lookups = [LSF_DOWN, "", "\xff garbage, not JSON"]  # then the truth
    record = await lsf(work_dir).submit("true", "once", resources=res(work_dir))
    assert fake.count("bsub") == 1 and list(fake.jobs) == [record.job_id]
    assert fake.count("bjobs") == 4
    assert sleeps == [lsf_module.LSF.submit_retry_delay, 2.0, 5.0, 15.0]


async def test_lsf_lookup_that_never_succeeds_raises_and_keeps_the_trace(
    fake: FakeLSF, work_dir: str, sleeps: list[float]
) -> None:
    fake.bsub_fault = [BSUB_TIMEOUT]
    fake.lookups = [LSF_DOWN, LSF_DOWN, "", LSF_DOWN]
    executor = lsf(work_dir, journal=True)
    with pytest.raises(SubmitError, match="cannot tell whether job capi-once was submitted") as exc:
        await executor.submit("true", "once", resources=res(work_dir))
    assert exc.value.job_may_exist is True
    assert fake.count("bsub") == 1 and len(fake.jobs) == 1
    assert scripts(work_dir) == ["capi-once.1.sh"]  # the job may be running it
    # Once LSF answers again, a reconnect finds the job the lost answer was about.
    again = await lsf(work_dir, journal=True).reconnect()
    assert [r.job_id for r in again] == list(fake.jobs)
    assert again[0].command == "true" and again[0].script_path is not None


async def test_lsf_lookup_that_answers_nothing_allows_one_resubmit(
    fake: FakeLSF, work_dir: str
) -> None:
    fake.refuse = CommandFailedError("bsub exited 255: LSF is down. Please wait ...")
    fake.lookups = [FakeLSF.json([])]

    async def recover(seconds: float) -> None:
        fake.refuse = None

    with patch.object(Executor, "_sleep", side_effect=recover):
        record = await lsf(work_dir).submit("true", "twice", resources=res(work_dir))
    assert fake.count("bsub") == 2 and list(fake.jobs) == [record.job_id]


class FakeSlurm:
    """sbatch hands out ids (and may time out after the job exists); squeue answers
    token lookups from ``lookups`` (one per call), else from the job table."""

    def __init__(self, runner: FakeRunner) -> None:
        self.next_id = 500
        self.comments: dict[str, str] = {}
        self.lost_answers = 0
        self.lookups: list[BaseException | str | None] = []
        runner.on("sbatch", self._sbatch).on("squeue", self._squeue)
        for program in ("sacct", "scancel"):
            runner.on(program, "")

    def _sbatch(self, cmd: list[str]) -> str:
        script = Path(cmd[-1]).read_text()
        comment = next(
            line.split("--comment=", 1)[1] for line in script.splitlines() if "--comment=" in line
        )
        job_id, self.next_id = str(self.next_id), self.next_id + 1
        self.comments[job_id] = comment.strip("'\"")
        if self.lost_answers:
            self.lost_answers -= 1
            raise CommandTimeoutError("sbatch timed out after 100s")
        return f"{job_id}\n"

    def _squeue(self, cmd: list[str]) -> str | BaseException:
        if "%F|%k" not in cmd:
            return ""
        answer = self.lookups.pop(0) if self.lookups else None
        if answer is not None:
            return answer
        rows = [f"{job_id}|{comment}" for job_id, comment in self.comments.items()]
        return "\n".join(["ARRAY_JOB_ID|COMMENT", *rows]) + "\n"


async def test_slurm_lookup_failures_are_retried_instead_of_resubmitting(
    runner: FakeRunner, work_dir: str, sleeps: list[float]
) -> None:
    fake = FakeSlurm(runner)
    fake.lost_answers = 1
    fake.lookups = [
        CommandFailedError(
            "squeue exited 1: slurm_load_jobs error: Unable to contact slurm controller",
            stderr="slurm_load_jobs error: Unable to contact slurm controller",
        ),
        "",  # squeue always prints its header: empty is no answer
        "squeue: error: Invalid user\n",
    ]
    slurm = SlurmExecutor(ClusterConfig(executor="slurm", log_directory=work_dir))
    record = await slurm.submit("true", "once", resources=res(work_dir))
    assert len(runner.argvs("sbatch")) == 1
    assert list(fake.comments) == [record.job_id]
    assert sleeps == [slurm_module.Slurm.submit_retry_delay, 2.0, 5.0, 15.0]


# -- item 4: a process killed mid-submit loses nothing -----------------------------------
async def test_killed_mid_submit_the_job_comes_back_with_its_true_end(
    fake: FakeLSF, work_dir: str
) -> None:
    first = lsf(work_dir, journal=True)
    kept = await first.submit("true", "kept", resources=res(work_dir))
    # The process dies while bsub runs: the job exists, its id was never heard here.
    fake.bsub_fault = [asyncio.CancelledError()]
    with pytest.raises(asyncio.CancelledError):
        await first.submit("exit 3", "inflight", resources=res(work_dir))
    ((lost_id, lost),) = [(i, j) for i, j in fake.jobs.items() if j.name == "capi-inflight"]
    lost.stat, lost.exit_code = "EXIT", "3"  # and it ends while nobody watches

    second = lsf(work_dir, journal=True)
    found = {r.job_id: r for r in await second.reconnect()}
    assert set(found) == {kept.job_id, lost_id}
    again = found[lost_id]
    assert (again.status, again.exit_code) == (JobStatus.FAILED, 3)
    assert again.command == "exit 3" and again.name == "capi-inflight"
    assert again.metadata["reconnected"] is True
    # Resolved once: a third process does not find it again as a new submission.
    fake.jobs[kept.job_id].stat = "DONE"
    await second.poll()
    assert await lsf(work_dir, journal=True).reconnect() == []


async def test_intent_of_a_submission_the_scheduler_never_got_is_forgotten(
    fake: FakeLSF, work_dir: str
) -> None:
    first = lsf(work_dir, journal=True)
    fake.refuse = CommandFailedError("bsub exited 255: LSF is down. Please wait ...")

    async def die(seconds: float) -> None:
        raise asyncio.CancelledError  # killed while waiting to retry

    with patch.object(Executor, "_sleep", side_effect=die), pytest.raises(asyncio.CancelledError):
        await first.submit("true", "never", resources=res(work_dir))
    journal = Journal(work_dir, "lsf")
    assert [i.record.name for i in journal.intents("capi")] == ["capi-never"]
    assert await lsf(work_dir, journal=True).reconnect() == []
    assert journal.intents("capi") == [] and fake.jobs == {}


async def test_intent_whose_lookup_fails_waits_for_the_next_reconnect(
    fake: FakeLSF, work_dir: str, sleeps: list[float]
) -> None:
    fake.bsub_fault = [asyncio.CancelledError()]
    with pytest.raises(asyncio.CancelledError):
        await lsf(work_dir, journal=True).submit("true", "late", resources=res(work_dir))
    fake.lookups = [LSF_DOWN] * 4
    assert await lsf(work_dir, journal=True).reconnect() == []
    again = await lsf(work_dir, journal=True).reconnect()
    assert [r.job_id for r in again] == list(fake.jobs)


async def test_reused_job_id_still_gets_its_own_journal_row(fake: FakeLSF, work_dir: str) -> None:
    executor = lsf(work_dir, journal=True)
    old = await executor.submit("true", "old", resources=res(work_dir))
    fake.jobs[old.job_id].stat = "DONE"
    await executor.poll()
    fake.next_id = int(old.job_id)  # the scheduler hands the same id out again
    new = await executor.submit("sleep 1", "new", resources=res(work_dir))
    assert new.job_id == old.job_id
    journal = Journal(work_dir, "lsf")
    assert [(r.job_id, r.name) for r in journal.unfinished("capi")] == [(new.job_id, "capi-new")]
    latest = journal.get(new.job_id)
    assert latest is not None and latest.command == "sleep 1"


def test_journal_of_the_first_layout_is_migrated(work_dir: str) -> None:
    path = os.path.join(work_dir, JOURNAL_FILE)
    record = JobRecord(job_id="7", name="capi-x", command="true")
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE jobs (executor TEXT NOT NULL, job_id TEXT NOT NULL, name TEXT NOT NULL,"
            " status TEXT NOT NULL, record TEXT NOT NULL, updated REAL NOT NULL,"
            " PRIMARY KEY (executor, job_id))"
        )
        db.execute(
            "INSERT INTO jobs VALUES ('lsf', '7', 'capi-x', 'pending', ?, 1.0)",
            (json.dumps(record.to_dict()),),
        )
    journal = Journal(work_dir, "lsf")
    assert [r.job_id for r in journal.unfinished("capi")] == ["7"]
    loaded = journal.get("7")
    assert loaded is not None and loaded.command == "true"
    loaded.status = JobStatus.DONE
    journal.save([loaded])
    assert journal.unfinished("capi") == []


# -- item 5: journal trouble is never silent ---------------------------------------------
@pytest.mark.parametrize("trouble", ["deleted", "read-only"])
async def test_unwritable_journal_stops_submit_before_the_scheduler_sees_it(
    fake: FakeLSF, work_dir: str, trouble: str
) -> None:
    executor = lsf(work_dir, journal=True)
    await executor.submit("true", "first", resources=res(work_dir))
    path = os.path.join(work_dir, JOURNAL_FILE)
    if trouble == "deleted":
        os.unlink(path)
    else:
        os.chmod(path, 0o400)
    with pytest.raises(SubmitError, match=f"not submitted: .*{JOURNAL_FILE}"):
        await executor.submit("true", "second", resources=res(work_dir))
    assert fake.count("bsub") == 1 and len(fake.jobs) == 1
    assert scripts(work_dir) == ["capi-first.1.sh"]


async def test_unwritable_journal_during_polls_is_logged(
    fake: FakeLSF, work_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    executor = lsf(work_dir, journal=True)
    job = await executor.submit("true", "job", resources=res(work_dir))
    os.unlink(os.path.join(work_dir, JOURNAL_FILE))
    fake.jobs[job.job_id].stat = "DONE"
    with caplog.at_level(logging.ERROR, logger="cluster_api"):
        await executor.poll()
    assert job.status is JobStatus.DONE  # the poll itself goes on
    assert any(JOURNAL_FILE in r.getMessage() and "gone" in r.getMessage() for r in caplog.records)


def test_corrupt_journal_is_a_cluster_api_error_naming_the_file(work_dir: str) -> None:
    path = os.path.join(work_dir, JOURNAL_FILE)
    with open(path, "wb") as handle:
        handle.write(b"this is not a database " * 100)
    with pytest.raises(ClusterAPIError, match=JOURNAL_FILE):
        lsf(work_dir, journal=True)


# -- #16 item 12: a refused submit leaves nothing behind ---------------------------------
async def test_unknown_dependency_refused_by_lsf_leaves_no_script_or_intent(
    fake: FakeLSF, work_dir: str
) -> None:
    fake.refuse = CommandFailedError(
        "bsub exited 255: done(999999): No matching job found. Job not submitted.",
        stderr="done(999999): No matching job found. Job not submitted.",
        returncode=255,
    )
    executor = lsf(work_dir, journal=True)
    with pytest.raises(SubmitError, match="refused"):
        await executor.submit("true", "dep", resources=res(work_dir), depends_on="999999")
    assert scripts(work_dir) == []
    assert Journal(work_dir, "lsf").intents(None) == []
    assert executor.jobs == {}


async def test_refused_sbatch_leaves_no_script(mock_call: AsyncMock, work_dir: str) -> None:
    mock_call.side_effect = CommandFailedError(
        "sbatch exited 1: error: Job dependency problem",
        stderr="sbatch: error: Batch job submission failed: Job dependency problem",
    )
    slurm = SlurmExecutor(ClusterConfig(executor="slurm", log_directory=work_dir))
    with pytest.raises(SubmitError, match="refused"):
        await slurm.submit("true", "dep", resources=res(work_dir), depends_on="424242")
    assert scripts(work_dir) == []


async def test_reconnect_leaves_this_process_own_submissions_in_flight_alone(
    fake: FakeLSF, runner: FakeRunner, work_dir: str
) -> None:
    executor = lsf(work_dir, journal=True)
    created, answer = asyncio.Event(), asyncio.Event()

    async def slow_bsub(cmd: list[str]) -> str:
        out = fake.bsub(cmd)  # the job exists; its answer is still on the way
        created.set()
        await answer.wait()
        return out

    runner.on("bsub", slow_bsub)
    submitting = asyncio.ensure_future(executor.submit("true", "pending", resources=res(work_dir)))
    await created.wait()
    assert await executor.reconnect() == []
    answer.set()
    record = await submitting
    assert executor.jobs == {record.job_id: record}


async def test_intent_whose_job_ran_and_was_forgotten_is_reported(
    fake: FakeLSF, work_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    fake.bsub_fault = [asyncio.CancelledError()]
    with pytest.raises(asyncio.CancelledError):
        await lsf(work_dir, journal=True).submit("true", "purged", resources=res(work_dir))
    Path(work_dir, "capi-purged.1.exit").write_text("0\n")  # it ran...
    fake.jobs.clear()  # ...and LSF forgot it (CLEAN_PERIOD) before anyone reconnected
    with caplog.at_level(logging.WARNING, logger="cluster_api"):
        assert await lsf(work_dir, journal=True).reconnect() == []
    assert any("capi-purged ran" in r.getMessage() for r in caplog.records)
