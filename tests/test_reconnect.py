"""Picking jobs up again: reconnect(), track(), remove_job() and the exit-file fallback."""

from __future__ import annotations

import asyncio
import fnmatch
import os
import signal
import subprocess
from typing import Any
from unittest.mock import AsyncMock

import pytest
from conftest import bjobs_by_id, bjobs_json, bjobs_record

from cluster_api import (
    ClusterAPIError,
    ClusterConfig,
    CommandFailedError,
    JobMonitor,
    JobStatus,
    LSFExecutor,
    ResourceSpec,
)
from cluster_api.testing.fake import FakeRunner

_FINISHED = ("DONE", "EXIT")


class Cluster:
    """A tiny LSF: a table of bjobs records the test edits, answered like LSF answers
    through the shared FakeRunner."""

    def __init__(self, runner: FakeRunner) -> None:
        self.runner = runner
        self.records: dict[str, list[dict[str, str]]] = {}
        self.next_id = 5000
        runner.on("bsub", self._bsub).on("bjobs", self._bjobs).on("bkill", "")
        runner.on("bhist", CommandFailedError("bhist exited 255: No matching job found", stdout=""))

    def add(self, job_id: str, stat: str, name: str, **fields: str) -> None:
        self.records[job_id] = [bjobs_record(job_id, stat, name=name, **fields)]

    def add_array(self, job_id: str, name: str, stats: dict[int, str]) -> None:
        self.records[job_id] = [
            bjobs_record(job_id, stat, index=str(i), name=f"{name}[{i}]")
            for i, stat in stats.items()
        ]

    def set(self, job_id: str, stat: str, index: int = 0, **fields: str) -> None:
        for record in self.records[job_id]:
            if record["JOBINDEX"] == str(index):
                record["STAT"] = stat
                record.update({k.upper(): v for k, v in fields.items()})
                return
        raise KeyError((job_id, index))

    def clean(self, job_id: str) -> None:
        """The job leaves bjobs (CLEAN_PERIOD passed)."""
        del self.records[job_id]

    def bjobs(self, program: str = "bjobs") -> list[list[str]]:
        return self.runner.argvs(program)

    def _bsub(self, argv: list[str]) -> str:
        self.next_id += 1
        job_id = str(self.next_id)
        self.add(job_id, "PEND", "capi-submitted")
        return f"Job <{job_id}> is submitted to queue <normal>.\n"

    def _bjobs(self, cmd: list[str]) -> str:
        if "-J" in cmd:
            pattern = cmd[cmd.index("-J") + 1]
            found = [
                r
                for records in self.records.values()
                for r in records
                if fnmatch.fnmatchcase(r["JOB_NAME"].split("[")[0], pattern)
                and ("-a" in cmd or r["STAT"] not in _FINISHED)
            ]
            if not found:
                raise CommandFailedError(
                    "bjobs exited 255: No unfinished job found", stdout="", returncode=255
                )
            return bjobs_json(*found)
        return bjobs_by_id(self.records, list(cmd))


@pytest.fixture
def cluster(runner: FakeRunner) -> Cluster:
    return Cluster(runner)


def make_lsf(work_dir: str, **config: Any) -> LSFExecutor:
    return LSFExecutor(ClusterConfig(executor="lsf", log_directory=work_dir, **config))


# -- reconnect ---------------------------------------------------------------------------


async def test_reconnect_adopts_plain_jobs_and_arrays(lsf: LSFExecutor, cluster: Cluster) -> None:
    cluster.add("201", "RUN", "capi-alpha", exec_host="node01")
    cluster.add("202", "PEND", "capi-beta")
    cluster.add_array("203", "capi-arr", {1: "RUN", 2: "PEND", 3: "PEND"})
    cluster.add("204", "DONE", "capi-finished")  # not unfinished: not adopted
    cluster.add("205", "RUN", "other-job")  # another prefix: not ours

    adopted = await lsf.reconnect()

    assert [r.job_id for r in adopted] == ["201", "202", "203"]
    assert all(r.metadata["reconnected"] is True for r in adopted)
    by_id = {r.job_id: r for r in adopted}
    assert by_id["201"].name == "capi-alpha"
    assert by_id["201"].status is JobStatus.RUNNING
    assert by_id["201"].exec_host == "node01"
    assert by_id["202"].status is JobStatus.PENDING
    array = by_id["203"]
    assert array.name == "capi-arr"
    assert array.is_array
    assert array.metadata["array_range"] == (1, 3)
    assert array.element_count == 3
    assert sorted(array.array_elements) == [1, 2, 3]
    assert array.array_elements[1].status is JobStatus.RUNNING
    assert array.status is JobStatus.RUNNING
    assert set(lsf.jobs) == {"201", "202", "203"}
    assert all(lsf.jobs[r.job_id] is r for r in adopted)


async def test_reconnect_queries_by_prefix(work_dir: str, cluster: Cluster) -> None:
    executor = make_lsf(work_dir, job_name_prefix="pipe", poll_all_users=True)
    cluster.add("301", "RUN", "pipe-step")
    adopted = await executor.reconnect()
    assert [r.job_id for r in adopted] == ["301"]
    query = cluster.bjobs()[0]
    assert query[query.index("-J") + 1] == "pipe-*"
    assert "-json" in query
    assert query[query.index("-u") + 1] == "all"


async def test_reconnect_does_not_duplicate_tracked_jobs(
    lsf: LSFExecutor, cluster: Cluster
) -> None:
    cluster.add("201", "RUN", "capi-alpha")
    cluster.add("202", "RUN", "capi-beta")
    tracked = lsf.track("201")
    adopted = await lsf.reconnect()
    assert [r.job_id for r in adopted] == ["202"]
    assert lsf.jobs["201"] is tracked
    again = await lsf.reconnect()
    assert again == []
    assert len(lsf.jobs) == 2
    assert lsf.jobs["202"] is adopted[0]


async def test_reconnect_without_prefix_is_an_error(work_dir: str, mock_call: AsyncMock) -> None:
    executor = make_lsf(work_dir, job_name_prefix=None)
    with pytest.raises(ClusterAPIError, match="prefix"):
        await executor.reconnect()
    mock_call.assert_not_awaited()  # never lists (and adopts) everybody's jobs
    assert executor.jobs == {}


async def test_reconnect_with_no_unfinished_jobs_returns_empty(
    lsf: LSFExecutor, mock_call: AsyncMock
) -> None:
    mock_call.side_effect = CommandFailedError(
        "bjobs -J capi-* exited 255: No unfinished job found", stdout="", returncode=255
    )
    assert await lsf.reconnect() == []
    assert lsf.jobs == {}


async def test_reconnect_with_empty_json_returns_empty(
    lsf: LSFExecutor, mock_call: AsyncMock
) -> None:
    mock_call.return_value = bjobs_json()
    assert await lsf.reconnect() == []
    assert lsf.jobs == {}


async def test_reconnect_scheduler_down_raises(lsf: LSFExecutor, mock_call: AsyncMock) -> None:
    mock_call.side_effect = CommandFailedError(
        "bjobs exited 255: LSF is down. Please wait ...", stdout=""
    )
    with pytest.raises(ClusterAPIError):
        await lsf.reconnect()
    assert lsf.jobs == {}


async def test_reconnected_jobs_polled_to_completion_with_callbacks(
    lsf: LSFExecutor, cluster: Cluster
) -> None:
    cluster.add("201", "RUN", "capi-alpha")
    cluster.add("202", "RUN", "capi-beta")
    cluster.add_array("203", "capi-arr", {1: "RUN", 2: "RUN"})
    adopted = await lsf.reconnect()
    assert len(adopted) == 3
    fired: list[tuple[str, str]] = []
    for record in adopted:
        record.on_success(lambda r: fired.append((r.job_id, "success")))
        record.on_failure(lambda r: fired.append((r.job_id, "failure")))
    cluster.set("201", "DONE")
    cluster.set("202", "EXIT", exit_code="2")
    cluster.set("203", "DONE", index=1)
    cluster.set("203", "DONE", index=2)
    async with JobMonitor(lsf, poll_interval=0.01) as monitor:
        await monitor.wait_for(*adopted, timeout=5)
    assert sorted(fired) == [("201", "success"), ("202", "failure"), ("203", "success")]
    assert adopted[1].exit_code == 2
    assert adopted[2].status is JobStatus.DONE
    assert all("zombie" not in r.metadata for r in adopted)


async def test_reconnected_array_with_elements_already_finished_waits_for_the_rest(
    lsf: LSFExecutor, cluster: Cluster
) -> None:
    """bjobs without -a omits elements that finished while we were away; once they show up
    again the parent must still wait for the elements that are running."""
    cluster.add_array("210", "capi-arr", {1: "DONE", 2: "DONE", 3: "RUN", 4: "PEND", 5: "PEND"})
    (array,) = await lsf.reconnect()
    monitor = JobMonitor(lsf, poll_interval=0.01)
    cluster.set("210", "DONE", index=3)
    cluster.set("210", "RUN", index=4)
    await monitor.run_cycle()
    assert array.array_elements[4].status is JobStatus.RUNNING
    assert array.array_elements[5].status is JobStatus.PENDING
    assert not array.is_terminal  # elements 4 and 5 have not ended
    cluster.set("210", "DONE", index=4)
    cluster.set("210", "DONE", index=5)
    await monitor.run_cycle()
    assert array.status is JobStatus.DONE


# -- track / remove_job ------------------------------------------------------------------


async def test_track_then_poll_to_completion(lsf: LSFExecutor, cluster: Cluster) -> None:
    cluster.add("555", "RUN", "submitted-elsewhere", exec_host="node07")
    record = lsf.track("555")
    assert record.status is JobStatus.PENDING
    assert lsf.jobs["555"] is record
    assert lsf.track(555) is record  # type: ignore[arg-type]  # same id, same record
    ended: list[JobStatus] = []
    record.on_exit(lambda r: ended.append(r.status))
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.run_cycle()
    assert [a for a in cluster.bjobs()[-1] if a.isdigit()] == ["555"]
    assert record.status is JobStatus.RUNNING
    assert record.exec_host == "node07"
    cluster.set("555", "EXIT", exit_code="12")
    await monitor.run_cycle()
    await monitor.stop()
    assert record.status is JobStatus.FAILED
    assert record.exit_code == 12
    assert ended == [JobStatus.FAILED]


async def test_track_with_initial_status(lsf: LSFExecutor) -> None:
    record = lsf.track("777", status=JobStatus.RUNNING)
    assert record.status is JobStatus.RUNNING
    assert "777" in lsf.active_jobs


async def test_remove_job_stops_tracking(lsf: LSFExecutor, cluster: Cluster) -> None:
    cluster.add("601", "RUN", "capi-a")
    cluster.add("602", "RUN", "capi-b")
    kept, dropped = lsf.track("601"), lsf.track("602")
    fired: list[str] = []
    dropped.on_exit(lambda r: fired.append(r.job_id))
    lsf.remove_job("602")
    assert "602" not in lsf.jobs
    assert "602" not in lsf.active_jobs
    lsf.remove_job("602")  # removing twice (or an unknown id) is harmless
    lsf.remove_job("does-not-exist")
    cluster.set("602", "DONE")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.run_cycle()
    await monitor.stop()
    ids = [a for a in cluster.bjobs()[-1] if a.isdigit()]
    assert ids == ["601"]
    assert kept.status is JobStatus.RUNNING
    assert fired == []


async def test_remove_job_with_nothing_left_queries_nothing(
    lsf: LSFExecutor, mock_call: AsyncMock
) -> None:
    lsf.track("601")
    lsf.remove_job("601")
    assert await lsf.poll() == {}
    mock_call.assert_not_awaited()


# -- exit-code file fallback -------------------------------------------------------------


def exit_file(script_path: str, index: int | None = None) -> str:
    stem = script_path[: -len(".sh")]
    return f"{stem}.exit" if index is None else f"{stem}.{index}.exit"


@pytest.mark.parametrize(("code", "status"), [(0, JobStatus.DONE), (3, JobStatus.FAILED)])
async def test_exit_file_resolves_job_the_scheduler_forgot(
    work_dir: str, cluster: Cluster, code: int, status: JobStatus
) -> None:
    executor = make_lsf(work_dir, zombie_timeout_minutes=0.001)  # 60 ms
    record = await executor.submit("true", "forgotten", resources=ResourceSpec(work_dir=work_dir))
    assert record.script_path is not None
    cluster.set(record.job_id, "RUN")
    ended: list[JobStatus] = []
    record.on_exit(lambda r: ended.append(r.status))
    monitor = JobMonitor(executor, poll_interval=0.01)
    await monitor.run_cycle()
    assert record.status is JobStatus.RUNNING
    # the job ends and LSF cleans it before our next look
    with open(exit_file(record.script_path), "w") as handle:
        handle.write(f"{code}\n")
    cluster.clean(record.job_id)
    await asyncio.sleep(0.1)  # longer than the zombie timeout
    await monitor.run_cycle()
    await asyncio.sleep(0.1)
    await monitor.run_cycle()
    await monitor.stop()
    assert record.status is status
    assert record.exit_code == code
    assert record.metadata["resolved_from"] == "exit_file"
    assert "zombie" not in record.metadata
    assert ended == [status]


@pytest.mark.integration
async def test_exit_file_written_by_the_real_script(work_dir: str, cluster: Cluster) -> None:
    executor = make_lsf(work_dir, zombie_timeout_minutes=0.001)
    record = await executor.submit(
        "echo working; exit 3",
        "real",
        resources=ResourceSpec(work_dir=work_dir),
        epilogue=["echo cleanup"],
    )
    assert record.script_path is not None
    # run the job script as LSF would (the #BSUB lines are comments to bash)
    proc = subprocess.run(
        ["bash", record.script_path], cwd=work_dir, capture_output=True, text=True, timeout=10
    )
    assert proc.returncode == 3
    assert os.path.exists(exit_file(record.script_path))
    cluster.clean(record.job_id)
    monitor = JobMonitor(executor, poll_interval=0.01)
    await monitor.run_cycle()
    await asyncio.sleep(0.1)
    await monitor.run_cycle()
    assert record.status is JobStatus.FAILED
    assert record.exit_code == 3
    assert record.metadata["resolved_from"] == "exit_file"
    assert "zombie" not in record.metadata


@pytest.mark.integration
async def test_exit_files_resolve_a_forgotten_array(work_dir: str, cluster: Cluster) -> None:
    executor = make_lsf(work_dir, zombie_timeout_minutes=0.001)
    record = await executor.submit_array(
        'echo "element $LSB_JOBINDEX"; [ "$LSB_JOBINDEX" != 2 ] || exit 4',
        "arr",
        (1, 3),
        resources=ResourceSpec(work_dir=work_dir),
    )
    assert record.script_path is not None
    for index in (1, 2, 3):
        env = {**os.environ, "LSB_JOBINDEX": str(index)}
        subprocess.run(["bash", record.script_path], cwd=work_dir, env=env, timeout=10)
        assert os.path.exists(exit_file(record.script_path, index))
    cluster.clean(record.job_id)
    monitor = JobMonitor(executor, poll_interval=0.01)
    await monitor.run_cycle()
    await asyncio.sleep(0.1)
    await monitor.run_cycle()
    assert record.status is JobStatus.FAILED
    assert record.failed_element_indices == [2]
    assert record.array_elements[1].status is JobStatus.DONE
    assert record.array_elements[2].exit_code == 4
    assert record.metadata["resolved_from"] == "exit_file"
    assert "zombie" not in record.metadata


async def test_exit_file_resolves_elements_bjobs_no_longer_lists(
    lsf: LSFExecutor, work_dir: str, cluster: Cluster
) -> None:
    record = await lsf.submit_array(
        "true", "arr", (1, 3), resources=ResourceSpec(work_dir=work_dir)
    )
    assert record.script_path is not None
    cluster.add_array(record.job_id, "capi-arr", {1: "DONE", 2: "DONE"})  # 3 was cleaned
    with open(exit_file(record.script_path, 3), "w") as handle:
        handle.write("0\n")
    monitor = JobMonitor(lsf, poll_interval=0.01)
    await monitor.run_cycle()
    assert record.array_elements[3].status is JobStatus.DONE
    assert record.status is JobStatus.DONE


async def test_exit_file_of_cancelled_job_means_killed(work_dir: str, cluster: Cluster) -> None:
    executor = make_lsf(work_dir)
    record = await executor.submit("sleep 100", "victim", resources=ResourceSpec(work_dir=work_dir))
    assert record.script_path is not None
    await executor.cancel(record.job_id)
    with open(exit_file(record.script_path), "w") as handle:
        handle.write("143\n")
    cluster.clean(record.job_id)
    await executor.poll()
    assert record.status is JobStatus.KILLED
    assert record.exit_code == 143


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    stat = handle.read()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


def _command_of(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/comm") as handle:
            return handle.read().strip()
    except OSError:
        return ""


@pytest.mark.integration
@pytest.mark.parametrize(
    ("cancelled", "status"), [(True, JobStatus.KILLED), (False, JobStatus.FAILED)]
)
async def test_exit_file_of_job_killed_by_a_signal_is_not_a_success(
    work_dir: str, cluster: Cluster, cancelled: bool, status: JobStatus
) -> None:
    """bkill, a run limit or a memory limit end the script with SIGTERM; the exit file it
    leaves must say so, or a job that LSF then forgets would come back DONE."""
    executor = make_lsf(work_dir)
    record = await executor.submit(
        "sleep 30", "signalled", resources=ResourceSpec(work_dir=work_dir)
    )
    assert record.script_path is not None
    proc = subprocess.Popen(
        ["bash", record.script_path],
        cwd=work_dir,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # Until the script's command runs (its traps are set): a child that bash has forked
        # but not yet turned into `sleep` would swallow the signal into bash's trap handler
        # and lose it at exec, leaving sleep to run its 30 s.
        for _ in range(250):
            if any(_command_of(child) == "sleep" for child in _children(proc.pid)):
                break
            await asyncio.sleep(0.02)
        if cancelled:
            await executor.cancel(record.job_id)
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    cluster.clean(record.job_id)
    await executor.poll()
    assert record.status is status
    assert record.exit_code == 143
    assert record.metadata["resolved_from"] == "exit_file"


async def test_without_exit_file_a_forgotten_job_is_still_a_zombie(
    work_dir: str, cluster: Cluster
) -> None:
    executor = make_lsf(work_dir, zombie_timeout_minutes=0.001)
    record = await executor.submit("true", "lost", resources=ResourceSpec(work_dir=work_dir))
    cluster.set(record.job_id, "RUN")
    monitor = JobMonitor(executor, poll_interval=0.01)
    await monitor.run_cycle()
    cluster.clean(record.job_id)
    await asyncio.sleep(0.1)
    await monitor.run_cycle()
    await asyncio.sleep(0.1)
    await monitor.run_cycle()
    assert record.status is JobStatus.FAILED
    assert record.metadata["zombie"] is True
    assert "resolved_from" not in record.metadata
