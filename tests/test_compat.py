"""Drop-in for py-cluster-api 0.8.1 users (issue #13): one test per bullet of the issue and
per item of API.md's "Module map", "Extension hooks" and "Behaviours users rely on".

Each fails on the code before #13 (/work/wt/base, the pre-hardening code); a docstring
naming a commit says which one fixed a bullet that was already fixed on main. The
executor written to the design's hooks is exercised end to end in test_compat_hooks.py.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import pytest

import cluster_api
from cluster_api import (
    ClusterConfig,
    CommandFailedError,
    Executor,
    JobMonitor,
    JobStatus,
    LocalExecutor,
    LSFExecutor,
    ResourceSpec,
    SubmitError,
    load_config,
)


def lsf(**config: Any) -> LSFExecutor:
    return LSFExecutor(ClusterConfig(executor="lsf", **config))


def bjobs(*records: dict[str, Any]) -> str:
    return json.dumps({"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": list(records)})


class Bsub:
    """bsub hands out ids 101, 102, ...; other commands answer from ``answers``."""

    def __init__(self) -> None:
        self.next_id = 101
        self.answers: dict[str, Any] = {}
        self.calls: list[list[str]] = []

    async def __call__(self, cmd: list[str], *args: Any, **kwargs: Any) -> str:
        self.calls.append(list(cmd))
        if cmd[0] == "bsub":
            self.next_id += 1
            return f"Job <{self.next_id - 1}> is submitted to queue <normal>."
        answer = self.answers.get(cmd[0], "")
        if isinstance(answer, Exception):
            raise answer
        return str(answer(cmd) if callable(answer) else answer)


@pytest.fixture
def sched(mock_call: AsyncMock) -> Bsub:
    fake = Bsub()
    mock_call.side_effect = fake.__call__
    return fake


# -- module map ------------------------------------------------------------------------------
def test_types_module_holds_the_data_types() -> None:
    from cluster_api import _types

    for name in ("JobStatus", "JobExitCondition", "ResourceSpec", "JobRecord", "ArrayElement"):
        assert getattr(_types, name) is getattr(cluster_api, name)  # one definition


def test_exceptions_module_holds_the_errors() -> None:
    from cluster_api import exceptions

    for name in ("ClusterAPIError", "CommandTimeoutError", "CommandFailedError", "SubmitError"):
        assert getattr(exceptions, name) is getattr(cluster_api, name)


def test_config_module_and_parse_memory_bytes() -> None:
    """Already on the base code (the issue's claim that it was missing did not hold
    there); kept so the module-map row stays covered."""
    from cluster_api.config import ClusterConfig as Config
    from cluster_api.config import load_config as load
    from cluster_api.config import parse_memory_bytes

    assert (Config, load) == (ClusterConfig, load_config)
    assert parse_memory_bytes("8 GB") == 8589934592
    assert parse_memory_bytes("100 kb") == 102400


def test_lsf_format_bytes_ceil() -> None:
    from cluster_api.executors.lsf import lsf_format_bytes_ceil

    assert lsf_format_bytes_ceil(1024**2) == "1"
    assert lsf_format_bytes_ceil(1024**2 + 1) == "2"  # ceil: a limit never shrinks
    assert lsf_format_bytes_ceil(8 * 1024**3, "GB") == "8"
    assert lsf_format_bytes_ceil(1025, lsf_units="KB") == "2"


def test_registry_register_executor(monkeypatch: pytest.MonkeyPatch) -> None:
    from cluster_api import executors
    from cluster_api.executors import get_executor_class, register_executor

    monkeypatch.setattr(executors, "_REGISTERED", {})  # leave no name to other tests

    class Mine(LSFExecutor):
        pass

    register_executor("mine-compat", Mine)
    assert get_executor_class("mine-compat") is Mine
    assert "mine-compat" in cluster_api.available_executors()
    with pytest.raises(TypeError, match="Executor subclass"):
        register_executor("bad", int)  # type: ignore[arg-type]


def test_script_core_monitor_and_executor_modules() -> None:
    """The module map's other rows: these held their names on the base code already
    (kept so every row stays covered)."""
    from cluster_api.core import Executor as CoreExecutor
    from cluster_api.executors.local import LocalExecutor as Local
    from cluster_api.monitor import JobMonitor as Monitor
    from cluster_api.script import render_script, write_script

    assert (CoreExecutor, Local, Monitor) == (Executor, LocalExecutor, JobMonitor)
    assert callable(render_script) and callable(write_script)


def test_resource_spec_positional_order_is_0_8_1s() -> None:
    spec = ResourceSpec(2, 1, "1 GB", "01:00", "q", "/scratch", "o.log", "e.log", ["-x"], ["-y"])
    assert (spec.work_dir, spec.stdout_path, spec.extra_args, spec.account) == (
        "/scratch",
        "o.log",
        ["-y"],
        None,
    )
    names = [f.name for f in dataclasses.fields(ResourceSpec)]
    assert names.index("account") > names.index("extra_args")


def test_cluster_config_keeps_0_8_1s_field_order_first() -> None:
    released = [
        "executor",
        "cpus",
        "gpus",
        "memory",
        "walltime",
        "queue",
        "poll_interval",
        "shebang",
        "script_prologue",
        "script_epilogue",
        "extra_directives",
        "directives_skip",
        "extra_args",
        "lsf_units",
        "job_name_prefix",
        "zombie_timeout_minutes",
        "completed_retention_minutes",
        "command_timeout",
        "suppress_job_email",
        "poll_all_users",
    ]
    names = [f.name for f in dataclasses.fields(ClusterConfig)]
    assert names[: len(released)] == released


# -- extension hooks -------------------------------------------------------------------------
def test_job_id_hooks_default() -> None:
    class Minimal(Executor):
        submit_command = "qsub"

    executor = Minimal()  # a hook executor instantiates
    assert Minimal.job_id_regexp == r"(?P<job_id>\d+)"
    assert executor._job_id_from_submit_output("your job 4711 has been submitted") == "4711"
    with pytest.raises(SubmitError, match="qsub"):
        executor._job_id_from_submit_output("no id here")


# -- behaviours users rely on: cancel ----------------------------------------------------------
async def test_lsf_cancel_marks_killed_right_away(sched: Bsub, tmp_path: Path) -> None:
    """Fixed on main by the engine merge d318851 (#12): KILLED only for what bkill accepted."""
    executor = lsf()
    record = await executor.submit("sleep 1", "c", resources=ResourceSpec(work_dir=str(tmp_path)))
    sched.answers["bkill"] = "Job <101> is being terminated"
    await executor.cancel(record.job_id)
    assert record.status is JobStatus.KILLED


async def test_lsf_cancel_done_marks_done(sched: Bsub, tmp_path: Path) -> None:
    """Fixed on main by d318851 (#12): ``bkill -d`` records the job as DONE."""
    executor = lsf()
    record = await executor.submit("sleep 1", "d", resources=ResourceSpec(work_dir=str(tmp_path)))
    sched.answers["bkill"] = "Job <101> is being terminated"
    await executor.cancel(record.job_id, done=True)
    assert sched.calls[-1][:2] == ["bkill", "-d"] and record.status is JobStatus.DONE


async def test_cancel_of_an_already_ended_job_is_not_relabelled(
    sched: Bsub, tmp_path: Path
) -> None:
    """Fixed on main by d318851 (#12)."""
    executor = lsf()
    a = await executor.submit("true", "a", resources=ResourceSpec(work_dir=str(tmp_path)))
    b = await executor.submit("true", "b", resources=ResourceSpec(work_dir=str(tmp_path)))
    sched.answers["bkill"] = "Job <101> is being terminated\nJob <102>: Job has already finished"
    await executor.cancel_all()
    assert (a.status, b.status) == (JobStatus.KILLED, JobStatus.PENDING)


# -- poll ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "answer",
    ["", "   \n", "<html>proxy error</html>", CommandFailedError("Command failed (exit 255)")],
)
async def test_poll_never_raises_and_changes_nothing(
    sched: Bsub, tmp_path: Path, answer: Any
) -> None:
    executor = lsf()
    record = await executor.submit("true", "p", resources=ResourceSpec(work_dir=str(tmp_path)))
    sched.answers["bjobs"] = answer
    assert await executor.poll() == {"101": JobStatus.PENDING}  # logged, not raised
    assert record.status is JobStatus.PENDING and executor.unseen_seconds("101") == 0
    monitor = JobMonitor(executor, poll_interval=60)
    assert await monitor.run_cycle() is False  # the monitor's health figures show it
    assert monitor.consecutive_failures == 1 and monitor.last_successful_poll is None


async def test_poll_returns_every_tracked_job(sched: Bsub, tmp_path: Path) -> None:
    executor = lsf()
    work = ResourceSpec(work_dir=str(tmp_path))
    done = await executor.submit("true", "done", resources=work)
    running = await executor.submit("sleep 9", "run", resources=work)
    sched.answers["bjobs"] = bjobs(
        {"JOBID": "101", "STAT": "DONE", "EXIT_CODE": "0"}, {"JOBID": "102", "STAT": "RUN"}
    )
    assert await executor.poll() == {"101": JobStatus.DONE, "102": JobStatus.RUNNING}
    assert await executor.poll() == {"101": JobStatus.DONE, "102": JobStatus.RUNNING}
    assert (done.status, running.status) == (JobStatus.DONE, JobStatus.RUNNING)


# -- dependencies -------------------------------------------------------------------------------
async def test_dependant_of_a_failed_job_ends_killed_with_a_list_set_by_poll(
    sched: Bsub, tmp_path: Path
) -> None:
    """Fixed on main by d318851 (#12): the dependency rule runs once, in poll()."""
    executor = lsf()
    work = ResourceSpec(work_dir=str(tmp_path))
    first = await executor.submit("false", "first", resources=work)
    then = await executor.submit("true", "then", resources=work, depends_on=first)
    sched.answers["bjobs"] = bjobs(
        {"JOBID": "101", "STAT": "EXIT", "EXIT_CODE": "1"}, {"JOBID": "102", "STAT": "PEND"}
    )
    await executor.poll()  # no monitor
    assert then.status is JobStatus.KILLED
    assert then.metadata["dependency_failed"] == ["101"]


def test_failed_element_indices_include_killed() -> None:
    """Fixed on main by d318851 (#12)."""
    from cluster_api._types import ArrayElement, JobRecord

    record = JobRecord(job_id="1", name="a", command="c")
    record.array_elements = {
        1: ArrayElement(index=1, status=JobStatus.DONE),
        2: ArrayElement(index=2, status=JobStatus.KILLED),
        3: ArrayElement(index=3, status=JobStatus.FAILED),
    }
    assert record.failed_element_indices == [2, 3]


# -- headers and scripts ------------------------------------------------------------------------
def test_build_header_uses_the_name_exactly_and_keeps_walltime(tmp_path: Path) -> None:
    lines = lsf().build_header("capi-x", ResourceSpec(walltime="04:00", work_dir=str(tmp_path)))
    assert "#BSUB -J capi-x" in lines and "#BSUB -W 04:00" in lines
    assert f'#BSUB -cwd "{tmp_path}"' in lines  # paths double-quoted, as LSF's docs write them


def test_render_script_applies_the_configs_directives() -> None:
    from cluster_api.script import render_script

    config = ClusterConfig(directives_skip=["-q"], extra_directives=["#BSUB -P proj"])
    text = render_script(config, "echo hi", ["#BSUB -q short", "#BSUB -n 2"])
    assert text.splitlines()[:3] == ["#!/bin/bash", "#BSUB -n 2", "#BSUB -P proj"]


async def test_any_job_n_in_bsubs_answer_is_the_id(mock_call: AsyncMock, tmp_path: Path) -> None:
    mock_call.return_value = "Warning: project not set.\nJob <4242> submitted to default queue."
    record = await lsf().submit("true", "j", resources=ResourceSpec(work_dir=str(tmp_path)))
    assert record.job_id == "4242"


async def test_login_shell_passes_dash_l_bin_bash(sched: Bsub, tmp_path: Path) -> None:
    work = ResourceSpec(work_dir=str(tmp_path))
    await lsf().submit("true", "j", resources=work, login_shell=True)
    argv = sched.calls[0]
    assert argv[argv.index("-L") + 1] == "/bin/bash"


# -- _call and messages ---------------------------------------------------------------------------
@pytest.mark.integration  # runs real commands through the seam
async def test_call_output_is_stripped() -> None:
    assert await Executor._call(["printf", "  12345 \\n\\n"]) == "12345"


@pytest.mark.integration
async def test_command_failed_message_starts_with_exit_status() -> None:
    with pytest.raises(CommandFailedError) as info:
        await Executor._call(["sh", "-c", "exit 3"])
    assert str(info.value).startswith("Command failed (exit 3)")


def test_missing_config_file_message(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="Config file not found"):
        load_config(tmp_path / "nope.yaml")


# -- local job ids are PIDs (real processes) -----------------------------------------------------
@pytest.mark.integration
async def test_local_job_id_is_the_pid_and_a_fresh_executor_cancels_it(tmp_path: Path) -> None:
    """Fixed on main by the hardening merges before d318851 (local ids are PIDs)."""
    executor = LocalExecutor(ClusterConfig(log_directory=str(tmp_path / "logs")))
    record = await executor.submit("sleep 60", "s", resources=ResourceSpec(work_dir=str(tmp_path)))
    pid = int(record.job_id)
    for _ in range(200):
        if os.getpgid(pid) == pid:
            break
        await asyncio.sleep(0.01)
    assert os.getpgid(pid) == pid  # the job's process-group leader
    code = (
        "import asyncio, cluster_api as c\n"
        f"asyncio.run(c.LocalExecutor().cancel({record.job_id!r}))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
    for _ in range(500):
        await executor.poll()
        if record.is_terminal:
            break
        await asyncio.sleep(0.02)
    assert record.status in (JobStatus.KILLED, JobStatus.FAILED)  # killed by a signal


@pytest.mark.integration
async def test_local_cancel_refuses_a_pid_that_is_not_a_job() -> None:
    """Fixed on main by the hardening merges before d318851 (guard against PID reuse)."""
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        with pytest.raises(cluster_api.ClusterAPIError):
            await LocalExecutor().cancel(str(stranger.pid))
        assert stranger.poll() is None  # not signalled
    finally:
        stranger.send_signal(signal.SIGKILL)
        stranger.wait()


@pytest.mark.integration
async def test_local_cancel_done_before_the_process_started_ends_done(tmp_path: Path) -> None:
    """Fixed on main by d318851 (#12): ``cancel(done=True)`` ends DONE on local too."""
    config = ClusterConfig(log_directory=str(tmp_path / "logs"), local_max_running=1)
    executor = LocalExecutor(config)
    work = ResourceSpec(work_dir=str(tmp_path))
    running = await executor.submit("sleep 60", "first", resources=work)
    waiting = await executor.submit("sleep 60", "second", resources=work)  # queued here
    await executor.cancel(waiting.job_id, done=True)
    assert waiting.status is JobStatus.DONE
    await executor.cancel(running.job_id)
    assert running.status is JobStatus.KILLED
