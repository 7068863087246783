"""Torque translation (cluster_api.executors.torque) on the answers in tests/data/torque
(real third-party records and hand-written ones, see its README), plus fuzzing."""

from __future__ import annotations

import contextlib
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_pbs_formats import spec, words

from cluster_api.errors import ClusterAPIError
from cluster_api.executors import torque_formats as torque
from cluster_api.models import JobStatus, ResourceSpec

DATA = Path(__file__).parent / "data" / "torque"


def read(name: str) -> str:
    return (DATA / name).read_text()


# -- directives --------------------------------------------------------------------------
def test_directive_table() -> None:
    res = ResourceSpec(cpus=4, gpus=2, memory="1.5 GB", walltime="10", work_dir="/scratch/r")
    options = torque.directives(
        spec(resources=res, array_range=(0, 299), max_concurrent=5, depends_on=["7.h", "8[].h"])
    )
    assert options[:4] == [
        "-t 0-299%5",
        "-l nodes=1:ppn=4:gpus=2",
        "-l mem=1536mb",
        "-d /scratch/r",
    ]
    assert "-l walltime=00:10:00" in options
    assert "-W depend=afterok:7.h,afterokarray:8[].h" in options
    assert torque.ARRAY_INDEX_VARIABLE == "PBS_ARRAYID"


def test_work_dir_is_a_directive() -> None:
    options = torque.directives(spec(resources=ResourceSpec(work_dir="/my runs")))
    assert words(next(o for o in options if o.startswith("-d "))) == ["-d", "/my runs"]
    assert torque.work_dir_lines("/my runs") == []


def test_single_task_arrays_allowed_and_no_cpus_no_nodes() -> None:
    options = torque.directives(spec(array_range=(1, 1)))
    assert "-t 1-1" in options and not any(o.startswith("-l nodes") for o in options)


def test_submit_has_no_fault_tolerant_flag() -> None:
    assert torque.submit_argv("/s/j.sh") == (["qsub", "/s/j.sh"], None)
    assert torque.parse_submit("189[].pali\n") == "189[].pali"


# -- status ------------------------------------------------------------------------------
def test_real_records() -> None:
    result = torque.parse_status(read("qstat_fyrd.xml"))
    pending = result.jobs["667999.superserver.stanford.edu"]
    assert pending.status is JobStatus.PENDING
    assert pending.submit_time == datetime.fromtimestamp(1479779395, timezone.utc)
    running = result.jobs["665199.superserver.stanford.edu"]
    # requeued once: exit_status -3 while running is not an ending
    assert (running.status, running.exit_code, running.exec_host) == (
        JobStatus.RUNNING,
        None,
        "node01",
    )
    assert running.max_mem == "17592kb"
    done = result.jobs["673174.superserver.stanford.edu"]
    assert (done.status, done.exit_code) == (JobStatus.DONE, 0)
    assert done.finish_time == datetime.fromtimestamp(1480547422, timezone.utc)
    # the parent says nothing; the subjob is element 19 (its id, as recorded, names
    # another server than the parent's)
    assert "673175[].superserver.stanford.edu" not in result.elements
    element = result.elements["673175[].fruster.stanford.edu"][19]
    assert element.status is JobStatus.DONE


def test_wanted_ids_filter() -> None:
    result = torque.parse_status(read("qstat_fyrd.xml"), "", {"673174.superserver.stanford.edu"})
    assert set(result.jobs) == {"673174.superserver.stanford.edu"} and not result.elements


@pytest.mark.parametrize(
    ("job_id", "status", "exit_code", "reason"),
    [
        ("70.head", JobStatus.FAILED, None, "JOB_EXEC_OVERLIMIT_WT"),
        ("71.head", JobStatus.FAILED, None, "JOB_EXEC_OVERLIMIT_MEM"),
        ("72.head", JobStatus.KILLED, 143, "cancelled (exit status 271)"),
        ("73.head", JobStatus.FAILED, 137, "JOB_EXEC_OVERLIMIT_WT"),
        ("74.head", JobStatus.FAILED, 3, None),
        ("75.head", JobStatus.FAILED, None, "ended without an exit status"),
        ("76.head", JobStatus.RUNNING, None, None),
    ],
)
def test_endings(job_id: str, status: JobStatus, exit_code: int | None, reason: str | None) -> None:
    obs = torque.parse_status(read("qstat_endings.xml")).jobs[job_id]
    assert (obs.status, obs.exit_code, obs.reason) == (status, exit_code, reason)


def test_unescaped_values_do_not_break_the_answer() -> None:
    assert torque.parse_lookup(read("qstat_endings.xml"), "", "capi-74", "capi-74.1") == "74.head"


def test_unknown_ids_from_stderr() -> None:
    job_id = "3685292.mgt.meerkat.mcri.edu.au"
    result = torque.parse_status("", read("qstat_unknown.stderr"), {job_id, "1.x"})
    assert result.not_found == {job_id}


@pytest.mark.parametrize("stdout", ["", "garbage", "<Data><Job><Job_Id>1.h</Data>"])
def test_unusable_answers_raise(stdout: str) -> None:
    with pytest.raises(ClusterAPIError):
        torque.parse_status(stdout, "qstat: cannot connect to server h (errno=111)")


def test_argv() -> None:
    assert torque.status_argv(["1.h"]) == ["qstat", "-f", "-x", "-t", "1.h"]


# -- cancel, lookup, listing -------------------------------------------------------------
def test_cancel_answer() -> None:
    accepted, ended = torque.parse_cancel(
        "", read("qdel_mixed.stderr"), 153, ["79.head", "80.head", "81.head"]
    )
    assert (accepted, ended) == ({"79.head"}, {"80.head"})


def test_lookup_and_listing() -> None:
    text = read("qstat_endings.xml")
    assert torque.parse_lookup(text, "", "capi-74", "other") is None
    with pytest.raises(ClusterAPIError):
        torque.parse_lookup("qstat: cannot connect", "", "a", "b")
    result, names = torque.parse_listing(text, "capi")
    assert set(result.jobs) == {f"{n}.head" for n in range(70, 77)}
    assert names["76.head"] == "capi-76"
    assert torque.parse_listing(read("qstat_fyrd.xml"), "capi") == (result.__class__(), {})


# -- fuzzing -----------------------------------------------------------------------------
tags = st.sampled_from(
    ["Data", "Job", "Job_Id", "job_state", "exit_status", "comp_time", "resources_used", "walltime"]
)
pieces = st.lists(
    tags.map(lambda t: f"<{t}>")
    | tags.map(lambda t: f"</{t}>")
    | st.sampled_from(["1.h", "C", "R", "271", "-11", "00:01:00"])
    | st.text(max_size=6),
    max_size=30,
)


@given(pieces, st.text(max_size=40))
def test_parsers_never_crash(parts: list[str], stderr: str) -> None:
    text = "".join(parts)
    with contextlib.suppress(ClusterAPIError):
        result = torque.parse_status(text, stderr)
        for obs in result.jobs.values():
            assert obs.status is not JobStatus.DONE or obs.exit_code == 0
    with contextlib.suppress(ClusterAPIError):
        torque.parse_lookup(text, stderr, "a", "b")
        torque.parse_listing(text, "capi")


def test_classic_pbs_rules_are_shared() -> None:
    assert torque.DIRECTIVE == "#PBS" and torque.JOB_ID_PATTERN.match("189[299].napali")
