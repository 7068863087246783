"""The Grid Engine executor on the engine, through a scripted command runner: held
dependants released (or ended) by us, ``Eqw`` ended and deleted, one ``qacct`` per job,
and the exactly-once lookup that waits for qacct's lag. Answers are recorded text from
``tests/data/sge`` (FINDINGS.md), renumbered where a test needs other ids."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

from cluster_api import ClusterConfig, JobStatus, ResourceSpec, create_executor
from cluster_api.errors import CommandTimeoutError
from cluster_api.executors.sge import SGEExecutor
from cluster_api.models import JobRecord
from cluster_api.runner import CommandResult

DATA = Path(__file__).parent / "data" / "sge"
EMPTY = (DATA / "qstat_empty.xml").read_text()


def read(name: str) -> str:
    return (DATA / name).read_text()


def qacct(job_id: str, exit_status: int) -> str:
    text = read("qacct_exit3.txt").replace("jobnumber    10", f"jobnumber    {job_id}")
    return text.replace("exit_status  3", f"exit_status  {exit_status}")


def qstat(*entries: tuple[str, str]) -> str:
    """``qstat -xml`` listing job ``id`` in ``state`` (one recorded running entry each)."""
    entry = read("qstat_running.xml").split("<job_list", 1)[1].split("</job_list>", 1)[0]
    jobs = "".join(
        "<job_list" + entry.replace(">8<", f">{i}<").replace(">r<", f">{s}<") + "</job_list>"
        for i, s in entries
    )
    return f"<?xml version='1.0'?>\n<job_info><queue_info>{jobs}</queue_info></job_info>\n"


class Scripted:
    """Answers each program with the next of its queued answers (the last one repeats);
    an answer that is an exception is raised. Records every argv."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[str, str, int] | Exception]] = {}
        self.argvs: list[list[str]] = []

    def on(self, program: str, *answers: tuple[str, str, int] | Exception) -> None:
        self.answers[program] = list(answers)

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin_file: str | None = None,
    ) -> CommandResult:
        self.argvs.append(list(argv))
        queued = self.answers.get(argv[0], [("", "", 0)])
        answer = queued.pop(0) if len(queued) > 1 else queued[0]
        if isinstance(answer, Exception):
            raise answer
        return CommandResult(list(argv), *answer)

    def called(self, program: str) -> list[list[str]]:
        return [argv for argv in self.argvs if argv[0] == program]


@pytest.fixture
def runner() -> Scripted:
    return Scripted()


@pytest.fixture
def sge(runner: Scripted, tmp_path: Path) -> SGEExecutor:
    config = ClusterConfig(executor="sge", log_directory=str(tmp_path), journal=False)
    return SGEExecutor(config, runner=runner)


async def submit(sge: SGEExecutor, runner: Scripted, job_id: str, **kwargs: Any) -> JobRecord:
    runner.on("qsub", (f"{job_id}\n", "", 0))
    work_dir = ResourceSpec(work_dir=sge.config.log_directory)
    return await sge.submit("true", f"j{job_id}", resources=work_dir, **kwargs)


def test_sge_is_a_registered_executor(tmp_path: Path) -> None:
    executor = create_executor(executor="sge", log_directory=str(tmp_path))
    assert isinstance(executor, SGEExecutor) and executor.directive_prefix == "#$"


async def test_a_dependant_is_held_and_released_once_its_parent_ended_done(
    sge: SGEExecutor, runner: Scripted
) -> None:
    parent = await submit(sge, runner, "5")
    child = await submit(sge, runner, "6", depends_on=["5"])
    assert "#$ -hold_jid 5" in Path(child.script_path).read_text()
    assert "#$ -h\n" in Path(child.script_path).read_text()
    runner.on("qstat", (qstat(("5", "r"), ("6", "hqw")), "", 0))
    await sge.poll()
    assert runner.called("qrls") == []  # the parent still runs
    runner.on("qstat", (qstat(("6", "hqw")), "", 0))
    runner.on("qacct", (qacct("5", 0), "", 0))
    runner.on("qrls", ("modified hold of job 6\n", "", 0))
    await sge.poll()
    assert parent.status is JobStatus.DONE
    assert runner.called("qrls") == [["qrls", "6"]]
    runner.on("qstat", (qstat(("6", "r")), "", 0))
    await sge.poll()
    assert len(runner.called("qrls")) == 1  # released once


async def test_the_dependant_of_a_failed_job_is_ended_and_deleted_not_released(
    sge: SGEExecutor, runner: Scripted
) -> None:
    await submit(sge, runner, "5")
    child = await submit(sge, runner, "6", depends_on=["5"])
    runner.on("qstat", (qstat(("6", "hqw")), "", 0))
    runner.on("qacct", (qacct("5", 3), "", 0))
    runner.on("qdel", ("root has deleted job 6\n", "", 0))
    await sge.poll()
    assert child.status is JobStatus.KILLED
    assert child.metadata["dependency_failed"] == ["5"]
    assert runner.called("qdel") == [["qdel", "6"]] and runner.called("qrls") == []


async def test_an_error_state_job_ends_failed_with_its_reason_and_is_deleted(
    sge: SGEExecutor, runner: Scripted
) -> None:
    job = await submit(sge, runner, "12")
    runner.on("qstat", (read("qstat_eqw.xml"), "", 0))
    runner.on("qacct", ("", "error: job id 12 not found\n", 1))
    runner.on("qdel", ("root has deleted job 12\n", "", 0))
    await sge.poll()
    assert job.status is JobStatus.FAILED
    assert "Eqw" in job.metadata["exit_reason"]
    assert runner.called("qdel") == [["qdel", "12"]]


async def test_history_is_asked_one_job_per_qacct(sge: SGEExecutor, runner: Scripted) -> None:
    first = await submit(sge, runner, "21")
    second = await submit(sge, runner, "22")
    runner.on("qstat", (EMPTY, "", 0))
    runner.on("qacct", (qacct("21", 3), "", 0), (qacct("22", 0), "", 0))
    await sge.poll()
    assert sorted(runner.called("qacct")) == [["qacct", "-j", "21"], ["qacct", "-j", "22"]]
    assert {first.exit_code, second.exit_code} == {0, 3}


async def test_a_job_qacct_does_not_know_yet_is_not_ended(
    sge: SGEExecutor, runner: Scripted
) -> None:
    job = await submit(sge, runner, "31")
    runner.on("qstat", (EMPTY, "", 0))
    runner.on("qacct", ("", "error: job id 31 not found\n", 1), (qacct("31", 3), "", 0))
    await sge.poll()
    assert not job.status.is_terminal
    await sge.poll()
    assert (job.status, job.exit_code) == (JobStatus.FAILED, 3)


async def test_a_lost_submission_that_already_ended_is_found_in_qacct_after_its_lag(
    runner: Scripted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ClusterConfig(
        executor="sge", log_directory=str(tmp_path), journal=False, job_name_prefix="cap"
    )
    sge = SGEExecutor(config, runner=runner)
    waits: list[float] = []

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(sge, "_sleep", sleep)
    runner.on("qsub", CommandTimeoutError("qsub timed out"))
    gone = (
        "<?xml version='1.0'?>\n<unknown_jobs >\n <ST_name>cap-lookup</ST_name>\n</unknown_jobs>\n"
    )
    runner.on("qstat", (gone, "", 0))
    runner.on("qacct", (read("lookup_qacct_by_name.txt"), "", 0))  # account cap-lookup.1
    record = await sge.submit("true", "lookup", resources=ResourceSpec(work_dir=str(tmp_path)))
    assert record.job_id == "1"
    assert len(runner.called("qsub")) == 1  # found, not submitted again
    assert runner.called("qacct") == [["qacct", "-j", "cap-lookup"]]
    assert waits[-1] == sge.scheduler.history_lag == 15.0


async def test_a_lost_submission_neither_queued_nor_accounted_is_submitted_again(
    runner: Scripted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = ClusterConfig(executor="sge", log_directory=str(tmp_path), journal=False)
    sge = SGEExecutor(config, runner=runner)

    async def sleep(seconds: float) -> None:
        pass

    monkeypatch.setattr(sge, "_sleep", sleep)
    runner.on("qsub", CommandTimeoutError("qsub timed out"), ("9\n", "", 0))
    gone = "<?xml version='1.0'?>\n<unknown_jobs >\n</unknown_jobs>\n"
    runner.on("qstat", (gone, "", 0))
    runner.on("qacct", ("", "error: job name capi-again not found\n", 1))
    record = await sge.submit("true", "again", resources=ResourceSpec(work_dir=str(tmp_path)))
    assert record.job_id == "9" and len(runner.called("qsub")) == 2


async def test_a_release_that_times_out_fails_no_poll_and_is_tried_again(
    sge: SGEExecutor, runner: Scripted
) -> None:
    await submit(sge, runner, "5")
    await submit(sge, runner, "6", depends_on=["5"])
    runner.on("qstat", (qstat(("6", "hqw")), "", 0))
    runner.on("qacct", (qacct("5", 0), "", 0))
    runner.on("qrls", CommandTimeoutError("qrls timed out"), ("modified hold of job 6\n", "", 0))
    await sge.poll()
    await sge.poll()
    assert runner.called("qrls") == [["qrls", "6"], ["qrls", "6"]]
