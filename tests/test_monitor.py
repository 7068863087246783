"""JobMonitor against an LSFExecutor whose scheduler commands are answered by a fake."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from datetime import datetime, timezone
from typing import Any

import pytest
from conftest import bjobs_by_id, bjobs_record

from cluster_api import (
    ClusterConfig,
    CommandFailedError,
    CommandTimeoutError,
    JobExitCondition,
    JobMonitor,
    JobRecord,
    JobStatus,
    LSFExecutor,
    ResourceSpec,
)
from cluster_api.testing.fake import FakeRunner


class FakeLSF:
    """LSF's job table, a table the test controls, answering bsub/bjobs/bkill/bhist through
    the shared FakeRunner as LSF would."""

    def __init__(self, runner: FakeRunner) -> None:
        self.runner = runner
        self.next_id = 1000
        self.records: dict[str, list[dict[str, str]]] = {}
        self.fail: BaseException | None = None  # raised by bjobs while set
        self.empty = False  # bjobs prints nothing at all
        self.history: dict[str, str] = {}  # job id -> ``bhist -l`` text
        runner.on("bsub", self._bsub).on("bjobs", self._bjobs).on("bkill", "")
        runner.on("bhist", self._bhist)

    def set(self, job_id: str, stat: str, **fields: str) -> None:
        self.records[job_id] = [bjobs_record(job_id, stat, **fields)]

    def set_elements(self, job_id: str, stats: dict[int, str], **fields: str) -> None:
        self.records[job_id] = [
            bjobs_record(job_id, stat, index=str(i), **dict(fields)) for i, stat in stats.items()
        ]

    def forget(self, job_id: str) -> None:
        self.records.pop(job_id, None)

    def commands(self, program: str) -> list[list[str]]:
        return self.runner.argvs(program)

    def _bsub(self, argv: list[str]) -> str:
        self.next_id += 1
        job_id = str(self.next_id)
        self.set(job_id, "PEND")
        return f"Job <{job_id}> is submitted to queue <normal>.\n"

    def _bjobs(self, argv: list[str]) -> str:
        if self.fail is not None:
            raise self.fail
        return "" if self.empty else bjobs_by_id(self.records, argv)

    def _bhist(self, argv: list[str]) -> str:
        """Job history: knows nothing unless a test says so."""
        text = "".join(self.history.get(a, "") for a in argv[1:])
        if not text:
            raise CommandFailedError("bhist: No matching job found", stdout="")
        return text


@pytest.fixture
def fake(runner: FakeRunner) -> FakeLSF:
    return FakeLSF(runner)


def make_lsf(work_dir: str, **config: Any) -> LSFExecutor:
    return LSFExecutor(ClusterConfig(executor="lsf", log_directory=work_dir, **config))


async def submit(executor: LSFExecutor, work_dir: str, name: str = "job", **kw: Any) -> JobRecord:
    return await executor.submit("true", name, resources=ResourceSpec(work_dir=work_dir), **kw)


async def settle() -> None:
    """Let spawned callback tasks run."""
    for _ in range(5):
        await asyncio.sleep(0)


async def until(predicate: Any, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.005)


# -- callbacks ---------------------------------------------------------------------------


async def test_sync_and_async_callbacks_fire_once_each(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await submit(lsf, work_dir)
    sync_calls: list[JobRecord] = []
    async_calls: list[JobRecord] = []

    async def async_cb(r: JobRecord) -> None:
        await asyncio.sleep(0)
        async_calls.append(r)

    assert record.on_success(sync_calls.append) is record
    assert record.on_exit(async_cb) is record
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.run_cycle()
    await settle()
    assert sync_calls == [] and async_calls == []
    fake.set(record.job_id, "DONE")
    for _ in range(3):
        await monitor.run_cycle()
        await settle()
    assert record.status is JobStatus.DONE
    assert record.exit_code == 0
    assert sync_calls == [record]
    assert async_calls == [record]


@pytest.mark.parametrize(
    ("stat", "fields", "status", "fired"),
    [
        ("DONE", {}, JobStatus.DONE, {"success", "any", "exit_success"}),
        ("EXIT", {"exit_code": "2"}, JobStatus.FAILED, {"failure", "any", "exit_failure"}),
        (
            "EXIT",
            {"exit_code": "130", "exit_reason": "TERM_OWNER: job killed by owner"},
            JobStatus.KILLED,
            {"any", "exit_killed"},
        ),
    ],
)
async def test_callbacks_routed_by_how_the_job_ended(
    lsf: LSFExecutor,
    fake: FakeLSF,
    work_dir: str,
    stat: str,
    fields: dict[str, str],
    status: JobStatus,
    fired: set[str],
) -> None:
    record = await submit(lsf, work_dir)
    calls: list[str] = []
    record.on_success(lambda r: calls.append("success"))
    record.on_failure(lambda r: calls.append("failure"))
    record.on_exit(lambda r: calls.append("any"))
    record.on_exit(lambda r: calls.append("exit_success"), JobExitCondition.SUCCESS)
    record.on_exit(lambda r: calls.append("exit_failure"), condition=JobExitCondition.FAILURE)
    record.on_exit(lambda r: calls.append("exit_killed"), JobExitCondition.KILLED)
    fake.set(record.job_id, stat, **fields)
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.run_cycle()
    await monitor.run_cycle()
    await monitor.stop()
    assert record.status is status
    assert sorted(calls) == sorted(fired)  # each at most once
    assert not record.has_pending_callbacks


async def test_failed_job_exit_code_reaches_callback(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await submit(lsf, work_dir)
    seen: list[tuple[JobStatus, int | None]] = []
    record.on_failure(lambda r: seen.append((r.status, r.exit_code)))
    fake.set(record.job_id, "EXIT", exit_code="7")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.run_cycle()
    await monitor.stop()
    assert seen == [(JobStatus.FAILED, 7)]


async def test_exception_in_one_callback_does_not_stop_others(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    record = await submit(lsf, work_dir)
    calls: list[str] = []

    def boom(r: JobRecord) -> None:
        raise RuntimeError("sync boom")

    async def async_boom(r: JobRecord) -> None:
        raise RuntimeError("async boom")

    async def async_ok(r: JobRecord) -> None:
        calls.append("async_ok")

    record.on_exit(lambda r: calls.append("first"))
    record.on_exit(boom)
    record.on_success(async_boom)
    record.on_success(lambda r: calls.append("after"))
    record.on_exit(async_ok)
    fake.set(record.job_id, "DONE")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    with caplog.at_level(logging.ERROR, logger="cluster_api"):
        await monitor.run_cycle()
        await monitor.stop()
    assert sorted(calls) == ["after", "async_ok", "first"]
    messages = "\n".join(r.getMessage() + str(r.exc_info) for r in caplog.records)
    assert "sync boom" in messages
    assert "async boom" in messages
    # the monitor itself survived and keeps working
    assert await monitor.run_cycle() is True


async def test_callback_exception_does_not_break_other_jobs(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    first = await submit(lsf, work_dir, "a")
    second = await submit(lsf, work_dir, "b")

    def boom(r: JobRecord) -> None:
        raise ValueError("bad callback")

    got: list[str] = []
    first.on_exit(boom)
    second.on_exit(lambda r: got.append(r.job_id))
    fake.set(first.job_id, "DONE")
    fake.set(second.job_id, "DONE")
    async with JobMonitor(lsf, poll_interval=0.01) as monitor:
        await monitor.wait_for(first, second, timeout=3)
    assert got == [second.job_id]


async def test_slow_async_callback_does_not_delay_polling(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    finished = await submit(lsf, work_dir, "finished")
    running = await submit(lsf, work_dir, "running")
    fake.set(finished.job_id, "DONE")
    fake.set(running.job_id, "RUN")
    entered = asyncio.Event()
    release = asyncio.Event()

    async def slow(r: JobRecord) -> None:
        entered.set()
        await release.wait()

    finished.on_success(slow)
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.start()
    try:
        await asyncio.wait_for(entered.wait(), 3)
        before = len(fake.commands("bjobs"))
        await asyncio.sleep(0.25)
        polls_while_blocked = len(fake.commands("bjobs")) - before
        assert polls_while_blocked >= 3
        # and a job ending meanwhile is noticed
        fake.set(running.job_id, "DONE")
        await until(lambda: running.status is JobStatus.DONE)
    finally:
        release.set()
        await monitor.stop()


async def test_stop_waits_for_running_callbacks(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await submit(lsf, work_dir)
    state: list[str] = []
    entered = asyncio.Event()

    async def slow(r: JobRecord) -> None:
        entered.set()
        await asyncio.sleep(0.2)
        state.append("finished")

    record.on_exit(slow)
    fake.set(record.job_id, "DONE")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.start()
    await asyncio.wait_for(entered.wait(), 3)
    assert state == []
    await monitor.stop()
    assert state == ["finished"]
    assert not monitor.running


async def test_stop_returns_promptly_when_a_change_coincides(
    lsf: LSFExecutor, fake: FakeLSF
) -> None:
    """A job registered (or ending, on the local executor) in the same instant as stop()
    must not make stop() wait forever for a monitor loop that ignored its cancellation."""
    monitor = JobMonitor(lsf, poll_interval=5)
    await monitor.start()
    await asyncio.sleep(0.05)  # the loop now sleeps until the next poll or a change
    lsf.track("4242")  # a change: it wakes the loop just as stop() cancels it
    stopper = asyncio.ensure_future(monitor.stop())
    done, _ = await asyncio.wait({stopper}, timeout=2)
    if not done:
        stopper.cancel()  # unblocks: cancelling stop() cancels the task it awaits
        with contextlib.suppress(asyncio.CancelledError):
            await stopper
    assert done, "stop() hung: the monitor loop swallowed its cancellation"
    assert not monitor.running


async def test_callback_registered_after_job_ended_still_fires(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await submit(lsf, work_dir)
    fake.set(record.job_id, "DONE")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.run_cycle()
    await settle()
    assert record.status is JobStatus.DONE
    late: list[str] = []
    record.on_success(lambda r: late.append("success"))
    record.on_failure(lambda r: late.append("failure"))
    await monitor.wait_for(record, timeout=3)
    await monitor.stop()
    assert late == ["success"]


async def test_finished_job_is_not_resurrected_by_a_stale_answer(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await submit(lsf, work_dir)
    calls: list[JobStatus] = []
    record.on_exit(lambda r: calls.append(r.status))
    fake.set(record.job_id, "DONE")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.run_cycle()
    fake.set(record.job_id, "RUN")
    await lsf.poll()  # polling a finished job is a no-op
    await monitor.run_cycle()
    await monitor.stop()
    assert record.status is JobStatus.DONE
    assert calls == [JobStatus.DONE]


# -- waiting -----------------------------------------------------------------------------


async def test_wait_for_returns_after_terminal_and_callbacks_ran(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    first = await submit(lsf, work_dir, "a")
    second = await submit(lsf, work_dir, "b")
    done: list[str] = []

    async def slow(r: JobRecord) -> None:
        await asyncio.sleep(0.15)
        done.append(r.job_id)

    first.on_exit(slow)
    second.on_exit(slow)
    fake.set(first.job_id, "RUN")
    fake.set(second.job_id, "RUN")
    monitor = JobMonitor(lsf, poll_interval=0.01)

    async def finish_later() -> None:
        await asyncio.sleep(0.05)
        fake.set(first.job_id, "DONE")
        await asyncio.sleep(0.05)
        fake.set(second.job_id, "EXIT", exit_code="1")

    finisher = asyncio.create_task(finish_later())
    try:
        await monitor.wait_for(first, second, timeout=5)  # also starts the monitor
        assert monitor.running
        assert first.status is JobStatus.DONE
        assert second.status is JobStatus.FAILED
        assert sorted(done) == sorted([first.job_id, second.job_id])
    finally:
        await finisher
        await monitor.stop()


async def test_wait_for_timeout_raises_and_job_stays_tracked(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await submit(lsf, work_dir)
    fake.set(record.job_id, "RUN")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    started = time.monotonic()
    try:
        with pytest.raises((asyncio.TimeoutError, TimeoutError)):
            await monitor.wait_for(record, timeout=0.2)
        assert time.monotonic() - started < 2
        assert record.status is JobStatus.RUNNING
        assert record.job_id in lsf.active_jobs
        # the monitor keeps going: a later end is still picked up
        fake.set(record.job_id, "DONE")
        await monitor.wait_for(record, timeout=3)
        assert record.status is JobStatus.DONE
    finally:
        await monitor.stop()


async def test_async_context_manager_starts_and_stops(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await submit(lsf, work_dir)
    fake.set(record.job_id, "DONE")
    fired: list[str] = []
    record.on_success(lambda r: fired.append(r.job_id))
    async with JobMonitor(lsf, poll_interval=0.01) as monitor:
        assert isinstance(monitor, JobMonitor)
        assert monitor.running
        await until(lambda: fired == [record.job_id])
    assert not monitor.running
    calls = len(fake.commands("bjobs"))
    await asyncio.sleep(0.05)
    assert len(fake.commands("bjobs")) == calls  # no polling after exit


def test_poll_interval_defaults_to_config_and_is_validated(work_dir: str) -> None:
    executor = make_lsf(work_dir, poll_interval=7.5)
    assert JobMonitor(executor).poll_interval == 7.5
    assert JobMonitor(executor, poll_interval=0.5).poll_interval == 0.5
    for bad in (0, -1):
        with pytest.raises(ValueError):
            JobMonitor(executor, poll_interval=bad)


async def test_one_status_query_per_cycle_for_all_active_jobs(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    records = [await submit(lsf, work_dir, f"j{i}") for i in range(3)]
    finished = records[0]
    fake.set(finished.job_id, "DONE")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.run_cycle()
    first = fake.commands("bjobs")
    assert len(first) == 1
    assert all(r.job_id in first[0] for r in records)
    await monitor.run_cycle()
    second = fake.commands("bjobs")[1:]
    assert len(second) == 1
    assert finished.job_id not in second[0]  # finished jobs are not asked about again
    assert all(r.job_id in second[0] for r in records[1:])


async def test_array_parent_ends_only_when_every_element_ended(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await lsf.submit_array(
        "echo $LSB_JOBINDEX", "arr", (1, 3), resources=ResourceSpec(work_dir=work_dir)
    )
    fired: list[JobStatus] = []
    record.on_exit(lambda r: fired.append(r.status))
    monitor = JobMonitor(lsf, poll_interval=0.01)
    fake.set_elements(record.job_id, {1: "DONE", 2: "RUN", 3: "PEND"})
    await monitor.run_cycle()
    await settle()
    assert record.status is JobStatus.RUNNING
    assert record.completed_elements == 1
    fake.set_elements(record.job_id, {1: "DONE", 2: "EXIT", 3: "DONE"}, exit_code="")
    fake.records[record.job_id][1]["EXIT_CODE"] = "9"
    await monitor.run_cycle()
    await monitor.stop()
    assert record.status is JobStatus.FAILED
    assert record.failed_element_indices == [2]
    assert record.array_elements[2].exit_code == 9
    assert fired == [JobStatus.FAILED]


async def test_cancelled_job_ends_killed(lsf: LSFExecutor, fake: FakeLSF, work_dir: str) -> None:
    record = await submit(lsf, work_dir)
    fake.set(record.job_id, "RUN")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.run_cycle()
    await lsf.cancel(record.job_id)
    assert ["bkill", record.job_id] in fake.commands("bkill")
    fake.set(record.job_id, "EXIT", exit_code="130")
    killed: list[str] = []
    record.on_exit(lambda r: killed.append(r.job_id), JobExitCondition.KILLED)
    await monitor.run_cycle()
    await monitor.stop()
    assert record.status is JobStatus.KILLED
    assert killed == [record.job_id]


# -- zombies and outages -----------------------------------------------------------------


@pytest.mark.parametrize("listed_as_error", [True, False])
async def test_job_missing_from_output_becomes_zombie(
    fake: FakeLSF, work_dir: str, listed_as_error: bool
) -> None:
    executor = make_lsf(work_dir, zombie_timeout_minutes=0.001)  # 60 ms
    record = await submit(executor, work_dir)
    other = await submit(executor, work_dir, "other")
    fake.set(record.job_id, "RUN")
    fake.set(other.job_id, "RUN")
    failures: list[JobRecord] = []
    record.on_failure(failures.append)
    monitor = JobMonitor(executor, poll_interval=0.01)
    await monitor.run_cycle()
    assert record.status is JobStatus.RUNNING
    if listed_as_error:
        fake.forget(record.job_id)  # bjobs: "Job <N> is not found", exit 255
    else:
        fake.records[record.job_id] = []  # bjobs simply does not mention it
    await asyncio.sleep(0.1)
    await monitor.run_cycle()
    await asyncio.sleep(0.1)
    await monitor.run_cycle()
    await monitor.stop()
    assert record.status is JobStatus.FAILED
    assert record.metadata["zombie"] is True
    assert record.finish_time is not None
    assert failures == [record]
    assert other.status is JobStatus.RUNNING
    assert "zombie" not in other.metadata


async def test_missing_job_is_not_a_zombie_before_the_timeout(fake: FakeLSF, work_dir: str) -> None:
    executor = make_lsf(work_dir, zombie_timeout_minutes=1.0)
    record = await submit(executor, work_dir)
    fake.set(record.job_id, "RUN")
    monitor = JobMonitor(executor, poll_interval=0.01)
    await monitor.run_cycle()
    fake.forget(record.job_id)
    for _ in range(3):
        await asyncio.sleep(0.02)
        await monitor.run_cycle()
    assert record.status is JobStatus.RUNNING
    assert "zombie" not in record.metadata
    # it reappears (bjobs briefly lost it): its unseen time starts over
    fake.set(record.job_id, "DONE")
    await monitor.run_cycle()
    assert record.status is JobStatus.DONE
    assert "zombie" not in record.metadata


OUTAGES = [
    pytest.param(CommandFailedError("LSF is down. Please wait ...", stdout=""), id="failed"),
    pytest.param(CommandTimeoutError("bjobs timed out after 100s"), id="timeout"),
    pytest.param(None, id="empty-output"),
]


def start_outage(fake: FakeLSF, error: BaseException | None) -> None:
    if error is None:
        fake.empty = True
    else:
        fake.fail = error


def end_outage(fake: FakeLSF) -> None:
    fake.fail, fake.empty = None, False


@pytest.mark.parametrize("error", OUTAGES)
async def test_fix_outage_longer_than_zombie_timeout_makes_no_zombie(
    fake: FakeLSF, work_dir: str, error: BaseException | None
) -> None:
    executor = make_lsf(work_dir, zombie_timeout_minutes=0.001)  # 60 ms
    record = await submit(executor, work_dir)
    fake.set(record.job_id, "RUN")
    failures: list[JobRecord] = []
    record.on_failure(failures.append)
    monitor = JobMonitor(executor, poll_interval=0.01)
    assert await monitor.run_cycle() is True
    start_outage(fake, error)
    for _ in range(6):  # 0.3 s of outage: five times the zombie timeout
        await asyncio.sleep(0.05)
        assert await monitor.run_cycle() is False
        assert record.status is JobStatus.RUNNING
    end_outage(fake)
    assert await monitor.run_cycle() is True
    assert record.status is JobStatus.RUNNING
    assert "zombie" not in record.metadata
    # and the true state is reported afterwards
    fake.set(record.job_id, "DONE")
    await monitor.run_cycle()
    await monitor.stop()
    assert record.status is JobStatus.DONE
    assert record.exit_code == 0
    assert "zombie" not in record.metadata
    assert failures == []


@pytest.mark.parametrize("error", OUTAGES)
async def test_fix_job_that_ended_during_outage_reports_its_true_state(
    fake: FakeLSF, work_dir: str, error: BaseException | None
) -> None:
    executor = make_lsf(work_dir, zombie_timeout_minutes=0.001)
    record = await submit(executor, work_dir)
    fake.set(record.job_id, "RUN")
    monitor = JobMonitor(executor, poll_interval=0.01)
    await monitor.run_cycle()
    start_outage(fake, error)
    for _ in range(4):
        await asyncio.sleep(0.05)
        await monitor.run_cycle()
    fake.set(record.job_id, "EXIT", exit_code="3")
    end_outage(fake)
    await monitor.run_cycle()
    assert record.status is JobStatus.FAILED
    assert record.exit_code == 3
    assert "zombie" not in record.metadata


async def test_fix_outage_time_does_not_add_to_unseen_time(fake: FakeLSF, work_dir: str) -> None:
    """Unseen before the outage + unseen after it stays under the limit: no zombie.

    Only the time between two good answers counts; the outage in between is not evidence.
    """
    executor = make_lsf(work_dir, zombie_timeout_minutes=0.005)  # 300 ms
    record = await submit(executor, work_dir)
    fake.set(record.job_id, "RUN")
    monitor = JobMonitor(executor, poll_interval=0.01)
    await monitor.run_cycle()
    fake.forget(record.job_id)
    await monitor.run_cycle()  # good answer, job not mentioned (a few ms unseen)
    fake.fail = CommandFailedError("Cannot connect to LSF. Please wait ...")
    for _ in range(5):  # 0.5 s outage, longer than the 300 ms limit
        await asyncio.sleep(0.1)
        await monitor.run_cycle()
    fake.fail = None
    await monitor.run_cycle()  # good again, job still not mentioned
    assert executor.unseen_seconds(record.job_id) < 0.3
    assert record.status is JobStatus.RUNNING
    assert "zombie" not in record.metadata


async def test_fix_outage_through_the_running_monitor(fake: FakeLSF, work_dir: str) -> None:
    executor = make_lsf(work_dir, zombie_timeout_minutes=0.001)
    record = await submit(executor, work_dir)
    fake.set(record.job_id, "RUN")
    monitor = JobMonitor(executor, poll_interval=0.01)
    await monitor.start()
    try:
        await until(lambda: record.status is JobStatus.RUNNING)
        fake.fail = CommandTimeoutError("bjobs timed out")
        await asyncio.sleep(0.3)
        assert monitor.consecutive_failures >= 2
        assert record.status is JobStatus.RUNNING
        fake.fail = None
        fake.set(record.job_id, "DONE")
        await monitor.wait_for(record, timeout=5)
    finally:
        await monitor.stop()
    assert record.status is JobStatus.DONE
    assert "zombie" not in record.metadata


async def test_health_attributes_track_poll_success(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    record = await submit(lsf, work_dir)
    fake.set(record.job_id, "RUN")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    assert monitor.last_successful_poll is None
    assert monitor.consecutive_failures == 0
    before = datetime.now(timezone.utc)
    await monitor.run_cycle()
    first_ok = monitor.last_successful_poll
    assert first_ok is not None
    assert first_ok.tzinfo is not None
    assert first_ok >= before
    assert monitor.consecutive_failures == 0
    fake.fail = CommandFailedError("LSF is down")
    for expected in (1, 2, 3):
        await monitor.run_cycle()
        assert monitor.consecutive_failures == expected
        assert monitor.last_successful_poll == first_ok
    fake.fail = None
    await asyncio.sleep(0.001)
    await monitor.run_cycle()
    assert monitor.consecutive_failures == 0
    assert monitor.last_successful_poll is not None
    assert monitor.last_successful_poll > first_ok


async def test_one_warning_per_outage(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    record = await submit(lsf, work_dir)
    fake.set(record.job_id, "RUN")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    caplog.set_level(logging.DEBUG, logger="cluster_api")

    def warnings_so_far() -> int:
        return sum(1 for r in caplog.records if r.levelno >= logging.WARNING)

    await monitor.run_cycle()
    assert warnings_so_far() == 0
    for _outage in range(2):
        fake.fail = CommandFailedError("LSF is down. Please wait ...")
        before = warnings_so_far()
        for _ in range(5):
            await monitor.run_cycle()
        assert warnings_so_far() - before == 1
        fake.fail = None
        await monitor.run_cycle()
        recovered = warnings_so_far()
        for _ in range(3):
            await monitor.run_cycle()
        assert warnings_so_far() == recovered  # quiet while healthy


# -- purging -----------------------------------------------------------------------------


async def test_terminal_records_purged_after_retention(fake: FakeLSF, work_dir: str) -> None:
    executor = make_lsf(work_dir, completed_retention_minutes=0)
    record = await submit(executor, work_dir)
    running = await submit(executor, work_dir, "running")
    fake.set(record.job_id, "DONE")
    fake.set(running.job_id, "RUN")
    fired: list[str] = []
    record.on_success(lambda r: fired.append(r.job_id))
    monitor = JobMonitor(executor, poll_interval=0.01)
    await monitor.run_cycle()
    await settle()
    await monitor.run_cycle()
    assert fired == [record.job_id]
    assert record.job_id not in executor.jobs
    assert running.job_id in executor.jobs  # active jobs are never purged


async def test_purge_waits_for_callbacks_to_finish(fake: FakeLSF, work_dir: str) -> None:
    executor = make_lsf(work_dir, completed_retention_minutes=0)
    record = await submit(executor, work_dir)
    fake.set(record.job_id, "DONE")
    release = asyncio.Event()
    fired: list[str] = []

    async def slow(r: JobRecord) -> None:
        await release.wait()
        fired.append(r.job_id)

    record.on_exit(slow)
    monitor = JobMonitor(executor, poll_interval=0.01)
    await monitor.run_cycle()
    await settle()
    await monitor.run_cycle()
    assert record.job_id in executor.jobs  # its callback is still running
    release.set()
    await settle()
    assert fired == [record.job_id]
    await monitor.run_cycle()
    assert record.job_id not in executor.jobs


async def test_records_kept_within_retention(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    assert lsf.config.completed_retention_minutes == 10.0
    record = await submit(lsf, work_dir)
    fake.set(record.job_id, "DONE")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    for _ in range(3):
        await monitor.run_cycle()
    assert lsf.jobs[record.job_id] is record
    assert record.job_id not in lsf.active_jobs


# -- dependencies ------------------------------------------------------------------------


async def test_failed_dependency_kills_and_cancels_dependants(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    """API.md: a dependant of a failed job never runs and ends KILLED, naming the
    culprits in a list, set by poll() itself (issue #12 moved the rule there)."""
    parent = await submit(lsf, work_dir, "parent")
    child = await submit(lsf, work_dir, "child", depends_on=parent)
    grandchild = await submit(lsf, work_dir, "grandchild", depends_on=[child.job_id])
    bystander = await submit(lsf, work_dir, "bystander")
    assert child.depends_on == [parent.job_id]
    ended: list[str] = []
    child.on_exit(lambda r: ended.append(r.job_id), JobExitCondition.KILLED)
    grandchild.on_exit(lambda r: ended.append(r.job_id), JobExitCondition.KILLED)
    fake.set(parent.job_id, "EXIT", exit_code="1")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.run_cycle()
    await monitor.run_cycle()
    await monitor.stop()
    assert parent.status is JobStatus.FAILED
    assert child.status is JobStatus.KILLED
    assert child.metadata["dependency_failed"] == [parent.job_id]
    assert grandchild.status is JobStatus.KILLED
    assert grandchild.metadata["dependency_failed"] == [child.job_id]
    killed = {job_id for cmd in fake.commands("bkill") for job_id in cmd[1:]}
    assert {child.job_id, grandchild.job_id} <= killed
    assert parent.job_id not in killed
    assert bystander.job_id not in killed
    assert bystander.status is JobStatus.PENDING
    assert sorted(ended) == sorted([child.job_id, grandchild.job_id])


async def test_killed_dependency_also_kills_dependant(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    parent = await submit(lsf, work_dir, "parent")
    child = await submit(lsf, work_dir, "child", depends_on=[parent])
    fake.set(parent.job_id, "EXIT", exit_code="130", exit_reason="TERM_OWNER")
    await lsf.poll()  # the rule is poll()'s own: no monitor needed
    assert parent.status is JobStatus.KILLED
    assert child.status is JobStatus.KILLED
    assert child.metadata["dependency_failed"] == [parent.job_id]


async def test_successful_dependency_leaves_dependant_alone(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str
) -> None:
    parent = await submit(lsf, work_dir, "parent")
    child = await submit(lsf, work_dir, "child", depends_on=[parent])
    fake.set(parent.job_id, "DONE")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.run_cycle()
    await monitor.run_cycle()
    await monitor.stop()
    assert parent.status is JobStatus.DONE
    assert child.status is JobStatus.PENDING
    assert "dependency_failed" not in child.metadata
    assert fake.commands("bkill") == []
