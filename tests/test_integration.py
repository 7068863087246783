"""Round trips with real processes, the same tests for every executor.

- ``local``: real bash processes on this machine.
- ``lsf``: the LSF simulator (``cluster_api.testing``), or a real LSF when ``bsub`` is on
  PATH and ``CLUSTER_API_TEST_REAL_LSF=1``.
- ``slurm``: real ``slurmctld``/``slurmd`` (``scripts/slurm-dev-cluster.sh up``). Skipped with
  a reason when Slurm is not running, except when ``CLUSTER_API_REQUIRE_SLURM=1`` (CI), where
  that is a failure.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from cluster_api import (
    Executor,
    JobMonitor,
    JobRecord,
    JobStatus,
    ResourceSpec,
    available_executors,
    create_executor,
)

pytestmark = pytest.mark.integration

BACKENDS = ["local", "lsf", "slurm"]
TIMEOUT = 60.0


def slurm_running() -> str | None:
    """None when a Slurm controller answers here, else why not."""
    if shutil.which("sbatch") is None:
        return "sbatch is not installed (run scripts/slurm-dev-cluster.sh up)"
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"scontrol ping failed: {exc}"
    if "UP" not in out.stdout:
        return "slurmctld is not running (run scripts/slurm-dev-cluster.sh up)"
    return None


def require_slurm() -> None:
    """Skip the test when Slurm is not usable here; fail it instead under
    ``CLUSTER_API_REQUIRE_SLURM=1`` (CI), where a skipped Slurm test would hide a break."""
    reason = slurm_running()
    if reason is None and "slurm" not in available_executors():
        reason = "this build has no slurm executor"
    if reason is not None:
        if os.environ.get("CLUSTER_API_REQUIRE_SLURM") == "1":
            pytest.fail(f"Slurm is required here (CLUSTER_API_REQUIRE_SLURM=1): {reason}")
        pytest.skip(reason)


@dataclass
class Backend:
    name: str
    work_dir: Path
    config: dict[str, Any]
    simulator: Any = None

    def executor(self, **overrides: Any) -> Executor:
        return create_executor(**{**self.config, **overrides})

    def resources(self, **fields: Any) -> ResourceSpec:
        return ResourceSpec(work_dir=str(self.work_dir), **fields)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    name = request.param
    simulator = None
    if name == "lsf":
        real = os.environ.get("CLUSTER_API_TEST_REAL_LSF") == "1" and shutil.which("bsub")
        if not real:
            simulator = request.getfixturevalue("lsf_simulator")
            simulator.set(seconds_per_minute=2.0)
    if name == "slurm":
        require_slurm()
    work_dir = tmp_path / "work"
    work_dir.mkdir()
    config = {
        "executor": name,
        "poll_interval": 0.2,
        "log_directory": str(tmp_path / "logs"),
        # A prefix of its own per test: reconnect and cancel_by_name must not see others.
        "job_name_prefix": f"it{uuid.uuid4().hex[:8]}",
        "command_timeout": 30.0,
    }
    return Backend(name, work_dir, config, simulator)


async def run_to_end(executor: Executor, *jobs: JobRecord, timeout: float = TIMEOUT) -> None:
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(*jobs, timeout=timeout)


async def wait_until(predicate: Callable[[], bool], timeout: float = 30.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.1)


async def wait_running(executor: Executor, job: JobRecord) -> None:
    async def poll_until_running() -> None:
        while job.status is not JobStatus.RUNNING:
            assert not job.is_terminal, f"job ended {job.status} before running"
            await executor.poll()
            await asyncio.sleep(0.2)

    await asyncio.wait_for(poll_until_running(), TIMEOUT)


async def test_success_and_failure_keep_exit_codes(backend: Backend) -> None:
    executor = backend.executor()
    ok = await executor.submit("echo fine", "ok", resources=backend.resources())
    bad = await executor.submit("echo broken >&2; exit 3", "bad", resources=backend.resources())
    fired: list[str] = []
    ok.on_success(lambda j: fired.append(f"ok:{j.status.value}"))
    bad.on_failure(lambda j: fired.append(f"bad:{j.exit_code}"))
    await run_to_end(executor, ok, bad)
    assert (ok.status, ok.exit_code) == (JobStatus.DONE, 0)
    assert (bad.status, bad.exit_code) == (JobStatus.FAILED, 3)
    assert sorted(fired) == ["bad:3", "ok:done"]


async def test_ten_concurrent_jobs(backend: Backend) -> None:
    executor = backend.executor()
    jobs = await asyncio.gather(
        *(
            executor.submit(
                f"sleep 0.5; echo {i} > out.{i}", f"many{i}", resources=backend.resources()
            )
            for i in range(10)
        )
    )
    assert len({j.job_id for j in jobs}) == 10
    await run_to_end(executor, *jobs)
    assert all(j.status is JobStatus.DONE for j in jobs)
    assert sorted(int((backend.work_dir / f"out.{i}").read_text()) for i in range(10)) == list(
        range(10)
    )
    if backend.simulator is not None:
        # one status query per cycle, never one per job
        ids = {j.job_id for j in jobs}
        status_calls = [c for c in backend.simulator.calls("bjobs") if "-json" in c.argv]
        assert any(ids <= set(c.argv) for c in status_calls)


async def test_cancel_running_job_ends_killed(backend: Backend) -> None:
    executor = backend.executor()
    job = await executor.submit("sleep 120", "victim", resources=backend.resources())
    await wait_running(executor, job)
    await executor.cancel(job.job_id)
    await run_to_end(executor, job)
    assert job.status is JobStatus.KILLED


async def test_array_with_a_failing_element(backend: Backend) -> None:
    executor = backend.executor()
    array = await executor.submit_array(
        'sleep 0.2; [ "$ARRAY_INDEX" != 3 ]', "arr", (1, 4), resources=backend.resources()
    )
    seen_terminal_early: list[int] = []
    array.on_exit(lambda a: seen_terminal_early.append(a.completed_elements))
    await run_to_end(executor, array)
    assert array.status is JobStatus.FAILED
    assert array.failed_element_indices == [3]
    assert {i: e.status for i, e in array.array_elements.items()} == {
        1: JobStatus.DONE,
        2: JobStatus.DONE,
        3: JobStatus.FAILED,
        4: JobStatus.DONE,
    }
    assert seen_terminal_early == [4]  # the parent ended only when every element had


async def test_array_max_concurrent_is_honoured(backend: Backend) -> None:
    executor = backend.executor()
    marks = backend.work_dir / "marks"
    marks.mkdir()
    command = (
        f"date +%s.%N > {marks}/start.$ARRAY_INDEX; sleep 1; date +%s.%N > {marks}/end.$ARRAY_INDEX"
    )
    array = await executor.submit_array(
        command, "limited", (1, 6), max_concurrent=2, resources=backend.resources()
    )
    await run_to_end(executor, array)
    assert array.status is JobStatus.DONE
    spans = [
        (float((marks / f"start.{i}").read_text()), float((marks / f"end.{i}").read_text()))
        for i in range(1, 7)
    ]
    peak = max(sum(1 for s, e in spans if s <= t < e) for t, _ in spans)
    assert peak <= 2


async def test_dependency_runs_after_its_parent(backend: Backend) -> None:
    executor = backend.executor()
    marker = backend.work_dir / "order"
    first = await executor.submit(
        f"sleep 1; echo first >> {marker}", "first", resources=backend.resources()
    )
    second = await executor.submit(
        f"echo second >> {marker}", "second", resources=backend.resources(), depends_on=[first]
    )
    await run_to_end(executor, first, second)
    assert second.status is JobStatus.DONE
    assert marker.read_text().split() == ["first", "second"]


async def test_failed_dependency_fails_the_dependant(backend: Backend) -> None:
    executor = backend.executor()
    marker = backend.work_dir / "ran"
    parent = await executor.submit("exit 1", "parent", resources=backend.resources())
    child = await executor.submit(
        f"touch {marker}", "child", resources=backend.resources(), depends_on=[parent]
    )
    await run_to_end(executor, parent, child)
    assert parent.status is JobStatus.FAILED
    assert child.status is JobStatus.KILLED
    assert child.metadata["dependency_failed"] == [parent.job_id]
    assert not marker.exists()


async def test_metadata_host_and_times(backend: Backend) -> None:
    executor = backend.executor()
    before = datetime.now(timezone.utc).replace(microsecond=0)
    job = await executor.submit("sleep 1", "meta", resources=backend.resources(cpus=1))
    await run_to_end(executor, job)
    assert job.status is JobStatus.DONE
    assert job.exec_host
    for moment in (job.submit_time, job.start_time, job.finish_time):
        assert moment is not None and moment.tzinfo is not None
        assert (
            before.timestamp() - 120
            <= moment.timestamp()
            <= datetime.now(timezone.utc).timestamp() + 120
        )
    assert job.start_time <= job.finish_time  # type: ignore[operator]


async def test_memory_limit_and_no_memory_limit(backend: Backend) -> None:
    executor = backend.executor()
    plain = await executor.submit("echo plain", "nomem", resources=backend.resources())
    limited = await executor.submit(
        "echo limited", "mem", resources=backend.resources(memory="100 MB")
    )
    await run_to_end(executor, plain, limited)
    assert plain.status is JobStatus.DONE and limited.status is JobStatus.DONE
    header = "\n".join(executor.build_header("nomem", backend.resources()))
    assert "-M" not in header and "--mem" not in header


async def test_environment_reaches_the_job(backend: Backend) -> None:
    executor = backend.executor()
    value = 'it\'s $HOME `x` "quoted"\nsecond line'
    job = await executor.submit(
        f"printf '%s' \"$SPECIAL\" > {backend.work_dir}/env.out",
        "env",
        env={"SPECIAL": value},
        resources=backend.resources(),
    )
    await run_to_end(executor, job)
    assert job.status is JobStatus.DONE
    assert (backend.work_dir / "env.out").read_text() == value


async def test_walltime_exceeded_ends_failed_with_reason(backend: Backend) -> None:
    if backend.name == "slurm":
        pytest.skip("covered by test_slurm_integration (Slurm limits have 1-minute granularity)")
    executor = backend.executor()
    walltime = "00:00:02" if backend.name == "local" else "1"  # the simulator: 1 min = 2 s
    job = await executor.submit("sleep 30", "slow", resources=backend.resources(walltime=walltime))
    await run_to_end(executor, job)
    assert job.status is JobStatus.FAILED
    assert "RUNLIMIT" in job.metadata["exit_reason"]


async def test_reconnect_from_a_fresh_executor(backend: Backend) -> None:
    journal = backend.name == "local"  # local jobs are only known through the journal
    first = backend.executor(journal=journal)
    job = await first.submit("sleep 2; exit 5", "survivor", resources=backend.resources())
    array = await first.submit_array("sleep 1", "arr", (1, 3), resources=backend.resources())
    second = backend.executor(journal=journal)
    found = {r.job_id: r for r in await second.reconnect()}
    assert set(found) == {job.job_id, array.job_id}
    assert all(r.metadata["reconnected"] for r in found.values())
    assert found[array.job_id].metadata["array_range"] == (1, 3)
    await run_to_end(second, *found.values())
    assert (found[job.job_id].status, found[job.job_id].exit_code) == (JobStatus.FAILED, 5)
    assert found[array.job_id].status is JobStatus.DONE
    assert found[array.job_id].completed_elements == 3


async def test_cancel_by_name(backend: Backend) -> None:
    executor = backend.executor()
    doomed = [
        await executor.submit("sleep 120", f"batch-{i}", resources=backend.resources())
        for i in range(3)
    ]
    keeper = await executor.submit("sleep 1", "keeper", resources=backend.resources())
    for job in doomed:
        await wait_running(executor, job)
    await executor.cancel_by_name("batch-*")
    await run_to_end(executor, *doomed, keeper)
    assert [j.status for j in doomed] == [JobStatus.KILLED] * 3
    assert keeper.status is JobStatus.DONE
