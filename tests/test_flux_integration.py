"""Round trips of the Flux executor against the Flux simulator (cluster_api.testing.fluxsim):
the same journeys as the LSF and Slurm integration tests, through real commands. Tests
that inspect the simulator itself take ``flux_simulator``; the others also run against
real Flux (``CLUSTER_API_TEST_REAL_FLUX=1 scripts/flux-dev.sh run pytest ...``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from cluster_api import JobMonitor, JobStatus, ResourceSpec, create_executor
from cluster_api.errors import ClusterAPIError
from cluster_api.executors.flux import FluxExecutor
from cluster_api.models import JobRecord
from cluster_api.scheduler import ELEMENT_IDS

pytestmark = pytest.mark.integration
TIMEOUT = 60.0


@pytest.fixture
def config(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """The simulator, or with CLUSTER_API_TEST_REAL_FLUX=1 the Flux instance the tests
    run in (``scripts/flux-dev.sh run ...``)."""
    if os.environ.get("CLUSTER_API_TEST_REAL_FLUX") != "1":
        simulator = request.getfixturevalue("flux_simulator")
        simulator.set(seconds_per_minute=2.0)  # a walltime of 1 minute ends in 2 s
    (tmp_path / "work").mkdir()
    return {
        "executor": "flux",
        "poll_interval": 0.2,
        "log_directory": str(tmp_path / "logs"),
        "job_name_prefix": f"fx{uuid.uuid4().hex[:8]}",
        "command_timeout": 30.0,
    }


def flux(config: dict[str, Any], **changes: Any) -> FluxExecutor:
    executor = create_executor(**{**config, **changes})
    assert isinstance(executor, FluxExecutor)
    return executor


def res(tmp_path: Path, **fields: Any) -> ResourceSpec:
    return ResourceSpec(work_dir=str(tmp_path / "work"), **fields)


async def run_to_end(executor: FluxExecutor, *jobs: JobRecord) -> None:
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(*jobs, timeout=TIMEOUT)


async def test_success_and_exit_3(config, tmp_path) -> None:
    executor = flux(config)
    ok = await executor.submit("echo fine", "ok", resources=res(tmp_path))
    bad = await executor.submit("exit 3", "bad", resources=res(tmp_path))
    assert ok.job_id.startswith("ƒ")  # kept as Flux prints it
    await run_to_end(executor, ok, bad)
    assert (ok.status, ok.exit_code) == (JobStatus.DONE, 0)
    assert (bad.status, bad.exit_code) == (JobStatus.FAILED, 3)


async def test_an_array_with_one_failing_element(config, tmp_path) -> None:
    executor = flux(config)
    command = 'echo "$ARRAY_INDEX $FLUX_JOB_CC"; test "$ARRAY_INDEX" != 2'
    array = await executor.submit_array(command, "arr", (1, 3), resources=res(tmp_path))
    assert len(array.metadata[ELEMENT_IDS]) == 3
    await run_to_end(executor, array)
    codes = {i: (e.status, e.exit_code) for i, e in array.array_elements.items()}
    assert codes == {1: (JobStatus.DONE, 0), 2: (JobStatus.FAILED, 1), 3: (JobStatus.DONE, 0)}
    assert array.status is JobStatus.FAILED


async def test_cancel_kills_a_running_job(config, tmp_path, flux_simulator) -> None:
    executor = flux(config)
    job = await executor.submit("sleep 60", "victim", resources=res(tmp_path))
    array = await executor.submit_array("sleep 60", "many", (1, 2), resources=res(tmp_path))
    await executor.cancel(job.job_id)
    await executor.cancel(array.job_id)
    assert (job.status, array.status) == (JobStatus.KILLED, JobStatus.KILLED)
    flux_simulator.wait_idle(TIMEOUT)  # every element of the array was cancelled too


async def test_walltime_kill_is_failed_with_the_reason(config, tmp_path) -> None:
    executor = flux(config)
    job = await executor.submit("sleep 30", "slow", resources=res(tmp_path, walltime="1"))
    await run_to_end(executor, job)
    assert job.status is JobStatus.FAILED
    assert "timeout" in job.metadata["exit_reason"]


async def test_a_dependant_of_a_failed_job_is_killed(config, tmp_path) -> None:
    executor = flux(config)
    first = await executor.submit("exit 1", "first", resources=res(tmp_path))
    then = await executor.submit("echo never", "then", resources=res(tmp_path), depends_on=first)
    await run_to_end(executor, first, then)
    assert first.status is JobStatus.FAILED
    assert then.status is JobStatus.KILLED
    assert then.metadata["dependency_failed"]


SUBMITTER = """
import asyncio, json, sys
from cluster_api import ResourceSpec, create_executor

async def main():
    executor = create_executor(**json.loads(sys.argv[1]))
    res = ResourceSpec(work_dir=sys.argv[2])
    job = await executor.submit("sleep 1; exit 5", "survivor", resources=res)
    array = await executor.submit_array("sleep 1", "arr", (1, 3), resources=res)
    print(json.dumps([job.job_id, array.job_id]))

asyncio.run(main())
"""


async def test_reconnect_in_a_fresh_process(config, tmp_path) -> None:
    config = {**config, "journal": True}
    argv = [sys.executable, "-c", SUBMITTER, json.dumps(config), str(tmp_path / "work")]
    out = subprocess.run(argv, capture_output=True, text=True, env=os.environ, check=True)
    job_id, array_id = json.loads(out.stdout)
    executor = flux(config)
    found = {r.job_id: r for r in await executor.reconnect()}
    assert set(found) == {job_id, array_id}  # the array once, not once per element
    await run_to_end(executor, *found.values())
    assert (found[job_id].status, found[job_id].exit_code) == (JobStatus.FAILED, 5)
    assert found[array_id].status is JobStatus.DONE
    assert found[array_id].completed_elements == 3


@pytest.mark.parametrize("journal", [True, False])
async def test_reconnect_tracks_an_array_once(config, tmp_path, journal) -> None:
    first = flux(config, journal=journal)
    array = await first.submit_array("sleep 2", "arr", (1, 3), resources=res(tmp_path))
    second = flux(config, journal=journal)
    found = await second.reconnect()
    assert [(r.job_id, r.metadata[ELEMENT_IDS]) for r in found] == [
        (array.job_id, array.metadata[ELEMENT_IDS])
    ]
    await run_to_end(second, *found)
    assert found[0].completed_elements == 3


async def test_cancel_by_name_cancels_every_element(config, tmp_path, flux_simulator) -> None:
    executor = flux(config)
    array = await executor.submit_array("sleep 60", "doomed", (1, 2), resources=res(tmp_path))
    await executor.cancel_by_name("doomed")
    assert array.status is JobStatus.KILLED
    flux_simulator.wait_idle(TIMEOUT)


async def test_garbage_from_flux_changes_nothing(config, tmp_path, flux_simulator) -> None:
    executor = flux(config)
    job = await executor.submit("echo fine", "ok", resources=res(tmp_path))
    flux_simulator.garbage_output_once("flux")
    with pytest.raises(ClusterAPIError):
        await executor.poll_strict()
    assert job.status is JobStatus.PENDING
    await run_to_end(executor, job)
    assert job.status is JobStatus.DONE
