"""Round trips against a real Grid Engine (``bash scripts/sge-dev-cluster.sh up``).

Skipped when Grid Engine does not answer, except with ``CLUSTER_API_REQUIRE_SGE=1`` (CI),
where that fails instead. Everything is submitted at once and watched by one monitor, so
the file takes about as long as its slowest job (qacct's ~15 s lag after a kill).
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from cluster_api import JobMonitor, JobStatus, ResourceSpec, create_executor
from cluster_api.executors.sge import SGEExecutor

pytestmark = pytest.mark.integration


def sge_running() -> str | None:
    """Why Grid Engine cannot be used here, or None."""
    try:
        out = subprocess.run(["qstat", "-xml"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"qstat cannot run: {exc}"
    if out.returncode != 0 or "<job_info" not in out.stdout:
        return f"Grid Engine does not answer: {(out.stderr or out.stdout).strip()[:200]}"
    return None


def require_sge() -> None:
    reason = sge_running()
    if reason is not None:
        if os.environ.get("CLUSTER_API_REQUIRE_SGE") == "1":
            pytest.fail(f"Grid Engine is required here (CLUSTER_API_REQUIRE_SGE=1): {reason}")
        pytest.skip(reason)


def make_executor(log_directory: Path, prefix: str) -> SGEExecutor:
    executor = create_executor(
        executor="sge",
        poll_interval=0.5,
        log_directory=str(log_directory),
        job_name_prefix=prefix,
        command_timeout=30.0,
    )
    assert isinstance(executor, SGEExecutor)
    return executor


@pytest.fixture
def prefix() -> str:
    return f"it{uuid.uuid4().hex[:8]}"


@pytest.fixture
def sge(tmp_path: Path, prefix: str) -> SGEExecutor:
    require_sge()
    return make_executor(tmp_path / "logs", prefix)


def in_qstat(job_id: str) -> bool:
    out = subprocess.run(["qstat", "-xml"], capture_output=True, text=True, timeout=15)
    return f"<JB_job_number>{job_id}</JB_job_number>" in out.stdout


async def test_endings_arrays_cancel_walltime_and_dependencies(
    sge: SGEExecutor, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()

    def res(**fields: Any) -> ResourceSpec:
        return ResourceSpec(work_dir=str(work), **fields)

    ok = await sge.submit("echo hi", "ok", resources=res())
    three = await sge.submit("exit 3", "three", resources=res())
    array = await sge.submit_array(
        '[ "$ARRAY_INDEX" != 2 ] && [ "$SGE_TASK_ID" = "$ARRAY_INDEX" ]',
        "arr",
        (1, 3),
        resources=res(),
        max_concurrent=2,
    )
    victim = await sge.submit("sleep 300", "victim", resources=res())
    slow = await sge.submit("sleep 300", "slow", resources=res(walltime="00:00:05"))
    # -hold_jid waits for any exit: the child of a failure must end, never run.
    orphan = await sge.submit(
        f"touch {work}/orphan.ran", "orphan", depends_on=[three.job_id], resources=res()
    )
    child = await sge.submit(
        f"touch {work}/child.ran", "child", depends_on=[ok.job_id], resources=res()
    )
    # Killed by a signal, gone from qstat before the first poll: no exit file; only qacct
    # knows, once its lag has passed.
    signalled = await sge.submit("kill -KILL $$", "signalled", resources=res())
    while in_qstat(signalled.job_id):
        await asyncio.sleep(0.5)

    async with JobMonitor(sge, poll_interval=0.5) as monitor:
        while victim.status is not JobStatus.RUNNING:
            assert not victim.is_terminal, victim.status
            await asyncio.sleep(0.2)
        await sge.cancel(victim.job_id)
        await monitor.wait_for(ok, three, array, victim, orphan, child, timeout=90)
        await monitor.wait_for(signalled, slow, timeout=150)

    assert (ok.status, ok.exit_code) == (JobStatus.DONE, 0)
    assert (three.status, three.exit_code) == (JobStatus.FAILED, 3)
    assert array.status is JobStatus.FAILED
    assert array.failed_element_indices == [2]
    assert {i: e.status for i, e in array.array_elements.items()} == {
        1: JobStatus.DONE,
        2: JobStatus.FAILED,
        3: JobStatus.DONE,
    }
    assert victim.status is JobStatus.KILLED
    assert orphan.status is JobStatus.KILLED
    assert orphan.metadata["dependency_failed"] == [three.job_id]
    assert child.status is JobStatus.DONE and (work / "child.ran").exists()
    assert (signalled.status, signalled.exit_code) == (JobStatus.FAILED, 137)
    assert signalled.metadata["resolved_from"] == "qacct"
    assert slow.status is JobStatus.FAILED
    assert "walltime" in slow.metadata["exit_reason"]
    await asyncio.sleep(2)  # qdel of the orphan reaches qstat
    assert not (work / "orphan.ran").exists() and not in_qstat(orphan.job_id)


FIRST_PROCESS = """
import asyncio, sys
from cluster_api import ResourceSpec, create_executor
async def main():
    ex = create_executor(executor="sge", log_directory=sys.argv[1], job_name_prefix=sys.argv[2])
    record = await ex.submit("sleep 300", "left", resources=ResourceSpec(work_dir=sys.argv[1]))
    print(record.job_id)
asyncio.run(main())
"""


async def test_reconnect_in_a_fresh_process(sge: SGEExecutor, tmp_path: Path, prefix: str) -> None:
    logs = tmp_path / "logs"
    logs.mkdir(exist_ok=True)
    first = subprocess.run(
        [sys.executable, "-c", FIRST_PROCESS, str(logs), prefix],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    job_id = first.stdout.strip().splitlines()[-1]
    found = {r.job_id: r for r in await sge.reconnect()}
    assert list(found) == [job_id]
    assert found[job_id].name == f"{prefix}-left"
    assert found[job_id].metadata["reconnected"] is True
    await sge.cancel(job_id)
    assert found[job_id].status is JobStatus.KILLED
