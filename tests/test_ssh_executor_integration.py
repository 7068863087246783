"""An LSF executor on a laptop, its scheduler behind SSH (issue #15), for real.

The dev sshd (``scripts/sshd-dev.sh up``) stands in for a login node: the LSF simulator
is installed for its user ``capi-remote`` (by that user, over ssh), and an executor whose
config names the host submits and polls through it. Skipped when the dev sshd is not up
(failed with ``CLUSTER_API_REQUIRE_SSHD=1``).
"""

from __future__ import annotations

import asyncio
import os
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from test_integration import require_slurm
from test_remote_ssh import dev_target, logins, master_pid
from test_sshd_dev import REMOTE_USER, DevSshd, client_port, new_key
from test_sshd_dev import dev as _dev_fixture  # noqa: F401 (the dev sshd fixture)

from cluster_api import ClusterConfig, JobStatus, LSFExecutor, ResourceSpec, SlurmExecutor
from cluster_api.errors import ClusterAPIError
from cluster_api.models import JobRecord
from cluster_api.remote import SSHError, SSHFailure, SSHRunner

pytestmark = pytest.mark.integration

TIMEOUT = 30.0
ROOT = Path(__file__).resolve().parent.parent
# The remote user's ~/.bashrc (read by bash for ssh commands) puts the simulator's
# wrappers first on PATH while this file names them; without it, nothing changes.
PATH_FILE = ".capi-test-path"
BASHRC_LINE = f'[ -f "$HOME/{PATH_FILE}" ] && PATH="$(cat "$HOME/{PATH_FILE}"):$PATH"'


@pytest.fixture
def sshd(request: pytest.FixtureRequest) -> DevSshd:
    found: DevSshd = request.getfixturevalue("_dev_fixture")
    return found


def remote_config(sshd: DevSshd, tmp_path: Path, work_dir: str, **keys: object) -> ClusterConfig:
    target = dev_target(sshd)
    values: dict[str, object] = {
        "executor": "lsf",
        "ssh": target.host,
        "ssh_port": target.port,
        "ssh_identity": target.identity,
        "ssh_options": target.options,
        "work_dir": work_dir,
        "log_directory": str(tmp_path / "logs"),
        "journal": True,
        "command_timeout": TIMEOUT,
    }
    values.update(keys)
    return ClusterConfig(**values)  # type: ignore[arg-type]


async def remote(runner: SSHRunner, script: str) -> str:
    result = await runner.run(["sh", "-c", script], timeout=TIMEOUT)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.fixture
async def remote_lsf(sshd: DevSshd) -> AsyncIterator[str]:
    """The LSF simulator, installed by and for the remote user; yields its work_dir
    (relative: under the remote home)."""
    runner = SSHRunner(dev_target(sshd))
    tag = uuid.uuid4().hex[:10]
    state, work = f"/tmp/capi-remote-lsf-{tag}", f"capi-runs-{tag}"
    install = f"from cluster_api.testing.simulator import install_simulator as i; i({state!r})"
    # The remote python3 (this test's may live where capi-remote cannot read), this source.
    await remote(runner, shlex.join(["env", f"PYTHONPATH={ROOT}", "python3", "-c", install]))
    await remote(
        runner,
        f"grep -qxF {shlex.quote(BASHRC_LINE)} ~/.bashrc || "
        f"sed -i 1i{shlex.quote(BASHRC_LINE)} ~/.bashrc; "
        f"echo {shlex.quote(state + '/bin')} > ~/{PATH_FILE}",
    )
    try:
        yield work
    finally:
        await remote(runner, f"rm -rf ~/{PATH_FILE} {shlex.quote(state)} ~/{work}")
        await runner.close()


async def until_ended(executor: LSFExecutor, records: list[JobRecord], limit: float = 90) -> int:
    """Poll until every record has ended; how many polls failed on the way."""
    failures, deadline = 0, time.monotonic() + limit
    while not all(r.status.is_terminal for r in records):
        assert time.monotonic() < deadline, [r.status for r in records]
        try:
            await executor.poll()
        except ClusterAPIError:
            failures += 1
        await asyncio.sleep(0.3)
    return failures


@pytest.fixture
def cwd(tmp_path: Path) -> Iterator[Path]:
    """Submit from an empty local folder, to show nothing is written in it."""
    here = tmp_path / "laptop"
    here.mkdir()
    old = os.getcwd()
    os.chdir(here)
    try:
        yield here
    finally:
        os.chdir(old)


async def test_jobs_run_as_the_remote_user_with_scripts_and_logs_in_the_remote_work_dir(
    sshd: DevSshd, remote_lsf: str, tmp_path: Path, cwd: Path
) -> None:
    executor = LSFExecutor(remote_config(sshd, tmp_path, remote_lsf))
    try:
        ok = await executor.submit("id -un > whoami.txt; pwd >> whoami.txt", "who")
        bad = await executor.submit("exit 4", "bad")
        assert await until_ended(executor, [ok, bad]) == 0
        home = f"/home/{REMOTE_USER}"
        assert ok.resources.work_dir == f"{home}/{remote_lsf}"
        assert ok.script_path is not None and ok.script_path.startswith(f"{home}/{remote_lsf}/")
        listing = await remote(
            executor.runner,  # type: ignore[arg-type]
            f"cd ~/{remote_lsf} && cat whoami.txt && stat -c '%a %U %n' *.sh && ls",
        )
    finally:
        await executor.runner.close()  # type: ignore[attr-defined]
    assert (ok.status, bad.status, bad.exit_code) == (JobStatus.DONE, JobStatus.FAILED, 4)
    assert listing.startswith(f"{REMOTE_USER}\n{home}/{remote_lsf}\n")
    assert f"700 {REMOTE_USER} {os.path.basename(ok.script_path)}" in listing
    assert f"stdout.{ok.job_id}.log" in listing and f"stderr.{bad.job_id}.log" in listing
    assert list(cwd.iterdir()) == []  # nothing written on the laptop side


async def test_many_jobs_are_submitted_and_polled_over_one_connection(
    sshd: DevSshd, remote_lsf: str, tmp_path: Path
) -> None:
    executor = LSFExecutor(remote_config(sshd, tmp_path, remote_lsf))
    runner: SSHRunner = executor.runner  # type: ignore[assignment]
    offset = sshd.log.stat().st_size
    try:
        records = [await executor.submit(f"exit {i % 2}", f"many{i}") for i in range(20)]
        await until_ended(executor, records)
        port = client_port(await remote(runner, 'echo "$SSH_CONNECTION"'))
    finally:
        await runner.close()
    log = sshd.log_since(offset)
    sessions = log.count(f"Starting session: command for {REMOTE_USER} from 127.0.0.1 port {port} ")
    # The fixture's connection to the same target may already be open: then it is joined.
    assert logins(sshd, offset, port) <= 1
    assert log.count(f"Accepted publickey for {REMOTE_USER} ") <= 1
    assert sessions >= 40  # a write and a bsub per job at least, all through that one login
    assert [r.exit_code for r in records] == [i % 2 for i in range(20)]


async def test_a_killed_connection_is_an_outage_survived_with_true_endings(
    sshd: DevSshd, remote_lsf: str, tmp_path: Path
) -> None:
    executor = LSFExecutor(remote_config(sshd, tmp_path, remote_lsf))
    runner: SSHRunner = executor.runner  # type: ignore[assignment]
    try:
        good = await executor.submit("sleep 3; exit 0", "slow-ok")
        bad = await executor.submit("sleep 3; exit 7", "slow-bad")
        await executor.poll()
        os.kill(master_pid(runner), signal.SIGKILL)
        await until_ended(executor, [good, bad])
    finally:
        await runner.close()
    assert (good.status, bad.status, bad.exit_code) == (JobStatus.DONE, JobStatus.FAILED, 7)


async def test_a_wrong_key_is_a_clear_error_naming_the_host_and_leaves_nothing(
    sshd: DevSshd, tmp_path: Path, cwd: Path
) -> None:
    key = new_key(tmp_path / "stranger")
    options = [o for o in dev_target(sshd).options]
    config = remote_config(sshd, tmp_path, "runs", ssh_identity=str(key), ssh_options=options)
    executor = LSFExecutor(config)
    started = time.monotonic()
    try:
        with pytest.raises(SSHError) as caught:
            await executor.submit("true", "never", resources=ResourceSpec(work_dir="/tmp/x"))
    finally:
        await executor.runner.close()  # type: ignore[attr-defined]
    assert time.monotonic() - started < 10
    assert caught.value.cause is SSHFailure.KEY_REFUSED
    assert "127.0.0.1" in str(caught.value) and "key refused" in str(caught.value)
    assert list(cwd.iterdir()) == [] and executor.jobs == {}


async def test_the_users_own_running_master_is_joined_and_left_running(
    sshd: DevSshd, tmp_path: Path
) -> None:
    """A user logged in once (their ``ControlMaster``/``ControlPath``, here given as
    ssh_options): no second login, and closing leaves their master alone."""
    control = Path(tempfile.mkdtemp(prefix="capi-user-", dir="/tmp"))
    base = dev_target(sshd)
    options = [*base.options, f"IdentityFile={base.identity}", f"ControlPath={control}/%C"]
    target = dev_target(sshd, ssh_identity=None, ssh_options=options)
    users = ["ssh", "-o", "BatchMode=yes", *target.connection_options(), target.host]
    started = subprocess.run(
        [*users[:1], "-o", "ControlMaster=yes", "-o", "ControlPersist=60", "-N", "-f", *users[1:]],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        timeout=TIMEOUT,
    )
    assert started.returncode == 0, started.stderr
    offset = sshd.log.stat().st_size
    runner = SSHRunner(target)
    try:
        result = await runner.run(["id", "-un"], timeout=TIMEOUT)
        await runner.close()
        check = subprocess.run(
            [*users[:1], "-O", "check", *users[1:]], capture_output=True, timeout=TIMEOUT
        )
    finally:
        subprocess.run([*users[:1], "-O", "exit", *users[1:]], capture_output=True, timeout=TIMEOUT)
        shutil.rmtree(control, ignore_errors=True)
    assert result.stdout == f"{REMOTE_USER}\n"
    assert runner.control_path.parent == control
    assert f"Accepted publickey for {REMOTE_USER} " not in sshd.log_since(offset)
    assert check.returncode == 0  # still running after close()


async def test_hostile_folder_names_and_env_values_arrive_literally_on_the_remote_side(
    sshd: DevSshd, remote_lsf: str, tmp_path: Path
) -> None:
    value = "two words; $HOME `id` 'quoted' \"dq\" \\ back"
    work = f"{remote_lsf}/it's a dir; (x) &"  # LSF refuses $, backslash, " and `
    executor = LSFExecutor(remote_config(sshd, tmp_path, work))
    runner: SSHRunner = executor.runner  # type: ignore[assignment]
    try:
        job = await executor.submit('printf %s "$V" > v.txt', "odd", env={"V": value})
        await until_ended(executor, [job])
        folder = f"/home/{REMOTE_USER}/{work}"
        written = await remote(runner, shlex.join(["cat", "--", f"{folder}/v.txt"]))
    finally:
        await runner.close()
    assert (job.status, job.resources.work_dir, written) == (JobStatus.DONE, folder, value)


async def test_real_slurm_jobs_submitted_over_ssh_run_as_the_remote_user(
    sshd: DevSshd, tmp_path: Path
) -> None:
    require_slurm()
    work = f"/tmp/capi-remote-slurm-{uuid.uuid4().hex[:10]}"
    executor = SlurmExecutor(
        remote_config(sshd, tmp_path, work, executor="slurm", job_name_prefix="sshit")
    )
    runner: SSHRunner = executor.runner  # type: ignore[assignment]
    try:
        ok = await executor.submit("id -un > who.txt", "who")
        bad = await executor.submit("exit 5", "bad")
        await until_ended(executor, [ok, bad], limit=120)
        who = await remote(runner, shlex.join(["cat", f"{work}/who.txt"]))
    finally:
        await remote(runner, shlex.join(["rm", "-rf", work]))
        await runner.close()
    assert (ok.status, bad.status, bad.exit_code) == (JobStatus.DONE, JobStatus.FAILED, 5)
    assert who == f"{REMOTE_USER}\n"
