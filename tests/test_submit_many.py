"""submit_many (many commands, one array per chunk, a record per command) and adaptive
polling (issue #17). The scheduler is a fake behind ``Executor._call``; time is injected."""

from __future__ import annotations

import asyncio
import os
from typing import Any
from unittest.mock import AsyncMock

import pytest
from test_monitor import FakeLSF, make_lsf

from cluster_api import ClusterConfig, JobMonitor, JobStatus, ResourceSpec, SlurmExecutor
from cluster_api.core import Executor
from cluster_api.executors.lsf import LSFExecutor
from cluster_api.polling import PollSchedule
from cluster_api.testing.fake import FakeRunner


class PackingLSF(FakeLSF):
    """A FakeLSF whose bkill names each job it terminates, as LSF does."""

    def __init__(self, runner: FakeRunner) -> None:
        super().__init__(runner)
        runner.on(
            "bkill", lambda argv: "".join(f"Job <{j}> is being terminated\n" for j in argv[1:])
        )


@pytest.fixture
def fake(runner: FakeRunner) -> PackingLSF:
    return PackingLSF(runner)


async def submit_many(executor: Executor, work_dir: str, commands: list[str], **kw: Any) -> Any:
    resources = ResourceSpec(work_dir=work_dir)
    return await executor.submit_many(commands, "t", resources=resources, **kw)


# -- chunking ---------------------------------------------------------------------------
async def test_commands_become_one_array_per_chunk(fake: PackingLSF, work_dir: str) -> None:
    lsf = make_lsf(work_dir, array_chunk_size=2)
    commands = [f"echo {i}" for i in range(5)]
    records = await submit_many(lsf, work_dir, commands, max_concurrent=1)
    bsubs = fake.commands("bsub")
    assert len(bsubs) == 3
    assert [r.job_id for r in records] == ["1001[1]", "1001[2]", "1002[1]", "1002[2]", "1003[1]"]
    assert [r.command for r in records] == commands
    assert "capi-t[1-2%1]" in bsubs[0] and "capi-t[1-1%1]" in bsubs[2]
    array = lsf.records["1003"]
    with open(array.metadata["tasks_file"]) as handle:
        assert handle.read() == "echo 4\n"
    with open(array.script_path or "") as handle:
        assert 'eval "$(sed -n "${ARRAY_INDEX}p" ' in handle.read()
    assert all(lsf.records[r.job_id] is r for r in records)


async def test_default_chunk_is_a_thousand_on_lsf_and_slurm() -> None:
    assert ClusterConfig(executor="lsf").array_chunk_size == 1000
    assert ClusterConfig(executor="slurm").array_chunk_size == 1000


async def test_a_multi_line_command_is_refused_by_position_and_leaves_no_file(
    fake: PackingLSF, work_dir: str
) -> None:
    lsf = make_lsf(work_dir)
    with pytest.raises(ValueError, match="command 1 of submit_many"):
        await submit_many(lsf, work_dir, ["true", "echo a\necho b"])
    assert os.listdir(work_dir) == []
    assert fake.commands("bsub") == []


async def test_a_refused_array_leaves_no_tasks_file(fake: PackingLSF, work_dir: str) -> None:
    from cluster_api.errors import CommandFailedError

    async def refuse(cmd: list[str], *args: Any, **kwargs: Any) -> str:
        raise CommandFailedError("bsub: Bad resource requirement syntax", stderr="bad")

    lsf = make_lsf(work_dir)
    lsf._call = refuse  # type: ignore[method-assign]
    with pytest.raises(Exception, match="refused"):
        await submit_many(lsf, work_dir, ["true", "false"])
    assert [f for f in os.listdir(work_dir) if ".tasks." in f] == []


# -- per-task records -------------------------------------------------------------------
async def test_each_task_ends_as_its_element_and_fires_its_own_callbacks(
    fake: PackingLSF, work_dir: str
) -> None:
    lsf = make_lsf(work_dir)
    first, second = await submit_many(lsf, work_dir, ["true", "exit 3"])
    fired: list[tuple[str, str]] = []
    first.on_success(lambda r: fired.append(("ok", r.job_id)))
    first.on_failure(lambda r: fired.append(("failed", r.job_id)))
    second.on_failure(lambda r: fired.append(("failed", r.job_id)))
    fake.set_elements("1001", {1: "DONE", 2: "EXIT"}, exit_code="3")
    monitor = JobMonitor(lsf)
    await monitor.run_cycle()
    await monitor.wait_for(first, second, timeout=5)
    assert (first.status, second.status) == (JobStatus.DONE, JobStatus.FAILED)
    assert second.exit_code == 3
    assert sorted(fired) == [("failed", "1001[2]"), ("ok", "1001[1]")]
    # only the array is asked about, never its tasks one by one
    assert all("1001[1]" not in c for c in fake.commands("bjobs"))


async def test_cancelling_one_task_kills_only_its_element(fake: PackingLSF, work_dir: str) -> None:
    lsf = make_lsf(work_dir)
    first, second = await submit_many(lsf, work_dir, ["sleep 100", "sleep 100"])
    await lsf.cancel(second.job_id)
    assert fake.commands("bkill") == [["bkill", "1001[2]"]]
    assert (first.status, second.status) == (JobStatus.PENDING, JobStatus.KILLED)
    fake.records["1001"] = [
        {**fake.records["1001"][0], "JOBINDEX": "1", "STAT": "RUN"},
        {
            **fake.records["1001"][0],
            "JOBINDEX": "2",
            "STAT": "EXIT",
            "EXIT_CODE": "130",
            "EXIT_REASON": "TERM_OWNER: job killed by owner",
        },
    ]
    await lsf.poll()
    assert (first.status, second.status) == (JobStatus.RUNNING, JobStatus.KILLED)
    assert second.exit_code == 130


async def test_tasks_of_an_array_ended_as_a_whole_end_with_it(
    fake: PackingLSF, work_dir: str
) -> None:
    lsf = make_lsf(work_dir)
    first, second = await submit_many(lsf, work_dir, ["true", "true"])
    fake.set_elements("1001", {1: "DONE", 2: "RUN"})
    await lsf.poll()
    lsf.records["1001"].advance(JobStatus.FAILED)  # as the monitor ends a zombie
    await lsf.poll()
    assert (first.status, second.status) == (JobStatus.DONE, JobStatus.FAILED)


async def test_reconnect_brings_back_every_task_of_a_packed_array(
    fake: PackingLSF, work_dir: str
) -> None:
    lsf = make_lsf(work_dir, journal=True)
    await submit_many(lsf, work_dir, ["true", "false"])
    later = make_lsf(work_dir, journal=True)
    found = await later.reconnect()
    tasks = {r.job_id: r for r in found if r.job_id != "1001"}
    assert sorted(tasks) == ["1001[1]", "1001[2]"]
    assert tasks["1001[2]"].command == "false"
    fake.set_elements("1001", {1: "DONE", 2: "EXIT"}, exit_code="1")
    await later.poll()
    assert tasks["1001[1]"].status is JobStatus.DONE
    assert (tasks["1001[2]"].status, tasks["1001[2]"].exit_code) == (JobStatus.FAILED, 1)


async def test_slurm_tasks_carry_slurm_element_ids(mock_call: AsyncMock, work_dir: str) -> None:
    mock_call.return_value = "77\n"
    slurm = SlurmExecutor(ClusterConfig(executor="slurm", log_directory=work_dir))
    records = await submit_many(slurm, work_dir, ["true", "true"])
    assert [r.job_id for r in records] == ["77_1", "77_2"]
    argv = mock_call.call_args_list[0].args[0]
    assert argv[0] == "sbatch"
    with open(slurm.records["77"].script_path or "") as handle:
        assert "#SBATCH --array=1-2" in handle.read()


# -- adaptive polling -------------------------------------------------------------------
def test_poll_schedule_starts_quick_after_activity_and_backs_off() -> None:
    schedule = PollSchedule(interval=10.0, floor=1.0)
    quiet = [False] * 6
    waits = [schedule.next_wait(activity) for activity in [True, *quiet]]
    assert waits == [1.0, 1.0, 1.0, 2.0, 4.0, 8.0, 10.0]
    assert schedule.next_wait(False) == 10.0  # steady state: poll_interval
    assert schedule.next_wait(True) == 1.0  # a change starts over


def test_poll_schedule_turned_off_keeps_the_interval() -> None:
    config = ClusterConfig(executor="lsf", adaptive_polling=False)
    schedule = PollSchedule.from_config(config, 10.0)
    assert [schedule.next_wait(True) for _ in range(3)] == [10.0] * 3
    assert schedule.rest_of_floor(0.0) == 0.0


class SimulatedTime:
    """Time that passes only when the monitor waits; a job that starts and ends."""

    def __init__(self, executor: LSFExecutor, fake: FakeLSF, job_id: str, ends: float) -> None:
        self.now = 0.0
        self.executor, self.fake, self.job_id, self.ends = executor, fake, job_id, ends
        self.polls: list[float] = []
        self.done = asyncio.Event()

    def clock(self) -> float:
        return self.now

    async def wait(self, timeout: float) -> None:
        self.now += timeout
        self.fake.set(self.job_id, "RUN" if self.now < self.ends else "DONE")
        if self.executor.records[self.job_id].status.is_terminal:
            self.done.set()
            await asyncio.Event().wait()
        await asyncio.sleep(0)


async def run_simulated(
    lsf: LSFExecutor, fake: FakeLSF, work_dir: str, ends: float = 600.0
) -> float:
    """Run the monitor over a job that ends at ``ends``; the time its end was seen."""
    record = await lsf.submit("sleep 600", "long", resources=ResourceSpec(work_dir=work_dir))
    time = SimulatedTime(lsf, fake, record.job_id, ends)
    lsf.wait_for_change = time.wait  # type: ignore[method-assign]
    monitor = JobMonitor(lsf, clock=time.clock)
    await monitor.start()
    try:
        await asyncio.wait_for(time.done.wait(), 10)
    finally:
        await monitor.stop()
    return time.now


async def test_a_ten_minute_job_costs_at_most_seventy_status_queries(
    fake: PackingLSF, work_dir: str
) -> None:
    lsf = make_lsf(work_dir)
    await run_simulated(lsf, fake, work_dir)
    queries = len(fake.commands("bjobs"))
    assert 60 <= queries <= 70, queries


async def test_a_two_second_job_is_noticed_within_a_second_of_its_end(
    fake: PackingLSF, work_dir: str
) -> None:
    lsf = make_lsf(work_dir)  # poll_interval 10 s
    assert lsf.config.poll_interval == 10.0
    seen = await run_simulated(lsf, fake, work_dir, ends=2.0)
    assert seen - 2.0 <= 1.0, seen


async def test_without_adaptive_polling_a_ten_minute_job_is_polled_each_interval(
    fake: PackingLSF, work_dir: str
) -> None:
    lsf = make_lsf(work_dir, adaptive_polling=False)
    await run_simulated(lsf, fake, work_dir)
    assert len(fake.commands("bjobs")) == 61  # t = 0, 10, ..., 600


async def test_a_wake_by_a_submit_waits_out_the_floor(fake: PackingLSF, work_dir: str) -> None:
    lsf = make_lsf(work_dir)
    await lsf.submit("true", "a", resources=ResourceSpec(work_dir=work_dir))
    now = [0.0]
    waits: list[float] = []
    monitor = JobMonitor(lsf, clock=lambda: now[0])

    async def wait(timeout: float) -> None:
        waits.append(timeout)
        if len(waits) == 1:  # a submit arrives a quarter of a second into the first wait
            now[0] += 0.25
            lsf.activity += 1
        elif len(waits) == 2:  # the rest of the floor passes quietly
            now[0] += timeout
        else:
            monitor._task = None

    lsf.wait_for_change = wait  # type: ignore[method-assign]
    monitor._task = asyncio.current_task()  # run the loop itself, here
    await monitor._loop()
    assert waits[1] == pytest.approx(0.75)
    assert len(fake.commands("bjobs")) == 2  # the second query only once the floor passed


async def test_an_end_the_executor_applies_itself_is_called_back_within_the_floor(
    fake: PackingLSF, work_dir: str
) -> None:
    """The local executor records a job's end the moment the job's supervisor writes it;
    its callbacks must not wait for the floor that spaces status queries (they waited
    up to a second, after a submit)."""
    lsf = make_lsf(work_dir)
    record = await lsf.submit("true", "a", resources=ResourceSpec(work_dir=work_dir))
    now = [0.0]
    called: list[tuple[float, int]] = []
    record.on_exit(lambda r: called.append((now[0], len(fake.commands("bjobs")))))
    monitor = JobMonitor(lsf, clock=lambda: now[0])
    waits: list[float] = []

    async def wait(timeout: float) -> None:
        waits.append(timeout)
        if len(waits) == 1:  # another submit wakes the monitor
            now[0] += 0.1
            lsf.activity += 1
        elif len(waits) == 2:  # within the floor, the executor itself learns the job ended
            now[0] += 0.1
            record.status = JobStatus.DONE
            record.exit_code = 0
            lsf.activity += 1
        else:
            monitor._task = None
        await asyncio.sleep(0)

    lsf.wait_for_change = wait  # type: ignore[method-assign]
    monitor._task = asyncio.current_task()
    await monitor._loop()
    await asyncio.sleep(0)
    assert called == [(pytest.approx(0.2), 1)]  # at once, before a second status query


async def test_wait_for_returns_within_the_floor_for_an_end_the_executor_applied(
    fake: PackingLSF, work_dir: str
) -> None:
    """A local job's end is applied the moment it is written: ``wait_for`` must not wait
    for the next status query (it waited up to a floor, a second, after a submit)."""
    lsf = make_lsf(work_dir)
    record = await lsf.submit("true", "a", resources=ResourceSpec(work_dir=work_dir))
    now = [0.0]
    waits: list[float] = []
    returned = asyncio.Event()

    async def wait(timeout: float) -> None:
        waits.append(timeout)
        if len(waits) == 1:  # another submit wakes the monitor
            now[0] += 0.1
            lsf.activity += 1
        elif len(waits) == 2:  # within the floor, the executor itself learns the job ended
            now[0] += 0.1
            record.status, record.exit_code = JobStatus.DONE, 0
            lsf.activity += 1
        else:  # still within the floor: no second query before wait_for has returned
            await returned.wait()
        await asyncio.sleep(0)

    lsf.wait_for_change = wait  # type: ignore[method-assign]
    monitor = JobMonitor(lsf, clock=lambda: now[0])
    try:
        await asyncio.wait_for(monitor.wait_for(record), timeout=2)
        assert len(fake.commands("bjobs")) == 1 and waits[1] == pytest.approx(0.9)
    finally:
        returned.set()
        await monitor.stop()
