"""Grid Engine translation (cluster_api.executors.sge) on answers recorded from a real SGE 8.1.9.

The files are in tests/data/sge/ (README.md there says how each was recorded); no fakes, no
processes: every function under test is pure.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster_api import ClusterConfig
from cluster_api.errors import ClusterAPIError, SubmitError
from cluster_api.executors import sge_formats as sge
from cluster_api.executors.sge import SGE
from cluster_api.jobspec import JobSpec
from cluster_api.models import JobRecord, JobStatus, ResourceSpec
from cluster_api.status import QueryResult

DATA = Path(__file__).parent / "data" / "sge"


def read(name: str) -> str:
    return (DATA / name).read_text()


@dataclass
class Run:
    command: str
    stdout: str
    stderr: str
    exit: int


def transcript(name: str) -> list[Run]:
    """The commands of a recorded transcript (``$ cmd``, ``--- stdout``, ``--- stderr``,
    ``--- exit N``)."""
    pattern = re.compile(
        r"^\$ ([^\n]*)\n--- stdout\n(.*?)--- stderr\n(.*?)--- exit (\d+)\n", re.S | re.M
    )
    return [Run(c, o, e, int(x)) for c, o, e, x in pattern.findall(read(name))]


def run_of(name: str, command: str) -> Run:
    return next(run for run in transcript(name) if run.command == command)


def job_spec(**overrides: object) -> JobSpec:
    resources = overrides.pop("resources", None) or ResourceSpec(work_dir="/scratch/run")
    fields: dict[str, object] = dict(
        command="true",
        name="demo-align",
        resources=resources,
        prologue=[],
        epilogue=[],
        env={},
        metadata={},
        inherit_env=True,
        login_shell=False,
        depends_on=[],
    )
    fields.update(overrides)
    return JobSpec(**fields)  # type: ignore[arg-type]


# -- directives --------------------------------------------------------------------------
def test_directive_table_writes_every_resource() -> None:
    resources = ResourceSpec(
        cpus=4,
        memory="8 GB",
        walltime="1:30",
        queue="all.q",
        account="genomics",
        work_dir="/scratch/run 1",
        extra_directives=["-l scratch=10G"],
    )
    spec = job_spec(
        resources=resources,
        array_range=(1, 10),
        max_concurrent=3,
        depends_on=["7", "8"],
        token="demo-align.3",
    )
    assert sge.directives(spec) == [
        "-N demo-align",
        '-o "/scratch/run 1/stdout.$JOB_ID.$TASK_ID.log"',
        '-e "/scratch/run 1/stderr.$JOB_ID.$TASK_ID.log"',
        '-wd "/scratch/run 1"',
        "-S /bin/bash",
        "-t 1-10",
        "-tc 3",
        "-A demo-align.3",
        "-q all.q",
        "-pe smp 4",
        "-l h_rt=1:30:00",
        "-l h_vmem=2048M",  # 8 GB over 4 slots: Grid Engine multiplies per-slot limits
        "-P genomics",
        "-hold_jid 7,8",
        "-h",  # held until the engine has seen both parents end DONE
        "-V",
        "-l scratch=10G",
    ]


def test_plain_job_gets_default_logs_one_slot_and_no_hold() -> None:
    options = sge.directives(job_spec(inherit_env=False), pe="mpi", shell="/bin/zsh")
    assert options == [
        "-N demo-align",
        '-o "/scratch/run/stdout.$JOB_ID.log"',  # quoted or not, $JOB_ID is expanded
        '-e "/scratch/run/stderr.$JOB_ID.log"',
        "-wd /scratch/run",
        "-S /bin/zsh",
    ]


def test_memory_per_slot_rounds_up_and_walltime_keeps_seconds() -> None:
    resources = ResourceSpec(cpus=3, memory="1 GB", walltime="1-00:00:05", work_dir="/w")
    options = sge.directives(job_spec(resources=resources), pe="mpi")
    assert "-pe mpi 3" in options
    assert "-l h_vmem=342M" in options  # 1024 MB / 3 = 341.3, never rounded down
    assert "-l h_rt=24:00:05" in options


def test_user_log_paths_keep_grid_engine_placeholders() -> None:
    resources = ResourceSpec(work_dir="/w", stdout_path="/logs/$JOB_NAME.$TASK_ID.out")
    assert '-o "/logs/$JOB_NAME.$TASK_ID.out"' in sge.directives(job_spec(resources=resources))


@pytest.mark.parametrize(
    ("overrides", "culprit"),
    [
        ({"resources": ResourceSpec(gpus=1, work_dir="/w")}, "ResourceSpec.gpus"),
        # the #$ parser drops quotes: this job would run in "/q/its dir" (lookup_transcript)
        ({"resources": ResourceSpec(work_dir="/q/it's dir")}, "ResourceSpec.work_dir"),
        # $HOME in -wd is expanded at run time (lookup_transcript: "w$HOME" -> "w/root")
        ({"resources": ResourceSpec(work_dir="/q/w$HOME")}, "ResourceSpec.work_dir"),
        ({"resources": ResourceSpec(work_dir="/w", stdout_path='/l/"x".log')}, "stdout_path"),
        ({"resources": ResourceSpec(work_dir="/w", stderr_path="/l/it's")}, "stderr_path"),
        ({"resources": ResourceSpec(work_dir="/w", queue="all q")}, "ResourceSpec.queue"),
        ({"resources": ResourceSpec(work_dir="/w", account="a:b")}, "ResourceSpec.account"),
        ({"name": "1abc"}, "job name"),  # "cannot start with a digit"
        ({"token": "tok with space"}, "job token"),
        ({"array_range": (0, 3)}, "array range"),
        ({"depends_on": ["7; rm"]}, "depends_on"),
    ],
)
def test_values_grid_engine_would_misread_are_refused(
    overrides: dict[str, object], culprit: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(culprit)):
        sge.directives(job_spec(**overrides))


def test_array_index_and_capabilities_are_declared() -> None:
    assert sge.ARRAY_INDEX_VARIABLE == "SGE_TASK_ID"
    assert sge.DIRECTIVE == "#$"


# -- submit ------------------------------------------------------------------------------
def test_submit_argv_puts_terse_on_the_command_line() -> None:
    assert sge.submit_argv("/s/job.1.sh", ["-p", "-5"]) == [
        "qsub",
        "-terse",
        "-p",
        "-5",
        "/s/job.1.sh",
    ]
    assert sge.submit_argv(None) == ["qsub", "-terse"]


def test_submit_answers_give_the_job_number() -> None:
    runs = transcript("qsub_terse.txt")
    accepted = [sge.parse_submit(run.stdout) for run in runs if run.exit == 0]
    assert accepted == ["1", "2", "3", "4"]  # "2.1-3:1" and "3.2-6:2" are arrays 2 and 3
    assert sge.parse_submit('Your job-array 4.2-6:2 ("arr2") has been submitted\n') == "4"


def test_rejected_submissions_raise() -> None:
    for run in transcript("qsub_terse.txt"):
        if run.exit != 0:
            with pytest.raises(SubmitError):
                sge.parse_submit(run.stdout)


def test_transient_failures_are_told_apart_from_rejections() -> None:
    transient = SGE.transient
    assert transient.search("error: commlib error: got select error (Connection refused)")
    assert transient.search('unable to contact qmaster using port 6444 on host "vm"')
    rejections = [run for run in transcript("qsub_terse.txt") if run.exit]
    # the answer to an -A with a space: a rejection, worded like a broken connection
    rejections += [
        run for run in transcript("lookup_transcript.txt") if "answer list" in run.stderr
    ]
    assert len(rejections) == 4
    for run in rejections:
        assert not transient.search(run.stderr)


# -- status ------------------------------------------------------------------------------
def statuses(result: QueryResult) -> dict[str, object]:
    out: dict[str, object] = {k: v.status for k, v in result.jobs.items()}
    for job_id, elements in result.elements.items():
        out[job_id] = {i: o.status for i, o in sorted(elements.items())}
    return out


P, R, F = JobStatus.PENDING, JobStatus.RUNNING, JobStatus.FAILED


@pytest.mark.parametrize(
    ("state", "status"),
    [
        ("qw", P),
        ("hqw", P),
        ("Rq", P),
        ("hRwq", P),  # queued, held, re-queued (exit 99)
        ("r", R),
        ("t", R),
        ("Rr", R),
        ("Rt", R),
        ("dr", R),  # running, deletion asked
        ("s", R),
        ("S", R),
        ("T", R),
        ("dt", R),  # suspended jobs still hold their slots
        ("Eqw", F),
        ("Ehqw", F),
        ("EhRqw", F),  # error states never end by themselves
        ("z", None),
        ("", None),
        ("r w", None),
        ("Ŕ", None),
    ],
)
def test_state_letters(state: str, status: JobStatus | None) -> None:
    assert sge.status_of(state) is status


def test_the_status_command_is_one_whatever_the_ids() -> None:
    active = {str(n): JobRecord(job_id=str(n), name="j", command="true") for n in range(5000)}
    assert SGE(ClusterConfig(executor="sge")).status_command(active).argv == ["qstat", "-xml"]


@pytest.mark.parametrize("name", ["qstat_pending.xml", "qstat_pending_gd.xml"])
def test_pending_jobs_and_array_ranges(name: str) -> None:
    result = sge.parse_status(read(name), {"1", "2", "3", "4", "7"})
    assert statuses(result) == {
        "1": P,
        "4": P,  # script from stdin, "STDIN"
        "7": P,  # hqw: held
        "2": {1: P, 2: P, 3: P},  # 1-3:1
        "3": {2: P, 4: P, 6: P},  # 2-6:2
    }


@pytest.mark.parametrize("name", ["qstat_mixed.xml", "qstat_mixed_gd.xml"])
def test_running_tasks_and_the_rest_of_the_array(name: str) -> None:
    result = sge.parse_status(read(name), {"1", "2", "7"})
    assert statuses(result) == {"1": R, "7": P, "2": {1: R, 2: R, 3: P}}
    running = result.jobs["1"]
    assert running.exec_host == "vm"
    assert running.start_time is not None and running.start_time.tzinfo is not None


def test_expanded_tasks_with_g_d() -> None:
    result = sge.parse_status(read("captures_qstat_running_gd.xml"), {"3", "4", "7"})
    assert statuses(result) == {"7": P, "3": {1: R, 2: R, 3: P}, "4": {2: P, 4: P, 6: P}}


def test_task_list_with_commas() -> None:
    result = sge.parse_status(read("lookup_qstat_array_tc.xml"), {"3"})
    assert statuses(result) == {"3": {1: R, 2: R, 3: P, 4: P}}


def test_error_state_is_failed_with_a_reason_while_still_queued() -> None:
    result = sge.parse_status(read("qstat_eqw.xml"), {"11", "12", "13", "16", "17"})
    # 11 (exit 99 once) is "Rt" here: its rerun is being started
    assert statuses(result) == {"11": R, "12": F, "13": R, "16": P, "17": F}
    for job_id in ("12", "17"):
        reason = result.jobs[job_id].reason or ""
        assert reason.startswith(sge.ERROR_STATE_REASON) and "Eqw" in reason


def test_lookup_asks_for_the_detailed_jobs_of_a_name() -> None:
    command = SGE(ClusterConfig(executor="sge")).lookup_command("cap-x", "tok")
    assert command.argv == ["qstat", "-j", "cap-x", "-xml"]


def test_unwanted_and_ended_jobs_are_absent() -> None:
    assert statuses(sge.parse_status(read("qstat_mixed.xml"), {"2"})) == {"2": {1: R, 2: R, 3: P}}
    empty = sge.parse_status(read("qstat_empty.xml"), {"1"})
    assert not empty.jobs and not empty.elements and not empty.not_found
    assert not sge.parse_status(read("qstat_after_qdel_of_exit100.xml"), {"12", "16"}).seen("12")


def test_queue_in_error_state_is_not_a_job() -> None:
    result = sge.parse_status(read("captures_qstat_queue_error.xml"), {"1", "3"})
    assert statuses(result) == {"1": P, "3": {1: P, 2: P, 3: P}}


def test_unknown_states_are_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="cluster_api"):
        result = sge.parse_status(read("captures_qstat_zombie.xml"), {"1", "2", "3"})
    assert not result.jobs and not result.elements  # "z" only shows with -s z
    assert "skipping an unreadable qstat entry" in caplog.text


def test_unreadable_xml_is_an_error() -> None:
    with pytest.raises(ClusterAPIError, match="qstat -xml"):
        sge.parse_status("<job_info><queue_info>", {"1"})


def test_absurd_task_ranges_are_skipped() -> None:
    text = read("qstat_pending.xml").replace("<tasks>1-3:1</tasks>", "<tasks>1-999999999</tasks>")
    assert "2" not in sge.parse_status(text, {"2"}).elements
    assert sge.task_indices("3,4") == [3, 4] and sge.task_indices("x") == []


# -- history -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "job_id", "status", "exit_code", "reason"),
    [
        ("qacct_exit0.txt", "9", JobStatus.DONE, 0, None),
        ("qacct_exit3.txt", "10", F, 3, None),
        ("qacct_exit99_once.txt", "11", JobStatus.DONE, 0, None),  # the rerun's record
        ("qacct_exit100_while_eqw.txt", "12", F, 100, "error state (Eqw)"),
        ("qacct_walltime.txt", "13", F, 137, "limit exceeded (walltime h_rt or memory h_vmem)"),
        ("qacct_hold_jid_on_exit3.txt", "15", JobStatus.DONE, 0, None),
        ("qacct_bad_wd_while_eqw.txt", "17", F, None, "changing into working directory"),
        ("qacct_qdel_running.txt", "1", F, 137, "killed by signal 9"),
        ("lookup_qacct_h_vmem.txt", "2", F, 137, "limit exceeded"),  # execd killed it
        ("lookup_qacct_h_vmem_segv.txt", "2", F, 139, "killed by signal 11"),  # setrlimit
    ],
)
def test_endings_read_failed_before_exit_status(
    name: str, job_id: str, status: JobStatus, exit_code: int | None, reason: str | None
) -> None:
    result = sge.parse_history(read(name))
    assert set(result.jobs) == {job_id} and not result.elements
    obs = result.jobs[job_id]
    assert (obs.status, obs.exit_code) == (status, exit_code)
    assert (obs.reason is None) if reason is None else (reason in (obs.reason or ""))


def test_a_job_that_never_ran_says_so() -> None:
    obs = sge.parse_history(read("qacct_bad_wd_after_qdel.txt")).jobs["17"]
    assert obs.start_time is None and "(never ran)" in (obs.reason or "")


def test_walltime_record_times() -> None:
    obs = sge.parse_history(read("qacct_walltime.txt")).jobs["13"]
    assert obs.start_time and obs.finish_time and obs.submit_time
    assert obs.finish_time - obs.start_time == timedelta(seconds=5)
    assert obs.exec_host == "vm"


def test_array_tasks_each_end_on_their_own() -> None:
    result = sge.parse_history(read("qacct_array_task2_fails.txt"))
    tasks = result.elements["14"]
    assert {i: (o.status, o.exit_code) for i, o in tasks.items()} == {
        1: (JobStatus.DONE, 0),
        2: (F, 1),
        3: (JobStatus.DONE, 0),
    }


def test_a_requeue_as_last_record_is_no_ending() -> None:
    first_run = read("qacct_exit99_once.txt").split("=" * 62)[1]  # failed 25 : rescheduling
    assert not sge.parse_history("=" * 62 + first_run).seen("11")


def test_not_found_is_reported_not_guessed() -> None:
    for run in transcript("qacct_not_found.txt"):
        result = sge.parse_history(run.stdout, run.stderr)
        assert result.not_found == {run.command.split()[-1]} and not result.jobs
    assert SGE(ClusterConfig(executor="sge")).lookup_history_command("7").argv == [
        "qacct",
        "-j",
        "7",
    ]


def test_one_job_per_qacct_call() -> None:
    # "-j 1,2" answers for job 1 only, a second "-j" replaces the first (lookup_transcript).
    assert set(sge.parse_history(run_of("lookup_transcript.txt", "qacct -j 1,2").stdout).jobs) == {
        "1"
    }
    assert set(
        sge.parse_history(run_of("lookup_transcript.txt", "qacct -j 1 -j 2").stdout).jobs
    ) == {"2"}
    assert sge.HISTORY_IDS_PER_CALL == 1


def test_odd_qacct_records_are_skipped(caplog: pytest.LogCaptureFixture) -> None:
    text = read("qacct_exit3.txt").replace("jobnumber    10", "jobnumber    ten")
    with caplog.at_level(logging.WARNING, logger="cluster_api"):
        assert not sge.parse_history(text).jobs
    assert "unreadable qacct record" in caplog.text
    assert not sge.parse_history(read("qacct_exit3.txt").replace("exit_status  3", "x")).jobs


# -- cancel ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "command", "accepted", "ended"),
    [
        ("qdel.txt", "qdel 7", {"7"}, set()),  # pending: deleted
        ("qdel.txt", "qdel 9999", set(), {"9999"}),  # on stdout, exit 1
        ("qdel.txt", "qdel 12 17", {"12", "17"}, set()),  # Eqw
        ("lookup_transcript.txt", "qdel 3.1", {"3.1"}, set()),  # one array task
        ("lookup_transcript.txt", "qdel 3", {"3"}, set()),  # array: task lines, then the job
        ("lookup_transcript.txt", "qdel 3 99999", {"3"}, {"99999"}),  # already in deletion
        ("lookup_transcript.txt", "qrls 4", {"4"}, set()),
        ("lookup_transcript.txt", "qrls 99999", set(), {"99999"}),
    ],
)
def test_cancel_answers_per_id(
    name: str, command: str, accepted: set[str], ended: set[str]
) -> None:
    run = run_of(name, command)
    assert sge.parse_cancel(run.stdout, run.stderr, run.exit, command.split()[1:]) == (
        accepted,
        ended,
    )


def test_cancel_of_a_running_job_then_of_the_ended_one() -> None:
    running, ended = [run for run in transcript("qdel.txt") if run.command == "qdel 1"]
    assert sge.parse_cancel(running.stdout, running.stderr, running.exit, ["1"]) == ({"1"}, set())
    assert sge.parse_cancel(ended.stdout, ended.stderr, ended.exit, ["1"]) == (set(), {"1"})


def test_cancel_ignores_ids_it_was_not_asked_about() -> None:
    run = run_of("qdel.txt", "qdel 12 17")
    assert sge.parse_cancel(run.stdout, run.stderr, run.exit, ["12"]) == ({"12"}, set())
    assert sge.parse_cancel("permission denied\n", "", 1, ["5"]) == (set(), set())
    scheduler = SGE(ClusterConfig(executor="sge"))
    assert scheduler.cancel_command(["1", "2"], done=False).argv == ["qdel", "1", "2"]
    assert scheduler.release_command(["4"]).argv == ["qrls", "4"]


# -- exactly-once lookup and reconnect ---------------------------------------------------
def test_lookup_finds_the_queued_job_by_its_token() -> None:
    text = read("lookup_qstat_j_by_name.xml")
    assert sge.parse_lookup(text, "cap-lookup.1") == "1"
    assert sge.parse_lookup(text, "cap-lookup.2") is None
    gone = run_of("lookup_transcript.txt", "qstat -j cap-lookup -xml")  # ended: unknown_jobs
    assert sge.parse_lookup(gone.stdout, "cap-lookup.1") is None
    with pytest.raises(ClusterAPIError):
        sge.parse_lookup("error: commlib error", "cap-lookup.1")


def test_lookup_in_the_accounting_after_the_job_ended() -> None:
    assert sge.parse_lookup_history(read("lookup_qacct_by_name.txt"), "", "cap-lookup.1") == "1"
    assert sge.parse_lookup_history(read("lookup_qacct_by_name.txt"), "", "cap-lookup.9") is None
    missing = run_of("lookup_transcript.txt", "qacct -j nosuch-name")
    assert sge.parse_lookup_history(missing.stdout, missing.stderr, "t") is None
    with pytest.raises(ClusterAPIError):
        sge.parse_lookup_history("", "error: commlib error: can't connect", "t")


def test_listing_keeps_our_prefix_and_each_array_once() -> None:
    assert sge.parse_listing(read("lookup_qstat_listing.xml"), "cap") == {"1": "cap-lookup"}
    assert sge.parse_listing(read("qstat_mixed.xml"), "cap") == {}
    renamed = read("lookup_qstat_array_tc.xml").replace("<JB_name>arr<", "<JB_name>cap-arr<")
    assert sge.parse_listing(renamed, "cap") == {"3": "cap-arr"}


# -- fuzz: odd output is skipped or a ClusterAPIError, never a crash ---------------------
_states = st.sampled_from(["qw", "hqw", "r", "t", "Eqw", "Rq", "dr", "z", "", "q w", "é"])
_numbers = st.sampled_from(["1", "2", "", "x", "-1", "99999999999", "1.2"]) | st.text(max_size=4)
_tasks = st.sampled_from(["", "1", "1-3:1", "3,4", "2-6:2", "5-1", "1-", ":", "1-9999999999"])


@st.composite
def qstat_xml(draw: st.DrawFn) -> str:
    entries = []
    for _ in range(draw(st.integers(0, 5))):
        tags = {
            "JB_job_number": draw(_numbers),
            "state": draw(_states),
            "tasks": draw(_tasks),
            "queue_name": draw(st.sampled_from(["", "all.q@vm", "@", "q"])),
            "JAT_start_time": draw(st.sampled_from(["", "2026-12-01T22:03:16", "bad"])),
        }
        body = "".join(
            f"<{k}>{v}</{k}>"
            for k, v in tags.items()
            if draw(st.booleans()) and "<" not in v and "&" not in v
        )
        entries.append(f"<job_list>{body}</job_list>")
    return "<job_info><queue_info>" + "".join(entries) + "</queue_info></job_info>"


@settings(max_examples=200, deadline=None)
@given(qstat_xml(), st.text(max_size=30))
def test_fuzz_status_never_crashes(text: str, noise: str) -> None:
    for candidate in (text, text[: len(text) // 2], noise):
        try:
            result = sge.parse_status(candidate, {"1", "2"})
        except ClusterAPIError:
            continue
        assert set(result.jobs) | set(result.elements) <= {"1", "2"}
        assert all(o.status is not JobStatus.DONE for o in result.jobs.values())


_keys = st.sampled_from(
    ["jobnumber", "taskid", "failed", "exit_status", "start_time", "end_time", "account", "x"]
)
_values = st.sampled_from(
    [
        "0",
        "1",
        "undefined",
        "25  : rescheduling",
        "37  : limit",
        "137 (Killed)",
        "-/-",
        "Tue Dec  1 22:03:30 2026",
        "",
        "Mon Feb 30 99:99:99 2026",
    ]
) | st.text(max_size=8)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.lists(st.tuples(_keys, _values), max_size=8), max_size=4), st.text(max_size=40))
def test_fuzz_history_and_cancel_never_crash(
    records: list[list[tuple[str, str]]], noise: str
) -> None:
    text = "".join("=" * 62 + "\n" + "".join(f"{k} {v}\n" for k, v in r) for r in records)
    result = sge.parse_history(text + noise, noise)
    for obs in result.jobs.values():
        assert obs.status in (JobStatus.DONE, JobStatus.FAILED)
    accepted, ended = sge.parse_cancel(text + noise, noise, 1, ["1", "2"])
    assert accepted | ended <= {"1", "2"} and not accepted & ended


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=20), st.text(max_size=12), st.text(max_size=12))
def test_fuzz_directives_are_refused_or_read_back_as_written(
    folder: str, queue: str, account: str
) -> None:
    try:
        resources = ResourceSpec(
            work_dir="/" + folder, queue=queue or None, account=account or None
        )
        options = sge.directives(job_spec(resources=resources))
    except ValueError:
        return
    for option in options:
        assert "\n" not in option and "'" not in option
        value = option.partition(" ")[2]
        assert value.count('"') in (0, 2) and (not value.startswith('"') or value.endswith('"'))
