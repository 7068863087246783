"""The local executor's supervisors: ids that are PIDs, jobs that outlive their submitter.

Most tests here start real processes (the submitting program is often a second Python
process that exits at once) and carry ``integration``; the few at the end are plain data.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from cluster_api import ClusterAPIError, ClusterConfig, JobMonitor, JobStatus, LocalExecutor
from cluster_api import ResourceSpec as Res

WAIT = 20.0
integration = pytest.mark.integration

SUBMITTER = textwrap.dedent(
    """
    import asyncio, json, os, sys, time
    from cluster_api import ClusterConfig, LocalExecutor, ResourceSpec

    async def main(work, plan, barrier):
        executor = LocalExecutor(ClusterConfig(log_directory=work, journal=True))
        res = ResourceSpec(work_dir=work)
        while barrier and not os.path.exists(barrier):
            time.sleep(0.001)
        ids = {}
        for name, kind, command, extra in plan:
            if kind == "array":
                low, high, limit = extra
                record = await executor.submit_array(
                    command, name, (low, high), resources=res, max_concurrent=limit
                )
            else:
                after = [ids[d] for d in extra or []]
                record = await executor.submit(command, name, resources=res, depends_on=after)
            ids[name] = record.job_id
        print(json.dumps(ids))

    barrier = sys.argv[3] if len(sys.argv) > 3 else ""
    asyncio.run(main(sys.argv[1], json.loads(sys.argv[2]), barrier))
    """
)


def start_submitter(
    tmp_path: Path, work: str, plan: list[Any], barrier: str = ""
) -> subprocess.Popen[str]:
    script = tmp_path / "submitter.py"
    script.write_text(SUBMITTER)
    argv = [sys.executable, str(script), work, json.dumps(plan), barrier]
    return subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)


def submit_elsewhere(tmp_path: Path, work: str, plan: list[Any]) -> dict[str, str]:
    """Submit ``plan`` from another Python process that exits right after; the job ids."""
    proc = start_submitter(tmp_path, work, plan)
    out, _ = proc.communicate(timeout=WAIT)
    assert proc.returncode == 0
    ids: dict[str, str] = json.loads(out)
    return ids


def journal_executor(work: str, **config: Any) -> LocalExecutor:
    return LocalExecutor(
        ClusterConfig(log_directory=work, journal=True, poll_interval=0.05, **config)
    )


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    stat = Path(f"/proc/{pid}/stat").read_text()
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_until(predicate: Any, timeout: float = WAIT) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


async def until_terminal(executor: LocalExecutor, *records: Any, timeout: float = WAIT) -> None:
    """Wait on the executor alone (no monitor): it must update its records by itself."""
    deadline = time.monotonic() + timeout
    while not all(r.status.is_terminal for r in records):
        assert time.monotonic() < deadline, [r.status for r in records]
        await executor.wait_for_change(0.1)


# -- ids (#11.6 and API.md "local job ids") ------------------------------------------------


@integration
def test_ids_stay_unique_when_two_processes_submit_at_once(tmp_path: Path) -> None:
    work = str(tmp_path / "shared")
    os.makedirs(work)
    plan = [[f"job{i}", "plain", f"echo {i}-$$", None] for i in range(40)]
    barrier = str(tmp_path / "go")
    procs = [start_submitter(tmp_path, work, plan, barrier) for _ in range(2)]
    time.sleep(1.0)  # both have imported the library and wait at the barrier
    Path(barrier).touch()
    answers = [json.loads(p.communicate(timeout=60)[0]) for p in procs]
    first, second = (set(a.values()) for a in answers)
    assert len(first) == len(second) == 40
    assert first.isdisjoint(second)
    for job_id in first | second:
        path = Path(work, f"stdout.{job_id}.log")
        wait_until(lambda p=path: p.exists() and p.read_text().endswith("\n"))
        assert len(path.read_text().splitlines()) == 1, path.read_text()


@integration
async def test_every_local_job_id_is_its_process_group_leader(work_dir: str) -> None:
    executor = journal_executor(work_dir)
    res = Res(work_dir=work_dir)
    blocker = await executor.submit("sleep 30", "blocker", resources=res)
    array = await executor.submit_array("sleep 30", "arr", (1, 2), resources=res)
    dependant = await executor.submit("true", "dep", resources=res, depends_on=blocker)
    try:
        for record in (blocker, array, dependant):
            pid = int(record.job_id)
            assert os.getpgid(pid) == pid
    finally:
        await executor.cancel_all()
    assert {r.status for r in (blocker, array, dependant)} == {JobStatus.KILLED}


# -- work that outlives its submitter (#11.7, #16.8) ---------------------------------------


@integration
async def test_reconnect_finds_pending_work_started_by_a_process_that_exited(
    tmp_path: Path, work_dir: str
) -> None:
    plan = [
        ["first", "plain", "sleep 1; echo first >> order", None],
        ["second", "plain", "echo second >> order", ["first"]],
        ["arr", "array", 'sleep 0.2; echo "$ARRAY_INDEX" >> elements', [1, 3, 1]],
    ]
    ids = submit_elsewhere(tmp_path, work_dir, plan)
    executor = journal_executor(work_dir)
    adopted = {r.job_id: r for r in await executor.reconnect()}
    assert set(ids.values()) <= set(adopted)
    records = [adopted[ids[name]] for name in ("first", "second", "arr")]
    async with JobMonitor(executor) as monitor:
        await monitor.wait_for(*records, timeout=WAIT)
    assert [r.status for r in records] == [JobStatus.DONE] * 3
    assert Path(work_dir, "order").read_text().splitlines() == ["first", "second"]
    assert sorted(Path(work_dir, "elements").read_text().split()) == ["1", "2", "3"]


@integration
def test_cli_submit_of_a_throttled_array_returns_at_once(tmp_path: Path) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "cluster_api.yaml").write_text(f"executor: local\nlog_directory: {project}/logs\n")
    env = {k: v for k, v in os.environ.items() if k != "CLUSTER_API_CONFIG"}
    argv = [sys.executable, "-m", "cluster_api", "submit", "--name", "arr", "--array", "1-3"]
    argv += ["--max-concurrent", "1", "--", 'sleep 2; echo "$ARRAY_INDEX" > "done.$ARRAY_INDEX"']
    started = time.monotonic()
    result = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True, timeout=60)
    elapsed = time.monotonic() - started
    assert result.returncode == 0, result
    assert elapsed < 3.5  # it used to wait until the last element started: 4 s and more
    # the elements still run, one after the other, once the CLI has gone
    wait_until(lambda: all((project / f"done.{i}").exists() for i in (1, 2, 3)), 30)


@integration
def test_a_job_submitted_in_one_event_loop_is_followed_in_the_next(work_dir: str) -> None:
    """A program may ``asyncio.run`` its submissions and then its waiting."""
    executor = journal_executor(work_dir)
    record = asyncio.run(
        executor.submit("sleep 0.3", "two-loops", resources=Res(work_dir=work_dir))
    )

    async def follow() -> None:
        async with JobMonitor(executor) as monitor:
            await monitor.wait_for(record, timeout=WAIT)

    asyncio.run(follow())
    assert (record.status, record.exit_code) == (JobStatus.DONE, 0)


# -- cancel (#11.8 local part, API.md) -----------------------------------------------------


@integration
async def test_a_job_that_ended_before_the_cancel_keeps_its_failure(work_dir: str) -> None:
    executor = journal_executor(work_dir)
    record = await executor.submit("sleep 0.5; exit 3", "quits", resources=Res(work_dir=work_dir))
    assert record.script_path is not None
    exit_file = Path(record.script_path[: -len(".sh")] + ".exit")
    deadline = time.monotonic() + WAIT
    while "pid" not in record.metadata:  # its process has started
        assert time.monotonic() < deadline
        await executor.wait_for_change(0.05)
    wait_until(exit_file.exists)  # it ends by itself while the event loop is blocked
    time.sleep(0.1)
    await executor.cancel(record.job_id)
    await until_terminal(executor, record)
    assert (record.status, record.exit_code) == (JobStatus.FAILED, 3)


@integration
async def test_a_fresh_executor_cancels_a_job_it_never_saw(tmp_path: Path, work_dir: str) -> None:
    plan = [["arr", "array", "sleep 60 & echo $! > child.$ARRAY_INDEX; wait", [1, 2, None]]]
    job_id = submit_elsewhere(tmp_path, work_dir, plan)["arr"]
    children = [Path(work_dir, f"child.{i}") for i in (1, 2)]
    wait_until(lambda: all(c.exists() and c.read_text().strip() for c in children))
    pids = [int(job_id), *(int(c.read_text()) for c in children)]
    assert all(alive(pid) for pid in pids)

    fresh = LocalExecutor(ClusterConfig(log_directory=str(tmp_path / "elsewhere")))
    await fresh.cancel(job_id)
    assert [pid for pid in pids if alive(pid)] == []  # gone by the time cancel returned


@integration
async def test_a_job_tracked_by_its_pid_alone_is_followed_and_cancelled(
    tmp_path: Path, work_dir: str
) -> None:
    job_id = submit_elsewhere(tmp_path, work_dir, [["sleeper", "plain", "sleep 60", None]])[
        "sleeper"
    ]
    fresh = LocalExecutor(ClusterConfig(log_directory=str(tmp_path / "elsewhere")))
    record = fresh.track(job_id)
    deadline = time.monotonic() + WAIT
    while record.status is not JobStatus.RUNNING:
        assert time.monotonic() < deadline, record.status
        await fresh.poll()
        await fresh.wait_for_change(0.05)
    await fresh.cancel(job_id)
    assert (record.status, record.exit_code) == (JobStatus.KILLED, 143)


@integration
async def test_cancel_refuses_a_pid_that_is_not_a_local_job(work_dir: str) -> None:
    stranger = subprocess.Popen(["sleep", "30"], start_new_session=True)
    try:
        executor = LocalExecutor(ClusterConfig(log_directory=work_dir))
        with pytest.raises(ClusterAPIError, match=str(stranger.pid)):
            await executor.cancel(str(stranger.pid))
        time.sleep(0.1)
        assert stranger.poll() is None  # no signal was sent
    finally:
        stranger.kill()
        stranger.wait()


# -- dependencies (API.md) -----------------------------------------------------------------


@integration
async def test_dependant_of_a_failed_job_is_killed_without_a_monitor(work_dir: str) -> None:
    executor = journal_executor(work_dir)
    res = Res(work_dir=work_dir)
    failing = await executor.submit("exit 1", "failing", resources=res)
    dependant = await executor.submit("touch ran", "dependant", resources=res, depends_on=failing)
    await until_terminal(executor, failing, dependant)
    assert dependant.status is JobStatus.KILLED
    assert dependant.metadata["dependency_failed"] == [failing.job_id]
    assert not Path(work_dir, "ran").exists()


# -- the slot cap (#16.9) ------------------------------------------------------------------


@integration
async def test_max_concurrent_above_the_cap_is_warned_about(
    work_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    executor = journal_executor(work_dir, local_max_running=2)
    with caplog.at_level(logging.WARNING, logger="cluster_api"):
        array = await executor.submit_array(
            "true", "wide", (1, 3), resources=Res(work_dir=work_dir), max_concurrent=5
        )
    assert "local_max_running=2" in caplog.text and "max_concurrent=5" in caplog.text
    await until_terminal(executor, array)


@integration
async def test_the_cap_holds_across_executors_sharing_a_log_directory(work_dir: str) -> None:
    command = 'date +%s.%N > "start.$ARRAY_INDEX"; sleep 0.4; date +%s.%N > "end.$ARRAY_INDEX"'
    arrays = []
    for offset in (0, 10):
        executor = journal_executor(work_dir, local_max_running=2)
        arrays.append(
            (
                executor,
                await executor.submit_array(
                    command,
                    f"a{offset}",
                    (offset + 1, offset + 3),
                    resources=Res(work_dir=work_dir),
                ),
            )
        )
    for executor, array in arrays:
        await until_terminal(executor, array)
    events = []
    for index in (1, 2, 3, 11, 12, 13):
        events.append((float(Path(work_dir, f"start.{index}").read_text()), 1))
        events.append((float(Path(work_dir, f"end.{index}").read_text()), -1))
    running = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    assert peak == 2


def test_local_max_running_is_checked_when_loaded(tmp_path: Path) -> None:
    from cluster_api import load_config

    assert ClusterConfig(local_max_running=3).local_max_running == 3
    assert ClusterConfig().local_max_running is None
    for bad in (0, -1, 2.5, True, "8"):
        with pytest.raises(ValueError, match="local_max_running"):
            ClusterConfig(local_max_running=bad)  # type: ignore[arg-type]
    path = tmp_path / "c.yaml"
    path.write_text("local_max_running: 0\n")
    with pytest.raises(ValueError, match=f"{path}.*local_max_running"):
        load_config(path)


# -- plain data: the supervisor's records --------------------------------------------------


@pytest.mark.parametrize(
    ("code", "signalled", "as_done", "timed_out", "expected"),
    [
        (0, False, False, False, "done"),
        (3, False, False, False, "failed"),
        (143, False, False, False, "failed"),  # exit 143 by itself is no kill
        (143, True, False, False, "killed"),
        (143, True, True, False, "done"),
        (0, True, False, False, "done"),  # finished despite the signal
        (137, False, False, True, "failed"),
    ],
)
def test_verdict_follows_what_happened_to_the_process(
    code: int, signalled: bool, as_done: bool, timed_out: bool, expected: str
) -> None:
    from cluster_api.executors.local_supervisor import verdict

    assert verdict(code, signalled, as_done, timed_out) == expected


def test_events_are_read_line_by_line_skipping_a_torn_or_odd_line(tmp_path: Path) -> None:
    from cluster_api.executors.local_supervisor import read_events

    path = tmp_path / "job.events"
    path.write_bytes(b'{"event": "start"}\n{"ev\n[1, 2]\n{"event": "end"}\n{"event": "fin')
    events, offset = read_events(str(path))
    assert events == [{"event": "start"}, {"event": "end"}]
    assert offset == path.read_bytes().rindex(b"\n") + 1
    with path.open("ab") as handle:
        handle.write(b'ished"}\n')
    assert read_events(str(path), offset)[0] == [{"event": "finished"}]


@integration
async def test_a_local_array_is_polled_without_odd_record_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The local executor reports its arrays through their elements, as a scheduler does:
    the quick start's array once logged a warning about a record without an index."""
    executor = LocalExecutor(ClusterConfig(log_directory=str(tmp_path), poll_interval=0.2))
    array = await executor.submit_array(
        "true", "quiet", (1, 3), resources=Res(work_dir=str(tmp_path))
    )
    with caplog.at_level(logging.WARNING, logger="cluster_api"):
        async with JobMonitor(executor) as monitor:
            await monitor.wait_for(array, timeout=30)
    assert array.status is JobStatus.DONE
    assert not [r for r in caplog.records if "element index" in r.getMessage()]
