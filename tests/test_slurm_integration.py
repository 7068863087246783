"""Slurm-only round trips against a real Slurm (``scripts/slurm-dev-cluster.sh up``).

Skipped when Slurm is not running, except with ``CLUSTER_API_REQUIRE_SLURM=1`` (CI), as in
``test_integration.py``. A time limit takes Slurm 60 to 95 s to enforce, so everything is
submitted at once and watched by one monitor: the file takes about as long as that job.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from cluster_api import JobMonitor, JobStatus, ResourceSpec
from cluster_api.executors.slurm import SlurmExecutor

pytestmark = pytest.mark.integration


async def test_limits_cancellation_arrays_and_environment(
    slurm: SlurmExecutor, tmp_path: Path
) -> None:
    work = tmp_path / "work"
    work.mkdir()

    def res(**fields: Any) -> ResourceSpec:
        return ResourceSpec(work_dir=str(work), **fields)

    slow = await slurm.submit("sleep 300", "slow", resources=res(walltime="1"))
    victim = await slurm.submit("sleep 300", "victim", resources=res())
    array = await slurm.submit_array(
        'sleep 1; [ "$ARRAY_INDEX" != 3 ]', "arr", (1, 4), resources=res()
    )
    # Killed by a signal: the script's exit trap never runs, only sacct knows the end.
    signalled = await slurm.submit("kill -KILL $$", "signalled", resources=res())
    # --export=NONE: the job's own env reaches srun steps too (SLURM_EXPORT_ENV=ALL).
    isolated = await slurm.submit(
        f"srun printenv SPECIAL > {work}/step.out",
        "isolated",
        env={"SPECIAL": "from the job"},
        inherit_env=False,
        resources=res(),
    )

    async with JobMonitor(slurm, poll_interval=0.5) as monitor:
        while victim.status is not JobStatus.RUNNING:
            assert not victim.is_terminal, victim.status
            await asyncio.sleep(0.2)
        await slurm.cancel(victim.job_id)
        await monitor.wait_for(victim, array, signalled, isolated, timeout=60)

        assert victim.status is JobStatus.KILLED
        assert array.status is JobStatus.FAILED
        assert array.failed_element_indices == [3]
        assert array.array_elements[3].exit_code == 1
        assert {i: e.status for i, e in array.array_elements.items()} == {
            1: JobStatus.DONE,
            2: JobStatus.DONE,
            3: JobStatus.FAILED,
            4: JobStatus.DONE,
        }
        assert (signalled.status, signalled.exit_code) == (JobStatus.FAILED, 128 + 9)
        assert isolated.status is JobStatus.DONE
        assert (work / "step.out").read_text().strip() == "from the job"

        await monitor.wait_for(slow, timeout=150)
    assert slow.status is JobStatus.FAILED
    assert slow.metadata["exit_reason"] == "TIMEOUT"
    assert slow.start_time is not None and slow.finish_time is not None
    ran = (slow.finish_time - slow.start_time).total_seconds()
    assert 59 <= ran <= 105, ran  # a 1-minute limit, checked periodically, plus KillWait
