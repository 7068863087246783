"""The local executor with ``ssh`` set (issue #15), with plain data: the supervisor copied
once, started detached through the ``_call`` seam, its events (with its command line and
the exit files) read in one batched remote read per poll, and a cancel that is one remote
command refusing a PID that is not that job's supervisor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import cast

import pytest
from test_ssh_executor import HOME, FakeRemote

from cluster_api import ClusterConfig, JobStatus, LocalExecutor
from cluster_api.errors import SubmitError, UnknownJobError
from cluster_api.executors.local_remote import RemoteLocalExecutor
from cluster_api.executors.local_supervisor import events_path
from cluster_api.files import REMOTE_WORK_DIR, RemoteFiles
from cluster_api.remote import SSHError, SSHFailure, SSHRunner
from cluster_api.testing.fake import FakeRunner

WORK = f"{HOME}/{REMOTE_WORK_DIR}"


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRemote:
    monkeypatch.chdir(tmp_path)
    return FakeRemote()


def remote_local(remote: FakeRemote, tmp_path: Path) -> RemoteLocalExecutor:
    config = ClusterConfig(executor="local", ssh="me@box", log_directory=str(tmp_path / "logs"))
    executor = LocalExecutor(config)
    assert isinstance(executor, RemoteLocalExecutor)
    executor.files = RemoteFiles(cast(SSHRunner, remote), timeout=5.0)
    return executor


def event(kind: str, **fields: object) -> str:
    return json.dumps({"event": kind, "time": 1700000000.0, **fields}) + "\n"


def test_with_ssh_the_local_executor_runs_its_jobs_there_and_without_it_here() -> None:
    assert type(LocalExecutor(ClusterConfig(executor="local", ssh="me@box"))) is (
        RemoteLocalExecutor
    )
    assert type(LocalExecutor(ClusterConfig(executor="local"))) is LocalExecutor


async def test_submit_copies_the_supervisor_once_and_starts_it_detached_remotely(
    remote: FakeRemote, runner: FakeRunner, tmp_path: Path
) -> None:
    runner.on("sh", "4242\n", "4243\n")
    executor = remote_local(remote, tmp_path)
    first = await executor.submit("echo 'a b'", "one")
    second = await executor.submit("true", "two")
    assert (first.job_id, second.job_id) == ("4242", "4243")
    supervisors = [p for p in remote.named("write") if "local_supervisor-" in p]
    assert len(supervisors) == 1
    supervisor = supervisors[0]
    assert supervisor.startswith(f"{WORK}/.cluster-api/")
    assert "def main(argv" in remote.files[supervisor]
    start = runner.argvs("sh")[0]
    assert start[:2] == ["sh", "-c"] and "setsid" in start[2]
    assert start[4:9] == [WORK, "python3", "-I", "-S", supervisor]
    assert start[9] == first.script_path and start[9].startswith(f"{WORK}/capi-one.")
    plan = json.loads(start[10])
    assert plan["work_dir"] == WORK and plan["notify_fd"] is None
    assert plan["slots"][0] == f"{WORK}/.cluster-api/slots"
    assert list(Path.cwd().iterdir()) == []  # nothing written on this side


async def test_a_start_answer_that_is_no_pid_is_refused_and_its_script_removed(
    remote: FakeRemote, runner: FakeRunner, tmp_path: Path
) -> None:
    runner.on("sh", "python3: not found\n")
    executor = remote_local(remote, tmp_path)
    with pytest.raises(SubmitError, match="not a PID"):
        await executor.submit("true", "nopid")
    removed = [p for paths in remote.named("remove") for p in paths]
    assert any(p.startswith(f"{WORK}/capi-nopid.") for p in removed) and executor.jobs == {}


@pytest.mark.parametrize(
    ("cause", "may_exist"),
    [(SSHFailure.CONNECTION_LOST, True), (SSHFailure.COMMAND_NOT_FOUND, False)],
)
async def test_a_start_whose_answer_was_lost_keeps_its_script_and_a_refused_one_does_not(
    remote: FakeRemote, runner: FakeRunner, tmp_path: Path, cause: SSHFailure, may_exist: bool
) -> None:
    runner.on("sh", SSHError("me@box", cause, "python3: not found"))
    executor = remote_local(remote, tmp_path)
    with pytest.raises(SubmitError, match="me@box") as caught:
        await executor.submit("true", "lost")
    assert caught.value.job_may_exist is may_exist
    removed = [p for paths in remote.named("remove") for p in paths]
    assert bool(removed) is not may_exist


async def test_each_poll_is_one_remote_read_and_the_events_give_true_endings(
    remote: FakeRemote, runner: FakeRunner, tmp_path: Path
) -> None:
    runner.on("sh", "4242\n")
    executor = remote_local(remote, tmp_path)
    record = await executor.submit("exit 3", "bad")
    assert record.script_path is not None
    supervisor = await executor._supervisor()
    plan = json.dumps({"work_dir": WORK})
    remote.files["/proc/4242/cmdline"] = f"python3-I-S{supervisor}{record.script_path}{plan}"
    events = events_path(record.script_path)
    remote.files[events] = event("start", host="box", pid=4250)
    reads = len(remote.named("read"))
    await executor.poll()
    assert len(remote.named("read")) == reads + 1
    batch = remote.named("read")[-1]
    assert batch[0] == "/proc/4242/cmdline" and events in batch
    assert record.status is JobStatus.RUNNING and record.exec_host == "box"
    remote.files[events] += event("end", status="failed", exit_code=3) + event("finished")
    del remote.files["/proc/4242/cmdline"]
    await executor.poll()
    assert (record.status, record.exit_code) == (JobStatus.FAILED, 3)


async def test_a_cancel_is_one_remote_command_and_a_stranger_pid_is_refused(
    remote: FakeRemote, runner: FakeRunner, tmp_path: Path
) -> None:
    runner.on("sh", "4242\n")
    executor = remote_local(remote, tmp_path)
    record = await executor.submit("sleep 60", "long")
    assert record.script_path is not None
    runner.on("sh", "signalled 4242\n")
    await executor.cancel("4242")
    cancel = runner.argvs("sh")[-1]
    assert cancel[4] == "TERM" and cancel[-2:] == ["4242", record.script_path]
    assert record.status is JobStatus.KILLED
    runner.on("sh", "refused 777\n")
    with pytest.raises(UnknownJobError, match="777"):
        await executor._cancel_ids(["777"], done=False)
    assert runner.argvs("sh")[-1][-2:] == ["777", ""]


async def test_a_job_tracked_by_its_pid_alone_learns_its_script_from_the_remote_cmdline(
    remote: FakeRemote, runner: FakeRunner, tmp_path: Path
) -> None:
    executor = remote_local(remote, tmp_path)
    record = executor.track("4300")
    # started by another release under another work_dir: still a supervisor of this library
    supervisor = "/old/runs/.cluster-api/local_supervisor-0123abcd.0.sh"
    script = f"{WORK}/capi-far.3.sh"
    plan = json.dumps({"work_dir": WORK})
    remote.files["/proc/4300/cmdline"] = f"python3-I-S{supervisor}{script}{plan}"
    await executor.poll()
    assert record.script_path == script
    remote.files[events_path(script)] = event("start", pid=4301)
    await executor.poll()
    assert record.status is JobStatus.RUNNING


async def test_a_supervisor_that_ignores_the_cancel_is_killed_with_its_elements(
    remote: FakeRemote, runner: FakeRunner, tmp_path: Path
) -> None:
    runner.on("sh", "4242\n")
    executor = remote_local(remote, tmp_path)
    record = await executor.submit_array("sleep 60", "stuck", (1, 2))
    assert record.script_path is not None
    remote.files[events_path(record.script_path)] = event("start", index=1, pid=4250) + event(
        "start", index=2, pid=4251
    )
    runner.on("sh", "signalled 4242\nkilled 4242\n", "killed 4250\nkilled 4251\n")
    await executor.cancel("4242")
    elements = runner.argvs("sh")[-1]
    assert elements[4:7] == ["KILL", record.script_path, "0"]
    assert elements[7:] == ["4250", record.script_path, "4251", record.script_path]
    assert record.status is JobStatus.KILLED
    assert [e.status for e in record.array_elements.values()] == [JobStatus.KILLED] * 2
