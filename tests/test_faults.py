"""Fault injection against the LSF simulator: one scenario per reliability promise.

Each scenario asserts the final status of every job and how many callbacks fired. The
hardening issue's items, by number, are listed with their tests in test_hardening_index.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import stat
import subprocess
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from cluster_api import (
    ClusterAPIError,
    JobMonitor,
    JobRecord,
    JobStatus,
    LSFExecutor,
    ResourceSpec,
    create_executor,
)
from cluster_api.executors import lsf as lsf_module
from cluster_api.journal import Journal
from cluster_api.testing import LSFSimulator

pytestmark = pytest.mark.integration


@pytest.fixture
def sim(lsf_simulator: LSFSimulator) -> LSFSimulator:
    return lsf_simulator


@pytest.fixture
def res(tmp_path: Path) -> ResourceSpec:
    work = tmp_path / "work"
    work.mkdir()
    return ResourceSpec(work_dir=str(work))


def make_executor(tmp_path: Path, **overrides: Any) -> LSFExecutor:
    config = {
        "executor": "lsf",
        "poll_interval": 0.2,
        "log_directory": str(tmp_path / "logs"),
        "command_timeout": 10.0,
        **overrides,
    }
    executor = create_executor(**config)
    assert isinstance(executor, LSFExecutor)
    return executor


def count_callbacks(*jobs: JobRecord) -> Counter[str]:
    fired: Counter[str] = Counter()
    for job in jobs:
        job.on_exit(lambda j: fired.update([j.job_id]))
    return fired


# 1. Scheduler outage ---------------------------------------------------------------------
async def test_outage_no_zombie_no_callback_then_true_state(
    sim: LSFSimulator, res: ResourceSpec, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # Zombie timeout far shorter than the outage: if outage time counted as unseen,
    # every job would be declared a zombie.
    executor = make_executor(tmp_path, zombie_timeout_minutes=0.02)
    ok = await executor.submit("sleep 1", "ok", resources=res)
    bad = await executor.submit("sleep 1; exit 2", "bad", resources=res)
    fired = count_callbacks(ok, bad)
    monitor = JobMonitor(executor, poll_interval=0.2)
    sim.outage(4.0)
    caplog.set_level(logging.WARNING, logger="cluster_api")
    async with monitor:
        await asyncio.sleep(3.0)
        assert monitor.consecutive_failures >= 2
        assert not fired and not ok.is_terminal and not bad.is_terminal
        await monitor.wait_for(ok, bad, timeout=30)
    assert (ok.status, bad.status, bad.exit_code) == (JobStatus.DONE, JobStatus.FAILED, 2)
    assert "zombie" not in ok.metadata and "zombie" not in bad.metadata
    assert fired == Counter({ok.job_id: 1, bad.job_id: 1})
    assert monitor.consecutive_failures == 0 and monitor.last_successful_poll is not None
    warnings = [r for r in caplog.records if "status query failed" in r.getMessage()]
    assert len(warnings) == 1


# 2. Jobs that age out ------------------------------------------------------------------
async def test_aged_out_jobs_get_their_true_exit_status(
    sim: LSFSimulator, res: ResourceSpec, tmp_path: Path
) -> None:
    sim.set(clean_period=1)
    executor = make_executor(tmp_path, zombie_timeout_minutes=0.01)
    # An exit file saying 0 settles a job; any other code, and bhist is asked who ended it.
    from_file = await executor.submit("true", "file", resources=res)
    from_bhist = await executor.submit("exit 9", "hist", resources=res)
    lost = executor.track("424242")  # no source knows this one
    fired = count_callbacks(from_file, from_bhist, lost)
    # Nobody watches while they finish and drop out of bjobs.
    sim.wait_idle(timeout=20)
    time.sleep(1.5)
    assert from_bhist.script_path is not None
    os.unlink(from_bhist.script_path[:-3] + ".exit")  # only bhist can tell now
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(from_file, from_bhist, lost, timeout=30)
    assert (from_file.status, from_file.exit_code) == (JobStatus.DONE, 0)
    assert from_file.metadata["resolved_from"] == "exit_file"
    assert not any(from_file.job_id in call.argv for call in sim.calls("bhist"))
    assert (from_bhist.status, from_bhist.exit_code) == (JobStatus.FAILED, 9)
    assert from_bhist.metadata["resolved_from"] == "bhist"
    assert lost.status is JobStatus.FAILED and lost.metadata["zombie"] is True
    assert "zombie" not in from_file.metadata and "zombie" not in from_bhist.metadata
    assert fired == Counter({from_file.job_id: 1, from_bhist.job_id: 1, lost.job_id: 1})


# 3. Ambiguous submit -------------------------------------------------------------------
async def test_bsub_timeout_after_submitting_submits_exactly_once(
    sim: LSFSimulator, res: ResourceSpec, tmp_path: Path
) -> None:
    executor = make_executor(tmp_path, command_timeout=1.5)
    sim.bsub_hang_after_submit(5.0)
    job = await executor.submit("echo once", "once", resources=res)
    assert len(sim.calls("bsub")) == 1
    assert list(sim.jobs()) == [job.job_id]
    fired = count_callbacks(job)
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(job, timeout=30)
    assert job.status is JobStatus.DONE and fired == Counter({job.job_id: 1})


async def test_bsub_transient_error_is_retried_once(
    sim: LSFSimulator, res: ResourceSpec, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(lsf_module.LSF, "submit_retry_delay", 1.0)
    executor = make_executor(tmp_path)
    sim.outage(0.5)
    job = await executor.submit("echo retried", "retried", resources=res)
    assert len(sim.jobs()) == 1
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(job, timeout=30)
    assert job.status is JobStatus.DONE


async def test_bsub_rejection_is_not_retried(
    sim: LSFSimulator, res: ResourceSpec, tmp_path: Path
) -> None:
    executor = make_executor(tmp_path, extra_args=["-unknown-option"])
    with pytest.raises(ClusterAPIError):
        await executor.submit("echo never", "never", resources=res)
    assert len(sim.calls("bsub")) == 1 and not sim.jobs()


# 4. Restart ----------------------------------------------------------------------------
async def test_restart_with_journal_recovers_every_job_exactly(
    sim: LSFSimulator, res: ResourceSpec, tmp_path: Path
) -> None:
    first = make_executor(tmp_path, journal=True)
    quick = await first.submit("exit 4", "quick", resources=res)
    slow = await first.submit("sleep 3", "slow", resources=res)
    array = await first.submit_array(
        "sleep 1", "arr", (1, 8), max_concurrent=2, resources=res, metadata={"sample": "s1"}
    )
    del first  # the process "dies"; quick ends while nobody watches
    await asyncio.sleep(1.0)

    second = make_executor(tmp_path, journal=True)
    found = {r.job_id: r for r in await second.reconnect()}
    assert set(found) == {quick.job_id, slow.job_id, array.job_id}
    again = found[array.job_id]
    assert again.metadata["array_range"] == (1, 8)
    assert again.metadata["max_concurrent"] == 2 and again.metadata["sample"] == "s1"
    assert again.element_count == 8 and again.command == "sleep 1"
    assert (found[quick.job_id].status, found[quick.job_id].exit_code) == (JobStatus.FAILED, 4)
    fired = count_callbacks(*found.values())
    async with JobMonitor(second, poll_interval=0.2) as monitor:
        await monitor.wait_for(*found.values(), timeout=40)
    assert found[slow.job_id].status is JobStatus.DONE
    assert again.status is JobStatus.DONE and again.completed_elements == 8
    assert fired == Counter({job_id: 1 for job_id in found})
    # A third process finds nothing left to do: every end was journalled.
    third = make_executor(tmp_path, journal=True)
    assert await third.reconnect() == []


def test_journal_status_never_moves_backwards(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path), "lsf")
    record = JobRecord(job_id="1", name="capi-x", command="true", status=JobStatus.DONE)
    journal.save([record])
    stale = JobRecord(job_id="1", name="capi-x", command="true", status=JobStatus.RUNNING)
    journal.save([stale])
    saved = journal.get("1")
    assert saved is not None and saved.status is JobStatus.DONE
    assert journal.unfinished("capi") == []
    assert stat.S_IMODE(os.stat(journal.path).st_mode) == 0o600


# 5. External kill ----------------------------------------------------------------------
async def test_external_kills_and_limits(
    sim: LSFSimulator, res: ResourceSpec, tmp_path: Path
) -> None:
    sim.set(seconds_per_minute=1.0)
    executor = make_executor(tmp_path)
    by_user = await executor.submit("sleep 60", "user", resources=res)
    by_admin = await executor.submit("sleep 60", "admin", resources=res)
    runlimit = await executor.submit(
        "sleep 60", "runlimit", resources=ResourceSpec(work_dir=res.work_dir, walltime="1")
    )
    fired = count_callbacks(by_user, by_admin, runlimit)
    await asyncio.sleep(0.5)
    subprocess.run(["bkill", by_user.job_id], check=True, capture_output=True)  # not via us
    sim.kill_as_admin(by_admin.job_id)
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(by_user, by_admin, runlimit, timeout=30)
    assert by_user.status is JobStatus.KILLED
    assert by_user.metadata["exit_reason"].startswith("TERM_OWNER")
    assert by_admin.status is JobStatus.KILLED
    assert by_admin.metadata["exit_reason"].startswith("TERM_ADMIN")
    assert runlimit.status is JobStatus.FAILED
    assert "TERM_RUNLIMIT" in runlimit.metadata["exit_reason"]
    assert fired == Counter({by_user.job_id: 1, by_admin.job_id: 1, runlimit.job_id: 1})


# 6. Odd output -------------------------------------------------------------------------
@pytest.mark.parametrize("fault", ["empty_output_once", "garbage_output_once"])
async def test_odd_output_never_finishes_a_job(
    sim: LSFSimulator, res: ResourceSpec, tmp_path: Path, fault: str
) -> None:
    executor = make_executor(tmp_path)
    job = await executor.submit("sleep 1", "odd", resources=res)
    getattr(sim, fault)("bjobs", times=2)
    for _ in range(2):
        with pytest.raises(ClusterAPIError):
            await executor.poll_strict()
        assert not job.is_terminal
    fired = count_callbacks(job)
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(job, timeout=30)
    assert job.status is JobStatus.DONE and fired == Counter({job.job_id: 1})


# 7. Callbacks never block polling ------------------------------------------------------
async def test_slow_and_failing_callbacks_do_not_block_polling(
    sim: LSFSimulator, res: ResourceSpec, tmp_path: Path
) -> None:
    executor = make_executor(tmp_path)
    first = await executor.submit("true", "first", resources=res)
    later = await executor.submit("sleep 1.5", "later", resources=res)
    events: list[str] = []

    async def slow_callback(job: JobRecord) -> None:
        events.append("slow-start")
        await asyncio.sleep(3)
        events.append("slow-end")

    def failing_callback(job: JobRecord) -> None:
        raise RuntimeError("boom")

    first.on_exit(slow_callback).on_exit(failing_callback)
    first.on_exit(lambda j: events.append("after-failing"))
    later.on_exit(lambda j: events.append("later"))
    monitor = JobMonitor(executor, poll_interval=0.2)
    await monitor.start()
    await asyncio.wait_for(_until(lambda: "later" in events), 20)
    assert "slow-end" not in events  # the later job was seen while the slow callback ran
    assert "after-failing" in events
    await monitor.stop()  # waits for the slow callback
    assert events.count("slow-end") == 1 and events.count("later") == 1


async def _until(predicate: Any) -> None:
    while not predicate():
        await asyncio.sleep(0.05)


# 8. Bounded load -----------------------------------------------------------------------
async def test_bounded_concurrency_and_batched_kills(
    sim: LSFSimulator, res: ResourceSpec, tmp_path: Path
) -> None:
    executor = make_executor(tmp_path, max_concurrent_commands=3)
    sim.slow(0.3, "bsub")
    jobs = await asyncio.gather(
        *(executor.submit("sleep 60", f"load{i}", resources=res) for i in range(12))
    )
    assert sim.max_concurrency("bsub") <= 3
    sim.slow(0, "bsub")
    await executor.cancel_all()
    assert len(sim.calls("bkill")) == 1  # 12 ids, one batch
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(*jobs, timeout=30)
    assert all(j.status is JobStatus.KILLED for j in jobs)


# 9. Least privilege --------------------------------------------------------------------
async def test_scripts_and_journal_are_private_and_env_names_checked(
    sim: LSFSimulator, res: ResourceSpec, tmp_path: Path
) -> None:
    executor = make_executor(tmp_path, journal=True)
    job = await executor.submit("echo $SAFE", "private", resources=res, env={"SAFE": "x; rm -rf /"})
    assert job.script_path is not None
    assert stat.S_IMODE(os.stat(job.script_path).st_mode) == 0o700
    journal_path = tmp_path / "logs" / "cluster_api_journal.sqlite3"
    assert stat.S_IMODE(journal_path.stat().st_mode) == 0o600
    for bad in ("1X", "A-B", "A B", "A;B", ""):
        with pytest.raises(ValueError):
            await executor.submit("true", "bad", resources=res, env={bad: "v"})
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(job, timeout=30)
    assert job.status is JobStatus.DONE
    out = Path(res.work_dir) / f"stdout.{job.job_id}.log"
    assert "x; rm -rf /" in out.read_text()


def test_journal_lists_recently_finished_jobs_by_prefix(tmp_path: Path) -> None:
    journal = Journal(str(tmp_path), "lsf")
    journal.save(
        [
            JobRecord(job_id="1", name="capi-a", command="true", status=JobStatus.DONE),
            JobRecord(job_id="2", name="capi-b", command="true", status=JobStatus.RUNNING),
            JobRecord(job_id="3", name="other-c", command="true", status=JobStatus.FAILED),
        ]
    )
    assert [r.job_id for r in journal.finished_since("capi", 60)] == ["1"]
    assert [r.job_id for r in journal.finished_since(None, 60)] == ["1", "3"]
    time.sleep(0.05)
    assert journal.finished_since("capi", 0.01) == []
    assert [r.job_id for r in journal.unfinished("capi")] == ["2"]
