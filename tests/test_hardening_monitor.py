"""The monitor never hangs and tells the truth in order (issue #11 items 12-14, #16 items
13-14). Unit tests: LSF commands are answered by the fake scheduler of test_monitor, the
monitor is driven cycle by cycle, and its waits are replaced where time would pass."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest
from test_monitor import FakeLSF, make_lsf, settle, submit

from cluster_api import (
    ClusterAPIError,
    CommandFailedError,
    JobMonitor,
    JobRecord,
    JobStatus,
    LSFExecutor,
)
from cluster_api import monitor as monitor_module
from cluster_api.errors import WaitTimeoutError
from cluster_api.testing.fake import FakeRunner


@pytest.fixture
def fake(runner: FakeRunner) -> FakeLSF:
    return FakeLSF(runner)


# -- #11.12: callbacks registered after the end ------------------------------------------


async def ended_and_purged(fake: FakeLSF, work_dir: str) -> tuple[LSFExecutor, JobRecord]:
    """A job that ended DONE and whose record the monitor has since dropped."""
    executor = make_lsf(work_dir, completed_retention_minutes=0)
    record = await submit(executor, work_dir)
    fake.set(record.job_id, "DONE")
    return executor, record


async def test_callback_registered_on_a_purged_record_fires_at_once(
    fake: FakeLSF, work_dir: str
) -> None:
    executor, record = await ended_and_purged(fake, work_dir)
    monitor = JobMonitor(executor, poll_interval=60)
    await monitor.run_cycle()
    assert record.job_id not in executor.jobs  # purged: no cycle will look at it again
    fired: list[str] = []
    record.on_success(lambda r: fired.append("success"))
    record.on_failure(lambda r: fired.append("failure"))  # did not fail: dropped
    await settle()
    assert fired == ["success"]
    await asyncio.wait_for(monitor.wait_for(record), 2)
    await monitor.stop()


async def test_wait_for_runs_late_callbacks_of_a_purged_record_registered_off_the_loop(
    fake: FakeLSF, work_dir: str
) -> None:
    """Registered from a thread (no event loop to start it on), the callback waits for
    ``wait_for``, which starts it and returns once it ran."""
    executor, record = await ended_and_purged(fake, work_dir)
    monitor = JobMonitor(executor, poll_interval=60)
    await monitor.run_cycle()
    fired: list[str] = []
    await asyncio.to_thread(record.on_exit, lambda r: fired.append(threading.current_thread().name))
    assert fired == []
    await asyncio.wait_for(monitor.wait_for(record), 2)
    await monitor.stop()
    assert fired == [threading.main_thread().name]


async def test_wait_for_an_ended_record_returns_without_waiting_for_a_poll(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str, runner: FakeRunner
) -> None:
    record = await submit(lsf, work_dir)
    other = await submit(lsf, work_dir, "other")  # still running: every cycle polls
    fake.set(record.job_id, "DONE")
    fake.set(other.job_id, "RUN")
    monitor = JobMonitor(lsf, poll_interval=60)
    await monitor.run_cycle()
    assert record.status is JobStatus.DONE
    hung = asyncio.Event()

    async def scheduler_hangs(argv: list[str]) -> str:
        await hung.wait()  # the next status query never answers
        return ""

    runner.on("bjobs", scheduler_hangs)
    fired: list[str] = []
    record.on_exit(lambda r: fired.append(r.job_id))
    try:
        await asyncio.wait_for(monitor.wait_for(record), 2)
        assert fired == [record.job_id]
    finally:
        hung.set()
        await monitor.stop()


async def test_wait_for_refuses_a_record_that_can_never_end_here(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await submit(lsf, work_dir)
    lsf.remove_job(record.job_id)
    monitor = JobMonitor(lsf, poll_interval=60)
    with pytest.raises(ValueError, match=rf"job {record.job_id} has not ended and is not tracked"):
        await asyncio.wait_for(monitor.wait_for(record), 2)
    assert not monitor.running


# -- #11.13: slow sync callbacks, stop() and wait_for() from inside a callback -------------


async def test_sync_callback_runs_on_the_loop_and_a_slow_one_is_reported(
    lsf: LSFExecutor,
    fake: FakeLSF,
    work_dir: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Sync callbacks stay on the event loop as in 0.8.1 (they may set an asyncio.Event);
    one that holds the loop is named in a warning instead of silently stalling polling."""
    clock = [100.0]
    fast, slow = await submit(lsf, work_dir, "fast"), await submit(lsf, work_dir, "slow")
    loop_set = asyncio.Event()

    def quick(r: JobRecord) -> None:
        loop_set.set()  # only safe on the loop's own thread

    def blocking(r: JobRecord) -> None:
        clock[0] += monitor_module.SLOW_CALLBACK_SECONDS + 2

    fast.on_exit(quick)
    slow.on_exit(blocking)
    fake.set(fast.job_id, "DONE")
    fake.set(slow.job_id, "DONE")
    monitor = JobMonitor(lsf, poll_interval=60, clock=lambda: clock[0])
    with caplog.at_level(logging.WARNING, logger="cluster_api"):
        await monitor.run_cycle()
        await settle()
    assert loop_set.is_set()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "blocking" in warnings[0] and slow.job_id in warnings[0]
    assert "held the event loop for 3.0 s" in warnings[0]


@pytest.mark.parametrize("deadline", [False, True])
async def test_stop_awaited_from_a_callback_is_refused_at_once(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str, deadline: bool
) -> None:
    """Also through asyncio.wait_for, which runs stop() in a task of its own (Python < 3.12)."""
    record = await submit(lsf, work_dir)
    refused: list[BaseException] = []

    async def stop_from_inside(r: JobRecord) -> None:
        try:
            if deadline:
                await asyncio.wait_for(monitor.stop(), 2)
            else:
                await monitor.stop()
        except ClusterAPIError as exc:
            refused.append(exc)

    record.on_exit(stop_from_inside)
    fake.set(record.job_id, "DONE")
    monitor = JobMonitor(lsf, poll_interval=60)
    await monitor.start()
    await asyncio.wait_for(monitor.wait_for(record), 3)
    assert monitor.running  # refused: the monitor goes on
    assert len(refused) == 1
    assert "own callbacks" in str(refused[0]) and "wait for itself" in str(refused[0])
    await asyncio.wait_for(monitor.stop(), 2)  # from outside it stops at once
    assert not monitor.running


async def test_stop_started_as_a_task_by_a_sync_callback_stops_the_monitor(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    """The way to stop from a callback 0.8.1 users may have: keeps working."""
    record = await submit(lsf, work_dir)
    stopper: list[asyncio.Task[None]] = []
    record.on_exit(lambda r: stopper.append(asyncio.ensure_future(monitor.stop())))
    fake.set(record.job_id, "DONE")
    monitor = JobMonitor(lsf, poll_interval=60)
    await monitor.start()
    await asyncio.wait_for(monitor.wait_for(record), 2)
    await asyncio.wait_for(stopper[0], 2)
    assert not monitor.running


@pytest.mark.parametrize("deadline", [False, True])
async def test_callback_waiting_for_its_own_job_does_not_wait_for_itself(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str, deadline: bool
) -> None:
    record = await submit(lsf, work_dir)
    returned: list[str] = []

    async def waits_for_own_job(r: JobRecord) -> None:
        if deadline:
            await asyncio.wait_for(monitor.wait_for(r), 2)
        else:
            await monitor.wait_for(r)
        returned.append(r.job_id)

    record.on_exit(waits_for_own_job)
    fake.set(record.job_id, "DONE")
    monitor = JobMonitor(lsf, poll_interval=60)
    try:
        await asyncio.wait_for(monitor.wait_for(record), 2)
    finally:
        await asyncio.wait_for(monitor.stop(), 2)
    assert returned == [record.job_id]


# -- #11.14: outage backoff ----------------------------------------------------------------


async def test_outage_backoff_is_capped_near_the_poll_interval(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    record = await submit(lsf, work_dir)
    fake.set(record.job_id, "RUN")
    delays: list[float] = []
    seen_enough = asyncio.Event()
    recover_after = 10

    async def no_time_passes(timeout: float) -> None:
        """Stands in for the sleep between polls: records it, lets the next cycle run."""
        delays.append(timeout)
        if len(delays) == recover_after:
            fake.fail = None
        if len(delays) == recover_after + 2:
            seen_enough.set()
            await asyncio.Event().wait()  # park here until stop() cancels the loop
        await asyncio.sleep(0)

    monkeypatch.setattr(lsf, "wait_for_change", no_time_passes)
    fake.fail = CommandFailedError("LSF is down. Please wait ...")
    monitor = JobMonitor(lsf, poll_interval=10)
    monitor.schedule.adaptive = False  # the pace after an outage, without quick polls
    await monitor.start()
    try:
        await asyncio.wait_for(seen_enough.wait(), 5)
    finally:
        await monitor.stop()
    outage = delays[:recover_after]
    ceiling = 10 * monitor_module.MAX_BACKOFF_FACTOR * 1.2  # with the largest jitter
    assert max(outage) <= ceiling, outage
    assert outage[-1] >= 10 * monitor_module.MAX_BACKOFF_FACTOR * 0.8  # it did back off
    assert delays[recover_after:] == [10, 10]  # answered again: the normal pace at once
    assert monitor.consecutive_failures == 0
    assert monitor.last_successful_poll is not None


async def test_command_that_succeeds_during_an_outage_wakes_the_monitor(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await submit(lsf, work_dir)
    fake.set(record.job_id, "RUN")
    monitor = JobMonitor(lsf, poll_interval=60)
    fake.fail = CommandFailedError("LSF is down. Please wait ...")
    assert await monitor.run_cycle() is False
    sleeping = asyncio.ensure_future(lsf.wait_for_change(600))  # the backoff wait
    await settle()
    assert not sleeping.done()
    fake.fail = None
    await lsf.cancel(record.job_id)  # bkill goes through: the scheduler answers again
    await asyncio.wait_for(sleeping, 2)  # so the monitor probes now
    assert await monitor.run_cycle() is True
    healthy_sleep = asyncio.ensure_future(lsf.wait_for_change(600))
    await settle()
    assert not healthy_sleep.done()  # its own successful query wakes nothing
    healthy_sleep.cancel()
    await monitor.stop()


# -- #16.13: a timeout says what it was waiting for ----------------------------------------


async def test_wait_for_timeout_names_the_unfinished_jobs(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    running = await submit(lsf, work_dir, "running")
    queued = await submit(lsf, work_dir, "queued")
    ended = await submit(lsf, work_dir, "ended")
    fake.set(running.job_id, "RUN")
    fake.set(ended.job_id, "DONE")
    monitor = JobMonitor(lsf, poll_interval=60)
    await monitor.run_cycle()
    try:
        with pytest.raises(WaitTimeoutError) as caught:
            await monitor.wait_for(running, queued, ended, timeout=0)
    finally:
        await monitor.stop()
    error = caught.value
    assert isinstance(error, TimeoutError)
    assert isinstance(error, asyncio.TimeoutError)
    assert isinstance(error, ClusterAPIError)
    assert error.unfinished == [running, queued]
    message = str(error)
    assert "2 of 3 jobs unfinished" in message
    assert f"{running.job_id} (running)" in message
    assert f"{queued.job_id} (pending)" in message
    assert ended.job_id not in message


async def test_wait_for_timeout_lists_a_few_jobs_and_counts_the_rest(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    records = [await submit(lsf, work_dir, f"j{i}") for i in range(25)]
    monitor = JobMonitor(lsf, poll_interval=60)
    try:
        with pytest.raises(WaitTimeoutError) as caught:
            await monitor.wait_for(*records, timeout=0)
    finally:
        await monitor.stop()
    shown = monitor_module.TIMEOUT_NAMES_SHOWN
    assert f"and {25 - shown} more" in str(caught.value)
    assert len(caught.value.unfinished) == 25


# -- #16.14: what happened between two polls is told in order ------------------------------


def record_events(monitor: JobMonitor, record: JobRecord) -> list[str]:
    events: list[str] = []
    monitor.on_status_change(lambda r, old, new: events.append(f"{old.value}->{new.value}"))
    # registered exit callbacks first, on purpose: the order told is the job's, not ours
    record.on_success(lambda r: events.append("on_success"))
    record.on_failure(lambda r: events.append("on_failure"))
    record.on_exit(lambda r: events.append("on_exit"))
    record.on_start(lambda r: events.append("on_start"))
    return events


@pytest.mark.parametrize(
    ("stat", "fields", "ending"),
    [
        ("DONE", {}, ["running->done", "on_success", "on_exit"]),
        ("EXIT", {"exit_code": "3"}, ["running->failed", "on_failure", "on_exit"]),
    ],
)
async def test_job_that_ran_between_two_polls_is_told_running_before_its_end(
    lsf: LSFExecutor,
    fake: FakeLSF,
    work_dir: str,
    stat: str,
    fields: dict[str, str],
    ending: list[str],
) -> None:
    record = await submit(lsf, work_dir)
    monitor = JobMonitor(lsf, poll_interval=60)
    events = record_events(monitor, record)
    await monitor.run_cycle()  # seen pending: nothing to tell
    await settle()
    assert events == []
    fake.set(record.job_id, stat, start_time="Nov 22 10:32", finish_time="Nov 22 10:33", **fields)
    await monitor.run_cycle()
    await settle()
    await monitor.stop()
    assert events == ["pending->running", "on_start", *ending]


async def test_job_that_ended_without_starting_is_not_told_running(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await submit(lsf, work_dir)
    monitor = JobMonitor(lsf, poll_interval=60)
    events = record_events(monitor, record)
    fake.set(record.job_id, "EXIT", exit_code="130", exit_reason="TERM_OWNER: job killed by owner")
    await monitor.run_cycle()
    await settle()
    await monitor.stop()
    assert record.status is JobStatus.KILLED
    assert events == ["pending->killed", "on_exit"]


async def test_job_seen_running_is_told_each_step_once(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await submit(lsf, work_dir)
    monitor = JobMonitor(lsf, poll_interval=60)
    events = record_events(monitor, record)
    fake.set(record.job_id, "RUN", start_time="Nov 22 10:32")
    await monitor.run_cycle()
    await settle()
    fake.set(record.job_id, "DONE", start_time="Nov 22 10:32")
    await monitor.run_cycle()
    await monitor.run_cycle()
    await settle()
    await monitor.stop()
    assert events == ["pending->running", "on_start", "running->done", "on_success", "on_exit"]
