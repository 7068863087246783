"""Submission faults against the LSF simulator (real bsub/bjobs processes, real kills).

A lost bsub answer followed by failed lookups, a process SIGKILLed while its bsubs are in
flight, and a dependency LSF does not know: every job the simulator got is tracked
exactly once afterwards, and a refused submit leaves nothing behind.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from test_integration import require_slurm

import cluster_api.executors.lsf as lsf_module
import cluster_api.reconnect as reconnect_module
from cluster_api import JobStatus, LSFExecutor, ResourceSpec, SubmitError, create_executor
from cluster_api.testing import LSFSimulator

pytestmark = pytest.mark.integration


@pytest.fixture
def work(tmp_path: Path) -> Path:
    path = tmp_path / "work"
    path.mkdir()
    return path


@pytest.fixture
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(lsf_module.LSF, "submit_retry_delay", 0.2)
    monkeypatch.setattr(reconnect_module, "LOOKUP_RETRY_DELAYS", (0.2, 0.2, 0.2))


def make_executor(tmp_path: Path, **overrides: Any) -> LSFExecutor:
    executor = create_executor(
        executor="lsf",
        log_directory=str(tmp_path / "logs"),
        poll_interval=0.2,
        **overrides,
    )
    assert isinstance(executor, LSFExecutor)
    return executor


@pytest.mark.parametrize("faults", [("down",), ("empty", "garbage"), ("garbage", "down", "empty")])
async def test_failed_lookups_after_a_lost_answer_still_submit_once(
    lsf_simulator: LSFSimulator,
    tmp_path: Path,
    work: Path,
    quick_retries: None,
    faults: tuple[str, ...],
) -> None:
    executor = make_executor(tmp_path, command_timeout=1.5)
    lsf_simulator.bsub_hang_after_submit(4.0)
    lsf_simulator.lookup_faults(*faults)
    job = await executor.submit("true", "once", resources=ResourceSpec(work_dir=str(work)))
    assert list(lsf_simulator.jobs()) == [job.job_id]
    assert len(lsf_simulator.calls("bsub")) == 1
    lookups = [c for c in lsf_simulator.calls("bjobs") if "jobid job_description" in c.argv]
    assert len(lookups) == len(faults) + 1


CHILD = """
import asyncio, sys
from cluster_api import ResourceSpec, create_executor

async def main():
    executor = create_executor(executor="lsf", log_directory=sys.argv[1], journal=True)
    res = ResourceSpec(work_dir=sys.argv[2])
    await asyncio.gather(
        *(executor.submit("true", f"job{i}", resources=res) for i in range(int(sys.argv[3])))
    )

asyncio.run(main())
"""


def run_child_and_kill(sim: LSFSimulator, tmp_path: Path, work: Path, jobs: int) -> None:
    """Start a process that submits ``jobs`` jobs; SIGKILL it once some bsubs started."""
    script = tmp_path / "child.py"
    script.write_text(textwrap.dedent(CHILD))
    child = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path / "logs"), str(work), str(jobs)],
        env={**os.environ, **sim.env},
    )
    deadline = time.monotonic() + 30
    while len(sim.jobs()) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    os.kill(child.pid, signal.SIGKILL)
    child.wait()
    # The bsubs in flight outlive their caller, as real ones do; let them finish.
    while any(c.end is None for c in sim.calls("bsub")) and time.monotonic() < deadline:
        time.sleep(0.05)


async def test_process_killed_mid_submit_loses_and_duplicates_no_job(
    lsf_simulator: LSFSimulator, tmp_path: Path, work: Path
) -> None:
    lsf_simulator.bsub_answer_delay(1.5)  # ids exist long before their caller hears them
    run_child_and_kill(lsf_simulator, tmp_path, work, jobs=6)
    lsf_simulator.bsub_answer_delay(0)
    lsf_simulator.wait_idle(timeout=20)  # the jobs end while nobody watches
    on_scheduler = set(lsf_simulator.jobs())
    assert on_scheduler  # the kill came mid-submit, as meant

    found = await make_executor(tmp_path, journal=True).reconnect()
    ids = Counter(r.job_id for r in found)
    assert set(ids) == on_scheduler and max(ids.values()) == 1
    assert all(r.status is JobStatus.DONE and r.command == "true" for r in found)
    # Every submission is settled: nothing comes back a second time.
    assert await make_executor(tmp_path, journal=True).reconnect() == []


async def test_unknown_dependency_is_refused_and_leaves_nothing(
    lsf_simulator: LSFSimulator, tmp_path: Path, work: Path
) -> None:
    executor = make_executor(tmp_path, journal=True)
    with pytest.raises(SubmitError, match="No matching job found"):
        await executor.submit(
            "true", "orphan", resources=ResourceSpec(work_dir=str(work)), depends_on="99999"
        )
    assert list(work.iterdir()) == [] and lsf_simulator.jobs() == {}
    assert await make_executor(tmp_path, journal=True).reconnect() == []


async def test_real_squeue_lookup_tells_found_from_not_found(tmp_path: Path, work: Path) -> None:
    """The lookup relies on squeue printing its header even when nothing matches: checked
    against the real Slurm (skipped without one)."""
    require_slurm()
    slurm = create_executor(
        executor="slurm",
        log_directory=str(tmp_path / "logs"),
        job_name_prefix=f"h2{uuid.uuid4().hex[:8]}",
        command_timeout=30.0,
    )
    job = await slurm.submit("sleep 30", "lookup", resources=ResourceSpec(work_dir=str(work)))
    try:
        assert job.script_path is not None
        token = Path(job.script_path).stem
        assert await slurm._find_submission(job.name, token) == job.job_id
        assert await slurm._find_submission(job.name, f"{token}-other") is None
        assert await slurm._find_submission(f"{job.name}-nosuch", token) is None
    finally:
        await slurm.cancel_all()
