"""LSF executor: directives, bsub, bjobs -json parsing, bkill, reconnect. ``_call`` is mocked."""

from __future__ import annotations

import os
import shlex
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import pytest
from conftest import bjobs_json, bjobs_record

import cluster_api.jsontext as jsontext
from cluster_api import (
    ClusterAPIError,
    ClusterConfig,
    CommandFailedError,
    CommandTimeoutError,
    JobRecord,
    JobStatus,
    LSFExecutor,
    ResourceSpec,
    SubmitError,
)
from cluster_api.localtime import parse_month_time
from cluster_api.testing.fake import FakeRunner

BJOBS_FIELDS = [
    "jobid",
    "jobindex",
    "job_name",
    "stat",
    "exit_code",
    "exec_host",
    "max_mem",
    "submit_time",
    "start_time",
    "finish_time",
    "exit_reason",
]


@pytest.fixture(autouse=True)
def in_work_dir(work_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """ResourceSpec.work_dir defaults to the cwd: keep every script inside the tmp dir."""
    monkeypatch.chdir(work_dir)


class FakeLSF:
    """A scripted LSF behind the shared FakeRunner: bsub hands out ids (or answers
    ``self.bsub``, text or exception), bjobs answers ``self.bjobs`` (text, exception or
    callable of argv), bkill succeeds. ``self.calls`` is every call the runner saw."""

    def __init__(self, runner: FakeRunner) -> None:
        self.runner = runner
        self.calls = runner.calls
        self.next_id = 101
        self.bsub: str | Exception | None = None
        self.bjobs: Any = bjobs_json()
        runner.on("bsub", self._bsub).on("bjobs", self._bjobs)
        for program in ("bkill", "bhist"):
            runner.on(program, "")

    def _bsub(self, argv: list[str]) -> str | Exception:
        if self.bsub is not None:
            return self.bsub
        job_id, self.next_id = self.next_id, self.next_id + 1
        return f"Job <{job_id}> is submitted to queue <normal>."

    def _bjobs(self, argv: list[str]) -> str | Exception:
        return self.bjobs(argv) if callable(self.bjobs) else self.bjobs

    def argvs(self, command: str) -> list[list[str]]:
        return self.runner.argvs(command)


@pytest.fixture
def fake(runner: FakeRunner) -> FakeLSF:
    return FakeLSF(runner)


def executor(**config: Any) -> LSFExecutor:
    return LSFExecutor(ClusterConfig(executor="lsf", **config))


def header(record: JobRecord) -> list[str]:
    assert record.script_path is not None
    return [
        line for line in Path(record.script_path).read_text().splitlines() if line[:5] == "#BSUB"
    ]


def options(lines: list[str]) -> list[list[str]]:
    return [shlex.split(line[len("#BSUB") :]) for line in lines if line.startswith("#BSUB")]


def values(lines: list[str], flag: str) -> list[str]:
    return [" ".join(words[1:]) for words in options(lines) if words[0] == flag]


def value(lines: list[str], flag: str) -> str:
    found = values(lines, flag)
    assert len(found) == 1, (flag, lines)
    return found[0]


def minutes(w: str) -> int:
    hours, _, mins = w.rpartition(":")
    return int(hours or 0) * 60 + int(mins)


# -- directives --------------------------------------------------------------------------
async def test_default_directives(fake: FakeLSF, work_dir: str) -> None:
    record = await executor().submit("echo hi", "job")
    lines = header(record)
    assert value(lines, "-J") == "capi-job"
    assert value(lines, "-o") == f"{work_dir}/stdout.%J.log"
    assert value(lines, "-e") == f"{work_dir}/stderr.%J.log"
    assert value(lines, "-cwd") == work_dir
    for flag in ("-q", "-n", "-gpu", "-M", "-W", "-P", "-w", "-ti", "-env"):
        assert values(lines, flag) == [], flag
    assert not any("span[" in line or "rusage" in line for line in lines)


@pytest.mark.parametrize(
    ("max_concurrent", "expected"), [(10, "capi-arr[1-50%10]"), (None, "capi-arr[1-50]")]
)
async def test_array_directives(fake: FakeLSF, work_dir: str, max_concurrent, expected) -> None:
    record = await executor().submit_array(
        "echo $LSB_JOBINDEX", "arr", (1, 50), max_concurrent=max_concurrent
    )
    lines = header(record)
    assert value(lines, "-J") == expected
    assert value(lines, "-o") == f"{work_dir}/stdout.%J.%I.log"
    assert value(lines, "-e") == f"{work_dir}/stderr.%J.%I.log"
    assert record.is_array
    assert record.metadata["array_range"] == (1, 50)
    assert sorted(record.array_elements) == list(range(1, 51))
    if max_concurrent:
        assert record.metadata["max_concurrent"] == 10


async def test_array_script_exports_array_index(fake: FakeLSF) -> None:
    record = await executor().submit_array("echo $ARRAY_INDEX", "arr", (1, 2))
    assert 'ARRAY_INDEX="${LSB_JOBINDEX}"' in Path(record.script_path).read_text()


async def test_array_index_zero_is_refused_before_writing(fake: FakeLSF, work_dir: str) -> None:
    """LSF array indices are positive integers (bsub -J "a[0-9]" is rejected) and JOBINDEX 0
    is how bjobs marks a plain job, so a 0-based range cannot work on LSF."""
    with pytest.raises(ValueError):
        await executor().submit_array("echo", "arr", (0, 9))
    assert os.listdir(work_dir) == []
    assert fake.argvs("bsub") == []


@pytest.mark.parametrize(
    ("resources", "config", "queue"),
    [
        ({"queue": "long"}, {}, "long"),
        ({}, {"queue": "normal"}, "normal"),
        ({"queue": "a"}, {"queue": "b"}, "a"),
    ],
)
async def test_queue(fake: FakeLSF, resources, config, queue) -> None:
    record = await executor(**config).submit("true", "j", resources=ResourceSpec(**resources))
    assert value(header(record), "-q") == queue


@pytest.mark.parametrize(
    ("cpus", "n", "span"), [(None, None, False), (1, None, False), (4, "4", True)]
)
async def test_cpus_and_span(fake: FakeLSF, cpus, n, span) -> None:
    record = await executor().submit("true", "j", resources=ResourceSpec(cpus=cpus))
    lines = header(record)
    if n is not None:
        assert value(lines, "-n") == n
    elif cpus is None:
        assert values(lines, "-n") == []
    assert ("span[hosts=1]" in values(lines, "-R")) is span


@pytest.mark.parametrize(("gpus", "expected"), [(None, []), (0, []), (2, ["num=2"])])
async def test_gpus(fake: FakeLSF, gpus, expected) -> None:
    record = await executor().submit("true", "j", resources=ResourceSpec(gpus=gpus))
    assert values(header(record), "-gpu") == expected
    if gpus:
        assert '#BSUB -gpu "num=2"' in header(record)


@pytest.mark.parametrize(
    ("memory", "units", "amount"),
    [
        ("8 GB", "MB", 8192),
        ("8 GB", "KB", 8 * 1024 * 1024),
        ("8 GB", "GB", 8),
        ("1.5 GB", "GB", 2),
        ("512 MB", "GB", 1),
        ("100 KB", "MB", 1),
        ("1 TB", "MB", 1024 * 1024),
        ("512 mb", "MB", 512),
    ],
)
async def test_memory_in_lsf_units(fake: FakeLSF, memory, units, amount) -> None:
    record = await executor(lsf_units=units).submit(
        "true", "j", resources=ResourceSpec(memory=memory)
    )
    lines = header(record)
    assert value(lines, "-M") == str(amount)
    assert f"rusage[mem={amount}]" in values(lines, "-R")


async def test_memory_from_config(fake: FakeLSF) -> None:
    record = await executor(memory="2 GB").submit("true", "j")
    assert value(header(record), "-M") == "2048"


@pytest.mark.parametrize(
    ("walltime", "expected"),
    [
        ("04:00", 240),
        ("90", 90),
        ("01:30:00", 90),
        ("00:00:30", 1),
        ("01:00:01", 61),
        ("1-00:00", 1440),
        ("0:05", 5),
    ],
)
async def test_walltime_minutes_rounded_up(fake: FakeLSF, walltime, expected) -> None:
    record = await executor().submit("true", "j", resources=ResourceSpec(walltime=walltime))
    assert minutes(value(header(record), "-W")) == expected


async def test_account_and_cwd(fake: FakeLSF, tmp_path: Path) -> None:
    odd = tmp_path / "my dir"
    odd.mkdir()
    record = await executor().submit(
        "true", "j", resources=ResourceSpec(account="proj_x", work_dir=str(odd))
    )
    lines = header(record)
    assert value(lines, "-P") == "proj_x"
    assert value(lines, "-cwd") == str(odd)
    assert value(lines, "-o") == f"{odd}/stdout.%J.log"
    assert os.path.dirname(record.script_path) == str(odd)


async def test_custom_log_paths(fake: FakeLSF) -> None:
    spec = ResourceSpec(stdout_path="/logs/out.%J.txt", stderr_path="/logs/err.%J.txt")
    lines = header(await executor().submit("true", "j", resources=spec))
    assert (value(lines, "-o"), value(lines, "-e")) == ("/logs/out.%J.txt", "/logs/err.%J.txt")


async def test_job_extra_directives_get_the_prefix(fake: FakeLSF) -> None:
    spec = ResourceSpec(extra_directives=["-P proj", '-R "select[mem>100]"'])
    lines = header(await executor().submit("true", "j", resources=spec))
    assert "#BSUB -P proj" in lines
    assert '#BSUB -R "select[mem>100]"' in lines


async def test_config_extra_directives_verbatim(fake: FakeLSF) -> None:
    config = {"extra_directives": ["#BSUB -app big", "#BSUB -G lab_group"]}
    lines = header(await executor(**config).submit("true", "j"))
    assert lines[-2:] == ["#BSUB -app big", "#BSUB -G lab_group"]


async def test_directives_skip(fake: FakeLSF) -> None:
    lsf = executor(directives_skip=["-cwd", "span["], extra_directives=["#BSUB -app a"])
    lines = header(await lsf.submit("true", "j", resources=ResourceSpec(cpus=4)))
    assert values(lines, "-cwd") == []
    assert "span[hosts=1]" not in values(lines, "-R")
    assert value(lines, "-n") == "4"
    assert "#BSUB -app a" in lines


async def test_dependencies(fake: FakeLSF) -> None:
    lsf = executor()
    first = await lsf.submit("true", "first")
    record = await lsf.submit("true", "second", depends_on=[first, "77"])
    lines = header(record)
    assert value(lines, "-w") == f"done({first.job_id}) && done(77)"
    assert f'#BSUB -w "done({first.job_id}) && done(77)"' in lines
    assert ["-ti"] in options(lines)
    assert record.depends_on == [first.job_id, "77"]
    single = await lsf.submit("true", "third", depends_on=first)
    assert value(header(single), "-w") == f"done({first.job_id})"


async def test_bad_dependency_id_refused_before_writing(fake: FakeLSF, work_dir: str) -> None:
    with pytest.raises(ValueError):
        await executor().submit("true", "j", depends_on=["abc; rm -rf /"])
    assert os.listdir(work_dir) == []


@pytest.mark.parametrize(("inherit", "expected"), [(False, ["none"]), (True, [])])
async def test_inherit_env(fake: FakeLSF, inherit: bool, expected: list[str]) -> None:
    record = await executor().submit("true", "j", inherit_env=inherit)
    assert values(header(record), "-env") == expected


def test_build_header_uses_name_and_applies_config() -> None:
    lsf = executor(queue="normal", cpus=2)
    lines = lsf.build_header("my job", ResourceSpec(memory="1 GB"))
    assert all(line.startswith("#BSUB ") for line in lines)
    assert value(lines, "-J") == "my job"  # exactly as given (test_compat)
    assert (value(lines, "-q"), value(lines, "-n"), value(lines, "-M")) == ("normal", "2", "1024")


# -- bsub --------------------------------------------------------------------------------
async def test_submit_argv_with_options(fake: FakeLSF) -> None:
    lsf = executor(extra_args=["-G", "lab"], extra_directives=["#BSUB -app big"])
    record = await lsf.submit(
        "true", "j", resources=ResourceSpec(queue="q1", extra_args=["-U", "resv1"])
    )
    (call,) = fake.calls
    argv = call.argv
    assert argv[0] == "bsub"
    assert argv[-1] == record.script_path
    assert argv[-5:-1] == ["-G", "lab", "-U", "resv1"]
    directive_words = [word for words in options(header(record)) for word in words]
    assert argv[1:-5] == directive_words
    assert argv[argv.index("-q") : argv.index("-q") + 2] == ["-q", "q1"]
    assert "-app" in argv
    assert not call.stdin_file
    assert record.job_id == "101"
    assert lsf.jobs == {"101": record}


async def test_submit_argv_with_stdin(fake: FakeLSF) -> None:
    lsf = executor(use_stdin=True, extra_args=["-G", "lab"])
    record = await lsf.submit("true", "j", resources=ResourceSpec(extra_args=["-U", "resv1"]))
    (call,) = fake.calls
    assert call.argv == ["bsub", "-G", "lab", "-U", "resv1"]
    assert call.stdin_file == record.script_path
    assert value(header(record), "-J") == "capi-j"


@pytest.mark.parametrize(("suppress", "expected"), [(True, "N"), (False, None)])
async def test_job_report_mail(fake: FakeLSF, suppress: bool, expected: str | None) -> None:
    await executor(suppress_job_email=suppress).submit("true", "j")
    (call,) = fake.calls
    assert (call.env or {}).get("LSB_JOB_REPORT_MAIL") == expected


@pytest.mark.parametrize(
    ("output", "job_id"),
    [
        ("Job <12345> is submitted to queue <normal>.\n", "12345"),
        ("Job <7> is submitted to default queue <short>.", "7"),
        ("Warning: site banner\nJob <999999> is submitted to queue <gpu>.\n", "999999"),
    ],
)
async def test_submit_output_parsing(fake: FakeLSF, output: str, job_id: str) -> None:
    fake.bsub = output
    record = await executor().submit("true", "j")
    assert record.job_id == job_id


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "Request aborted by esub. Job not submitted.",
        "Job <abc> is submitted to queue <normal>.",
        CommandFailedError("bsub exited 255: normal: No such queue. Job not submitted.", stdout=""),
    ],
)
async def test_submit_errors(fake: FakeLSF, answer: Any) -> None:
    fake.bsub = answer
    lsf = executor()
    with pytest.raises(SubmitError) as info:
        await lsf.submit("true", "j")
    assert isinstance(info.value, ClusterAPIError)
    assert lsf.jobs == {}


# -- bjobs -------------------------------------------------------------------------------
async def test_one_bjobs_call_for_many_jobs(fake: FakeLSF) -> None:
    lsf = executor(command_timeout=42.0)
    fake.next_id = 500
    records = [lsf.track(str(i)) for i in (101, 102, 103)]
    array = await lsf.submit_array("true", "arr", (1, 3))
    fake.calls.clear()
    fake.bjobs = bjobs_json(
        bjobs_record("101", "RUN"),
        bjobs_record("102", "PEND"),
        bjobs_record("103", "DONE"),
        *(bjobs_record(array.job_id, "RUN", index=str(i)) for i in (1, 2, 3)),
    )
    statuses = await lsf.poll()
    assert len(fake.calls) == 1
    argv = fake.calls[0].argv
    assert argv[:2] == ["bjobs", "-a"]
    assert argv[argv.index("-o") + 1].split() == BJOBS_FIELDS
    assert "-json" in argv
    assert sorted(argv[-4:]) == sorted(["101", "102", "103", array.job_id])
    assert "-u" not in argv
    assert fake.calls[0].timeout == 42.0
    assert statuses == {
        "101": JobStatus.RUNNING,
        "102": JobStatus.PENDING,
        "103": JobStatus.DONE,
        array.job_id: JobStatus.RUNNING,
    }
    assert [r.status for r in records] == [JobStatus.RUNNING, JobStatus.PENDING, JobStatus.DONE]


async def test_poll_all_users(fake: FakeLSF) -> None:
    lsf = executor(poll_all_users=True)
    lsf.track("5")
    await lsf.poll()
    (argv,) = fake.argvs("bjobs")
    assert argv[argv.index("-u") + 1] == "all"


async def test_poll_without_active_jobs_runs_nothing(fake: FakeLSF) -> None:
    assert await executor().poll() == {}
    assert fake.calls == []


@pytest.mark.parametrize(
    ("stat", "status"),
    [
        ("PEND", JobStatus.PENDING),
        ("PROV", JobStatus.PENDING),
        ("WAIT", JobStatus.PENDING),
        ("PSUSP", JobStatus.PENDING),
        ("RUN", JobStatus.RUNNING),
        ("USUSP", JobStatus.RUNNING),
        ("SSUSP", JobStatus.RUNNING),
        ("DONE", JobStatus.DONE),
        ("EXIT", JobStatus.FAILED),
        ("UNKWN", JobStatus.UNKNOWN),
        ("ZOMBI", JobStatus.KILLED),
    ],
)
async def test_every_stat_value(fake: FakeLSF, stat: str, status: JobStatus) -> None:
    lsf = executor()
    record = lsf.track("101")
    fake.bjobs = bjobs_json(bjobs_record("101", stat, exit_code="1" if stat == "EXIT" else ""))
    assert await lsf.poll() == {"101": status}
    assert record.status is status


@pytest.mark.parametrize("code", ["", "-", "0"])
async def test_done_exit_code_is_zero(fake: FakeLSF, code: str) -> None:
    lsf = executor()
    record = lsf.track("101", JobStatus.RUNNING)
    fake.bjobs = bjobs_json(bjobs_record("101", "DONE", exit_code=code))
    await lsf.poll()
    assert (record.status, record.exit_code) == (JobStatus.DONE, 0)


@pytest.mark.parametrize("code", [1, 2, 127, 255])
async def test_exit_code_kept(fake: FakeLSF, code: int) -> None:
    lsf = executor()
    record = lsf.track("101")
    fake.bjobs = bjobs_json(bjobs_record("101", "EXIT", exit_code=str(code)))
    await lsf.poll()
    assert (record.status, record.exit_code) == (JobStatus.FAILED, code)


@pytest.mark.parametrize(
    "reason",
    ["TERM_OWNER", "TERM_ADMIN", "TERM_OWNER: job killed by owner", "TERM_FORCE_ADMIN"],
)
async def test_killed_by_a_person(fake: FakeLSF, reason: str) -> None:
    lsf = executor()
    record = lsf.track("101", JobStatus.RUNNING)
    fake.bjobs = bjobs_json(bjobs_record("101", "EXIT", exit_code="130", exit_reason=reason))
    await lsf.poll()
    assert record.status is JobStatus.KILLED
    assert record.exit_code == 130


@pytest.mark.parametrize(
    ("reason", "code"),
    [
        ("TERM_RUNLIMIT", "140"),
        ("TERM_MEMLIMIT", "137"),
        ("TERM_RUNLIMIT: job killed after reaching LSF run time limit", "140"),
    ],
)
async def test_limit_kills_are_failures_with_reason(fake: FakeLSF, reason: str, code: str) -> None:
    lsf = executor()
    record = lsf.track("101", JobStatus.RUNNING)
    fake.bjobs = bjobs_json(bjobs_record("101", "EXIT", exit_code=code, exit_reason=reason))
    await lsf.poll()
    assert record.status is JobStatus.FAILED
    assert record.exit_code == int(code)
    assert reason.split(":")[0] in record.metadata["exit_reason"]


async def test_array_elements_and_parent_roll_up(fake: FakeLSF) -> None:
    lsf = executor()
    array = await lsf.submit_array("true", "arr", (1, 3))
    jid = array.job_id

    def answer(*states: tuple[str, str]) -> str:
        return bjobs_json(
            *(
                bjobs_record(jid, s, index=str(i), exit_code=c, name=f"capi-arr[{i}]")
                for i, (s, c) in enumerate(states, 1)
            )
        )

    fake.bjobs = answer(("DONE", ""), ("RUN", ""), ("PEND", ""))
    await lsf.poll()
    elements = array.array_elements
    assert [elements[i].status for i in (1, 2, 3)] == [
        JobStatus.DONE,
        JobStatus.RUNNING,
        JobStatus.PENDING,
    ]
    assert elements[1].exit_code == 0
    assert array.status is JobStatus.RUNNING
    assert array.completed_elements == 1

    fake.bjobs = answer(("DONE", ""), ("EXIT", "3"), ("RUN", ""))
    await lsf.poll()
    assert not array.is_terminal
    assert array.failed_element_indices == [2]

    fake.bjobs = answer(("DONE", ""), ("EXIT", "3"), ("DONE", ""))
    await lsf.poll()
    assert array.status is JobStatus.FAILED
    assert array.exit_code == 3
    assert array.completed_elements == 3


async def test_array_all_done(fake: FakeLSF) -> None:
    lsf = executor()
    array = await lsf.submit_array("true", "arr", (1, 2))
    fake.bjobs = bjobs_json(*(bjobs_record(array.job_id, "DONE", index=str(i)) for i in (1, 2)))
    await lsf.poll()
    assert (array.status, array.exit_code) == (JobStatus.DONE, 0)


async def test_partial_array_answer_does_not_end_the_array(fake: FakeLSF) -> None:
    lsf = executor()
    array = await lsf.submit_array("true", "arr", (1, 3))
    fake.bjobs = bjobs_json(*(bjobs_record(array.job_id, "DONE", index=str(i)) for i in (1, 2)))
    await lsf.poll()
    assert not array.is_terminal


async def test_error_records_with_exit_255(fake: FakeLSF) -> None:
    lsf = executor()
    done, unknown = lsf.track("101", JobStatus.RUNNING), lsf.track("102", JobStatus.RUNNING)
    stdout = bjobs_json(
        bjobs_record("101", "DONE"), {"JOBID": "102", "ERROR": "Job <102> is not found"}
    )

    def answer(argv: list[str]) -> Any:
        if "-a" in argv and "101" in argv:
            return CommandFailedError("bjobs exited 255: Job <102> is not found", stdout=stdout)
        return bjobs_json()

    fake.bjobs = answer
    statuses = await lsf.poll()
    assert statuses["101"] is JobStatus.DONE
    assert done.exit_code == 0
    assert unknown.status is JobStatus.RUNNING


@pytest.fixture(params=["orjson", "json"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run a test with orjson and again as on a machine without it."""
    if request.param == "json":
        monkeypatch.setattr(jsontext, "orjson", None)
    elif jsontext.orjson is None:
        pytest.skip("orjson is not installed")
    return str(request.param)


async def test_text_after_the_json_is_ignored(fake: FakeLSF, decoder: str) -> None:
    lsf = executor()
    record = lsf.track("101")
    fake.bjobs = bjobs_json(bjobs_record("101", "RUN")) + "\nbjobs: 1 warning\n"
    await lsf.poll()
    assert record.status is JobStatus.RUNNING


async def test_an_answer_with_unknown_ids_and_missing_fields(fake: FakeLSF, decoder: str) -> None:
    lsf = executor()
    full, bare, unknown = (lsf.track(i, JobStatus.RUNNING) for i in ("101", "102", "103"))
    fake.bjobs = bjobs_json(
        bjobs_record("101", "EXIT", exit_code="3"),
        {"JOBID": "102", "STAT": "DONE"},
        {"JOBID": "103", "ERROR": "Job <103> is not found"},
    )
    await lsf.poll()
    assert (full.status, full.exit_code) == (JobStatus.FAILED, 3)
    assert (bare.status, bare.exit_code) == (JobStatus.DONE, 0)
    assert unknown.status is JobStatus.RUNNING


async def test_invalid_json_is_reported_by_either_decoder(fake: FakeLSF, decoder: str) -> None:
    lsf = executor()
    lsf.track("101")
    fake.bjobs = '{"RECORDS": [{"JOBID": "101", "STAT": "RUN"}'
    with pytest.raises(ClusterAPIError, match="invalid JSON"):
        await lsf.poll_strict()


async def test_banner_before_json(fake: FakeLSF) -> None:
    lsf = executor()
    record = lsf.track("101")
    fake.bjobs = "Site maintenance on Friday.\nWarning: something\n" + bjobs_json(
        bjobs_record("101", "RUN")
    )
    await lsf.poll()
    assert record.status is JobStatus.RUNNING


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "   \n",
        "LSF is down. Please wait ...",
        "{not json",
        "[1, 2, 3]",
        CommandFailedError("Cannot connect to LSF. Please wait ...", stdout=""),
        CommandTimeoutError("bjobs timed out"),
    ],
)
async def test_useless_answers_raise_and_change_nothing(fake: FakeLSF, answer: Any) -> None:
    lsf = executor()
    running, pending = lsf.track("101", JobStatus.RUNNING), lsf.track("102")
    fake.bjobs = answer
    with pytest.raises(ClusterAPIError):
        await lsf.poll_strict()
    assert (running.status, pending.status) == (JobStatus.RUNNING, JobStatus.PENDING)
    assert lsf.unseen_seconds("101") == 0.0


async def test_outage_time_never_counts_as_unseen(
    fake: FakeLSF, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = [1000.0]
    lsf = executor()
    lsf._table.clock = lambda: clock[0]
    lsf.track("101", JobStatus.RUNNING)
    fake.bjobs = bjobs_json()  # a good answer that does not mention the job
    await lsf.poll()
    clock[0] += 60
    await lsf.poll()
    assert lsf.unseen_seconds("101") == pytest.approx(60)
    fake.bjobs = CommandFailedError("LSF is down. Please wait ...", stdout="")
    for _ in range(5):
        clock[0] += 3600
        with pytest.raises(ClusterAPIError):
            await lsf.poll_strict()
    assert lsf.unseen_seconds("101") == pytest.approx(60)
    fake.bjobs = bjobs_json()
    clock[0] += 60
    await lsf.poll()
    clock[0] += 60
    await lsf.poll()
    assert 60 <= lsf.unseen_seconds("101") <= 180


async def test_status_never_moves_backwards(fake: FakeLSF) -> None:
    lsf = executor()
    record = lsf.track("101")
    fake.bjobs = bjobs_json(bjobs_record("101", "RUN"))
    await lsf.poll()
    fake.bjobs = bjobs_json(bjobs_record("101", "PEND"))
    await lsf.poll()
    assert record.status is JobStatus.RUNNING
    fake.bjobs = bjobs_json(bjobs_record("101", "DONE"))
    await lsf.poll()
    fake.bjobs = bjobs_json(bjobs_record("101", "RUN"))
    await lsf.poll()
    assert record.status is JobStatus.DONE


async def test_array_element_never_moves_backwards(fake: FakeLSF) -> None:
    lsf = executor()
    array = await lsf.submit_array("true", "arr", (1, 2))
    jid = array.job_id
    fake.bjobs = bjobs_json(
        bjobs_record(jid, "DONE", index="1"), bjobs_record(jid, "RUN", index="2")
    )
    await lsf.poll()
    fake.bjobs = bjobs_json(
        bjobs_record(jid, "RUN", index="1"), bjobs_record(jid, "PEND", index="2")
    )
    await lsf.poll()
    assert array.array_elements[1].status is JobStatus.DONE
    assert array.array_elements[2].status is JobStatus.RUNNING


async def test_max_mem_and_exec_host_kept(fake: FakeLSF) -> None:
    lsf = executor()
    record = lsf.track("101")
    fake.bjobs = bjobs_json(
        bjobs_record("101", "RUN", max_mem="1.2 Gbytes", exec_host="4*node01:2*node02")
    )
    await lsf.poll()
    assert (record.max_mem, record.exec_host) == ("1.2 Gbytes", "4*node01:2*node02")


# -- times -------------------------------------------------------------------------------


JST = timezone(timedelta(hours=9))


@pytest.mark.parametrize(
    "text", ["Nov 22 10:31:17 2026 L", "Nov 22 10:31:17 2026", "Nov 22 10:31:17 2026 E"]
)
async def test_times_with_year(fake: FakeLSF, tz, text: str) -> None:
    tz("JST-9")
    lsf = executor()
    record = lsf.track("101")
    fake.bjobs = bjobs_json(
        bjobs_record("101", "DONE", submit_time=text, start_time=text, finish_time=text)
    )
    await lsf.poll()
    expected = datetime(2026, 11, 22, 1, 31, 17, tzinfo=timezone.utc)
    for moment in (record.submit_time, record.start_time, record.finish_time):
        assert moment == expected
        assert moment.utcoffset() == timedelta(0)


@pytest.mark.parametrize("marker", ["", " L"])
async def test_times_without_year(fake: FakeLSF, tz, marker: str) -> None:
    tz("JST-9")
    local = (datetime.now(JST) - timedelta(days=3)).replace(second=0, microsecond=0)
    text = f"{local:%b} {local.day:2d} {local:%H:%M}{marker}"
    lsf = executor()
    record = lsf.track("101")
    fake.bjobs = bjobs_json(bjobs_record("101", "RUN", submit_time=text, start_time=text))
    await lsf.poll()
    assert record.start_time == local.astimezone(timezone.utc)
    assert record.start_time.tzinfo is not None
    assert record.start_time.utcoffset() == timedelta(0)


def test_time_without_year_across_new_year(tz) -> None:
    tz("UTC0")
    now = datetime(2027, 1, 1, 0, 30, tzinfo=timezone.utc)
    assert parse_month_time("Dec 31 23:59", now) == datetime(
        2026, 12, 31, 23, 59, tzinfo=timezone.utc
    )
    assert parse_month_time("Jan  1 00:10 L", now) == datetime(
        2027, 1, 1, 0, 10, tzinfo=timezone.utc
    )


@pytest.mark.parametrize(
    "text",
    [
        "",
        "-",
        "yesterday",
        "Foo 22 10:31",
        "Nov 22 10:60",
        "Nov 22 10:31:60 2026",
        "Nov 22 24:00:00 2026",
        "Feb 30 10:31:17 2026",
        "Nov 22 10:31:17 20x6",
        "Nov 22 10:31x17 2026",
    ],
)
def test_unreadable_times_are_none(text: str) -> None:
    parse_month_time("Nov 22 10:31:17 2026")  # fills the caches a look-alike might hit
    assert parse_month_time(text) is None


def test_times_either_side_of_a_dst_change(tz) -> None:
    tz("EST5EDT,M3.2.0,M11.1.0")  # clocks went forward at 02:00 on 8 March 2026
    before, after = "Mar  8 01:59:30 2026", "Mar  8 03:00:30 2026"
    for _ in range(2):  # parsed, then from the cache
        assert parse_month_time(before) == datetime(2026, 3, 8, 6, 59, 30, tzinfo=timezone.utc)
        assert parse_month_time(after) == datetime(2026, 3, 8, 7, 0, 30, tzinfo=timezone.utc)


def test_cached_times_follow_a_time_zone_change(tz) -> None:
    text = "Nov 22 10:31:17 2026"
    tz("JST-9")
    assert parse_month_time(text) == datetime(2026, 11, 22, 1, 31, 17, tzinfo=timezone.utc)
    tz("UTC0")
    assert parse_month_time(text) == datetime(2026, 11, 22, 10, 31, 17, tzinfo=timezone.utc)


# -- scale -------------------------------------------------------------------------------
async def test_argv_stays_small_with_100k_jobs(fake: FakeLSF) -> None:
    lsf = executor()
    for i in range(100_000):
        lsf.track(str(10_000_000 + i)).name = f"capi-job{i}"
    fake.bjobs = bjobs_json(bjobs_record("10000000", "RUN", name="capi-x"))
    await lsf.poll()
    (argv,) = [call.argv for call in fake.calls]
    assert sum(len(word.encode()) + 1 for word in argv) < 64 * 1024
    assert argv[argv.index("-J") + 1] == "capi-*"
    assert lsf.jobs["10000000"].status is JobStatus.RUNNING


async def test_many_jobs_without_the_prefix_are_polled_as_all_of_the_users_jobs(
    fake: FakeLSF,
) -> None:
    lsf = executor()
    for i in range(100_000):
        lsf.track(str(10_000_000 + i))  # tracked ids carry no name, so -J would miss them
    fake.bjobs = bjobs_json(bjobs_record("10000001", "DONE", name="other"))
    await lsf.poll()
    (argv,) = [call.argv for call in fake.calls]
    assert sum(len(word.encode()) + 1 for word in argv) < 64 * 1024
    assert "-J" not in argv and "-a" in argv
    assert lsf.jobs["10000001"].status is JobStatus.DONE


# -- bkill -------------------------------------------------------------------------------
async def test_cancel_all_batches_100_ids(fake: FakeLSF) -> None:
    lsf = executor()
    ids = [str(1000 + i) for i in range(250)]
    for job_id in ids:
        lsf.track(job_id)
    await lsf.cancel_all()
    kills = fake.argvs("bkill")
    assert [len(argv) - 1 for argv in kills] == [100, 100, 50]
    assert sorted(job_id for argv in kills for job_id in argv[1:]) == sorted(ids)


async def test_cancel_all_done_flag(fake: FakeLSF) -> None:
    lsf = executor()
    for i in range(150):
        lsf.track(str(i + 1))
    await lsf.cancel_all(done=True)
    kills = fake.argvs("bkill")
    assert len(kills) == 2
    assert all(argv[:2] == ["bkill", "-d"] for argv in kills)
    assert sum(len(argv) - 2 for argv in kills) == 150


@pytest.mark.parametrize(
    ("done", "argv"), [(False, ["bkill", "101"]), (True, ["bkill", "-d", "101"])]
)
async def test_cancel_one(fake: FakeLSF, done: bool, argv: list[str]) -> None:
    lsf = executor()
    lsf.track("101")
    await lsf.cancel("101", done=done)
    assert fake.argvs("bkill") == [argv]


async def test_cancel_survives_bkill_complaints(mock_call: AsyncMock) -> None:
    mock_call.side_effect = CommandFailedError("Job has already finished", stdout="")
    lsf = executor()
    lsf.track("101")
    await lsf.cancel("101")
    mock_call.assert_awaited_once()


@pytest.mark.parametrize(
    ("prefix", "pattern", "expected"),
    [
        ("capi", "align*", "capi-align*"),
        ("capi", "capi-align*", "capi-align*"),
        ("capi", "my job", "capi-my-job"),
        (None, "align*", "align*"),
    ],
)
async def test_cancel_by_name(fake: FakeLSF, prefix, pattern, expected) -> None:
    await executor(job_name_prefix=prefix).cancel_by_name(pattern)
    assert fake.argvs("bkill") == [["bkill", "-J", expected, "0"]]


async def test_cancelled_job_reported_exit_is_killed(fake: FakeLSF) -> None:
    lsf = executor()
    cancelled, other = lsf.track("101", JobStatus.RUNNING), lsf.track("102", JobStatus.RUNNING)
    await lsf.cancel("101")
    fake.bjobs = bjobs_json(
        bjobs_record("101", "EXIT", exit_code="130"), bjobs_record("102", "EXIT", exit_code="130")
    )
    await lsf.poll()
    assert cancelled.status is JobStatus.KILLED
    assert other.status is JobStatus.FAILED


async def test_cancel_by_name_marks_matching_jobs_killed(fake: FakeLSF) -> None:
    lsf = executor()
    match = await lsf.submit("true", "align-1")
    other = await lsf.submit("true", "sort-1")
    await lsf.cancel_by_name("align*")
    fake.bjobs = bjobs_json(
        bjobs_record(match.job_id, "EXIT", exit_code="130"),
        bjobs_record(other.job_id, "EXIT", exit_code="1"),
    )
    await lsf.poll()
    assert (match.status, other.status) == (JobStatus.KILLED, JobStatus.FAILED)


async def test_cancelled_array_is_killed(fake: FakeLSF) -> None:
    lsf = executor()
    array = await lsf.submit_array("true", "arr", (1, 2))
    await lsf.cancel(array.job_id)
    fake.bjobs = bjobs_json(
        bjobs_record(array.job_id, "DONE", index="1"),
        bjobs_record(array.job_id, "EXIT", index="2", exit_code="130"),
    )
    await lsf.poll()
    assert array.array_elements[2].status is JobStatus.KILLED
    assert array.status is JobStatus.KILLED


# -- reconnect ---------------------------------------------------------------------------
RECONNECT_ANSWER = bjobs_json(
    bjobs_record("201", "RUN", name="capi-plain", exec_host="node01"),
    bjobs_record("202", "DONE", index="1", name="capi-arr[1]"),
    bjobs_record("202", "RUN", index="2", name="capi-arr[2]"),
    bjobs_record("202", "PEND", index="3", name="capi-arr[3]"),
)


async def test_reconnect_rebuilds_records(fake: FakeLSF) -> None:
    fake.bjobs = RECONNECT_ANSWER
    lsf = executor()
    adopted = await lsf.reconnect()
    discover = [argv for argv in fake.argvs("bjobs") if "-J" in argv]
    assert discover, fake.calls
    assert discover[0][discover[0].index("-J") + 1] == "capi-*"
    by_id = {r.job_id: r for r in adopted}
    assert set(by_id) == {"201", "202"}
    plain, array = by_id["201"], by_id["202"]
    assert all(r.metadata["reconnected"] is True for r in adopted)
    assert (plain.name, plain.status, plain.exec_host) == (
        "capi-plain",
        JobStatus.RUNNING,
        "node01",
    )
    assert array.name == "capi-arr"
    assert array.is_array
    assert array.metadata["array_range"] == (1, 3)
    assert {i: e.status for i, e in array.array_elements.items()} == {
        1: JobStatus.DONE,
        2: JobStatus.RUNNING,
        3: JobStatus.PENDING,
    }
    assert array.status is JobStatus.RUNNING
    assert lsf.jobs["201"] is plain
    assert set(lsf.active_jobs) == {"201", "202"}


async def test_reconnect_keeps_already_tracked_records(fake: FakeLSF) -> None:
    fake.bjobs = RECONNECT_ANSWER
    lsf = executor()
    mine = lsf.track("201")
    adopted = await lsf.reconnect()
    assert "201" not in {r.job_id for r in adopted}
    assert lsf.jobs["201"] is mine


async def test_reconnect_with_nothing_running(fake: FakeLSF) -> None:
    fake.bjobs = CommandFailedError("bjobs exited 255: No unfinished job found", stdout="")
    lsf = executor()
    assert await lsf.reconnect() == []
    assert lsf.jobs == {}


async def test_reconnect_needs_a_prefix(fake: FakeLSF) -> None:
    fake.bjobs = RECONNECT_ANSWER
    with pytest.raises(ClusterAPIError):
        await executor(job_name_prefix=None).reconnect()


async def test_orphan_terminated_by_lsf_ends_killed_with_its_culprit(
    lsf: LSFExecutor, mock_call: AsyncMock, work_dir: str
) -> None:
    """With -ti LSF itself ends a dependant whose dependency failed (TERM_ORPHAN_SYSTEM),
    sometimes in the same answer that first shows the parent failed: it still ends as
    every executor ends such a job, KILLED with the culprit named."""
    mock_call.return_value = "Job <1> is submitted to queue <normal>."
    parent = await lsf.submit("exit 1", "parent", resources=ResourceSpec(work_dir=work_dir))
    mock_call.return_value = "Job <2> is submitted to queue <normal>."
    child = await lsf.submit(
        "true", "child", resources=ResourceSpec(work_dir=work_dir), depends_on=[parent]
    )
    mock_call.return_value = bjobs_json(
        bjobs_record("1", "EXIT", EXIT_CODE="1", FINISH_TIME="Nov 22 10:32"),
        bjobs_record("2", "EXIT", EXIT_REASON="TERM_ORPHAN_SYSTEM", FINISH_TIME="Nov 22 10:32"),
    )
    await lsf.poll()
    assert parent.status is JobStatus.FAILED
    assert child.status is JobStatus.KILLED
    assert child.metadata["dependency_failed"] == [parent.job_id]
