"""submit_many over SSH for real (issues #15, #17): the LSF simulator installed for the dev
sshd's user runs the packed array from its tasks file on the remote side, and the local
executor with ``ssh`` set runs each command as a process of its own there. Skipped when
the dev sshd is not up (failed with ``CLUSTER_API_REQUIRE_SSHD=1``)."""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
from test_ssh_executor_integration import cwd as _cwd_fixture  # noqa: F401 (empty local folder)
from test_ssh_executor_integration import remote, remote_config, until_ended
from test_ssh_executor_integration import remote_lsf as _remote_lsf_fixture  # noqa: F401
from test_ssh_local_integration import local_config
from test_ssh_local_integration import until_ended as until_local_ended
from test_ssh_local_integration import work as _work_fixture  # noqa: F401
from test_sshd_dev import REMOTE_USER, DevSshd
from test_sshd_dev import dev as _dev_fixture  # noqa: F401 (the dev sshd fixture)

from cluster_api import JobStatus, LocalExecutor, LSFExecutor
from cluster_api.executors.local_remote import RemoteLocalExecutor
from cluster_api.remote import SSHRunner

pytestmark = pytest.mark.integration

QUOTED = "printf '%s' 'a \"b\" $c' > quoted.txt"  # a quote and a $, to arrive literally
TASKS = ["id -un > who.txt", QUOTED, "exit 3", "sleep 120", "true"]


@pytest.fixture
def sshd(request: pytest.FixtureRequest) -> DevSshd:
    found: DevSshd = request.getfixturevalue("_dev_fixture")
    return found


@pytest.fixture
def remote_lsf(request: pytest.FixtureRequest) -> str:
    found: str = request.getfixturevalue("_remote_lsf_fixture")
    return found


@pytest.fixture
def cwd(request: pytest.FixtureRequest) -> Path:
    found: Path = request.getfixturevalue("_cwd_fixture")
    return found


@pytest.fixture
def work(request: pytest.FixtureRequest) -> str:
    found: str = request.getfixturevalue("_work_fixture")
    return found


async def test_the_remote_lsf_runs_each_task_from_its_remote_tasks_file(
    sshd: DevSshd, remote_lsf: str, tmp_path: Path, cwd: Path
) -> None:
    executor = LSFExecutor(remote_config(sshd, tmp_path, remote_lsf))
    runner: SSHRunner = executor.runner  # type: ignore[assignment]
    try:
        records = await executor.submit_many(TASKS, "many")
        sleeper = records[3]
        await until_ended(executor, [r for r in records if r is not sleeper])
        await executor.cancel(sleeper.job_id)
        await until_ended(executor, [sleeper])
        array = executor.records[sleeper.job_id.split("[")[0]]
        tasks = array.metadata["tasks_file"]
        folder = shlex.quote(f"/home/{REMOTE_USER}/{remote_lsf}")
        listing = await remote(
            runner,
            f"cd {folder} && cat who.txt && cat quoted.txt && echo && "
            f"stat -c '%a %U' {shlex.quote(tasks)} && cat {shlex.quote(tasks)}",
        )
    finally:
        await runner.close()
    assert [r.status for r in records] == [
        JobStatus.DONE,
        JobStatus.DONE,
        JobStatus.FAILED,
        JobStatus.KILLED,
        JobStatus.DONE,
    ]
    assert [records[i].exit_code for i in (0, 1, 2, 4)] == [0, 0, 3, 0]
    assert tasks.startswith(f"/home/{REMOTE_USER}/{remote_lsf}/")
    assert listing.splitlines() == [REMOTE_USER, 'a "b" $c', f"600 {REMOTE_USER}", *TASKS]
    assert list(cwd.iterdir()) == []  # nothing written on this machine


async def test_the_local_executor_over_ssh_runs_each_task_as_a_remote_process(
    sshd: DevSshd, work: str, tmp_path: Path
) -> None:
    executor = LocalExecutor(local_config(sshd, tmp_path, work))
    assert isinstance(executor, RemoteLocalExecutor)
    try:
        records = await executor.submit_many(TASKS, "many")
        sleeper = records[3]
        await until_local_ended(executor, [r for r in records if r is not sleeper])
        await executor.cancel(sleeper.job_id)
        await until_local_ended(executor, [sleeper])
        listing = await remote(
            executor.runner,  # type: ignore[arg-type]
            f"cd ~/{work} && cat who.txt && cat quoted.txt",
        )
    finally:
        await executor.runner.close()  # type: ignore[attr-defined]
    assert len({r.job_id for r in records}) == len(TASKS)  # a process (a PID) each
    assert [r.status for r in records] == [
        JobStatus.DONE,
        JobStatus.DONE,
        JobStatus.FAILED,
        JobStatus.KILLED,
        JobStatus.DONE,
    ]
    assert records[2].exit_code == 3
    assert listing == f'{REMOTE_USER}\na "b" $c'
