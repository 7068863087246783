"""Round trips through the PBS simulator (``pbs_simulator``), as PBS Pro and as Torque:
real processes, real exit codes, real files; the executor sees only qsub/qstat/qdel."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from cluster_api import Executor, JobMonitor, JobRecord, JobStatus, ResourceSpec, create_executor
from cluster_api.testing import PBSSimulator

pytestmark = pytest.mark.integration

TIMEOUT = 60.0
WALLTIME_REASONS = {"pbs": "JOB_EXEC_KILL_WALLTIME", "torque": "JOB_EXEC_OVERLIMIT_WT"}


class Cluster:
    def __init__(self, flavour: str, simulator: PBSSimulator, tmp_path: Path) -> None:
        self.flavour = flavour
        self.simulator = simulator
        self.work_dir = tmp_path / "work dir"
        self.work_dir.mkdir()
        self.config: dict[str, Any] = {
            "executor": flavour,
            "poll_interval": 0.2,
            "log_directory": str(tmp_path / "logs"),
            "job_name_prefix": f"it{uuid.uuid4().hex[:8]}",
            "command_timeout": 30.0,
        }

    def executor(self) -> Executor:
        return create_executor(**self.config)

    def resources(self, **fields: Any) -> ResourceSpec:
        return ResourceSpec(work_dir=str(self.work_dir), **fields)


@pytest.fixture(params=["pbs", "torque"])
def cluster(request: pytest.FixtureRequest, pbs_simulator: PBSSimulator, tmp_path: Path) -> Cluster:
    pbs_simulator.set(flavour=request.param, seconds_per_minute=2.0)
    return Cluster(request.param, pbs_simulator, tmp_path)


async def run_to_end(executor: Executor, *jobs: JobRecord) -> None:
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(*jobs, timeout=TIMEOUT)


async def test_success_and_exit_3_in_the_work_dir(cluster: Cluster) -> None:
    executor = cluster.executor()
    ok = await executor.submit("pwd > where", "ok", resources=cluster.resources())
    bad = await executor.submit("exit 3", "bad", resources=cluster.resources())
    await run_to_end(executor, ok, bad)
    assert (ok.status, ok.exit_code) == (JobStatus.DONE, 0)
    assert (bad.status, bad.exit_code) == (JobStatus.FAILED, 3)
    assert (cluster.work_dir / "where").read_text().strip() == str(cluster.work_dir)
    assert ok.job_id.endswith(".pbssim")  # ids kept as the server prints them


async def test_array_with_one_failing_element(cluster: Cluster) -> None:
    executor = cluster.executor()
    array = await executor.submit_array(
        '[ "$ARRAY_INDEX" != 3 ]', "arr", (1, 4), resources=cluster.resources()
    )
    await run_to_end(executor, array)
    assert array.job_id.endswith("[].pbssim")
    assert array.status is JobStatus.FAILED
    assert array.failed_element_indices == [3]


async def test_cancel_a_running_job(cluster: Cluster) -> None:
    executor = cluster.executor()
    job = await executor.submit("sleep 120", "victim", resources=cluster.resources())
    while job.status is not JobStatus.RUNNING:
        await executor.poll()
    await executor.cancel(job.job_id)
    assert job.status is JobStatus.KILLED
    await run_to_end(executor, job)
    cluster.simulator.wait_idle(timeout=10)
    assert job.status is JobStatus.KILLED


async def test_walltime_kill_is_failed_with_the_reason(cluster: Cluster) -> None:
    executor = cluster.executor()
    job = await executor.submit("sleep 30", "slow", resources=cluster.resources(walltime="1"))
    await run_to_end(executor, job)
    assert job.status is JobStatus.FAILED
    assert job.metadata["exit_reason"] == WALLTIME_REASONS[cluster.flavour]


@pytest.mark.parametrize("forgotten", [False, True])
async def test_a_job_gone_before_the_first_poll(cluster: Cluster, forgotten: bool) -> None:
    """Ended before anyone asked: PBS tells from its history (``qstat -x``), Torque
    while it keeps the job as C; once the server forgot it, the exit file tells."""
    cluster.simulator.set(clean_period=0.0 if forgotten else 300.0)
    executor = cluster.executor()
    job = await executor.submit("exit 4", "quick", resources=cluster.resources())
    cluster.simulator.wait_idle(timeout=20)
    await run_to_end(executor, job)
    assert (job.status, job.exit_code) == (JobStatus.FAILED, 4)
    if cluster.flavour == "pbs" and not forgotten:
        assert job.metadata["resolved_from"] == "qstat -x"


async def test_pbs_without_history_relies_on_exit_files(cluster: Cluster) -> None:
    if cluster.flavour == "torque":
        pytest.skip("Torque has no history setting")
    cluster.simulator.set(history=False)
    executor = cluster.executor()
    jobs = [
        await executor.submit(f"exit {c}", f"h{c}", resources=cluster.resources()) for c in (0, 2)
    ]
    cluster.simulator.wait_idle(timeout=20)
    await run_to_end(executor, *jobs)
    assert [(j.status, j.exit_code) for j in jobs] == [(JobStatus.DONE, 0), (JobStatus.FAILED, 2)]


async def test_a_dependency_on_a_failed_job(cluster: Cluster) -> None:
    executor = cluster.executor()
    marker = cluster.work_dir / "ran"
    parent = await executor.submit("exit 1", "parent", resources=cluster.resources())
    child = await executor.submit(
        f"touch '{marker}'", "child", resources=cluster.resources(), depends_on=[parent]
    )
    await run_to_end(executor, parent, child)
    assert parent.status is JobStatus.FAILED
    assert child.status is JobStatus.KILLED
    assert child.metadata["dependency_failed"] == [parent.job_id]
    assert not marker.exists()


RECONNECT = """
import asyncio, json, sys
from cluster_api import JobMonitor, create_executor

async def main():
    executor = create_executor(**json.loads(sys.argv[1]))
    found = await executor.reconnect()
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(*found, timeout=60)
    print(json.dumps({r.job_id: [r.status.value, r.exit_code] for r in found}))

asyncio.run(main())
"""


async def test_reconnect_in_a_fresh_process(cluster: Cluster) -> None:
    first = cluster.executor()
    job = await first.submit("sleep 6; exit 5", "survivor", resources=cluster.resources())
    array = await first.submit_array("sleep 5", "arr", (1, 3), resources=cluster.resources())
    out = subprocess.run(
        [sys.executable, "-c", RECONNECT, json.dumps(cluster.config)],
        capture_output=True,
        text=True,
        timeout=120,
        env=dict(os.environ),
        check=True,
    )
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {job.job_id: ["failed", 5], array.job_id: ["done", 0]}


async def test_an_outage_is_waited_out(cluster: Cluster) -> None:
    executor = cluster.executor()
    job = await executor.submit("sleep 1", "patient", resources=cluster.resources())
    cluster.simulator.outage(2.0)
    cluster.simulator.garbage_output_once("qstat")
    await run_to_end(executor, job)
    assert (job.status, job.exit_code) == (JobStatus.DONE, 0)


async def test_a_lost_qsub_answer_is_found_by_its_token(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """qsub submitted but its answer came too late: the lookup finds the job, which is
    not submitted twice."""
    from cluster_api.executors.pbs import PBS

    monkeypatch.setattr(PBS, "submit_retry_delay", 0.2)
    cluster.simulator.qsub_hang_after_submit(5.0)
    executor = create_executor(**{**cluster.config, "command_timeout": 1.5})
    job = await executor.submit("exit 0", "once", resources=cluster.resources())
    assert len(cluster.simulator.jobs()) == 1
    await run_to_end(executor, job)
    assert job.status is JobStatus.DONE
