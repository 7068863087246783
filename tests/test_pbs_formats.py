"""PBS Pro / OpenPBS translation (cluster_api.executors.pbs) on written-from-the-docs
answers in tests/data/pbs (see its README): directives, submit, status, history, cancel,
lookup and listing, plus fuzzing of the parsers."""

from __future__ import annotations

import contextlib
import json
import shlex
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cluster_api.errors import ClusterAPIError, SubmitError
from cluster_api.executors import pbs_formats as pbs
from cluster_api.jobspec import JobSpec
from cluster_api.models import JobStatus, ResourceSpec

DATA = Path(__file__).parent / "data" / "pbs"


def read(name: str) -> str:
    return (DATA / name).read_text()


def spec(**changes: Any) -> JobSpec:
    resources = changes.pop("resources", ResourceSpec(work_dir="/scratch/run"))
    fields: dict[str, Any] = dict(
        command="true",
        name="capi-job",
        resources=resources,
        prologue=[],
        epilogue=[],
        env={},
        metadata={},
        inherit_env=True,
        login_shell=False,
        depends_on=[],
    )
    fields.update(changes)
    return JobSpec(**fields)


def words(option: str) -> list[str]:
    """How qsub's directive parser (quotes, no escapes inside) splits an option."""
    return shlex.split(option, posix=True)


# -- directives --------------------------------------------------------------------------
def test_directive_table_for_every_resource() -> None:
    res = ResourceSpec(
        cpus=4,
        gpus=1,
        memory="8 GB",
        walltime="1:30",
        queue="workq",
        account="proj1",
        work_dir="/scratch/run",
        extra_directives=["-l place=excl"],
    )
    options = pbs.directives(spec(resources=res, token="capi-job.7", depends_on=["41.srv"]))
    assert options == [
        "-l select=1:ncpus=4:ngpus=1:mem=8192mb",
        "-N capi-job",
        "-o /scratch/run/",
        "-e /scratch/run/",
        "-v CLUSTER_API_TOKEN=capi-job.7",
        "-q workq",
        "-l walltime=01:30:00",
        "-A proj1",
        "-W depend=afterok:41.srv",
        "-V",
        "-m n",
        "-l place=excl",
    ]


def test_array_with_cap_and_placeholder_path() -> None:
    res = ResourceSpec(work_dir="/w", stdout_path="logs/out.^array_index^.log")
    options = pbs.directives(spec(resources=res, array_range=(0, 9), max_concurrent=2))
    assert "-J 0-9%2" in options
    assert "-o /w/logs/out.^array_index^.log" in options
    assert pbs.ARRAY_INDEX_VARIABLE == "PBS_ARRAY_INDEX"


def test_single_index_array_refused() -> None:
    with pytest.raises(ValueError, match="at least two indices"):
        pbs.directives(spec(array_range=(3, 3)))


def test_no_inherit_env_and_mail_kept() -> None:
    options = pbs.directives(spec(inherit_env=False), suppress_email=False)
    assert "-V" not in options and "-m n" not in options


def test_paths_with_spaces_are_quoted_and_read_back() -> None:
    res = ResourceSpec(work_dir="/scratch/my runs", account="it's")
    options = pbs.directives(spec(resources=res))
    out = next(o for o in options if o.startswith("-o "))
    assert words(out) == ["-o", "/scratch/my runs/"]
    assert words(next(o for o in options if o.startswith("-A "))) == ["-A", "it's"]


@pytest.mark.parametrize(
    ("resources", "field"),
    [
        (ResourceSpec(work_dir="/a:b"), "work_dir"),
        (ResourceSpec(work_dir="/w", stdout_path="host:/x"), "stdout_path"),
        (ResourceSpec(work_dir="/w", queue="a'b\"c"), "queue"),
    ],
)
def test_unwritable_values_refused_naming_the_field(resources: ResourceSpec, field: str) -> None:
    with pytest.raises(ValueError, match=field):
        pbs.directives(spec(resources=resources))


def test_bad_names_and_dependencies_refused() -> None:
    with pytest.raises(ValueError, match="job name"):
        pbs.directives(spec(name="x" * 231))
    assert "-v CLUSTER_API_TOKEN=" + "x" * 230 + ".12" in pbs.directives(
        spec(name="x" * 230, token="x" * 230 + ".12")
    )
    with pytest.raises(ValueError, match="depends_on"):
        pbs.directives(spec(depends_on=["41.srv; rm -rf /"]))


def test_work_dir_is_changed_to_by_the_script() -> None:
    assert pbs.work_dir_lines("/scratch/my run") == ["cd '/scratch/my run' || exit 1"]


# -- submit ------------------------------------------------------------------------------
def test_submit_argv() -> None:
    assert pbs.submit_argv("/s/a b.sh", ["-P", "x"]) == (
        ["qsub", "-f", "-P", "x", "/s/a b.sh"],
        None,
    )
    assert pbs.submit_argv("/s/a.sh", use_stdin=True) == (["qsub", "-f"], "/s/a.sh")


@pytest.mark.parametrize(
    "answer", ["10.localhost\n", "1584288.biocluster.igb.illinois.edu\n", "3[].head\n"]
)
def test_submit_ids_kept_whole(answer: str) -> None:  # SCHEDULERS.md §1.1, third-party real
    assert pbs.parse_submit(answer) == answer.strip()


def test_submit_without_id_raises() -> None:
    with pytest.raises(SubmitError):
        pbs.parse_submit("qsub: Unknown queue\n")


# -- status ------------------------------------------------------------------------------
def test_documented_queued_job() -> None:
    result = pbs.parse_status(read("qstat_queued_documented.json"))
    obs = result.jobs["1.vbox"]
    assert obs.status is JobStatus.PENDING
    local = datetime(2016, 11, 11, 17, 57, 5).astimezone()
    assert obs.submit_time == local.astimezone(timezone.utc)


def test_live_jobs_and_array_elements() -> None:
    wanted = {"40.srv", "41.srv", "45[].srv"}
    result = pbs.parse_status(read("qstat_live.json"), "", wanted)
    assert set(result.jobs) == {"40.srv", "41.srv"}  # 46.srv is not ours
    running = result.jobs["41.srv"]
    assert (running.status, running.exec_host, running.max_mem) == (
        JobStatus.RUNNING,
        "node1",
        "5120kb",
    )
    assert running.start_time is not None
    elements = result.elements["45[].srv"]
    assert {i: e.status for i, e in elements.items()} == {
        1: JobStatus.DONE,
        2: JobStatus.FAILED,
        3: JobStatus.RUNNING,
        4: JobStatus.PENDING,
    }
    assert elements[2].exit_code == 3


def test_gone_ids_from_stderr_are_not_found() -> None:
    wanted = {"41.srv", "42.srv", "60.srv"}
    result = pbs.parse_status(read("qstat_live.json"), read("qstat_gone.stderr"), wanted)
    assert result.not_found == {"42.srv", "60.srv"}
    nothing = pbs.parse_status("", read("qstat_gone.stderr"), wanted)
    assert nothing.not_found == {"42.srv", "60.srv"} and not nothing.jobs


@pytest.mark.parametrize("stdout", ["", "qstat: cannot connect to server srv", "{broken"])
def test_unusable_status_answers_raise(stdout: str) -> None:
    with pytest.raises(ClusterAPIError):
        pbs.parse_status(stdout, "qstat: cannot connect to server srv (errno=111)")


def test_status_argv_batches_ids_without_history_flag() -> None:
    assert pbs.status_argv(["1.s", "2[].s"]) == ["qstat", "-f", "-F", "json", "-t", "1.s", "2[].s"]
    assert "-x" in pbs.history_argv(["1.s"])


# -- history and endings -----------------------------------------------------------------
def history() -> dict[str, Any]:
    result = pbs.parse_history(read("qstat_history.json"))
    return {
        **result.jobs,
        **{f"{k}{i}": o for k, es in result.elements.items() for i, o in es.items()},
    }


@pytest.mark.parametrize(
    ("job_id", "status", "exit_code", "reason"),
    [
        ("42.srv", JobStatus.DONE, 0, None),
        ("43.srv", JobStatus.FAILED, 1, None),
        ("44.srv", JobStatus.FAILED, None, "JOB_EXEC_KILL_WALLTIME"),
        ("47.srv", JobStatus.FAILED, None, "JOB_EXEC_KILL_MEM"),
        ("49.srv", JobStatus.FAILED, 137, "SIGKILL"),
        ("50.srv", JobStatus.FAILED, None, "ended without an exit status"),
        ("52[].srv1", JobStatus.FAILED, 2, None),
        ("52[].srv2", JobStatus.DONE, 0, None),
    ],
)
def test_endings(job_id: str, status: JobStatus, exit_code: int | None, reason: str | None) -> None:
    obs = history()[job_id]
    assert (obs.status, obs.exit_code, obs.reason) == (status, exit_code, reason)


def test_killed_only_when_pbs_says_terminated() -> None:
    endings = history()
    assert endings["48.srv"].status is JobStatus.KILLED
    assert endings["48.srv"].exit_code == 143
    assert "terminated by me@login" in str(endings["48.srv"].reason)
    assert endings["51.srv"].status is JobStatus.KILLED  # trapped TERM, exited 143
    assert endings["49.srv"].status is JobStatus.FAILED  # a signal alone is not a cancel


def test_history_leaves_out_unfinished_and_the_array_parent() -> None:
    endings = history()
    assert "53.srv" not in endings and "52[].srv" not in endings
    assert endings["42.srv"].finish_time is not None and endings["42.srv"].exec_host == "node1"


def test_history_off_is_recognised() -> None:
    stdout, stderr = read("qstat_x_history_off.json"), read("qstat_x_history_off.stderr")
    assert pbs.HISTORY_OFF in stderr
    assert pbs.parse_history(stdout, stderr, {"42.srv"}).jobs == {}


# -- cancel ------------------------------------------------------------------------------
def test_cancel_answer_per_id() -> None:
    ids = ["11.srv", "12.srv", "13.srv", "14.srv"]
    accepted, ended = pbs.parse_cancel("", read("qdel_mixed.stderr"), 168, ids)
    assert accepted == {"11.srv"}
    assert ended == {"12.srv", "13.srv"}


def test_cancel_accepts_all_on_silence_and_none_without_server() -> None:
    assert pbs.parse_cancel("", "", 0, ["1.s", "2.s"]) == ({"1.s", "2.s"}, set())
    assert pbs.parse_cancel("", read("qdel_no_server.stderr"), 162, ["1.s"]) == (set(), set())


def test_cancel_argv_refuses_malformed_ids() -> None:
    assert pbs.cancel_argv(["1.s", "2[].s"]) == ["qdel", "1.s", "2[].s"]
    with pytest.raises(ValueError, match="not a PBS job id"):
        pbs.cancel_argv(["1.s", "-W force"])


# -- lookup and listing ------------------------------------------------------------------
def test_lookup_finds_the_token() -> None:
    live = read("qstat_live.json")
    assert pbs.parse_lookup(live, "", "capi-run", "capi-run.2") == "41.srv"
    assert pbs.parse_lookup(live, "", "capi-arr", "capi-arr.3") == "45[].srv"
    assert pbs.parse_lookup(live, "", "capi-run", "capi-run.9") is None
    assert pbs.parse_lookup("", "", "capi-run", "capi-run.2") is None


def test_lookup_never_guesses() -> None:
    with pytest.raises(ClusterAPIError):
        pbs.parse_lookup(
            read("qstat_x_history_off.json"), read("qstat_x_history_off.stderr"), "a", "b"
        )
    with pytest.raises(ClusterAPIError):
        pbs.parse_lookup("qstat: cannot connect to server", "", "a", "b")
    assert "-x" in pbs.lookup_argv(history=True) and "-x" not in pbs.lookup_argv()


def test_listing_keeps_our_prefix() -> None:
    result, names = pbs.parse_listing(read("qstat_live.json"), "capi")
    assert set(result.jobs) == {"40.srv", "41.srv"}
    assert set(result.elements) == {"45[].srv"}
    assert names == {"40.srv": "capi-wait", "41.srv": "capi-run", "45[].srv": "capi-arr"}


# -- fuzzing -----------------------------------------------------------------------------
values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3)
    ),
    max_leaves=12,
)
attrs = st.dictionaries(
    st.sampled_from(
        [
            "job_state",
            "Exit_status",
            "substate",
            "comment",
            "stime",
            "qtime",
            "exec_host",
            "resources_used",
            "Job_Name",
            "Variable_List",
        ]
    ),
    values
    | st.sampled_from(["F", "X", "R", "Q", "B", "Subjob finished", "Tue Nov 14 10:00:00 2023"]),
    max_size=8,
)
ids = st.sampled_from(["1.srv", "2[].srv", "2[3].srv", "x", "4[a].s"]) | st.text(max_size=8)


@given(st.dictionaries(ids, attrs | values, max_size=5), st.text(max_size=60))
def test_parsers_never_crash(jobs: dict[str, Any], stderr: str) -> None:
    text = json.dumps({"pbs_server": "srv", "Jobs": jobs})
    for parse in (pbs.parse_status, pbs.parse_history):
        with contextlib.suppress(ClusterAPIError):
            result = parse(text, stderr, None)
            for obs in [
                *result.jobs.values(),
                *(o for e in result.elements.values() for o in e.values()),
            ]:
                assert obs.status is not JobStatus.DONE or obs.exit_code == 0
    with contextlib.suppress(ClusterAPIError):
        pbs.parse_lookup(text, stderr, "a", "b")
        pbs.parse_listing(text, "capi")
    pbs.parse_cancel("", stderr, 1, ["1.srv"])


@given(st.binary(max_size=300))
def test_parsers_survive_arbitrary_bytes(data: bytes) -> None:
    text = data.decode("utf-8", errors="replace")
    with contextlib.suppress(ClusterAPIError):
        pbs.parse_status(text, text)
