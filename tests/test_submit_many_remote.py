"""submit_many over SSH (issues #15, #17), with plain data: the tasks file goes through the
files seam to the host where the array runs, exclusively, owner-only, and a refused
submission takes it away again; on this machine nothing changes. Scheduler commands go
through the patched ``Executor._call``; the remote files through a fake standing for
`cluster_api.remote.SSHRunner`."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest
from test_ssh_executor import HOME, FakeRemote, remote_executor
from test_submit_many import PackingLSF

from cluster_api import ClusterConfig, LSFExecutor, ResourceSpec
from cluster_api.errors import ClusterAPIError, CommandFailedError, SubmitError
from cluster_api.files import REMOTE_WORK_DIR
from cluster_api.packing import task_line
from cluster_api.remote import RemoteFileExistsError, SSHRunner, SSHTarget
from cluster_api.runner import CommandResult
from cluster_api.testing.fake import FakeRunner

COMMANDS = ["echo one", "printf '%s' \"it's $HOME\"", "exit 3"]


class ExclusiveRemote(FakeRemote):
    """A FakeRemote whose new files are created only where nothing is (as the remote
    script does), remembering each file's mode."""

    def __init__(self) -> None:
        super().__init__()
        self.modes: dict[str, int] = {}

    async def write_new(self, path: str, content: str, *, mode: int, timeout: float) -> None:
        self.calls.append(("write_new", path))
        if path in self.files:
            raise RemoteFileExistsError(path)
        self.files[path] = content
        self.modes[path] = mode


@pytest.fixture
def remote(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> ExclusiveRemote:
    monkeypatch.chdir(tmp_path)  # the local folder, which must stay empty
    return ExclusiveRemote()


@pytest.fixture
def fake(runner: FakeRunner) -> PackingLSF:
    return PackingLSF(runner)


def tasks_file(executor: LSFExecutor, array_id: str) -> str:
    path = executor.records[array_id].metadata["tasks_file"]
    assert isinstance(path, str)
    return path


async def test_over_ssh_the_tasks_file_is_written_remotely_one_command_per_line(
    remote: ExclusiveRemote, fake: PackingLSF, tmp_path: Path
) -> None:
    executor = remote_executor(remote)
    records = await executor.submit_many(COMMANDS, "t")
    assert [r.job_id for r in records] == ["1001[1]", "1001[2]", "1001[3]"]
    assert [r.command for r in records] == COMMANDS
    path = tasks_file(executor, "1001")
    folder = f"{HOME}/{REMOTE_WORK_DIR}"
    assert os.path.dirname(path) == folder and path.endswith(".tasks.1")
    assert remote.named("write_new") == [path]
    assert remote.files[path] == "".join(f"{c}\n" for c in COMMANDS)
    assert remote.modes[path] == 0o600
    script = executor.records["1001"].script_path
    assert script is not None and script.startswith(f"{folder}/")
    assert task_line(path) in remote.files[script]
    assert fake.commands("bsub")[0][-1] == script
    assert list(tmp_path.iterdir()) == []  # nothing written on this machine


async def test_over_ssh_a_tasks_file_already_there_is_never_overwritten(
    remote: ExclusiveRemote, fake: PackingLSF
) -> None:
    executor = remote_executor(remote)
    first = await executor.submit_many(["true"], "t", resources=ResourceSpec(work_dir="/runs"))
    taken = tasks_file(executor, first[0].job_id.split("[")[0])
    other = taken.replace(".tasks.1", ".tasks.2")
    remote.files[other] = "another submission's tasks\n"
    second = await executor.submit_many(["false"], "t", resources=ResourceSpec(work_dir="/runs"))
    path = tasks_file(executor, second[0].job_id.split("[")[0])
    assert path == taken.replace(".tasks.1", ".tasks.3")
    assert remote.named("write_new") == [taken, taken, other, path]
    assert remote.files[taken] == "true\n" and remote.files[path] == "false\n"
    assert remote.files[other] == "another submission's tasks\n"


async def test_over_ssh_a_refused_array_removes_its_remote_tasks_file_and_script(
    remote: ExclusiveRemote, fake: PackingLSF
) -> None:
    executor = remote_executor(remote)
    fake.runner.on("bsub", CommandFailedError("bsub: Bad resource requirement syntax"))
    with pytest.raises(SubmitError, match="refused"):
        await executor.submit_many(COMMANDS, "t")
    written = [*remote.named("write_new"), *remote.named("write")]
    assert len(written) == 2
    assert sorted(p for removed in remote.named("remove") for p in removed) == sorted(written)
    assert remote.files == {} and executor.jobs == {}


async def test_over_ssh_a_refused_command_list_writes_nothing(
    remote: ExclusiveRemote, fake: PackingLSF
) -> None:
    executor = remote_executor(remote)
    with pytest.raises(ValueError, match="command 1 of submit_many"):
        await executor.submit_many(["true", "echo a\necho b"], "t")
    assert remote.calls == [] and fake.commands("bsub") == []


async def test_a_job_script_that_cannot_be_written_takes_its_tasks_file_along(
    fake: PackingLSF, work_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The disk fills between the tasks file and the array's script: nothing was
    submitted, so nothing may stay behind."""

    async def disk_full(*args: Any) -> str:
        raise OSError(28, "No space left on device")

    executor = LSFExecutor(ClusterConfig(executor="lsf", log_directory=work_dir))
    monkeypatch.setattr(executor.files, "write_script", disk_full)
    with pytest.raises(SubmitError, match=r"cannot write job script.*No space left"):
        await executor.submit_many(COMMANDS, "t", resources=ResourceSpec(work_dir=work_dir))
    assert os.listdir(work_dir) == [] and fake.commands("bsub") == [] and executor.jobs == {}


async def test_locally_the_tasks_file_is_still_written_here_exclusively_and_private(
    fake: PackingLSF, work_dir: str
) -> None:
    executor = LSFExecutor(ClusterConfig(executor="lsf", log_directory=work_dir))
    records = await executor.submit_many(COMMANDS, "t", resources=ResourceSpec(work_dir=work_dir))
    first = tasks_file(executor, "1001")
    taken = first.replace(".tasks.1", ".tasks.2")
    Path(taken).write_text("another submission's tasks\n")
    await executor.submit_many(["true"], "t", resources=ResourceSpec(work_dir=work_dir))
    second = tasks_file(executor, "1002")
    assert os.path.dirname(first) == work_dir and second.endswith(".tasks.3")
    assert Path(first).read_text() == "".join(f"{c}\n" for c in COMMANDS)
    assert Path(taken).read_text() == "another submission's tasks\n"
    assert stat.S_IMODE(os.stat(first).st_mode) == 0o600
    assert [r.command for r in records] == COMMANDS


async def test_locally_a_file_in_the_way_of_the_work_dir_is_a_clear_error(
    fake: PackingLSF, tmp_path: Path
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")
    executor = LSFExecutor(ClusterConfig(executor="lsf", log_directory=str(tmp_path)))
    with pytest.raises(ClusterAPIError, match="not-a-folder"):
        await executor.submit_many(["true"], "t", resources=ResourceSpec(work_dir=str(blocker)))
    assert fake.commands("bsub") == []


async def test_the_remote_write_passes_folder_path_and_mode_as_words(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Nothing of the path reaches shell text; an answer of 17 means the file is there."""
    from cluster_api.remote import _WRITE_NEW

    runner = SSHRunner(SSHTarget(host="login1"))
    seen: list[tuple[list[str], Any]] = []
    answers = iter([0, 17])

    async def execute(argv: list[str], timeout: float, env: Any = None, stdin: Any = None) -> Any:
        seen.append((list(argv), stdin))
        return CommandResult(list(argv), "", "", next(answers))

    monkeypatch.setattr(runner, "_execute", execute)
    path = "/home/far/it's a $(dir)/t.tasks.1"
    await runner.write_new(path, "echo ü\n", mode=0o600, timeout=5)
    assert seen == [
        (
            ["sh", "-c", _WRITE_NEW, "sh", "/home/far/it's a $(dir)", path, "0600"],
            "echo ü\n".encode(),
        )
    ]
    with pytest.raises(RemoteFileExistsError, match="already exists"):
        await runner.write_new(path, "x\n", mode=0o600, timeout=5)
