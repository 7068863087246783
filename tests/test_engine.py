"""The engine of issue #12: the command runner behind `_call`, the status and dependency
rules in one place, the monitor on a public view of the records."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from unittest.mock import AsyncMock, patch

import pytest

from cluster_api import ClusterConfig, JobStatus, LSFExecutor
from cluster_api.core import Executor
from cluster_api.errors import CommandFailedError
from cluster_api.runner import CommandResult


class ScriptedRunner:
    """A command runner that answers from a table (what an SSH runner would plug into)."""

    def __init__(self, answers: Mapping[str, CommandResult]) -> None:
        self.answers = answers
        self.argvs: list[list[str]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin_file: str | None = None,
    ) -> CommandResult:
        self.argvs.append(list(argv))
        return self.answers[argv[0]]


def bjobs(*records: dict[str, str]) -> str:
    return json.dumps({"JOBS": len(records), "RECORDS": list(records)})


def lsf_config(tmp_path: object) -> ClusterConfig:
    return ClusterConfig(executor="lsf", log_directory=str(tmp_path), journal=False)


async def test_an_injected_runner_runs_every_command_behind_the_call_seam(tmp_path) -> None:
    answer = bjobs({"JOBID": "7", "STAT": "RUN", "JOBINDEX": "0"})
    runner = ScriptedRunner({"bjobs": CommandResult(["bjobs"], answer)})
    lsf = LSFExecutor(lsf_config(tmp_path), runner=runner)
    record = lsf.track("7")
    await lsf.poll()
    assert record.status is JobStatus.RUNNING
    assert [argv[0] for argv in runner.argvs] == ["bjobs"]


async def test_call_stays_the_seam_tests_patch_even_with_a_runner(tmp_path) -> None:
    runner = ScriptedRunner({})
    lsf = LSFExecutor(lsf_config(tmp_path), runner=runner)
    lsf.track("7")
    answer = bjobs({"JOBID": "7", "STAT": "DONE", "JOBINDEX": "0", "EXIT_CODE": ""})
    with patch.object(Executor, "_call", new_callable=AsyncMock, return_value=answer):
        await lsf.poll()
    assert runner.argvs == []
    assert lsf.jobs["7"].status is JobStatus.DONE


async def test_runner_answers_keep_stdout_stderr_and_exit_status(tmp_path) -> None:
    """A non-zero exit becomes CommandFailedError with everything the parser may need;
    a successful one still carries its stderr (``scancel -v`` answers there)."""
    failing = CommandResult(["bjobs"], "{partial", "Job <9> is not found", 255)
    lsf = LSFExecutor(lsf_config(tmp_path), runner=ScriptedRunner({"bjobs": failing}))
    with pytest.raises(CommandFailedError) as caught:
        await lsf._run(["bjobs"])
    assert (caught.value.stdout, caught.value.stderr, caught.value.returncode) == (
        "{partial",
        "Job <9> is not found",
        255,
    )
    quiet = CommandResult(["scancel"], "", "scancel: Terminating job 5", 0)
    lsf = LSFExecutor(lsf_config(tmp_path), runner=ScriptedRunner({"scancel": quiet}))
    out = await lsf._run(["scancel", "5"])
    assert (out, getattr(out, "stderr", None)) == ("", "scancel: Terminating job 5")


async def test_poll_itself_ends_a_dependant_of_a_failed_job_killed_with_the_culprits(
    tmp_path,
) -> None:
    """API.md: no monitor needed; KILLED with the list of culprits; cancelled there."""
    lsf = LSFExecutor(lsf_config(tmp_path))
    parent, other = lsf.track("10"), lsf.track("11")
    child = lsf.track("12")
    child.depends_on = ["10", "11"]
    answers = {
        "bjobs": bjobs(
            {"JOBID": "10", "STAT": "EXIT", "JOBINDEX": "0", "EXIT_CODE": "1"},
            {"JOBID": "11", "STAT": "EXIT", "JOBINDEX": "0", "EXIT_CODE": "2"},
            {"JOBID": "12", "STAT": "PEND", "JOBINDEX": "0"},
        ),
        "bkill": "Job <12> is being terminated",
    }
    calls: list[list[str]] = []

    async def call(cmd: list[str], **_: object) -> str:
        calls.append(cmd)
        return answers[cmd[0]]

    with patch.object(Executor, "_call", side_effect=call):
        statuses = await lsf.poll()
    assert (parent.status, other.status) == (JobStatus.FAILED, JobStatus.FAILED)
    assert statuses["12"] is JobStatus.KILLED
    assert child.metadata["dependency_failed"] == ["10", "11"]
    assert ["bkill", "12"] in calls


def test_the_monitor_reads_a_live_read_only_view_of_the_records(tmp_path) -> None:
    lsf = LSFExecutor(lsf_config(tmp_path))
    view = lsf.records
    record = lsf.track("5")
    assert view["5"] is record
    with pytest.raises(TypeError):
        view["6"] = record  # type: ignore[index]
