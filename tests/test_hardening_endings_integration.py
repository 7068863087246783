"""Never lie about how a job ended, end to end: the LSF simulator and the real Slurm.

The unit tests in test_hardening_endings.py read the same answers as plain text; here the
schedulers give them for real (bkill's per-job lines, bhist after a purge, scancel's
silence and squeue's CANCELLED).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from pathlib import Path

import pytest

from cluster_api import JobMonitor, JobStatus, LSFExecutor, ResourceSpec, create_executor
from cluster_api.executors.slurm import SlurmExecutor
from cluster_api.script import exit_file_path
from cluster_api.testing import LSFSimulator

pytestmark = pytest.mark.integration


@pytest.fixture
def res(tmp_path: Path) -> ResourceSpec:
    work = tmp_path / "work"
    work.mkdir()
    return ResourceSpec(work_dir=str(work))


def lsf(tmp_path: Path) -> LSFExecutor:
    executor = create_executor(
        executor="lsf",
        poll_interval=0.2,
        log_directory=str(tmp_path / "logs"),
        command_timeout=10.0,
    )
    assert isinstance(executor, LSFExecutor)
    return executor


def until(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def runs_its_command(simulator: LSFSimulator, job_id: str, command: str) -> bool:
    """The job's script has set its traps and runs ``command``: a signal now is recorded
    in its exit file. RUN alone comes a moment before the script starts."""
    pgid = simulator.job(job_id)["elements"]["0"].get("pgid")
    if not pgid:
        return False
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and os.getpgid(int(entry)) == pgid:
                with open(f"/proc/{entry}/comm") as handle:
                    if handle.read().strip() == command:
                        return True
        except OSError:
            continue
    return False


async def test_lsf_cancel_all_kills_only_what_was_still_running(
    lsf_simulator: LSFSimulator, res: ResourceSpec, tmp_path: Path
) -> None:
    executor = lsf(tmp_path)
    exited = [await executor.submit("exit 3", f"quick{i}", resources=res) for i in range(3)]
    running = [await executor.submit("sleep 60", f"slow{i}", resources=res) for i in range(3)]
    until(lambda: all(lsf_simulator.status(r.job_id) == "EXIT" for r in exited))
    until(lambda: all(lsf_simulator.status(r.job_id) == "RUN" for r in running))
    await executor.cancel_all()  # before any poll saw the quick ones end
    assert [r.status for r in running] == [JobStatus.KILLED] * 3
    assert not any(r.is_terminal for r in exited)
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(*exited, *running, timeout=30)
        until(lambda: all(lsf_simulator.status(r.job_id) == "EXIT" for r in running))
        await monitor.run_cycle()
    assert [(r.status, r.exit_code) for r in exited] == [(JobStatus.FAILED, 3)] * 3
    assert [(r.status, r.exit_code) for r in running] == [(JobStatus.KILLED, 130)] * 3


async def test_lsf_admin_kill_while_lsf_was_down_ends_killed(
    lsf_simulator: LSFSimulator, res: ResourceSpec, tmp_path: Path
) -> None:
    executor = lsf(tmp_path)
    # The scenario needs the exit file the script's traps write when the admin's signal
    # lands. Rarely the signal beats the traps (the simulator records the job killed by
    # SIGTERM itself, with no exit file): that is a different scenario, so start over.
    for _attempt in range(3):
        victim = await executor.submit("sleep 60", "victim", resources=res)
        assert victim.script_path is not None
        job_id = victim.job_id
        until(lambda job_id=job_id: runs_its_command(lsf_simulator, job_id, "sleep"))
        await executor.poll()
        lsf_simulator.outage(60)
        lsf_simulator.kill_as_admin(victim.job_id)
        # LSF records the end a moment after the signal: only then can it clean the job.
        until(lambda job_id=job_id: lsf_simulator.status(job_id) == "EXIT")
        exit_file = Path(exit_file_path(victim.script_path))
        with contextlib.suppress(AssertionError):  # its traps write it at once, or never
            until(exit_file.exists, 3)
        if exit_file.exists():
            break
        lsf_simulator.outage(0)
        executor.remove_job(victim.job_id)
    else:
        pytest.fail("the admin's signal beat the script's traps three times")
    lsf_simulator.set(clean_period=0)  # cleaned from bjobs before LSF answers again
    with pytest.raises(Exception, match="LSF is down"):
        await executor.poll_strict()
    lsf_simulator.outage(0)
    await executor.poll()
    assert victim.status is JobStatus.KILLED
    assert victim.metadata["resolved_from"] == "bhist"
    assert victim.metadata["exit_reason"].startswith("TERM_ADMIN")


async def test_slurm_cancel_all_kills_only_what_was_still_running(
    slurm: SlurmExecutor, res: ResourceSpec
) -> None:
    exited = await slurm.submit("exit 3", "quick", resources=res)
    running = await slurm.submit("sleep 300", "slow", resources=res)
    # Watched with squeue itself: the executor must not see the quick one end first.
    until(lambda: squeue_state(exited.job_id) == "FAILED", timeout=60)
    until(lambda: squeue_state(running.job_id) == "RUNNING", timeout=60)
    await slurm.cancel_all()  # scancel is silent for both
    async with JobMonitor(slurm, poll_interval=0.5) as monitor:
        await monitor.wait_for(exited, running, timeout=60)
    assert (exited.status, exited.exit_code) == (JobStatus.FAILED, 3)
    assert running.status is JobStatus.KILLED


def squeue_state(job_id: str) -> str:
    out = subprocess.run(
        ["squeue", "-h", "-t", "all", f"--jobs={job_id}", "-o", "%T"],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.stdout.strip()
