"""Submit and poll N jobs through the LSF simulator, here and over SSH (issue #15).

Needs the dev sshd (``bash scripts/sshd-dev.sh up``). The simulator is installed twice:
for this user (local run) and, over ssh, for the dev sshd's user ``capi-remote`` (remote
run, the way tests/test_ssh_executor_integration.py does it). Prints, for each side, the
wall time to submit the N jobs one after the other, the wall time until every job has
ended (polling every 0.5 s), the polls it took and, for the remote side, the SSH logins
(connections) and sessions (commands) the sshd log shows.

    .venv/bin/python benchmarks/ssh_remote.py [N]
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import sys
import tempfile
import time
import uuid
from pathlib import Path

from cluster_api import ClusterConfig, LSFExecutor
from cluster_api.models import JobRecord
from cluster_api.remote import SSHRunner, SSHTarget
from cluster_api.testing import install_simulator

ROOT = Path(__file__).resolve().parent.parent
STATE = Path(os.environ.get("SSHD_DEV_STATE_DIR", "/run/sshd-dev"))
USER = "capi-remote"
PATH_FILE = ".capi-test-path"
BASHRC_LINE = f'[ -f "$HOME/{PATH_FILE}" ] && PATH="$(cat "$HOME/{PATH_FILE}"):$PATH"'


def ssh_keys() -> dict[str, object]:
    client = STATE / "client"
    port = re.search(r"^\s*Port (\d+)$", (client / "ssh_config").read_text(), flags=re.M)
    assert port, "no dev sshd client config: run scripts/sshd-dev.sh up"
    return {
        "ssh": f"{USER}@127.0.0.1",
        "ssh_port": int(port.group(1)),
        "ssh_identity": str(client / "id_ed25519"),
        "ssh_options": [
            "IdentitiesOnly=yes",
            "IdentityAgent=none",
            f"UserKnownHostsFile={client / 'known_hosts'}",
            "StrictHostKeyChecking=yes",
        ],
    }


async def run_jobs(executor: LSFExecutor, n: int) -> dict[str, float]:
    started = time.perf_counter()
    records: list[JobRecord] = [await executor.submit("true", f"bench{i}") for i in range(n)]
    submitted = time.perf_counter()
    polls = 0
    while not all(r.status.is_terminal for r in records):
        await asyncio.sleep(0.5)
        await executor.poll()
        polls += 1
    ended = time.perf_counter()
    return {"submit_s": submitted - started, "until_ended_s": ended - submitted, "polls": polls}


async def local(n: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        simulator = install_simulator(Path(tmp) / "sim")
        os.environ["PATH"] = f"{simulator.bin_dir}{os.pathsep}{os.environ['PATH']}"
        os.environ.update(simulator.env)
        config = ClusterConfig(executor="lsf", work_dir=f"{tmp}/runs", log_directory=tmp)
        try:
            return await run_jobs(LSFExecutor(config), n)
        finally:
            os.environ["PATH"] = os.environ["PATH"].split(os.pathsep, 1)[1]


async def remote(n: int) -> dict[str, float]:
    keys = ssh_keys()
    target = SSHTarget.from_config(keys)
    assert target is not None
    setup = SSHRunner(target)
    tag = uuid.uuid4().hex[:8]
    state, work = f"/tmp/capi-bench-lsf-{tag}", f"capi-bench-{tag}"

    async def sh(script: str) -> None:
        result = await setup.run(["sh", "-c", script], timeout=60)
        assert result.returncode == 0, result.stderr

    install = f"from cluster_api.testing.simulator import install_simulator as i; i({state!r})"
    await sh(shlex.join(["env", f"PYTHONPATH={ROOT}", "python3", "-c", install]))
    await sh(
        f"grep -qxF {shlex.quote(BASHRC_LINE)} ~/.bashrc || "
        f"sed -i 1i{shlex.quote(BASHRC_LINE)} ~/.bashrc; "
        f"echo {shlex.quote(state + '/bin')} > ~/{PATH_FILE}"
    )
    await setup.close()  # the measured run opens its own connection
    log = STATE / "sshd.log"
    offset = log.stat().st_size
    with tempfile.TemporaryDirectory() as tmp:
        config = ClusterConfig(executor="lsf", work_dir=work, log_directory=tmp, **keys)  # type: ignore[arg-type]
        executor = LSFExecutor(config)
        try:
            figures = await run_jobs(executor, n)
        finally:
            await executor.runner.close()  # type: ignore[attr-defined]
    text = log.read_bytes()[offset:].decode(errors="replace")
    figures["ssh_logins"] = text.count(f"Accepted publickey for {USER} ")
    figures["ssh_sessions"] = text.count(f"Starting session: command for {USER} ")
    cleanup = SSHRunner(target)
    result = await cleanup.run(["sh", "-c", f"rm -rf ~/{PATH_FILE} {state} ~/{work}"], timeout=60)
    assert result.returncode == 0, result.stderr
    await cleanup.close()
    return figures


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100
    for side, run in (("local", local), ("remote over ssh", remote)):
        figures = asyncio.run(run(n))
        shown = ", ".join(
            f"{k} {v:.2f}" if isinstance(v, float) else f"{k} {v}" for k, v in figures.items()
        )
        print(f"{side:16} {n} jobs: {shown}")


if __name__ == "__main__":
    main()
