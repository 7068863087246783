"""LocalExecutor with real bash processes: every job here is a short shell command."""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from cluster_api import (
    ClusterConfig,
    JobMonitor,
    JobRecord,
    JobStatus,
    LocalExecutor,
    ResourceSpec,
)

pytestmark = pytest.mark.integration  # every test here starts processes

WAIT = 10.0  # generous upper bound for a few short processes


@pytest.fixture
async def monitor(local: LocalExecutor) -> AsyncIterator[JobMonitor]:
    mon = JobMonitor(local, poll_interval=0.05)
    try:
        yield mon
    finally:
        # never leave a background job behind, whatever the test did
        await local.cancel_all()
        await stop_monitor(mon)


async def stop_monitor(mon: JobMonitor) -> None:
    """``mon.stop()``, bounded: a stop() that hangs (see test_monitor's
    test_stop_returns_promptly_when_a_change_coincides) must not hang this file too."""
    stopper = asyncio.ensure_future(mon.stop())
    done, _ = await asyncio.wait({stopper}, timeout=2)
    if not done:
        stopper.cancel()  # cancels the monitor task it awaits; stop() then returns
        with contextlib.suppress(asyncio.CancelledError):
            await stopper


def res(work_dir: str, **kwargs: object) -> ResourceSpec:
    return ResourceSpec(work_dir=work_dir, **kwargs)  # type: ignore[arg-type]


def read(path: str | Path) -> str:
    return Path(path).read_text()


async def eventually(predicate, timeout: float = 5.0) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(0.02)
    return bool(predicate())


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes whose process group is ``pgid``."""
    members = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # fields after the ")" that closes the command name: state ppid pgrp ...
        fields = stat.rsplit(")", 1)[1].split()
        if int(fields[2]) == pgid and fields[0] != "Z":
            members.append(int(entry))
    return members


# -- submit and wait ---------------------------------------------------------------------


async def test_successful_job_ends_done_with_exit_code_zero(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    record = await local.submit("true", "ok", resources=res(work_dir))
    assert isinstance(record, JobRecord)
    assert record.job_id in local.jobs
    await monitor.wait_for(record, timeout=WAIT)
    assert record.status is JobStatus.DONE
    assert record.exit_code == 0
    assert record.start_time is not None and record.finish_time is not None
    assert record.finish_time >= record.start_time
    assert record.finish_time.tzinfo is not None


async def test_failing_job_ends_failed_and_keeps_exit_code(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    record = await local.submit("exit 3", "bad", resources=res(work_dir))
    await monitor.wait_for(record, timeout=WAIT)
    assert record.status is JobStatus.FAILED
    assert record.exit_code == 3


async def test_script_is_written_in_work_dir_with_prefixed_name(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    record = await local.submit("true", "my job", resources=res(work_dir))
    assert record.name == "capi-my-job"
    assert record.script_path is not None
    assert os.path.dirname(record.script_path) == work_dir
    assert os.path.basename(record.script_path).startswith("capi-my-job.")
    assert record.script_path.endswith(".sh")
    assert read(record.script_path).startswith("#!/bin/bash\n")
    await monitor.wait_for(record, timeout=WAIT)


async def test_stdout_and_stderr_go_to_job_id_logs_in_work_dir(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    record = await local.submit("echo to-out; echo to-err >&2", "logs", resources=res(work_dir))
    await monitor.wait_for(record, timeout=WAIT)
    out = Path(work_dir, f"stdout.{record.job_id}.log")
    err = Path(work_dir, f"stderr.{record.job_id}.log")
    assert out.read_text() == "to-out\n"
    assert err.read_text() == "to-err\n"


async def test_job_runs_in_its_work_dir(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    record = await local.submit("pwd", "cwd", resources=res(work_dir))
    await monitor.wait_for(record, timeout=WAIT)
    assert read(Path(work_dir, f"stdout.{record.job_id}.log")).strip() == os.path.realpath(work_dir)


async def test_explicit_stdout_path_is_honoured(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    target = os.path.join(work_dir, "custom.out")
    record = await local.submit(
        "echo custom", "custom", resources=res(work_dir, stdout_path=target)
    )
    await monitor.wait_for(record, timeout=WAIT)
    assert read(target) == "custom\n"
    assert not Path(work_dir, f"stdout.{record.job_id}.log").exists()


# -- environment -------------------------------------------------------------------------


async def test_env_values_are_passed_literally(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    tricky = "$HOME `echo injected` \"dq\" 'sq' ; && |"
    record = await local.submit(
        'printf "%s\\n" "$PLAIN" "$TRICKY"',
        "env",
        resources=res(work_dir),
        env={"PLAIN": "hello world", "TRICKY": tricky},
    )
    await monitor.wait_for(record, timeout=WAIT)
    assert record.status is JobStatus.DONE
    lines = read(Path(work_dir, f"stdout.{record.job_id}.log")).splitlines()
    assert lines == ["hello world", tricky]


async def test_parent_environment_inherited_by_default(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPI_TEST_SECRET", "visible")
    record = await local.submit(
        'echo "secret=${CAPI_TEST_SECRET:-unset}"', "inherit", resources=res(work_dir)
    )
    await monitor.wait_for(record, timeout=WAIT)
    assert read(Path(work_dir, f"stdout.{record.job_id}.log")) == "secret=visible\n"


async def test_inherit_env_false_hides_parent_variable_but_keeps_given_env(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAPI_TEST_SECRET", "leaked")
    record = await local.submit(
        'echo "secret=${CAPI_TEST_SECRET:-unset} given=$GIVEN"; command -v bash >/dev/null',
        "noinherit",
        resources=res(work_dir),
        env={"GIVEN": "yes"},
        inherit_env=False,
    )
    await monitor.wait_for(record, timeout=WAIT)
    assert record.status is JobStatus.DONE  # PATH still usable
    assert read(Path(work_dir, f"stdout.{record.job_id}.log")) == "secret=unset given=yes\n"


async def test_prologue_and_epilogue_wrap_the_command_and_keep_its_exit_code(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    record = await local.submit(
        "echo main; bash -c 'exit 4'",
        "wrapped",
        resources=res(work_dir),
        prologue=["echo pro1", "echo pro2"],
        epilogue=["echo epi"],
    )
    await monitor.wait_for(record, timeout=WAIT)
    assert read(Path(work_dir, f"stdout.{record.job_id}.log")).splitlines() == [
        "pro1",
        "pro2",
        "main",
        "epi",
    ]
    assert record.status is JobStatus.FAILED
    assert record.exit_code == 4


async def test_config_prologue_runs_before_job_prologue(work_dir: str) -> None:
    executor = LocalExecutor(
        ClusterConfig(
            script_prologue=["echo site-pro"],
            script_epilogue=["echo site-epi"],
            poll_interval=0.05,
        )
    )
    mon = JobMonitor(executor)
    try:
        record = await executor.submit(
            "echo main",
            "site",
            resources=res(work_dir),
            prologue=["echo job-pro"],
            epilogue=["echo job-epi"],
        )
        await mon.wait_for(record, timeout=WAIT)
    finally:
        await stop_monitor(mon)
    assert read(Path(work_dir, f"stdout.{record.job_id}.log")).splitlines() == [
        "site-pro",
        "job-pro",
        "main",
        "job-epi",
        "site-epi",
    ]
    assert record.status is JobStatus.DONE


# -- arrays ------------------------------------------------------------------------------


async def test_array_elements_get_index_variables_and_own_logs(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    record = await local.submit_array(
        'echo "$ARRAY_INDEX $LSB_JOBINDEX"', "arr", (1, 3), resources=res(work_dir)
    )
    assert record.is_array
    assert record.element_count == 3
    assert record.metadata["array_range"] == (1, 3)
    await monitor.wait_for(record, timeout=WAIT)
    assert record.status is JobStatus.DONE
    assert record.exit_code == 0
    assert record.completed_elements == 3
    assert record.failed_element_indices == []
    for index in (1, 2, 3):
        log = Path(work_dir, f"stdout.{record.job_id}.{index}.log")
        assert log.read_text() == f"{index} {index}\n"
        assert record.array_elements[index].status is JobStatus.DONE
        assert record.array_elements[index].exit_code == 0


async def test_array_with_a_failing_element_fails_the_parent(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    record = await local.submit_array(
        'if [ "$ARRAY_INDEX" = 2 ]; then exit 5; fi', "arrfail", (1, 3), resources=res(work_dir)
    )
    await monitor.wait_for(record, timeout=WAIT)
    assert record.status is JobStatus.FAILED
    assert record.failed_element_indices == [2]
    assert record.array_elements[2].exit_code == 5
    assert record.array_elements[1].status is JobStatus.DONE
    assert record.array_elements[3].status is JobStatus.DONE
    assert record.exit_code == 5


async def test_array_max_concurrent_is_honoured(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    command = 'date +%s.%N > "start.$ARRAY_INDEX"; sleep 0.3; date +%s.%N > "end.$ARRAY_INDEX"'
    record = await local.submit_array(
        command, "limited", (1, 6), resources=res(work_dir), max_concurrent=2
    )
    assert record.metadata["max_concurrent"] == 2
    await monitor.wait_for(record, timeout=WAIT)
    assert record.status is JobStatus.DONE
    events = []
    for index in range(1, 7):
        events.append((float(read(Path(work_dir, f"start.{index}"))), 1))
        events.append((float(read(Path(work_dir, f"end.{index}"))), -1))
    running = peak = 0
    for _, delta in sorted(events, key=lambda e: (e[0], e[1])):
        running += delta
        peak = max(peak, running)
    assert peak <= 2
    assert peak == 2  # the limit is a limit, not serialisation


# -- cancellation ------------------------------------------------------------------------


async def test_cancel_kills_the_whole_process_tree(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    record = await local.submit(
        "sleep 60 & echo $! > child.pid; wait", "tree", resources=res(work_dir)
    )
    pid_file = Path(work_dir, "child.pid")
    assert await eventually(lambda: pid_file.exists() and pid_file.read_text().strip() != "")
    child = int(pid_file.read_text())
    pgid = os.getpgid(child)
    assert pgid != os.getpgid(0)  # the job runs in its own process group
    assert child in group_members(pgid)

    await local.cancel(record.job_id)
    await monitor.wait_for(record, timeout=WAIT)
    assert record.status is JobStatus.KILLED
    assert await eventually(lambda: group_members(pgid) == [], timeout=4.0), group_members(pgid)


async def test_cancel_of_job_waiting_on_dependency(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    blocker = await local.submit("sleep 60", "blocker", resources=res(work_dir))
    waiting = await local.submit(
        "touch ran", "waiting", resources=res(work_dir), depends_on=[blocker]
    )
    await asyncio.sleep(0.1)
    assert waiting.status is JobStatus.PENDING
    await local.cancel(waiting.job_id)
    await monitor.wait_for(waiting, timeout=WAIT)
    assert waiting.status is JobStatus.KILLED
    assert not blocker.is_terminal  # only the one asked for
    await local.cancel(blocker.job_id)
    await monitor.wait_for(blocker, timeout=WAIT)
    assert blocker.status is JobStatus.KILLED
    assert not Path(work_dir, "ran").exists()


async def test_cancel_by_name_cancels_only_matching_jobs(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    a1 = await local.submit("sleep 60", "alpha-1", resources=res(work_dir))
    a2 = await local.submit("sleep 60", "alpha-2", resources=res(work_dir))
    b1 = await local.submit("sleep 60", "beta-1", resources=res(work_dir))
    assert await eventually(lambda: all(r.status is JobStatus.RUNNING for r in (a1, a2, b1)))
    await local.cancel_by_name("alpha-*")
    await monitor.wait_for(a1, a2, timeout=WAIT)
    assert a1.status is JobStatus.KILLED
    assert a2.status is JobStatus.KILLED
    await asyncio.sleep(0.1)
    assert b1.status is JobStatus.RUNNING
    await local.cancel(b1.job_id)
    await monitor.wait_for(b1, timeout=WAIT)


async def test_cancel_all_cancels_every_active_job(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    done = await local.submit("true", "quick", resources=res(work_dir))
    await monitor.wait_for(done, timeout=WAIT)
    records = [await local.submit("sleep 60", f"s{i}", resources=res(work_dir)) for i in range(3)]
    assert await eventually(lambda: all(r.status is JobStatus.RUNNING for r in records))
    await local.cancel_all()
    await monitor.wait_for(*records, timeout=WAIT)
    assert [r.status for r in records] == [JobStatus.KILLED] * 3
    assert all(r.exit_code != 0 for r in records)
    assert done.status is JobStatus.DONE  # a finished job is left as it was
    assert local.active_jobs == {}


async def test_cancelled_array_ends_killed_even_if_polled_before_reaping(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    """The elements' scripts leave exit files as they die; a poll that reads them before
    the event loop has reaped the processes must still see a kill, not a success."""
    array = await local.submit_array("sleep 60", "carr", (1, 3), resources=res(work_dir))
    assert await eventually(
        lambda: all(e.status is JobStatus.RUNNING for e in array.array_elements.values())
    )
    await asyncio.sleep(0.1)  # the processes are up
    await local.cancel(array.job_id)
    time.sleep(0.5)  # a busy event loop: the elements die (and trap EXIT) unobserved
    await local.poll()
    await monitor.wait_for(array, timeout=WAIT)
    assert array.status is JobStatus.KILLED
    statuses = {i: e.status for i, e in array.array_elements.items()}
    assert statuses == dict.fromkeys((1, 2, 3), JobStatus.KILLED)
    assert all(e.exit_code != 0 for e in array.array_elements.values())


async def test_cancel_with_done_records_job_as_done(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    record = await local.submit("sleep 60", "asdone", resources=res(work_dir))
    assert await eventually(lambda: record.status is JobStatus.RUNNING)
    await local.cancel(record.job_id, done=True)
    await monitor.wait_for(record, timeout=WAIT)
    assert record.status is JobStatus.DONE


# -- dependencies ------------------------------------------------------------------------


async def test_dependant_runs_after_its_dependency(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    first = await local.submit("sleep 0.3; echo first >> order", "first", resources=res(work_dir))
    second = await local.submit(
        "echo second >> order", "second", resources=res(work_dir), depends_on=first
    )
    assert second.depends_on == [first.job_id]
    await monitor.wait_for(first, second, timeout=WAIT)
    assert first.status is JobStatus.DONE
    assert second.status is JobStatus.DONE
    assert read(Path(work_dir, "order")).splitlines() == ["first", "second"]
    assert second.start_time is not None and first.finish_time is not None
    assert second.start_time >= first.finish_time


async def test_dependant_waits_for_all_dependencies_given_as_ids(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    a = await local.submit("sleep 0.2; echo a >> order", "a", resources=res(work_dir))
    b = await local.submit("sleep 0.4; echo b >> order", "b", resources=res(work_dir))
    c = await local.submit(
        "echo c >> order", "c", resources=res(work_dir), depends_on=[a.job_id, b.job_id]
    )
    await monitor.wait_for(c, timeout=WAIT)
    assert c.status is JobStatus.DONE
    assert read(Path(work_dir, "order")).splitlines() == ["a", "b", "c"]


async def test_failed_dependency_fails_dependant_without_running_it(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    failing = await local.submit("exit 1", "failing", resources=res(work_dir))
    dependant = await local.submit(
        "touch ran", "dependant", resources=res(work_dir), depends_on=[failing]
    )
    calls: list[str] = []
    dependant.on_exit(lambda r: calls.append(r.job_id))
    await monitor.wait_for(failing, dependant, timeout=WAIT)
    assert failing.status is JobStatus.FAILED
    # Whether its supervisor or poll() sees it first, it ends KILLED naming the culprit.
    assert dependant.status is JobStatus.KILLED
    assert dependant.metadata["dependency_failed"] == [failing.job_id]
    assert calls == [dependant.job_id]
    assert not Path(work_dir, "ran").exists()


async def test_unknown_local_dependency_is_refused(local: LocalExecutor, work_dir: str) -> None:
    with pytest.raises(ValueError):
        await local.submit("true", "orphan", resources=res(work_dir), depends_on=["999999"])
    assert local.jobs == {}


# -- timing ------------------------------------------------------------------------------


async def test_completion_noticed_without_waiting_a_poll_interval(
    local: LocalExecutor, work_dir: str
) -> None:
    mon = JobMonitor(local, poll_interval=30)
    await mon.start()
    try:
        await asyncio.sleep(0.1)  # the monitor is now asleep for its 30 s interval
        record = await local.submit("sleep 0.2", "prompt", resources=res(work_dir))
        fired: list[str] = []
        record.on_success(lambda r: fired.append(r.job_id))
        started = time.monotonic()
        await mon.wait_for(record, timeout=5)
        elapsed = time.monotonic() - started
    finally:
        await stop_monitor(mon)
    assert record.status is JobStatus.DONE
    assert fired == [record.job_id]
    assert elapsed < 1.5


async def test_walltime_is_enforced(
    local: LocalExecutor, monitor: JobMonitor, work_dir: str
) -> None:
    record = await local.submit("sleep 30", "slow", resources=res(work_dir, walltime="00:00:01"))
    started = time.monotonic()
    await monitor.wait_for(record, timeout=WAIT)
    assert time.monotonic() - started < 5
    assert record.status is JobStatus.FAILED
    assert record.exit_code not in (None, 0)


async def test_many_jobs_at_once(local: LocalExecutor, monitor: JobMonitor, work_dir: str) -> None:
    records = await asyncio.gather(
        *(local.submit(f"echo job-{i}", f"many-{i}", resources=res(work_dir)) for i in range(50))
    )
    assert len({r.job_id for r in records}) == 50
    assert len({r.script_path for r in records}) == 50
    finished: list[str] = []
    for r in records:
        r.on_exit(lambda rec: finished.append(rec.job_id))
    await monitor.wait_for(*records, timeout=WAIT)
    assert all(r.status is JobStatus.DONE for r in records)
    assert sorted(finished) == sorted(r.job_id for r in records)
    for i, r in enumerate(records):
        assert read(Path(work_dir, f"stdout.{r.job_id}.log")) == f"job-{i}\n"
