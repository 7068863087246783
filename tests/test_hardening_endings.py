"""Never lie about how a job ended (issue #11 items 8-10 and API.md's cancel contract).

Unit tests: scheduler answers are plain text (real LSF wording, recorded Slurm 22.05
output in ``tests/data/slurm``) handed back through a patched ``Executor._call``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import bjobs_json, bjobs_record
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from cluster_api import (
    ClusterConfig,
    CommandFailedError,
    JobExitCondition,
    JobMonitor,
    JobRecord,
    JobStatus,
    LSFExecutor,
)
from cluster_api.errors import ClusterAPIError
from cluster_api.executors.slurm import SlurmExecutor
from cluster_api.executors.slurm_formats import parse_slurm_time
from cluster_api.script import exit_file_path
from cluster_api.testing.fake import FakeRunner

DATA = Path(__file__).parent / "data" / "slurm"


def fake_scheduler() -> FakeRunner:
    """bsub and sbatch hand out ids; every other command prints nothing until scripted."""
    ids = iter(range(102, 1_000_000))
    runner = FakeRunner()
    runner.on("bsub", lambda argv: f"Job <{next(ids)}> is submitted to queue <normal>.\n")
    runner.on("sbatch", lambda argv: f"{next(ids)}\n")
    for program in ("bjobs", "bkill", "bhist", "squeue", "sacct", "scancel"):
        runner.on(program, "")
    return runner


@pytest.fixture
def new_york(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A zone west of UTC, where 9999-12-31 local time is past what a datetime holds."""
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def scheduler(work_dir: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeRunner]:
    monkeypatch.chdir(work_dir)
    with fake_scheduler().patch() as fake:
        yield fake


def lsf(work_dir: str) -> LSFExecutor:
    return LSFExecutor(ClusterConfig(executor="lsf", log_directory=work_dir))


def slurm(work_dir: str) -> SlurmExecutor:
    return SlurmExecutor(ClusterConfig(executor="slurm", log_directory=work_dir))


def bkill_answer(accepted: list[str], finished: list[str]) -> Callable[[list[str]], str]:
    """bkill as LSF answers: one line per job, refusals on stderr and exit 255."""

    def answer(argv: list[str]) -> str:
        ids = [word for word in argv[1:] if not word.startswith("-")]
        out = "".join(f"Job <{i}> is being terminated\n" for i in ids if i in accepted)
        err = "".join(f"Job <{i}>: Job has already finished\n" for i in ids if i in finished)
        if err:
            raise CommandFailedError(
                f"bkill exited 255: {err.strip()}", stdout=out, returncode=255, stderr=err.strip()
            )
        return out

    return answer


def write_exit_file(record: JobRecord, code: int, index: int | None = None) -> None:
    assert record.script_path is not None
    Path(exit_file_path(record.script_path, index)).write_text(f"{code}\n")


# -- item 8: a cancel relabels only what the scheduler killed ----------------------------
async def test_job_that_exited_before_its_cancel_keeps_its_exit(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = lsf(work_dir)
    record = executor.track("101", JobStatus.RUNNING)
    scheduler.on("bkill", bkill_answer([], ["101"]))
    await executor.cancel("101")
    assert record.status is JobStatus.RUNNING  # LSF said it had already finished
    scheduler.on("bjobs", bjobs_json(bjobs_record("101", "EXIT", exit_code="3")))
    await executor.poll()
    assert (record.status, record.exit_code) == (JobStatus.FAILED, 3)


async def test_cancel_all_kills_only_the_jobs_bkill_accepted(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = lsf(work_dir)
    ids = [str(101 + i) for i in range(6)]
    records = {job_id: executor.track(job_id, JobStatus.RUNNING) for job_id in ids}
    running, exited = ids[:3], ids[3:]
    scheduler.on("bkill", bkill_answer(running, exited))
    await executor.cancel_all()
    # Accepted: KILLED as soon as cancel_all returns; the others wait for the next poll.
    assert [records[i].status for i in running] == [JobStatus.KILLED] * 3
    assert [records[i].status for i in exited] == [JobStatus.RUNNING] * 3
    scheduler.on(
        "bjobs",
        bjobs_json(
            *(bjobs_record(i, "EXIT", exit_code="130", exit_reason="TERM_OWNER") for i in running),
            *(bjobs_record(i, "EXIT", exit_code="3") for i in exited),
        ),
    )
    await executor.poll()
    assert [(records[i].status, records[i].exit_code) for i in ids] == [
        (JobStatus.KILLED, 130)
    ] * 3 + [(JobStatus.FAILED, 3)] * 3


async def test_accepted_kill_gets_its_details_from_the_next_poll_and_one_callback(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = lsf(work_dir)
    record = executor.track("101", JobStatus.RUNNING)
    ends: list[JobStatus] = []
    record.on_exit(lambda r: ends.append(r.status), JobExitCondition.KILLED)
    scheduler.on("bkill", bkill_answer(["101"], []))
    await executor.cancel("101")
    assert record.status is JobStatus.KILLED and record.finish_time is not None
    # Signals still in flight: bjobs shows it running; the record stays KILLED.
    scheduler.on("bjobs", bjobs_json(bjobs_record("101", "RUN")))
    monitor = JobMonitor(executor, poll_interval=0.01)
    await monitor.run_cycle()
    await asyncio.sleep(0)  # one turn of the loop: the callback task it spawned runs
    assert record.status is JobStatus.KILLED and ends == [JobStatus.KILLED]
    scheduler.on(
        "bjobs",
        bjobs_json(bjobs_record("101", "EXIT", exit_code="137", finish_time="Nov 22 10:40")),
    )
    await monitor.run_cycle()
    assert (record.status, record.exit_code) == (JobStatus.KILLED, 137)
    assert record.finish_time is not None and record.finish_time.minute == 40
    await monitor.run_cycle()  # told: not asked about again
    assert len(scheduler.argvs("bjobs")) == 2
    await monitor.stop()
    assert ends == [JobStatus.KILLED]


@pytest.mark.parametrize(("done", "status"), [(False, JobStatus.KILLED), (True, JobStatus.DONE)])
async def test_lsf_cancel_done_records_done(
    scheduler: FakeRunner, work_dir: str, done: bool, status: JobStatus
) -> None:
    executor = lsf(work_dir)
    record = executor.track("101")
    scheduler.on("bkill", bkill_answer(["101"], []))
    await executor.cancel("101", done=done)
    assert record.status is status


async def test_cancel_by_name_kills_the_jobs_bkill_named(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = lsf(work_dir)
    first = await executor.submit("sleep 9", "align-1")
    second = await executor.submit("sleep 9", "align-2")
    other = await executor.submit("sleep 9", "sort-1")
    scheduler.on("bkill", f"Job <{first.job_id}> is being terminated\n")
    await executor.cancel_by_name("align*")
    assert scheduler.argvs("bkill") == [["bkill", "-J", "capi-align*", "0"]]
    assert (first.status, second.status, other.status) == (
        JobStatus.KILLED,
        JobStatus.PENDING,
        JobStatus.PENDING,
    )


async def test_accepted_kill_of_an_array_ends_its_unfinished_elements(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = lsf(work_dir)
    array = await executor.submit_array("true", "arr", (1, 3))
    scheduler.on(
        "bjobs",
        bjobs_json(
            bjobs_record(array.job_id, "DONE", index="1"),
            bjobs_record(array.job_id, "RUN", index="2"),
            bjobs_record(array.job_id, "PEND", index="3"),
        ),
    )
    await executor.poll()
    scheduler.on("bkill", bkill_answer([array.job_id], []))
    await executor.cancel(array.job_id)
    assert {i: e.status for i, e in array.array_elements.items()} == {
        1: JobStatus.DONE,
        2: JobStatus.KILLED,
        3: JobStatus.KILLED,
    }
    assert array.status is JobStatus.KILLED


async def test_refused_cancel_leaves_the_exit_file_to_tell(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = lsf(work_dir)
    record = await executor.submit("exit 3", "quick")
    scheduler.on("bkill", bkill_answer([], [record.job_id]))
    await executor.cancel(record.job_id)
    write_exit_file(record, 3)
    scheduler.on(
        "bjobs",
        lambda argv: bjobs_json(
            {"JOBID": record.job_id, "ERROR": f"Job <{record.job_id}> is not found"}
        ),
    )
    await executor.poll()
    assert (record.status, record.exit_code) == (JobStatus.FAILED, 3)
    assert record.metadata["resolved_from"] == "exit_file"


def recorded(name: str) -> str:
    return (DATA / name).read_text()


async def test_slurm_cancel_trusts_squeue_not_the_request(
    scheduler: FakeRunner, work_dir: str
) -> None:
    """Recorded on Slurm 22.05.8: scancel prints nothing and exits 0 also for a job that
    had already exited 3 (25); squeue then says CANCELLED only for what it killed."""
    assert recorded("scancel_finished_and_unknown.stderr.txt") == ""
    assert "already completing or completed" in recorded("scancel_v_mixed.stderr.txt")
    executor = slurm(work_dir)
    ids = ("24", "25", "26", "27_1")
    records = {i: executor.track(i, JobStatus.RUNNING) for i in ids}
    scheduler.on("scancel", recorded("scancel_finished_and_unknown.stdout.txt"))
    await executor.cancel_all()
    assert scheduler.argvs("scancel") == [["scancel", "-v", *ids]]
    scheduler.on("squeue", recorded("scancel_after_1s_squeue.txt"))
    await executor.poll()
    assert {i: r.status for i, r in records.items()} == {
        "24": JobStatus.KILLED,
        "25": JobStatus.FAILED,
        "26": JobStatus.KILLED,
        "27_1": JobStatus.KILLED,
    }


async def test_slurm_history_of_a_cancelled_job_is_not_relabelled(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = slurm(work_dir)
    record = executor.track("101", JobStatus.RUNNING)
    await executor.cancel("101")
    scheduler.on("squeue", "")
    scheduler.on(
        "sacct",
        lambda argv: (
            "101|101|FAILED|3:0|localhost||2026-11-23T12:06:16|2026-11-23T12:06:17\n"
            if "-c" in argv
            else CommandFailedError("sacct: Slurm accounting storage is disabled")
        ),
    )
    await executor.poll()
    assert (record.status, record.exit_code) == (JobStatus.FAILED, 3)


# -- item 9: who killed a forgotten job is the history's to say -------------------------
BHIST_ADMIN_KILL = """Job <{job_id}>, Job Name <capi-victim>, User <me>, Project <default>,
                     Command <sleep 100>
Mon Nov 23 10:31:00: Submitted from host <login1>, to Queue <normal>;
Mon Nov 23 10:31:02: Dispatched 1 Task(s) on Host(s) <node01>;
Mon Nov 23 10:31:02: Starting (Pid 4242);
Mon Nov 23 10:35:00: Signal <KILL> requested by user or administrator <admin>;
Mon Nov 23 10:35:01: Exited with exit code 143. The CPU time used is 0.1 seconds;
Mon Nov 23 10:35:01: Completed <exit>; TERM_ADMIN: job killed by root or LSF administrator;
"""


def not_found(job_id: str) -> CommandFailedError:
    text = bjobs_json({"JOBID": job_id, "ERROR": f"Job <{job_id}> is not found"})
    return CommandFailedError("bjobs exited 255", stdout=text, returncode=255)


async def test_job_killed_by_an_admin_during_an_outage_ends_killed(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = lsf(work_dir)
    record = await executor.submit("sleep 100", "victim")
    scheduler.on("bjobs", bjobs_json(bjobs_record(record.job_id, "RUN")))
    await executor.poll()
    scheduler.on("bjobs", CommandFailedError("LSF is down. Please wait ..."))
    with pytest.raises(ClusterAPIError):
        await executor.poll_strict()
    write_exit_file(record, 143)  # the admin's kill; then LSF cleaned the job
    scheduler.on("bjobs", not_found(record.job_id))
    scheduler.on("bhist", BHIST_ADMIN_KILL.format(job_id=record.job_id))
    await executor.poll()
    assert (record.status, record.exit_code) == (JobStatus.KILLED, 143)
    assert record.metadata["resolved_from"] == "bhist"
    assert record.metadata["exit_reason"] == "TERM_ADMIN"


async def test_exit_file_settles_what_history_does_not_know(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = lsf(work_dir)
    failed = await executor.submit("exit 143", "failed")
    ok = await executor.submit("true", "ok")
    write_exit_file(failed, 143)
    write_exit_file(ok, 0)
    scheduler.on(
        "bjobs",
        lambda argv: CommandFailedError(
            "bjobs exited 255",
            stdout=bjobs_json(*({"JOBID": i, "ERROR": "not found"} for i in argv if i.isdigit())),
        ),
    )
    scheduler.on("bhist", CommandFailedError("No matching job found"))
    await executor.poll()
    assert (failed.status, failed.exit_code) == (JobStatus.FAILED, 143)
    assert failed.metadata["resolved_from"] == "exit_file"
    assert (ok.status, ok.exit_code) == (JobStatus.DONE, 0)
    # Only the job whose exit file does not say 0 was worth a history query.
    assert [argv[2:] for argv in scheduler.argvs("bhist")] == [[failed.job_id]]


# -- item 10: odd records are skipped, never an ending ----------------------------------
@pytest.mark.parametrize("index", [None, "", "0"])
async def test_record_without_an_index_does_not_end_an_array(
    scheduler: FakeRunner, work_dir: str, index: str | None
) -> None:
    executor = lsf(work_dir)
    array = await executor.submit_array("true", "arr", (1, 3))
    odd = bjobs_record(array.job_id, "DONE")
    if index is None:
        del odd["JOBINDEX"]
    else:
        odd["JOBINDEX"] = index
    scheduler.on(
        "bjobs",
        bjobs_json(
            odd,
            bjobs_record(array.job_id, "DONE", index="1"),
            bjobs_record(array.job_id, "PEND", index="2"),
        ),
    )
    await executor.poll()
    assert array.status is JobStatus.RUNNING
    assert array.array_elements[3].status is JobStatus.PENDING
    scheduler.on("bjobs", bjobs_json(odd))  # nothing but the odd record
    await executor.poll()
    assert not array.is_terminal


async def test_lsf_elements_outside_the_range_do_not_count(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = lsf(work_dir)
    array = await executor.submit_array("true", "arr", (1, 2))
    scheduler.on(
        "bjobs",
        bjobs_json(
            bjobs_record(array.job_id, "DONE", index="1"),
            bjobs_record(array.job_id, "DONE", index="7"),
            bjobs_record(array.job_id, "DONE", index="-1"),
            bjobs_record(array.job_id, "PEND", index="2"),
        ),
    )
    await executor.poll()
    assert sorted(array.array_elements) == [1, 2]
    assert array.status is JobStatus.RUNNING


def squeue_row(shown: str, raw: str, array: str, index: str, state: str, **times: str) -> str:
    submit = times.get("submit", "2026-11-23T12:06:14")
    start = times.get("start", "2026-11-23T12:06:16")
    end = times.get("end", "2026-11-23T12:06:17")
    return f"{shown}|{raw}|{array}|{index}|{state}|None|localhost|{submit}|{start}|{end}|capi-x\n"


async def test_slurm_elements_outside_the_range_do_not_count(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = slurm(work_dir)
    array = await executor.submit_array("true", "arr", (1, 2))
    a = array.job_id
    scheduler.on(
        "squeue",
        squeue_row(f"{a}_1", "201", a, "1", "COMPLETED")
        + squeue_row(f"{a}_9", "202", a, "9", "COMPLETED")
        + squeue_row(f"{a}_2", a, a, "2", "PENDING"),
    )
    await executor.poll()
    assert sorted(array.array_elements) == [1, 2]
    assert array.status is JobStatus.RUNNING


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00", "9999-12-31T23:59:59", "2026-13-45T99:00:00"]
)
async def test_slurm_row_with_an_impossible_time_does_not_stop_the_poll(
    scheduler: FakeRunner, work_dir: str, new_york: None, moment: str
) -> None:
    executor = slurm(work_dir)
    odd, fine = executor.track("101", JobStatus.RUNNING), executor.track("102")
    scheduler.on(
        "squeue",
        squeue_row("101", "101", "101", "N/A", "COMPLETED", submit=moment, start=moment, end=moment)
        + squeue_row("102", "102", "102", "N/A", "RUNNING"),
    )
    await executor.poll()
    assert (odd.status, fine.status) == (JobStatus.DONE, JobStatus.RUNNING)


def test_slurm_time_outside_what_a_datetime_holds_is_unknown(new_york: None) -> None:
    assert parse_slurm_time("0001-01-01T00:00:00") is None
    assert parse_slurm_time("9999-12-31T23:59:59") is None


async def test_slurm_ids_that_only_look_like_digits_are_skipped(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = slurm(work_dir)
    scheduler.on(
        "squeue",
        "²|²|²|N/A|RUNNING|None|localhost|2026-11-23T12:06:14|N/A|N/A|capi-odd\n"
        + squeue_row("31_²", "32", "31", "²", "RUNNING")
        + squeue_row("40", "40", "40", "N/A", "RUNNING"),
    )
    adopted = await executor.reconnect()
    assert sorted(r.job_id for r in adopted) == ["31", "40"]
    assert executor.jobs["31"].array_elements == {}


async def test_lsf_ids_that_only_look_like_digits_are_not_adopted(
    scheduler: FakeRunner, work_dir: str
) -> None:
    executor = lsf(work_dir)
    scheduler.on(
        "bjobs",
        bjobs_json(
            bjobs_record("²", "RUN", name="capi-odd"), bjobs_record("40", "RUN", name="capi-ok")
        ),
    )
    adopted = await executor.reconnect()
    assert [r.job_id for r in adopted] == ["40"]


async def test_odd_records_are_logged(
    scheduler: FakeRunner, work_dir: str, caplog: pytest.LogCaptureFixture
) -> None:
    executor = lsf(work_dir)
    array = await executor.submit_array("true", "arr", (1, 2))
    scheduler.on(
        "bjobs",
        bjobs_json(
            bjobs_record(array.job_id, "DONE"), bjobs_record(array.job_id, "DONE", index="5")
        ),
    )
    with caplog.at_level(logging.WARNING, logger="cluster_api"):
        await executor.poll()
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "without an element index" in messages and "outside its range" in messages


# -- item 10, fuzzed: malformed answers never end an array early, never stop a poll -----
INDICES = st.one_of(
    st.none(),
    st.sampled_from(["", "0", "00", "-1", "²", "٣", " 2", "1e3", "99999999999999999999"]),
    st.integers(min_value=-3, max_value=8).map(str),
    # anything else that keeps a squeue line one line with eleven fields
    st.text(
        st.characters(blacklist_categories=("Cc", "Zl", "Zp"), blacklist_characters="|"), max_size=3
    ),
)
LSF_STATS = st.sampled_from(["PEND", "RUN", "DONE", "EXIT", "ZOMBI", "UNKWN", "", "BOGUS"])
TIMES = st.sampled_from(["", "-", "Nov 22 10:31", "Feb 30 25:61", "Jan  1 00:00 0001", "x"])
RANGE = (1, 4)


def in_range_ends(records: list[dict[str, Any]], job_id: str) -> set[int]:
    """Elements a well-formed record reports ended (what alone may end the array)."""
    ended = set()
    for record in records:
        index = record.get("JOBINDEX")
        if record.get("JOBID") != job_id or not isinstance(index, str) or not index.isascii():
            continue
        in_range = index.strip().isdigit() and RANGE[0] <= int(index) <= RANGE[1]
        if in_range and record.get("STAT") in ("DONE", "EXIT", "ZOMBI"):
            ended.add(int(index))
    return ended


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.fixed_dictionaries(
            {"JOBID": st.sampled_from(["501", "502", "²"]), "STAT": LSF_STATS},
            optional={
                "JOBINDEX": INDICES,
                "EXIT_CODE": st.sampled_from(["", "3", "x", "-9"]),
                "START_TIME": TIMES,
                "FINISH_TIME": TIMES,
                "EXIT_REASON": st.sampled_from(["", "TERM_OWNER", "TERM_RUNLIMIT"]),
            },
        ),
        max_size=10,
    )
)
def test_fuzzed_bjobs_records_never_end_an_array_early(
    work_dir: str, records: list[dict[str, Any]]
) -> None:
    scheduler = fake_scheduler()
    scheduler.on("bjobs", json.dumps({"COMMAND": "bjobs", "RECORDS": records}))
    with scheduler.patch():
        executor = lsf(work_dir)
        array = executor.track("501")
        array.metadata["array_range"] = RANGE
        plain = executor.track("502")
        asyncio.run(executor.poll())
    assert set(array.array_elements) <= set(range(RANGE[0], RANGE[1] + 1))
    if array.is_terminal:
        assert in_range_ends(records, "501") == set(range(RANGE[0], RANGE[1] + 1))
    assert plain.status in JobStatus


SLURM_STATES = st.sampled_from(
    ["PENDING", "RUNNING", "COMPLETED", "FAILED", "CANCELLED by 0", "TIMEOUT", "", "WEIRD"]
)
SLURM_TIMES = st.sampled_from(
    ["N/A", "NONE", "2026-11-23T12:06:14", "0001-01-01T00:00:00", "9999-12-31T23:59:59", "x"]
)
SLURM_IDS = st.sampled_from(["601", "602", "²", "٣", "", "6 01"])


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(
            SLURM_IDS, SLURM_IDS, INDICES.map(lambda i: "N/A" if i is None else i), SLURM_STATES
        ).flatmap(lambda fields: st.tuples(st.just(fields), SLURM_TIMES, SLURM_TIMES, SLURM_TIMES)),
        max_size=10,
    )
)
def test_fuzzed_squeue_rows_never_end_an_array_early(
    work_dir: str, new_york: None, rows: list[Any]
) -> None:
    lines = [
        f"{raw}|{raw}|{array}|{index}|{state}|None|localhost|{submit}|{start}|{end}|capi-x"
        for (raw, array, index, state), submit, start, end in rows
    ]
    scheduler = fake_scheduler()
    scheduler.on("squeue", "\n".join(lines))
    with scheduler.patch():
        executor = slurm(work_dir)
        array = executor.track("601")
        array.metadata["array_range"] = RANGE
        try:
            asyncio.run(executor.poll())
        except ClusterAPIError:  # only an answer with no row at all may fail a poll
            assert not any(
                raw.isascii() and raw.isdigit() and arr.isascii() and arr.isdigit()
                for (raw, arr, _, _), *_ in rows
            )
    assert set(array.array_elements) <= set(range(RANGE[0], RANGE[1] + 1))
    if array.is_terminal:
        ended = {
            int(index)
            for (raw, arr, index, state), *_ in rows
            if arr == "601"
            and raw.isascii()
            and raw.isdigit()
            and index.isascii()
            and index.isdigit()
            and RANGE[0] <= int(index) <= RANGE[1]
            and state.split(" ")[0] in ("COMPLETED", "FAILED", "CANCELLED", "TIMEOUT")
        }
        assert ended == set(range(RANGE[0], RANGE[1] + 1))


def test_an_infinite_job_index_is_skipped_not_a_crash() -> None:
    """bjobs values are strings, but a JSON answer may hold ``Infinity`` (the standard
    library reads it as a float): int() of it overflows, which must not stop a poll."""
    from cluster_api.executors.lsf_formats import query_result_from_records

    record = bjobs_record("101", "PEND")
    record["JOBINDEX"] = float("inf")  # type: ignore[assignment]
    result = query_result_from_records([record, bjobs_record("102", "RUN")])
    assert "101" not in result.jobs and "101" not in result.elements
    assert result.jobs["102"].status is JobStatus.RUNNING
