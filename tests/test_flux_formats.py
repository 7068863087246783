"""The Flux translation (cluster_api/executors/flux.py) against recorded flux-core 0.88.0
answers (tests/data/flux/README.md): pure functions, no commands run."""

from __future__ import annotations

import contextlib
import json
import re
from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cluster_api import ClusterConfig
from cluster_api.errors import ClusterAPIError, SubmitError
from cluster_api.executors import flux, flux_formats
from cluster_api.executors.flux import Flux
from cluster_api.jobspec import JobSpec
from cluster_api.models import JobStatus, ResourceSpec
from cluster_api.scheduler import CommandAnswer

DATA = Path(__file__).parent / "data" / "flux"


def read(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def spec(**changes: object) -> JobSpec:
    base = JobSpec(
        command="true",
        name="p-job",
        resources=ResourceSpec(work_dir="/scratch/run"),
        prologue=[],
        epilogue=[],
        env={},
        metadata={},
        inherit_env=True,
        login_shell=False,
        depends_on=[],
        token="p-job.3",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def res(**fields: object) -> ResourceSpec:
    return ResourceSpec(work_dir="/scratch/run", **fields)  # type: ignore[arg-type]


# -- ids ---------------------------------------------------------------------------------
def test_f58_ids_decode_to_the_numbers_flux_prints_beside_them() -> None:
    # run.log: flux jobs -o '{id.f58} {id.dec} ...'
    assert flux.job_number("ƒQ4FqC3") == 15133048832
    assert flux.job_number("ƒ3vBy3HS") == 111048392705
    assert flux.job_number("fQ4FqC3") == 15133048832  # the ASCII prefix
    assert flux.job_number("15133048832") == 15133048832
    for bad in ("Q4FqC3", "ƒ0abc", "ƒ", "fNOPE!", "123.server", "", "ƒ" + "z" * 12):
        assert flux.job_number(bad) is None, bad


def test_every_recorded_job_id_matches_its_number() -> None:
    for job in json.loads(read("jobs_all.json"))["jobs"]:
        assert flux.job_number(job["jobid"]) == job["id"]


# -- directives --------------------------------------------------------------------------
def test_directives_of_a_plain_job() -> None:
    job = spec(
        resources=res(cpus=4, gpus=1, walltime="1:30", queue="debug", account="bio"),
        depends_on=["ƒ2J9gbWo"],
    )
    assert flux.directives(job) == [
        "# flux: --job-name=p-job.3",
        "# flux: --output=/scratch/run/stdout.{{id}}.log",
        "# flux: --error=/scratch/run/stderr.{{id}}.log",
        "# flux: -n1",
        "# flux: -c4",
        "# flux: -g1",
        "# flux: --time-limit=5400s",
        "# flux: --queue=debug",
        "# flux: --bank=bio",
        "# flux: --cwd=/scratch/run",
        '# flux: --dependency="afterok:ƒ2J9gbWo"',
    ]


def test_the_recorded_directive_reads_as_flux_read_it() -> None:
    # job.sh's "# flux: --job-name=dirjob" gave the job the name dirjob (jobs_all.json).
    lines = [line for line in read("job.sh").splitlines() if line.startswith("# flux:")]
    assert [w for line in lines for w in flux.directive_words(line[7:])] == [
        "-n1",
        "--job-name=dirjob",
    ]
    assert json.loads(read("job_ok.json"))["name"] == "dirjob"


@pytest.mark.parametrize(
    "text, words",
    [
        ("--job-name=a;b", ["--job-name=a", ";", "b"]),
        ("-n1 # a comment", ["-n1"]),
        ("--x=a#b", ["--x=a"]),
        ('--x="a b#c"', ["--x=a b#c"]),
        ("--x='it\\'s'", ["--x=it's"]),
        ('--x="a\\\\b"', ["--x=a\\b"]),
    ],
)
def test_directive_words_follow_rfc_36(text: str, words: list[str]) -> None:
    assert flux.directive_words(text) == words


def test_values_that_need_it_are_double_quoted_and_read_back_exactly() -> None:
    job = spec(resources=ResourceSpec(work_dir='/data/my run #2/a"b\\c;d'))
    line = next(o for o in flux.flux_options(job) if o.startswith("--cwd="))
    assert line == '--cwd="/data/my run #2/a\\"b\\\\c;d"'
    assert flux.directive_words(line) == ['--cwd=/data/my run #2/a"b\\c;d']


@pytest.mark.parametrize(
    "resources, culprit",
    [
        (res(queue="a\tb"), "ResourceSpec.queue"),
        (res(account="it'''s"), "ResourceSpec.account"),
        (res(stdout_path="''out.log"), "ResourceSpec.stdout_path"),
        (ResourceSpec(work_dir="/data/{{id}}"), "ResourceSpec.work_dir"),
    ],
)
def test_values_flux_would_read_otherwise_are_refused(
    resources: ResourceSpec, culprit: str
) -> None:
    with pytest.raises(ValueError, match=re.escape(culprit)):
        flux.flux_options(spec(resources=resources))


def test_memory_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"ResourceSpec.memory '8 GB': Flux has no memory"):
        flux.flux_options(spec(resources=res(memory="8 GB")))


def test_no_inherited_environment_keeps_the_minimal_set() -> None:
    options = flux.flux_options(spec(inherit_env=False))
    assert options[-2:] == [
        "--env=-*",
        '--env="/^(PATH|HOME|USER|LOGNAME|SHELL|LANG|TMPDIR)$/"',
    ]


def test_a_dependency_that_is_not_a_flux_id_is_refused() -> None:
    with pytest.raises(ValueError, match="depends_on '12; rm'"):
        flux.flux_options(spec(depends_on=["12; rm"]))


def test_the_job_name_is_the_token_and_reads_back() -> None:
    assert flux.flux_job_name("p-job", "p-job.3") == "p-job.3"
    assert flux_formats.parse_job_name("p-job.3") == ("p-job", "p-job.3", None)
    assert flux_formats.parse_job_name("run.5.3[7]") == ("run.5", "run.5.3", 7)
    assert flux_formats.parse_job_name("dirjob") is None  # not ours
    with pytest.raises(ValueError, match="token"):
        flux.flux_job_name("p-job", "other.3")


# -- submit ------------------------------------------------------------------------------
def test_a_job_is_a_flux_batch_of_the_script() -> None:
    assert flux.submit_argv(spec(), "/s/p-job.3.sh", []) == (
        ["flux", "batch", "/s/p-job.3.sh"],
        None,
    )
    assert flux.submit_argv(spec(), "/s/a.sh", [], ["-x"], use_stdin=True) == (
        ["flux", "batch", "-x"],
        "/s/a.sh",
    )


def test_an_array_is_flux_submit_cc_with_the_directives_on_argv() -> None:
    job = spec(array_range=(1, 3), resources=ResourceSpec(work_dir="/scratch/my run"))
    argv, stdin = flux.submit_argv(job, "/s/p-job.3.sh", flux.directives(job))
    assert stdin is None
    assert argv == [
        "flux",
        "submit",
        "--cc=1-3",
        "--job-name=p-job.3[{cc}]",
        "--output=/scratch/my run/stdout.{{id}}.{cc}.log",
        "--error=/scratch/my run/stderr.{{id}}.{cc}.log",
        "-n1",
        "--cwd=/scratch/my run",
        "/s/p-job.3.sh",
    ]


def test_braces_that_flux_submit_cc_would_format_are_refused() -> None:
    with pytest.raises(ValueError, match=r"ResourceSpec\.work_dir"):
        flux.flux_options(spec(array_range=(1, 2), resources=ResourceSpec(work_dir="/d/{x}")))
    with pytest.raises(ValueError, match="script path"):
        flux.submit_argv(spec(array_range=(1, 2)), "/d/{x}/a.sh", [])
    # A plain job goes through flux batch, which formats nothing.
    assert "--cwd=/d/{x}" in flux.flux_options(spec(resources=ResourceSpec(work_dir="/d/{x}")))


def test_submit_answers_give_the_ids_as_printed() -> None:
    assert flux_formats.parse_submit(read("submit_batch.stdout")) == ["ƒQ4FqC3"]
    assert flux_formats.parse_submit(read("submit_cc.stdout")) == ["ƒJtnLGP", "ƒJtnLGQ", "ƒJvGKYj"]
    assert flux_formats.parse_submit("fQ4FqC3\n") == ["fQ4FqC3"]
    with pytest.raises(SubmitError):
        flux_formats.parse_submit("")


# -- status ------------------------------------------------------------------------------
def test_pending_held_and_dependent_jobs_are_pending() -> None:
    for name, job_id in [("job_held.json", "ƒ2m9FX6w"), ("job_depend.json", "ƒ3FbKjkj")]:
        obs = flux_formats.parse_status(read(name), [job_id]).jobs[job_id]
        assert obs.status is JobStatus.PENDING
        assert obs.start_time is None and obs.exec_host is None


def test_a_running_job() -> None:
    obs = flux_formats.parse_status(read("job_running.json"), ["ƒ2J9gbWo"]).jobs["ƒ2J9gbWo"]
    assert obs.status is JobStatus.RUNNING
    assert obs.exec_host == "vm"
    assert obs.start_time == datetime.fromtimestamp(1796157133.6617894, timezone.utc)


def test_endings_and_their_exit_codes() -> None:
    cases = {
        "job_ok.json": ("ƒQ4FqC3", JobStatus.DONE, 0, None),
        "job_fail.json": ("ƒhcmKnw", JobStatus.FAILED, 3, None),
        "job_timeout.json": (
            "ƒ2Tv1sAX",
            JobStatus.FAILED,
            142,
            "timeout: resource allocation expired",
        ),
        "job_canceled.json": ("ƒ2J9gbWo", JobStatus.KILLED, 143, "cancel"),
        "job_canceled_pending.json": ("ƒ2m9FX6w", JobStatus.KILLED, None, "cancel"),
        "job_dep_after_cancel.json": (  # never ran: ended as the dependency rule ends it
            "ƒ3FbKjkj",
            JobStatus.KILLED,
            None,
            "dependency: dependency after-success=ƒ2J9gbWo can never be satisfied",
        ),
    }
    for name, (job_id, status, code, reason) in cases.items():
        obs = flux_formats.parse_status(read(name), [job_id]).jobs[job_id]
        assert (obs.status, obs.exit_code, obs.reason) == (status, code, reason), name
        assert obs.finish_time is not None


def test_a_batch_answer_keeps_ids_as_the_caller_wrote_them() -> None:
    wanted = ["ƒQ4FqC3", "fhcmKnw", "26658996224", "ƒ45ptNXR", "ƒ3vBy3HR", "ƒnothere"]
    result = flux_formats.parse_status(read("jobs_all.json"), wanted)
    assert set(result.jobs) == set(wanted) - {"ƒnothere"}
    assert result.jobs["fhcmKnw"] == result.jobs["26658996224"]
    alloc = result.jobs["ƒ45ptNXR"]  # -n 1000 on 2 cores: accepted, then failed
    assert alloc.status is JobStatus.FAILED and alloc.exit_code is None
    assert alloc.reason is not None and alloc.reason.startswith("alloc: unsatisfiable request")
    assert result.jobs["ƒ3vBy3HR"].exit_code == 127  # exec failure


def test_unknown_ids_are_not_found() -> None:
    result = flux_formats.parse_status("", ["f3333333333"], stderr=read("jobs_unknown.stderr"))
    assert result.not_found == {"f3333333333"} and not result.jobs
    with pytest.raises(ClusterAPIError):
        flux_formats.parse_status("", ["ƒQ4FqC3"], stderr="flux-jobs: ERROR: Unable to connect")


def test_array_elements_are_placed_by_the_index_in_their_names() -> None:
    jobs = json.loads(read("jobs_all.json"))["jobs"]
    # the arr copies, renamed as this library names elements, listed out of index order
    copies = [j for j in jobs if j["name"] == "arr"]
    for job, index in zip(copies, (3, 1, 2), strict=True):
        job["name"] = f"p-job.3[{index}]"
    ids = [j["jobid"] for j in copies]
    result = flux_formats.parse_status(
        json.dumps({"jobs": copies}), ids, array_of=dict.fromkeys(ids, "A")
    )
    assert sorted(result.elements["A"]) == [1, 2, 3] and not result.jobs
    assert result.elements["A"][3].exit_code == 127


def test_status_command() -> None:
    assert flux.status_argv(["ƒQ4FqC3"]) == ["flux", "jobs", "--json", "ƒQ4FqC3"]
    many = [f"ƒQ4FqC{i}" for i in range(1, 10)] * 4000
    assert flux.status_argv(many, all_users=True) == [
        *["flux", "jobs", "-a", "-c", "0", "--json", "-A"]
    ]


# -- cancel ------------------------------------------------------------------------------
def test_cancel_answers() -> None:
    assert flux_formats.parse_cancel("", "", 0, ["ƒ2J9gbWo"]) == ({"ƒ2J9gbWo"}, set())
    batch = read("cancel_batch.stderr")
    assert flux_formats.parse_cancel("", batch, 1, ["ƒQ4FqC3", "ƒ22qe1iF"]) == (
        set(),
        {"ƒQ4FqC3", "ƒ22qe1iF"},
    )
    # ids come back in Flux's own encoding: f3333333333 is named ƒ3333333333
    unknown = read("cancel_unknown.stderr")
    assert flux_formats.parse_cancel("", unknown, 1, ["f3333333333", "ƒ2J9gbWo"]) == (
        {"ƒ2J9gbWo"},
        {"f3333333333"},
    )
    inactive = read("cancel_inactive.stderr")
    assert flux_formats.parse_cancel("", inactive, 1, ["15133048832"]) == (set(), {"15133048832"})
    refused = "flux-cancel: ERROR: ƒQ4FqC3: Operation not permitted"
    assert flux_formats.parse_cancel("", refused, 1, ["ƒQ4FqC3", "ƒ2J9gbWo"]) == (
        {"ƒ2J9gbWo"},
        set(),
    )
    failed = "flux-cancel: ERROR: Unable to connect to Flux"
    assert flux_formats.parse_cancel("", failed, 1, ["ƒQ4FqC3"]) == (set(), set())


def test_cancel_command_refuses_ids_flux_cannot_read() -> None:
    assert flux.cancel_argv(["ƒQ4FqC3", "fhcmKnw"]) == ["flux", "cancel", "ƒQ4FqC3", "fhcmKnw"]
    with pytest.raises(ValueError, match=r"'123\.server'"):
        flux.cancel_argv(["ƒQ4FqC3", "123.server"])


# -- lookup and listing --------------------------------------------------------------------
def ours() -> str:
    jobs = json.loads(read("jobs_all.json"))["jobs"]
    names = {"ƒ2J9gbWo": "p-a.1", "ƒ2m9FX6w": "p-a.1", "ƒ3vBy3HR": "p-b.2[1]"}
    names |= {"ƒ3vBy3HS": "p-b.2[2]", "ƒQ4FqC3": "p-c.4", "ƒ3FbKjkj": "q-d.1"}
    for job in jobs:
        job["name"] = names.get(job["jobid"], job["name"])
    return json.dumps({"jobs": jobs})


def test_lookup_finds_a_submission_by_its_token() -> None:
    assert flux.lookup_argv() == ["flux", "jobs", "-a", "-c", "0", "--json"]
    assert flux_formats.parse_lookup(ours(), "p-a.1") == {None: "ƒ2m9FX6w"}  # the newer of two
    assert flux_formats.parse_lookup(ours(), "p-b.2") == {1: "ƒ3vBy3HR", 2: "ƒ3vBy3HS"}
    assert flux_formats.parse_lookup('{"jobs": []}', "p-a.1") == {}
    with pytest.raises(ClusterAPIError):
        flux_formats.parse_lookup("Unable to connect", "p-a.1")


def test_listing_gives_our_jobs_with_an_array_as_one() -> None:
    scheduler = Flux(ClusterConfig(executor="flux"))
    listing = scheduler.parse_listing(CommandAnswer([], ours()))
    assert listing.names == {
        "ƒ2m9FX6w": "p-a",
        "ƒ2J9gbWo": "p-a",
        "ƒQ4FqC3": "p-c",
        "ƒ3FbKjkj": "q-d",
        "ƒ3vBy3HR": "p-b",  # the array, under its first element
    }
    assert listing.element_ids == {"ƒ3vBy3HR": ["ƒ3vBy3HR", "ƒ3vBy3HS"]}
    assert sorted(listing.result.elements["ƒ3vBy3HR"]) == [1, 2]
    assert listing.result.jobs["ƒ2J9gbWo"].status is JobStatus.RUNNING


# -- odd output never crashes ------------------------------------------------------------
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
keys = st.sampled_from(
    ["id", "jobid", "state", "result", "returncode", "exception", "t_run", "t_submit", "name"]
)
job_records = st.dictionaries(keys, json_values | st.sampled_from(["INACTIVE", "RUN", "ƒQ4FqC3"]))


@settings(deadline=None)  # pure work; wall time on a shared machine is noise
@given(st.lists(job_records, max_size=5), st.text(max_size=30))
def test_status_parser_survives_odd_jobs(jobs: list[dict[str, object]], stderr: str) -> None:
    for text in (json.dumps({"jobs": jobs}), json.dumps(jobs[0] if jobs else {})):
        with contextlib.suppress(ClusterAPIError):
            result = flux_formats.parse_status(text, ["ƒQ4FqC3", "1"], stderr, {"1": "A"})
            assert set(result.jobs) <= {"ƒQ4FqC3"}
        with contextlib.suppress(ClusterAPIError):
            Flux(ClusterConfig(executor="flux")).parse_listing(CommandAnswer([], text))


@settings(deadline=None)  # pure work; wall time on a shared machine is noise
@given(st.text(max_size=300))
def test_parsers_survive_arbitrary_text(text: str) -> None:
    with contextlib.suppress(ClusterAPIError):
        flux_formats.parse_status(text, ["ƒQ4FqC3"], text)
    with contextlib.suppress(ClusterAPIError):
        flux_formats.parse_lookup(text, "p-a.1")
    with contextlib.suppress(SubmitError):
        flux_formats.parse_submit(text)
    accepted, ended = flux_formats.parse_cancel(text, text, 1, ["ƒQ4FqC3", "fhcmKnw"])
    assert accepted | ended <= {"ƒQ4FqC3", "fhcmKnw"} and not accepted & ended


@settings(deadline=None)  # pure work; wall time on a shared machine is noise
@given(st.text(max_size=40))
def test_a_value_is_written_so_flux_reads_it_back_or_refused(value: str) -> None:
    try:
        options = flux.flux_options(spec(resources=res(queue=value)) if value else spec())
    except ValueError as exc:
        assert "ResourceSpec.queue" in str(exc)
        return
    for option in options:
        assert len(flux.directive_words(option)) == 1
    if value:
        assert f"--queue={value}" in [flux.directive_words(o)[0] for o in options]
