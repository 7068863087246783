"""Executors over SSH (issue #15), with plain data: the ssh config keys, the runner an
executor is built with, the remote work_dir, and the job files (scripts written, exit files
read in one batched command, a refused submission's script removed) on the remote side.
Scheduler commands go through the patched ``Executor._call``; the remote files through a
fake standing for `cluster_api.remote.SSHRunner`."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, cast

import pytest
from conftest import bjobs_json, bjobs_record
from test_lsf import FakeLSF

from cluster_api import ClusterConfig, JobStatus, LSFExecutor, ResourceSpec
from cluster_api.cli.config_check import check_config_file
from cluster_api.config import load_config
from cluster_api.errors import ConfigError, SubmitError
from cluster_api.files import LOCAL_FILES, REMOTE_WORK_DIR, RemoteFiles
from cluster_api.jobspec import effective_resources
from cluster_api.remote import SSHRunner
from cluster_api.runner import LOCAL_RUNNER, CommandResult
from cluster_api.testing.fake import FakeRunner

HOME = "/home/far"


class FakeRemote:
    """The file side of an SSH runner: remote files in a dict, every call recorded."""

    def __init__(self) -> None:
        self.files: dict[str, str] = {}
        self.calls: list[tuple[str, Any]] = []

    async def run(self, argv: list[str], *, timeout: float, **_: Any) -> CommandResult:
        self.calls.append(("run", argv))
        assert argv == ["pwd"]
        return CommandResult(argv, f"{HOME}\n")

    async def write_script(self, path: str, content: str, *, timeout: float) -> None:
        self.calls.append(("write", path))
        self.files[path] = content

    async def read_files(self, paths: list[str], *, timeout: float) -> dict[str, str | None]:
        self.calls.append(("read", list(paths)))
        return {path: self.files.get(path) for path in paths}

    async def remove_files(self, paths: list[str], *, timeout: float) -> None:
        self.calls.append(("remove", list(paths)))
        for path in paths:
            self.files.pop(path, None)

    def named(self, what: str) -> list[Any]:
        return [arg for name, arg in self.calls if name == what]


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeRemote:
    monkeypatch.chdir(tmp_path)  # the local folder, which must stay empty
    return FakeRemote()


@pytest.fixture
def fake(runner: FakeRunner) -> FakeLSF:
    return FakeLSF(runner)


def remote_executor(remote: FakeRemote, **keys: Any) -> LSFExecutor:
    executor = LSFExecutor(ClusterConfig(executor="lsf", ssh="me@login1", **keys))
    executor.files = RemoteFiles(cast(SSHRunner, remote), timeout=5.0)
    return executor


def test_the_ssh_keys_load_and_a_bad_one_is_named() -> None:
    keys = {"ssh": "me@login1", "ssh_port": 2200, "ssh_options": ["ServerAliveInterval=30"]}
    config = load_config(None, None, {**keys, "work_dir": "/groups/lab/runs"})
    assert (config.ssh, config.ssh_port, config.ssh_options) == (
        "me@login1",
        2200,
        keys["ssh_options"],
    )
    assert config.work_dir == "/groups/lab/runs"
    for bad, key in [
        ({"ssh": "-oProxyCommand=x"}, "ssh"),
        ({"ssh": "h", "ssh_port": 70000}, "ssh_port"),
        ({"ssh": "h", "ssh_identity": ""}, "ssh_identity"),
        ({"ssh": "h", "ssh_options": ["NoValue"]}, "ssh_options"),
    ]:
        with pytest.raises(ConfigError, match=rf"config\.{key}") as caught:
            load_config(None, None, bad)
        assert caught.value.key == key


def test_config_check_accepts_the_laptop_profile_and_names_each_bad_ssh_key(
    tmp_path: Path,
) -> None:
    good = tmp_path / "good.yaml"
    good.write_text(
        "ssh_port: 2200\n"  # for the profile's host: keys are judged alone, then merged
        "profiles:\n"
        "  remote:\n"
        "    executor: lsf\n"
        "    ssh: login1.janelia.org\n"
        "    ssh_identity: ~/.ssh/id_ed25519\n"
        '    ssh_options: ["ServerAliveInterval=30"]\n'
        "    work_dir: /groups/lab/scratch/runs\n"
    )
    assert check_config_file(good).errors == []
    bad = tmp_path / "bad.yaml"
    bad.write_text('ssh: "-oProxyCommand=x"\nssh_port: 0\nssh_options: ["-v"]\n')
    errors = check_config_file(bad).errors
    assert [e.split(":")[1] for e in errors] == ["1", "2", "3"], errors
    assert "ssh_port" in errors[1] and "65535" in errors[1]


def test_an_executor_runs_its_commands_over_ssh_when_the_config_names_a_host() -> None:
    over_ssh = LSFExecutor(ClusterConfig(executor="lsf", ssh="me@login1", ssh_port=2200))
    here = LSFExecutor(ClusterConfig(executor="lsf"))
    assert isinstance(over_ssh.runner, SSHRunner) and over_ssh.runner.target.port == 2200
    assert isinstance(over_ssh.files, RemoteFiles) and over_ssh.files.runner is over_ssh.runner
    assert (here.runner, here.files) == (LOCAL_RUNNER, LOCAL_FILES)


def test_two_executors_for_other_identities_never_share_a_connection(tmp_path: Path) -> None:
    keys = [tmp_path / "a", tmp_path / "b"]
    for key in keys:
        key.write_text("key")
    paths = {
        cast(
            SSHRunner, LSFExecutor(ClusterConfig(ssh="h", ssh_identity=str(k))).runner
        ).control_path
        for k in keys
    }
    assert len(paths) == 2


def test_work_dir_comes_from_the_config_and_over_ssh_never_from_the_local_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ssh = ClusterConfig(ssh="h")
    assert effective_resources(ssh, None).work_dir == REMOTE_WORK_DIR
    assert effective_resources(ssh, ResourceSpec(work_dir="runs")).work_dir == "runs"
    assert effective_resources(ClusterConfig(ssh="h", work_dir="/g/r"), None).work_dir == "/g/r"
    here = ClusterConfig(work_dir="runs")
    assert effective_resources(here, None).work_dir == str(tmp_path / "runs")
    assert effective_resources(here, ResourceSpec(work_dir="/x")).work_dir == "/x"
    assert effective_resources(ClusterConfig(), None).work_dir == os.getcwd()


async def test_scripts_are_written_remotely_under_the_remote_home(
    remote: FakeRemote, fake: FakeLSF, tmp_path: Path
) -> None:
    executor = remote_executor(remote)
    first = await executor.submit("echo 'a b'", "one")
    second = await executor.submit("true", "two", resources=ResourceSpec(work_dir="/abs/runs"))
    folder = f"{HOME}/{REMOTE_WORK_DIR}"
    assert first.resources.work_dir == folder and first.script_path == f"{folder}/{first.name}.1.sh"
    assert second.script_path == f"/abs/runs/{second.name}.2.sh"
    assert remote.named("write") == [first.script_path, second.script_path]
    assert len(remote.named("run")) == 1  # the remote home is asked once
    assert "echo 'a b'" in remote.files[first.script_path]
    assert fake.argvs("bsub")[0][-1] == first.script_path
    assert list(tmp_path.iterdir()) == []


async def test_exit_files_are_read_remotely_in_one_command_per_poll(
    remote: FakeRemote, fake: FakeLSF
) -> None:
    executor = remote_executor(remote)
    records = [await executor.submit("work", f"job{i}") for i in range(3)]
    ids = [r.job_id for r in records]
    fake.bjobs = bjobs_json(*(bjobs_record(i, "RUN") for i in ids))
    await executor.poll()
    assert remote.named("read") == []  # every job told: no exit file is needed
    for record, code in zip(records, ["0", "3", None], strict=True):
        if code is not None:
            assert record.script_path is not None
            remote.files[record.script_path[: -len(".sh")] + ".exit"] = code
    fake.bjobs = bjobs_json(*({"JOBID": i, "ERROR": f"Job <{i}> is not found"} for i in ids))
    await executor.poll()
    assert len(remote.named("read")) == 1
    assert sorted(remote.named("read")[0]) == sorted(
        r.script_path[: -len(".sh")] + ".exit" for r in records if r.script_path
    )
    assert [r.status for r in records[:2]] == [JobStatus.DONE, JobStatus.FAILED]
    assert records[1].exit_code == 3
    assert not records[2].status.is_terminal  # no exit file: not concluded


async def test_a_refused_submission_removes_its_remote_script(
    remote: FakeRemote, fake: FakeLSF
) -> None:
    executor = remote_executor(remote)
    fake.bsub = SubmitError("bsub: queue does not exist")
    with pytest.raises(SubmitError):
        await executor.submit("true", "refused")
    assert remote.named("remove") == [remote.named("write")]
    assert remote.files == {}
