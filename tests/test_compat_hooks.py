"""An executor written only to the design's hooks (examples/third_party_executor.py) works
unchanged (issue #13): it instantiates, submits a job and an array depending on it, polls,
fires callbacks through JobMonitor, survives an outage without zombies, writes exit files
and journal entries like the built-ins, and cancels.

On the code before #13 it cannot even be instantiated ("Can't instantiate abstract class
... _cancel_ids, _cancel_name_pattern, _query, _submit_script").
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from cluster_api import (
    ClusterConfig,
    CommandFailedError,
    JobMonitor,
    JobRecord,
    JobStatus,
    SubmitError,
)
from cluster_api.script import exit_file_path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "examples"))
from third_party_executor import ToyExecutor


class ToyScheduler:
    """The toy scheduler behind a patched ``_call``: jobs change state when told to."""

    def __init__(self) -> None:
        self.next_id = 100
        self.jobs: dict[str, str] = {}  # raw id -> "STATE EXIT"
        self.calls: list[list[str]] = []
        self.down = False
        self.in_flight = 0
        self.most_in_flight = 0

    async def call(
        self,
        cmd: list[str],
        timeout: float = 100.0,
        env: dict[str, str] | None = None,
        stdin_file: str | None = None,
    ) -> str:
        self.calls.append(cmd)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0)  # let concurrent commands overlap
            return self.answer(cmd)
        finally:
            self.in_flight -= 1

    def answer(self, cmd: list[str]) -> str:
        program, *args = cmd
        if program == "tsub":
            self.next_id += 1
            job_id = str(self.next_id)
            if "--array" in args:
                start, end = map(int, args[args.index("--array") + 1].split("-"))
                for index in range(start, end + 1):
                    self.jobs[f"{job_id}[{index}]"] = "Q -"
            else:
                self.jobs[job_id] = "Q -"
            return f"Submitted job {job_id}\n"
        if program == "tstat":
            if self.down:
                raise CommandFailedError("Command failed (exit 1): tstat: no server", stdout="")
            return "\n".join(f"{i} {s}" for i, s in self.jobs.items())
        if program == "tdel":
            for raw_id in [i for i in self.jobs if i.split("[")[0] == args[0]]:
                self.jobs[raw_id] = "DEL 130"
            return f"Deleted {args[0]}\n"
        raise AssertionError(f"unexpected command {cmd}")


async def settle() -> None:
    """Let the callback tasks a monitor cycle started run."""
    for _ in range(10):
        await asyncio.sleep(0)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> tuple[ToyExecutor, ToyScheduler]:
    scheduler = ToyScheduler()
    monkeypatch.setattr(ToyExecutor, "_call", staticmethod(scheduler.call))
    monkeypatch.chdir(tmp_path)  # the scripts' work_dir
    config = ClusterConfig(
        log_directory=str(tmp_path / "logs"),
        journal=True,
        zombie_timeout_minutes=1.0,
        max_concurrent_commands=2,
    )
    return ToyExecutor(config), scheduler


async def test_job_and_array_with_dependency_run_to_callbacks(
    toy: tuple[ToyExecutor, ToyScheduler], tmp_path: Path
) -> None:
    executor, scheduler = toy
    first = await executor.submit("echo one", "one", env={"A": "1"})
    array = await executor.submit_array("echo $ARRAY_INDEX", "many", (1, 2), depends_on=first)
    assert (first.job_id, array.job_id) == ("101", "102")
    assert scheduler.calls[1][:5] == ["tsub", "--array", "1-2", "--after", "101"]
    script = Path(str(first.script_path)).read_text()
    assert "#TOY --name capi-one" in script and "export A=1" in script
    assert exit_file_path(str(first.script_path)) in script  # the exit-status trap
    ended: list[str] = []
    first.on_success(lambda r: ended.append(r.job_id))
    array.on_exit(lambda r: ended.append(r.job_id))
    monitor = JobMonitor(executor, poll_interval=60)

    scheduler.jobs["101"] = "R -"
    assert await monitor.run_cycle() is True
    assert first.status is JobStatus.RUNNING and array.array_elements[1].status is JobStatus.PENDING
    scheduler.jobs.update({"101": "OK 0", "102[1]": "OK 0", "102[2]": "ERR 3"})
    await monitor.run_cycle()
    await settle()
    assert (first.status, array.status, array.failed_element_indices) == (
        JobStatus.DONE,
        JobStatus.FAILED,
        [2],
    )
    assert ended == ["101", "102"]


async def test_outage_makes_no_zombie_and_poll_never_raises(
    toy: tuple[ToyExecutor, ToyScheduler],
) -> None:
    executor, scheduler = toy
    clock = [1000.0]
    executor._table.clock = lambda: clock[0]
    record = await executor.submit("sleep 1", "s")
    monitor = JobMonitor(executor, poll_interval=60)
    await monitor.run_cycle()
    scheduler.down = True
    for _ in range(5):
        clock[0] += 600  # far beyond zombie_timeout_minutes
        assert await monitor.run_cycle() is False
        assert await executor.poll() == {"101": JobStatus.PENDING}  # logs, never raises
    assert monitor.consecutive_failures == 5  # the health figures show the outage
    scheduler.down = False
    await monitor.run_cycle()
    assert (record.status, record.metadata.get("zombie")) == (JobStatus.PENDING, None)


async def test_job_gone_from_the_queue_ends_by_its_exit_file(
    toy: tuple[ToyExecutor, ToyScheduler],
) -> None:
    executor, scheduler = toy
    record = await executor.submit("exit 3", "e")
    other = await executor.submit("sleep 100", "other")
    Path(exit_file_path(str(record.script_path))).write_text("3\n")  # what the trap writes
    del scheduler.jobs["101"]  # the scheduler forgot it
    statuses = await executor.poll()
    assert statuses == {"101": JobStatus.FAILED, "102": JobStatus.PENDING}
    assert (record.exit_code, other.status) == (3, JobStatus.PENDING)


async def test_journal_and_cancel(toy: tuple[ToyExecutor, ToyScheduler]) -> None:
    executor, scheduler = toy
    record = await executor.submit("sleep 100", "long")
    again = ToyExecutor(executor.config).track(record.job_id)  # another process
    assert (again.name, again.command, again.script_path) == (
        "capi-long",
        "sleep 100",
        record.script_path,
    )
    seen: list[JobRecord] = []
    record.on_exit(seen.append)
    await executor.cancel(record.job_id)
    assert scheduler.calls[-1] == ["tdel", "101"]
    assert record.status is JobStatus.KILLED  # right after the scheduler accepted
    await JobMonitor(executor, poll_interval=60).run_cycle()
    await settle()
    assert seen == [record]


async def test_commands_run_within_the_concurrency_bound(
    toy: tuple[ToyExecutor, ToyScheduler],
) -> None:
    executor, scheduler = toy
    await asyncio.gather(*(executor.submit("true", f"j{i}") for i in range(6)))
    assert len(executor.jobs) == 6 and scheduler.most_in_flight == 2
    scripts = {str(r.script_path) for r in executor.jobs.values()}
    assert len(scripts) == 6 and all(Path(p).is_file() for p in scripts)  # one each
    await executor.cancel_all()
    assert scheduler.most_in_flight == 2
    assert {r.status for r in executor.jobs.values()} == {JobStatus.KILLED}


async def test_garbage_status_answer_changes_nothing(
    toy: tuple[ToyExecutor, ToyScheduler], monkeypatch: pytest.MonkeyPatch
) -> None:
    executor, scheduler = toy
    record = await executor.submit("true", "g")
    monkeypatch.setattr(scheduler, "answer", lambda cmd: "<html>proxy error</html>")
    clock = [0.0]
    executor._table.clock = lambda: clock[0]
    for _ in range(3):
        clock[0] += 600
        assert await executor.poll() == {"101": JobStatus.PENDING}
    assert record.status is JobStatus.PENDING and executor.unseen_seconds("101") == 0


@pytest.mark.integration
def test_the_script_writes_its_exit_file(toy: tuple[ToyExecutor, ToyScheduler]) -> None:
    executor, _ = toy
    record: Any = asyncio.run(executor.submit_array("exit $ARRAY_INDEX", "x", (1, 2)))
    for index in (1, 2):
        env = {"ARRAY_INDEX": str(index), "PATH": "/usr/bin:/bin"}
        subprocess.run(["bash", record.script_path], env=env, check=False)
        assert Path(exit_file_path(record.script_path, index)).read_text().strip() == str(index)


async def test_dependant_of_a_failed_job_ends_killed_and_is_cancelled(
    toy: tuple[ToyExecutor, ToyScheduler],
) -> None:
    executor, scheduler = toy
    first = await executor.submit("false", "first")
    then = await executor.submit("true", "then", depends_on=[first])
    scheduler.jobs["101"] = "ERR 1"
    await executor.poll()
    assert (then.status, then.metadata["dependency_failed"]) == (JobStatus.KILLED, ["101"])
    assert ["tdel", "102"] in scheduler.calls  # it would otherwise wait there forever


async def test_refused_submit_leaves_no_script(
    toy: tuple[ToyExecutor, ToyScheduler], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    executor, scheduler = toy

    def refuse(cmd: list[str]) -> str:
        raise CommandFailedError("Command failed (exit 1): tsub: queue closed")

    monkeypatch.setattr(scheduler, "answer", refuse)
    with pytest.raises(SubmitError, match="queue closed"):
        await executor.submit("true", "refused")
    assert list(tmp_path.glob("*.sh")) == [] and executor.jobs == {}
