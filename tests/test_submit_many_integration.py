"""submit_many with real processes: the LSF simulator runs the packed array, the local
executor runs each command as a process of its own (issue #17)."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from test_integration import require_slurm

from cluster_api import JobMonitor, JobStatus, ResourceSpec, create_executor
from cluster_api.testing import LSFSimulator

pytestmark = pytest.mark.integration


async def test_the_simulator_runs_each_task_of_the_array(
    lsf_simulator: LSFSimulator, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    executor = create_executor(
        executor="lsf", log_directory=str(tmp_path / "logs"), poll_interval=0.2
    )
    tasks = [f"echo one > {out}/1", f"printf '%s' 'a \"b\" $c' > {out}/2", "exit 7"]
    records = await executor.submit_many(
        tasks, "many", resources=ResourceSpec(work_dir=str(tmp_path))
    )
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(*records, timeout=60)
    assert [r.status for r in records] == [JobStatus.DONE, JobStatus.DONE, JobStatus.FAILED]
    assert records[2].exit_code == 7
    assert (out / "1").read_text() == "one\n"
    assert (out / "2").read_text() == 'a "b" $c'


async def test_the_local_executor_runs_each_command_as_its_own_process(tmp_path: Path) -> None:
    executor = create_executor(
        executor="local", log_directory=str(tmp_path / "logs"), poll_interval=0.1
    )
    tasks = ["echo $$ > a", "echo $$ > b", "exit 3"]
    records = await executor.submit_many(
        tasks, "many", resources=ResourceSpec(work_dir=str(tmp_path))
    )
    assert len({r.job_id for r in records}) == 3
    async with JobMonitor(executor, poll_interval=0.1) as monitor:
        await monitor.wait_for(*records, timeout=30)
    assert [r.status for r in records] == [JobStatus.DONE, JobStatus.DONE, JobStatus.FAILED]
    assert (tmp_path / "a").read_text() != (tmp_path / "b").read_text()


async def test_real_slurm_runs_each_task_and_cancels_one_element(tmp_path: Path) -> None:
    require_slurm()
    executor = create_executor(
        executor="slurm",
        poll_interval=0.5,
        log_directory=str(tmp_path / "logs"),
        job_name_prefix=f"it{uuid.uuid4().hex[:8]}",
        command_timeout=30.0,
    )
    tasks = ["true", "exit 4", "sleep 300"]
    records = await executor.submit_many(
        tasks, "many", resources=ResourceSpec(work_dir=str(tmp_path))
    )
    array_id = records[0].job_id.split("_")[0]
    assert [r.job_id for r in records] == [f"{array_id}_{i}" for i in (1, 2, 3)]
    async with JobMonitor(executor, poll_interval=0.5) as monitor:
        await monitor.wait_for(*records[:2], timeout=120)
        await executor.cancel(records[2].job_id)
        await monitor.wait_for(records[2], timeout=60)
    assert [r.status for r in records] == [JobStatus.DONE, JobStatus.FAILED, JobStatus.KILLED]
    assert records[1].exit_code == 4
