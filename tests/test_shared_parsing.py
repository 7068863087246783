"""The parsing every scheduler shares: month-name local times (LSF, PBS, Grid Engine),
scheduler JSON (bjobs, qstat, flux jobs), directive lines as argv and the default header;
and the one rule LSF applies to a failed bjobs that printed no JSON. Recorded text only."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path

import pytest
from conftest import bjobs_json, bjobs_record

import cluster_api.jsontext as jsontext
from cluster_api import ClusterConfig
from cluster_api.errors import ClusterAPIError
from cluster_api.executors import pbs_formats, sge_formats
from cluster_api.executors.lsf import LSF
from cluster_api.executors.lsf_formats import parse_bhist_long, parse_bjobs_json
from cluster_api.jobspec import JobSpec
from cluster_api.localtime import month_time_reader, parse_month_time
from cluster_api.models import JobStatus, ResourceSpec
from cluster_api.scheduler import CommandAnswer, Scheduler
from cluster_api.script import directive_argv

DATA = Path(__file__).parent / "data"


@pytest.fixture(params=["orjson", "json"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with orjson and again as on a machine without it."""
    if request.param == "json":
        monkeypatch.setattr(jsontext, "orjson", None)
    elif jsontext.orjson is None:
        pytest.skip("orjson is not installed")
    return str(request.param)


def utc(*parts: int) -> datetime:
    return datetime(*parts, tzinfo=timezone.utc)  # type: ignore[misc]


# -- month-name local times --------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "Nov 22 10:31:17 2026",  # LSF with LSB_DISPLAY_YEAR=Y
        "Nov 22 10:31:17 2026 L",  # LSF's marker
        "Sun Nov 22 10:31:17 2026",  # ctime: PBS's qstat -f, Grid Engine's qacct
        "Sun Nov 22 10:31:17  2026",
    ],
)
def test_every_scheduler_form_reads_as_the_same_moment(
    tz: Callable[[str], None], text: str
) -> None:
    tz("JST-9")
    for _ in range(2):  # parsed, then from the hour cache
        assert parse_month_time(text) == utc(2026, 11, 22, 1, 31, 17)


def test_a_single_digit_day_in_either_form(tz: Callable[[str], None]) -> None:
    tz("UTC0")
    assert parse_month_time("Nov  2 10:31:17 2026") == utc(2026, 11, 2, 10, 31, 17)
    assert parse_month_time("Mon Nov  2 10:31:17 2026") == utc(2026, 11, 2, 10, 31, 17)
    assert parse_month_time("Tue Dec 1 22:03:30 2026") == utc(2026, 12, 1, 22, 3, 30)


def test_a_time_without_a_year_is_the_latest_one_not_after_tomorrow(
    tz: Callable[[str], None],
) -> None:
    tz("UTC0")
    read = month_time_reader(utc(2027, 1, 1, 0, 30))
    assert read("Dec 31 23:59") == utc(2026, 12, 31, 23, 59)
    assert read("Jan  1 00:10 L") == utc(2027, 1, 1, 0, 10)


@pytest.mark.parametrize(
    "value",
    [
        None,
        17,
        ["Nov 22 10:31"],
        "",
        "Fri",
        "Foo 22 10:31",
        "Nov 22 10:60",
        "Nov 31 10:31:17 2026",
        "Nov 22 24:00:00 2026",
        "Nov 22 10:31:17 20x6",
        "Fri Nov 22 10:31:17 2026 2027",
        "Friday Nov 22 10:31:17 2026",
        "2026-11-22T10:31:17",
    ],
)
def test_anything_else_is_no_time(value: object) -> None:
    parse_month_time("Nov 22 10:31:17 2026")  # fills the caches a look-alike might hit
    assert parse_month_time(value) is None


def test_a_reader_made_after_a_time_zone_change_forgets_the_old_hours(
    tz: Callable[[str], None],
) -> None:
    tz("JST-9")
    before = month_time_reader()
    assert before("Nov 22 10:31:17 2026") == utc(2026, 11, 22, 1, 31, 17)
    tz("UTC0")
    assert month_time_reader()("Nov 22 10:31:17 2026") == utc(2026, 11, 22, 10, 31, 17)


def test_pbs_and_grid_engine_read_their_recorded_times(tz: Callable[[str], None]) -> None:
    tz("CET-1CEST,M3.5.0,M10.5.0/3")
    jobs = json.loads((DATA / "pbs" / "qstat_live.json").read_text())["Jobs"]
    assert jobs["41.srv"]["stime"] == "Tue Nov 14 10:00:00 2023"
    assert pbs_formats.moment(jobs["41.srv"]["stime"]) == utc(2023, 11, 14, 9, 0, 0)
    assert sge_formats.parse_qacct_time("Tue Dec  1 22:03:30 2026") == utc(2026, 12, 1, 21, 3, 30)
    assert sge_formats.parse_qacct_time("Thu Jan  1 01:00:00 1970") is None  # the epoch
    assert sge_formats.parse_qacct_time("-/-") is None


# -- JSON --------------------------------------------------------------------------------
def test_a_raw_control_character_in_a_value_does_not_spoil_the_answer(decoder: str) -> None:
    """LSF prints job names raw: one with a tab must not make every poll fail."""
    text = bjobs_json(bjobs_record("101", "RUN", name="a\tb")).replace("\\t", "\t")
    (record,) = parse_bjobs_json(text)
    assert record["JOB_NAME"] == "a\tb"


def test_text_after_the_value_is_ignored_and_bad_json_names_the_command(decoder: str) -> None:
    assert jsontext.decode_json('{"jobs": []}\nflux-jobs: warning', "flux jobs") == {"jobs": []}
    with pytest.raises(ClusterAPIError, match=r"^qstat printed invalid JSON"):
        jsontext.decode_json('{"Jobs": {', "qstat")
    with pytest.raises(ClusterAPIError, match="invalid JSON"):
        jsontext.decode_json("[" * 100_000, "bjobs")  # too deep for either decoder


def test_pbs_reads_its_recorded_answer_with_either_decoder(
    tz: Callable[[str], None], decoder: str
) -> None:
    tz("UTC0")
    text = (DATA / "pbs" / "qstat_live.json").read_text()
    running = pbs_formats.parse_status(text).jobs["41.srv"]
    assert running.status is JobStatus.RUNNING
    assert (running.submit_time, running.start_time) == (
        utc(2023, 11, 14, 9, 59, 0),
        utc(2023, 11, 14, 10, 0, 0),
    )


# -- directives --------------------------------------------------------------------------
def test_directive_lines_become_argv_words() -> None:
    header = ['#BSUB -J "my job"', "#BSUB -n 4", "#SBATCH --other", "#BSUB -cwd '/a b'"]
    assert directive_argv("#BSUB", header) == ["-J", "my job", "-n", "4", "-cwd", "/a b"]
    assert directive_argv("#X", ["#X a,b"], lambda text: text.strip().split(",")) == ["a", "b"]


def test_a_directive_that_cannot_be_split_is_named() -> None:
    with pytest.raises(ValueError, match=r"cannot parse directive '#BSUB -J \"open'"):
        directive_argv("#BSUB", ["#BSUB -n 1", '#BSUB -J "open'])


class Toy(Scheduler):
    name = "toy"
    directive_prefix = "#TOY"

    def options(self, spec: JobSpec) -> list[str]:
        return [f"--name {spec.name}", "--queue fast"]


def test_a_scheduler_that_gives_options_gets_the_config_applied_header() -> None:
    config = ClusterConfig(directives_skip=["--queue"], extra_directives=["#TOY --site x"])
    job = JobSpec(
        command="true",
        name="j1",
        resources=ResourceSpec(work_dir="/w"),
        prologue=[],
        epilogue=[],
        env={},
        metadata={},
        inherit_env=True,
        login_shell=False,
        depends_on=[],
    )
    assert Toy(config).header(job) == ["#TOY --name j1", "#TOY --site x"]


# -- LSF: a failed bjobs without JSON ----------------------------------------------------
def failed(stderr: str) -> CommandAnswer:
    return CommandAnswer(ids=[], stdout="", stderr=stderr, failed=True)


def test_a_listing_bjobs_answered_with_no_such_job_is_empty() -> None:
    lsf = LSF(ClusterConfig(executor="lsf"))
    for said in ("Job <capi-*> is not found", "No job found", "No unfinished job found"):
        listing = lsf.parse_listing(failed(said))
        assert (listing.result.jobs, listing.names) == ({}, {})


def test_a_status_poll_bjobs_answered_with_no_such_job_leaves_every_job_unseen() -> None:
    """Asked by name (too many ids for one argv), bjobs says "No job found" once every
    job left it: the jobs are unseen (then the history tells), not a failed poll forever."""
    lsf = LSF(ClusterConfig(executor="lsf"))
    result = lsf.parse_status(failed("No job found"), {})
    assert (result.jobs, result.elements, result.not_found) == ({}, {}, set())


@pytest.mark.parametrize(
    "said", ["LSF is down. Please wait ... No job found", "bjobs: cannot open lsf.conf", ""]
)
def test_any_other_failed_bjobs_without_json_is_an_outage(said: str) -> None:
    lsf = LSF(ClusterConfig(executor="lsf"))
    for parse in (
        lambda answer: lsf.parse_listing(answer),
        lambda answer: lsf.parse_status(answer, {}),
        lambda answer: lsf.parse_lookup(answer, "capi-job.1"),
    ):
        with pytest.raises(ClusterAPIError, match="bjobs failed"):
            parse(failed(said))


def test_bhist_keys_are_the_ones_parse_history_returns() -> None:
    text = (
        "Job <7>, User <me>, Project <default>:\n  Done successfully.\n"
        "Job <8[3]>, Job Name <a[3]>:\n  Exited with exit code 2.\n"
    )
    finals = parse_bhist_long(text)
    assert {key: obs.status for key, obs in finals.items()} == {
        ("7", None): JobStatus.DONE,
        ("8", 3): JobStatus.FAILED,
    }
