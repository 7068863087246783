"""Slurm executor: directives, sbatch, squeue/sacct parsing, scancel, reconnect.

``_call`` is mocked; the answers are the real Slurm 22.05.8 outputs recorded in
``tests/data/slurm`` (see FINDINGS.md there), or lines in the same format.
"""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

import cluster_api.executors.slurm as slurm_module
from cluster_api import (
    ClusterAPIError,
    ClusterConfig,
    CommandFailedError,
    CommandTimeoutError,
    JobRecord,
    JobStatus,
    ResourceSpec,
    SubmitError,
    available_executors,
    create_executor,
)
from cluster_api.executors.slurm import SQUEUE_FORMAT, SlurmExecutor
from cluster_api.executors.slurm_formats import (
    format_walltime,
    parse_exit_code,
    parse_slurm_time,
    parse_squeue,
)
from cluster_api.script import exit_file_path
from cluster_api.testing.fake import FakeRunner
from cluster_api.units import expand_indices

DATA = Path(__file__).parent / "data" / "slurm"


def data(name: str) -> str:
    return (DATA / name).read_text()


INVALID_JOB_ID = CommandFailedError(
    "squeue -h exited 1: slurm_load_jobs error: Invalid job id specified",
    stdout="",
    returncode=1,
    stderr="slurm_load_jobs error: Invalid job id specified",
)
NO_ACCOUNTING = CommandFailedError(
    "sacct exited 1: Slurm accounting storage is disabled",
    stdout="",
    returncode=1,
    stderr="Slurm accounting storage is disabled",
)


@pytest.fixture(autouse=True)
def in_work_dir(work_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """ResourceSpec.work_dir defaults to the cwd: keep every script inside the tmp dir."""
    monkeypatch.chdir(work_dir)
    monkeypatch.setattr(slurm_module.Slurm, "submit_retry_delay", 0.0)


def _requested_ids(argv: list[str]) -> list[str]:
    for word in argv:
        if word.startswith("--jobs="):
            return word[len("--jobs=") :].split(",")
    return []


class FakeSlurm:
    """A scripted Slurm behind the shared FakeRunner. sbatch hands out ids; squeue answers
    ``self.squeue`` (text, exception, or callable of argv); sacct behaves like a cluster
    without slurmdbd (plain sacct refuses, ``sacct -c`` answers the lines of
    ``self.jobcomp`` whose own id was asked for), or like one with it when ``self.dbd``
    holds lines. ``self.calls`` is every call the runner saw."""

    def __init__(self, runner: FakeRunner) -> None:
        self.runner = runner
        self.calls = runner.calls
        self.next_id = 101
        self.sbatch: str | Exception | list[str | Exception] | None = None
        self.squeue: Any = ""
        self.jobcomp = ""
        self.dbd: str | None = None
        self.scancel: Exception | None = None
        runner.on("sbatch", self._sbatch).on("squeue", self._squeue).on("sacct", self._sacct)
        runner.on("scancel", self._scancel)

    def _sbatch(self, argv: list[str]) -> str:
        answer = self.sbatch.pop(0) if isinstance(self.sbatch, list) else self.sbatch
        if isinstance(answer, Exception):
            raise answer
        if answer is not None:
            return answer
        job_id, self.next_id = self.next_id, self.next_id + 1
        return f"{job_id}\n"

    def _squeue(self, argv: list[str]) -> str:
        answer = self.squeue(argv) if callable(self.squeue) else self.squeue
        if isinstance(answer, Exception):
            raise answer
        return str(answer)

    def _sacct(self, argv: list[str]) -> str:
        wanted = {i.split("_")[0] for i in _requested_ids(argv)}
        if "-c" in argv:
            source = self.jobcomp
        elif self.dbd is not None:
            source = self.dbd
        else:
            raise NO_ACCOUNTING
        lines = [
            line
            for line in source.splitlines()
            if line and (not wanted or line.split("|")[0].split(".")[0] in wanted)
        ]
        return "".join(f"{line}\n" for line in lines)

    def _scancel(self, argv: list[str]) -> str:
        if self.scancel is not None:
            raise self.scancel
        return ""

    def argvs(self, program: str) -> list[list[str]]:
        return self.runner.argvs(program)


@pytest.fixture
def fake(runner: FakeRunner) -> FakeSlurm:
    return FakeSlurm(runner)


def executor(**config: Any) -> SlurmExecutor:
    return SlurmExecutor(ClusterConfig(executor="slurm", **config))


def header(record: JobRecord) -> list[str]:
    assert record.script_path is not None
    return [
        line for line in Path(record.script_path).read_text().splitlines() if line[:7] == "#SBATCH"
    ]


def values(lines: list[str], option: str) -> list[str]:
    """Values of ``#SBATCH --option=value`` lines (``""`` for a bare flag)."""
    found = []
    for line in lines:
        word = line[len("#SBATCH ") :]
        name, eq, value = word.partition("=")
        if name == option:
            found.append(value if eq else "")
    return found


def value(lines: list[str], option: str) -> str:
    found = values(lines, option)
    assert len(found) == 1, (option, lines)
    return found[0]


def row(
    job_id: str,
    state: str,
    *,
    raw: str | None = None,
    array: str | None = None,
    index: str = "N/A",
    reason: str = "None",
    nodes: str = "localhost",
    name: str = "capi-job",
    start: str = "2026-11-23T12:06:16",
    end: str = "2026-11-23T12:06:17",
) -> str:
    """One squeue line in SQUEUE_FORMAT."""
    base = array or job_id
    shown = job_id if index == "N/A" else f"{base}_{index}"
    return (
        f"{shown}|{raw or base}|{base}|{index}|{state}|{reason}|{nodes}|"
        f"2026-11-23T12:06:14|{start}|{end}|{name}\n"
    )


def jobcomp(*lines: str) -> str:
    """``sacct -c --format=JobIDRaw,JobID,State,ExitCode,NodeList,MaxRSS,Start,End`` lines
    from the recorded ``sacct_c_all`` answer (JobID, State, ExitCode, ... per job)."""
    return "".join(f"{line}\n" for line in lines)


def sacct_fields(recorded: str) -> str:
    """A line of a recorded ``sacct -c`` answer (JobID,JobName,State,ExitCode,NodeList,
    MaxRSS,Submit,Start,End,Elapsed) in the executor's field order."""
    job_id, _name, state, code, nodes, rss, _submit, start, end, _elapsed = recorded.split("|")
    return "|".join([job_id, job_id, state, code, nodes, rss, start, end])


def recorded_sacct(name: str) -> str:
    """The recorded answer ``name`` (header dropped) as the executor's sacct prints it."""
    return jobcomp(*(sacct_fields(line) for line in data(name).splitlines()[1:]))


def recorded_jobcomp() -> str:
    """The whole recorded ``sacct -c`` history."""
    return recorded_sacct("sacct_c_all.stdout.txt")


# -- registry ----------------------------------------------------------------------------
def test_registered_as_slurm() -> None:
    assert "slurm" in available_executors()
    made = create_executor(executor="slurm")
    assert isinstance(made, SlurmExecutor)
    assert made.config.executor == "slurm"


# -- directives --------------------------------------------------------------------------
async def test_default_directives(fake: FakeSlurm, work_dir: str) -> None:
    record = await executor().submit("echo hi", "job")
    lines = header(record)
    assert value(lines, "--job-name") == "capi-job"
    assert value(lines, "--output") == f"{work_dir}/stdout.%j.log"
    assert value(lines, "--error") == f"{work_dir}/stderr.%j.log"
    assert value(lines, "--chdir") == work_dir
    assert value(lines, "--comment") == Path(record.script_path or "").name[: -len(".sh")]
    for option in (
        "--array",
        "--partition",
        "--cpus-per-task",
        "--gpus",
        "--mem",
        "--time",
        "--account",
        "--dependency",
        "--kill-on-invalid-dep",
        "--export",
    ):
        assert values(lines, option) == [], option


@pytest.mark.parametrize(("max_concurrent", "expected"), [(10, "1-50%10"), (None, "1-50")])
async def test_array_directives(fake: FakeSlurm, work_dir: str, max_concurrent, expected) -> None:
    record = await executor().submit_array(
        "echo $SLURM_ARRAY_TASK_ID", "arr", (1, 50), max_concurrent=max_concurrent
    )
    lines = header(record)
    assert value(lines, "--array") == expected
    assert value(lines, "--job-name") == "capi-arr"
    assert value(lines, "--output") == f"{work_dir}/stdout.%A_%a.log"
    assert value(lines, "--error") == f"{work_dir}/stderr.%A_%a.log"
    assert sorted(record.array_elements) == list(range(1, 51))


async def test_array_script_exports_array_index_and_allows_zero(fake: FakeSlurm) -> None:
    record = await executor().submit_array("echo $ARRAY_INDEX", "arr", (0, 3))
    assert value(header(record), "--array") == "0-3"
    text = Path(record.script_path or "").read_text()
    assert 'export ARRAY_INDEX="${SLURM_ARRAY_TASK_ID}"' in text
    assert text.index("ARRAY_INDEX=") < text.index("echo $ARRAY_INDEX")


@pytest.mark.parametrize(
    ("resources", "config", "partition"),
    [
        ({"queue": "long"}, {}, "long"),
        ({}, {"queue": "short"}, "short"),
        ({"queue": "a"}, {"queue": "b"}, "a"),
    ],
)
async def test_queue_is_the_partition(fake: FakeSlurm, resources, config, partition) -> None:
    record = await executor(**config).submit("true", "j", resources=ResourceSpec(**resources))
    assert value(header(record), "--partition") == partition


@pytest.mark.parametrize(
    ("cpus", "gpus", "expected_cpus", "expected_gpus"),
    [(4, 2, ["4"], ["2"]), (1, 0, ["1"], []), (None, None, [], [])],
)
async def test_cpus_and_gpus(fake: FakeSlurm, cpus, gpus, expected_cpus, expected_gpus) -> None:
    record = await executor().submit("true", "j", resources=ResourceSpec(cpus=cpus, gpus=gpus))
    lines = header(record)
    assert values(lines, "--cpus-per-task") == expected_cpus
    assert values(lines, "--gpus") == expected_gpus


@pytest.mark.parametrize(
    ("memory", "expected"),
    [
        ("8 GB", "8192M"),
        ("1.5 GB", "1536M"),
        ("512 mb", "512M"),
        ("100 KB", "1M"),
        ("1025 KB", "2M"),
        ("1 TB", "1048576M"),
        ("64 B", "1M"),
    ],
)
async def test_memory_rounded_up_to_whole_megabytes(fake: FakeSlurm, memory, expected) -> None:
    record = await executor().submit("true", "j", resources=ResourceSpec(memory=memory))
    assert value(header(record), "--mem") == expected


async def test_memory_from_config(fake: FakeSlurm) -> None:
    record = await executor(memory="2 GB").submit("true", "j")
    assert value(header(record), "--mem") == "2048M"


@pytest.mark.parametrize(
    ("walltime", "expected"),
    [
        ("1", "0-00:01:00"),
        ("90", "0-01:30:00"),
        ("04:00", "0-04:00:00"),
        ("00:00:30", "0-00:01:00"),
        ("01:00:01", "0-01:01:00"),
        ("1-00:00", "1-00:00:00"),
        ("2-12:30:00", "2-12:30:00"),
        ("48:00", "2-00:00:00"),
    ],
)
async def test_walltime_as_days_hours_minutes(fake: FakeSlurm, walltime, expected) -> None:
    record = await executor().submit("true", "j", resources=ResourceSpec(walltime=walltime))
    assert value(header(record), "--time") == expected
    assert format_walltime(walltime) == expected


async def test_account_chdir_and_quoting_of_odd_folders(fake: FakeSlurm, tmp_path: Path) -> None:
    odd = tmp_path / "my dir #1 50%"
    odd.mkdir()
    record = await executor().submit(
        "true", "j", resources=ResourceSpec(account="proj_x", work_dir=str(odd))
    )
    lines = header(record)
    assert value(lines, "--account") == "proj_x"
    # sbatch's directive parser knows double quotes, not single ones; "%" is doubled in
    # a filename pattern so it stays a literal "%".
    assert value(lines, "--chdir") == f'"{odd}"'
    assert value(lines, "--output") == f'"{tmp_path}/my dir #1 50%%/stdout.%j.log"'
    assert os.path.dirname(record.script_path or "") == str(odd)


async def test_custom_log_paths(fake: FakeSlurm) -> None:
    spec = ResourceSpec(stdout_path="/logs/out.%j.txt", stderr_path="/logs/err.%j.txt")
    lines = header(await executor().submit("true", "j", resources=spec))
    assert (value(lines, "--output"), value(lines, "--error")) == (
        "/logs/out.%j.txt",
        "/logs/err.%j.txt",
    )


async def test_extra_directives_job_prefixed_config_verbatim(fake: FakeSlurm) -> None:
    slurm = executor(extra_directives=["#SBATCH --qos=high", "#SBATCH --constraint=avx2"])
    spec = ResourceSpec(extra_directives=["--exclusive", "--nice=10"])
    lines = header(await slurm.submit("true", "j", resources=spec))
    assert "#SBATCH --exclusive" in lines and "#SBATCH --nice=10" in lines
    assert lines[-2:] == ["#SBATCH --qos=high", "#SBATCH --constraint=avx2"]


async def test_directives_skip(fake: FakeSlurm) -> None:
    slurm = executor(directives_skip=["--chdir", "--comment"], extra_directives=["#SBATCH --qos=a"])
    lines = header(await slurm.submit("true", "j", resources=ResourceSpec(cpus=4)))
    assert values(lines, "--chdir") == [] and values(lines, "--comment") == []
    assert value(lines, "--cpus-per-task") == "4"
    assert "#SBATCH --qos=a" in lines


async def test_dependencies(fake: FakeSlurm) -> None:
    slurm = executor()
    first = await slurm.submit("true", "first")
    record = await slurm.submit("true", "second", depends_on=[first, "77", "80_3"])
    lines = header(record)
    assert value(lines, "--dependency") == f"afterok:{first.job_id}:77:80_3"
    assert value(lines, "--kill-on-invalid-dep") == "yes"
    assert record.depends_on == [first.job_id, "77", "80_3"]
    single = await slurm.submit("true", "third", depends_on=first)
    assert value(header(single), "--dependency") == f"afterok:{first.job_id}"


async def test_bad_dependency_id_refused_before_writing(fake: FakeSlurm, work_dir: str) -> None:
    with pytest.raises(ValueError):
        await executor().submit("true", "j", depends_on=["12,afterany:13"])
    assert os.listdir(work_dir) == []
    assert fake.argvs("sbatch") == []


async def test_export_none_keeps_the_jobs_env_for_job_steps(fake: FakeSlurm) -> None:
    record = await executor().submit("srun env", "j", env={"A": "1"}, inherit_env=False)
    assert value(header(record), "--export") == "NONE"
    text = Path(record.script_path or "").read_text()
    # sbatch --export=NONE puts SLURM_EXPORT_ENV=NONE in the job, which srun would obey.
    assert "export SLURM_EXPORT_ENV=ALL" in text
    assert "export A=1" in text
    assert text.index("export A=1") < text.index("srun env")
    inherited = await executor().submit("true", "k", inherit_env=True)
    assert values(header(inherited), "--export") == []
    assert "SLURM_EXPORT_ENV" not in Path(inherited.script_path or "").read_text()


async def test_command_with_sbatch_line_is_refused(fake: FakeSlurm) -> None:
    with pytest.raises(ValueError, match="#SBATCH"):
        await executor().submit("#SBATCH --partition=other\ntrue", "j")


def test_build_header_uses_name_and_applies_config() -> None:
    lines = executor(queue="normal", cpus=2).build_header("my job", ResourceSpec(memory="1 GB"))
    assert all(line.startswith("#SBATCH --") for line in lines)
    assert value(lines, "--job-name") == '"my job"'  # exactly as given, quoted (test_compat)
    assert (
        value(lines, "--partition"),
        value(lines, "--cpus-per-task"),
        value(lines, "--mem"),
    ) == (
        "normal",
        "2",
        "1024M",
    )


# -- sbatch ------------------------------------------------------------------------------
async def test_submit_argv_with_script_argument(fake: FakeSlurm) -> None:
    slurm = executor(extra_args=["--qos=high"])
    record = await slurm.submit(
        "true", "j", resources=ResourceSpec(extra_args=["--reservation=r1"])
    )
    (call,) = fake.calls
    assert call.argv == [
        "sbatch",
        "--parsable",
        "--qos=high",
        "--reservation=r1",
        record.script_path,
    ]
    assert not call.stdin_file
    assert record.job_id == "101"
    assert slurm.jobs == {"101": record}


async def test_submit_argv_with_stdin(fake: FakeSlurm) -> None:
    slurm = executor(use_stdin=True, extra_args=["--qos=high"])
    record = await slurm.submit("true", "j", resources=ResourceSpec(extra_args=["-v"]))
    (call,) = fake.calls
    assert call.argv == ["sbatch", "--parsable", "--qos=high", "-v"]
    assert call.stdin_file == record.script_path


@pytest.mark.parametrize(
    ("output", "job_id"),
    [(data("sbatch_parsable.txt"), "1"), ("12345;cluster2\n", "12345"), ("note: x\n42\n", "42")],
)
async def test_submit_output_parsing(fake: FakeSlurm, output: str, job_id: str) -> None:
    fake.sbatch = output
    assert (await executor().submit("true", "j")).job_id == job_id
    assert executor().scheduler.parse_submit(output) == job_id


@pytest.mark.parametrize(
    "answer",
    [
        "",
        "Submitted batch job 5",
        CommandFailedError(
            "sbatch exited 1: error: invalid partition specified: nope",
            stderr="sbatch: error: invalid partition specified: nope",
        ),
    ],
)
async def test_submit_errors(fake: FakeSlurm, answer: Any) -> None:
    fake.sbatch = answer
    slurm = executor()
    with pytest.raises(SubmitError):
        await slurm.submit("true", "j")
    assert slurm.jobs == {}
    assert len(fake.argvs("sbatch")) == 1


async def test_lost_submit_answer_is_found_by_its_comment(fake: FakeSlurm) -> None:
    fake.sbatch = CommandTimeoutError("sbatch timed out")
    slurm = executor()

    def squeue(argv: list[str]) -> str:
        assert "--name=capi-j" in argv and argv[argv.index("-o") + 1] == "%F|%k"
        return "ARRAY_JOB_ID|COMMENT\n311|capi-j.7\n412|capi-j.1\n"

    fake.squeue = squeue
    record = await slurm.submit("true", "j")
    assert record.job_id == "412"
    assert len(fake.argvs("sbatch")) == 1


async def test_transient_submit_failure_is_retried_once(fake: FakeSlurm) -> None:
    transient = CommandFailedError(
        "sbatch exited 1: Socket timed out on send/recv operation",
        stderr="sbatch: error: Batch job submission failed: Socket timed out on send/recv",
    )
    fake.sbatch = [transient, "77\n"]
    fake.squeue = "ARRAY_JOB_ID|COMMENT\n"  # the lookup: squeue answered, no such job
    record = await executor().submit("true", "j")
    assert record.job_id == "77"
    assert len(fake.argvs("sbatch")) == 2
    fake.sbatch = [transient, transient]
    with pytest.raises(SubmitError, match="twice"):
        await executor().submit("true", "j2")


# -- squeue ------------------------------------------------------------------------------
async def test_one_squeue_for_all_jobs(fake: FakeSlurm) -> None:
    slurm = executor(command_timeout=42.0)
    for job_id in ("4", "5", "7", "8", "11"):
        slurm.track(job_id)
    array = slurm.track("13")
    fake.squeue = data("squeue_default_states.txt")
    statuses = await slurm.poll()
    (call,) = fake.calls
    argv = call.argv
    assert argv[:7] == ["squeue", "-h", "-t", "all", "-r", "-o", SQUEUE_FORMAT]
    assert sorted(argv[7][len("--jobs=") :].split(","), key=int) == ["4", "5", "7", "8", "11", "13"]
    assert call.env == {"SLURM_BITSTR_LEN": "0"}
    assert call.timeout == 42.0
    assert statuses == {
        "4": JobStatus.RUNNING,
        "5": JobStatus.RUNNING,
        "7": JobStatus.PENDING,
        "8": JobStatus.PENDING,
        "11": JobStatus.PENDING,
        "13": JobStatus.RUNNING,
    }
    assert {i: e.status for i, e in array.array_elements.items()} == {
        1: JobStatus.RUNNING,
        2: JobStatus.RUNNING,
        **{i: JobStatus.PENDING for i in range(3, 11)},
    }


async def test_poll_without_active_jobs_runs_nothing(fake: FakeSlurm) -> None:
    assert await executor().poll() == {}
    assert fake.calls == []


@pytest.mark.parametrize(
    ("state", "reason", "status", "exit_reason"),
    [
        ("PENDING", "Resources", JobStatus.PENDING, None),
        ("CONFIGURING", "None", JobStatus.PENDING, None),
        ("RUNNING", "None", JobStatus.RUNNING, None),
        ("COMPLETING", "None", JobStatus.RUNNING, None),
        ("SUSPENDED", "None", JobStatus.RUNNING, None),
        ("CANCELLED", "None", JobStatus.KILLED, None),
        ("TIMEOUT", "TimeLimit", JobStatus.FAILED, "TIMEOUT"),
        ("OUT_OF_MEMORY", "OutOfMemory", JobStatus.FAILED, "OUT_OF_MEMORY"),
        ("NODE_FAIL", "None", JobStatus.FAILED, "NODE_FAIL"),
        ("BOOT_FAIL", "None", JobStatus.FAILED, "BOOT_FAIL"),
        ("DEADLINE", "None", JobStatus.FAILED, "DEADLINE"),
        ("PREEMPTED", "None", JobStatus.FAILED, "PREEMPTED"),
        ("CANCELLED", "DependencyNeverSatisfied", JobStatus.KILLED, "DependencyNeverSatisfied"),
    ],
)
async def test_state_mapping(fake: FakeSlurm, state, reason, status, exit_reason) -> None:
    slurm = executor()
    record = slurm.track("101")
    fake.squeue = row("101", state, reason=reason)
    assert await slurm.poll() == {"101": status}
    assert record.metadata.get("exit_reason") == exit_reason


async def test_recorded_final_states_and_exit_codes(fake: FakeSlurm) -> None:
    """COMPLETED needs no history; FAILED/TIMEOUT ask sacct (one call, -c after plain sacct
    says there is no database) for the exit code squeue cannot show."""
    slurm = executor()
    records = {i: slurm.track(i, JobStatus.RUNNING) for i in ("1", "2", "3", "4", "6", "7")}
    fake.squeue = data("squeue_t_all_final.txt")
    fake.jobcomp = recorded_jobcomp()
    await slurm.poll()
    got = {i: (r.status, r.exit_code, r.metadata.get("exit_reason")) for i, r in records.items()}
    assert got == {
        "1": (JobStatus.DONE, 0, None),
        "2": (JobStatus.FAILED, 3, None),
        "3": (JobStatus.FAILED, 128 + 9, None),
        "4": (JobStatus.FAILED, None, "TIMEOUT"),
        "6": (JobStatus.KILLED, None, None),
        "7": (JobStatus.KILLED, None, None),
    }
    sacct = fake.argvs("sacct")
    assert len(sacct) == 2  # plain (refused), then -c: one history query
    assert "-c" not in sacct[0] and "-c" in sacct[1]
    assert sorted(_requested_ids(sacct[1]), key=int) == ["2", "3", "4"]
    assert {"--parsable2", "--noheader"} <= set(sacct[1])
    assert len(fake.argvs("squeue")) == 1


async def test_sacct_mode_is_remembered(fake: FakeSlurm) -> None:
    slurm = executor()
    fake.jobcomp = recorded_jobcomp()
    slurm.track("2", JobStatus.RUNNING)
    fake.squeue = row("2", "FAILED", reason="NonZeroExitCode")
    await slurm.poll()
    slurm.track("3", JobStatus.RUNNING)
    fake.squeue = row("3", "FAILED", reason="JobLaunchFailure")
    fake.calls.clear()
    await slurm.poll()
    (argv,) = fake.argvs("sacct")
    assert "-c" in argv
    assert slurm.jobs["3"].exit_code == 137


async def test_with_slurmdbd_plain_sacct_and_batch_step_memory(fake: FakeSlurm) -> None:
    slurm = executor()
    record = slurm.track("2", JobStatus.RUNNING)
    fake.squeue = INVALID_JOB_ID
    fake.dbd = jobcomp(
        "2|2|FAILED|3:0|node7||2026-11-23T12:06:16|2026-11-23T12:06:17",
        "2.batch|2.batch|FAILED|3:0|node7|2048K|2026-11-23T12:06:16|2026-11-23T12:06:17",
        "2.extern|2.extern|COMPLETED|0:0|node7|0|2026-11-23T12:06:16|2026-11-23T12:06:17",
    )
    await slurm.poll()
    assert (record.status, record.exit_code, record.exec_host) == (JobStatus.FAILED, 3, "node7")
    assert record.max_mem == "2048K"
    assert all("-c" not in argv for argv in fake.argvs("sacct"))


async def test_single_unknown_id_is_not_an_outage(fake: FakeSlurm) -> None:
    """squeue exits 1 for one purged id: that is "not found", answered by sacct -c."""
    slurm = executor()
    record = slurm.track("106", JobStatus.RUNNING)
    fake.squeue = INVALID_JOB_ID
    fake.jobcomp = recorded_sacct("sacct_c_purged_job.stdout.txt")
    await slurm.poll()
    assert (record.status, record.exit_code) == (JobStatus.DONE, 0)
    assert record.metadata["resolved_from"] == "sacct"
    assert record.finish_time == datetime(2026, 11, 23, 12, 9, 19).astimezone(timezone.utc)
    assert slurm.unseen_seconds("106") == 0.0


async def test_unknown_ids_among_known_ones(fake: FakeSlurm) -> None:
    slurm = executor()
    known, gone = slurm.track("5"), slurm.track("99999", JobStatus.RUNNING)
    fake.squeue = data("squeue_known_and_unknown.stdout.txt")
    statuses = await slurm.poll()
    assert statuses == {"5": JobStatus.RUNNING, "99999": JobStatus.RUNNING}
    assert known.exec_host == "localhost"
    assert [_requested_ids(a) for a in fake.argvs("sacct")] == [["99999"], ["99999"]]
    assert not gone.is_terminal  # unknown to sacct too: left for the exit file / zombie check


@pytest.mark.parametrize(
    "answer",
    [
        CommandFailedError(
            "squeue exited 1: slurm_load_jobs error: Unable to contact slurm controller",
            stderr="slurm_load_jobs error: Unable to contact slurm controller (connect failure)",
        ),
        CommandTimeoutError("squeue timed out"),
        "<html>proxy error</html>\n",
    ],
)
async def test_useless_answers_raise_and_change_nothing(fake: FakeSlurm, answer: Any) -> None:
    slurm = executor()
    running, pending = slurm.track("101", JobStatus.RUNNING), slurm.track("102")
    fake.squeue = answer
    with pytest.raises(ClusterAPIError):
        await slurm.poll_strict()
    assert (running.status, pending.status) == (JobStatus.RUNNING, JobStatus.PENDING)
    assert slurm.unseen_seconds("101") == 0.0
    assert fake.argvs("sacct") == []


async def test_sacct_failure_never_fails_the_poll(fake: FakeSlurm, runner: FakeRunner) -> None:
    slurm = executor()
    record = await slurm.submit("exit 4", "j")
    Path(exit_file_path(record.script_path or "")).write_text("4\n")
    fake.squeue = row(record.job_id, "FAILED", reason="NonZeroExitCode")
    runner.on("sacct", CommandTimeoutError("sacct timed out"))
    await slurm.poll()
    assert (record.status, record.exit_code) == (JobStatus.FAILED, 4)


async def test_purged_job_unknown_to_sacct_ends_from_its_exit_file(fake: FakeSlurm) -> None:
    slurm = executor()
    record = await slurm.submit("exit 5", "j")
    fake.squeue = INVALID_JOB_ID
    await slurm.poll()
    assert not record.is_terminal
    Path(exit_file_path(record.script_path or "")).write_text("5\n")
    await slurm.poll()
    assert (record.status, record.exit_code) == (JobStatus.FAILED, 5)
    assert record.metadata["resolved_from"] == "exit_file"


async def test_recover_lost_asks_once_per_cycle(fake: FakeSlurm) -> None:
    """The status query already asked sacct about every job squeue dropped, so the base
    class's and the monitor's recover_lost in the same cycle add no second call; called
    on its own, it asks."""
    slurm = executor()
    record = slurm.track("2", JobStatus.RUNNING)
    fake.squeue = INVALID_JOB_ID
    await slurm.poll()  # jobcomp still empty: unknown to sacct
    assert not record.is_terminal
    calls = len(fake.argvs("sacct"))
    await slurm.recover_lost([record])
    assert len(fake.argvs("sacct")) == calls
    slurm._history_asked_now.clear()
    fake.jobcomp = recorded_jobcomp()
    await slurm.recover_lost([record])
    assert len(fake.argvs("sacct")) == calls + 1
    assert (record.status, record.exit_code) == (JobStatus.FAILED, 3)
    assert record.metadata["resolved_from"] == "sacct"


@pytest.mark.parametrize(
    ("squeue_file", "sacct_file", "exit_code", "reason"),
    [
        (
            "cgroup_oom_squeue_t_all.txt",
            "cgroup_oom_sacct_c.stdout.txt",
            128 + 125,
            "OUT_OF_MEMORY",
        ),
        ("overmemorykill_squeue_t_all.txt", "overmemorykill_sacct_c.stdout.txt", 128 + 9, None),
    ],
)
async def test_memory_kills(fake: FakeSlurm, squeue_file, sacct_file, exit_code, reason) -> None:
    slurm = executor()
    record = slurm.track("1", JobStatus.RUNNING)
    fake.squeue = data(squeue_file)
    fake.jobcomp = recorded_sacct(sacct_file)
    await slurm.poll()
    assert (record.status, record.exit_code) == (JobStatus.FAILED, exit_code)
    assert record.metadata.get("exit_reason") == reason


async def test_completing_is_running(fake: FakeSlurm) -> None:
    slurm = executor()
    record = slurm.track("23")
    fake.squeue = data("squeue_completing.txt")
    assert await slurm.poll() == {"23": JobStatus.RUNNING}
    assert record.finish_time is None  # %e of an unfinished job is not its end


async def test_times_are_local_converted_to_utc(fake: FakeSlurm, tz) -> None:
    tz("JST-9")
    slurm = executor()
    done, pending = slurm.track("1"), slurm.track("8")
    fake.squeue = data("squeue_finished_t_all.txt") + data("squeue_pending.txt")
    await slurm.poll()
    utc = timezone.utc
    assert done.submit_time == datetime(2026, 11, 23, 3, 6, 14, tzinfo=utc)
    assert done.start_time == datetime(2026, 11, 23, 3, 6, 16, tzinfo=utc)
    assert done.finish_time == datetime(2026, 11, 23, 3, 6, 17, tzinfo=utc)
    assert done.finish_time.utcoffset() == timedelta(0)
    assert pending.start_time is None  # %S of a pending job is its expected start


@pytest.mark.parametrize("text", ["N/A", "Unknown", "NONE", "None", "", "(null)", "garbage"])
def test_unreadable_times_are_none(text: str) -> None:
    assert parse_slurm_time(text) is None


@pytest.mark.parametrize(
    ("text", "code"), [("0:0", 0), ("3:0", 3), ("0:9", 137), ("0:15", 143), ("2:0", 2), ("x", None)]
)
def test_exit_code_and_signal(text: str, code: int | None) -> None:
    assert parse_exit_code(text) == code


def test_name_with_a_pipe_stays_whole() -> None:
    rows = {r.shown_id: r for r in parse_squeue(data("squeue_running.txt"))}
    assert rows["9"].name == "name with spaces|pipe"
    assert rows["13_1"].raw_id == "17" and rows["13_1"].array_id == "13"


# -- arrays ------------------------------------------------------------------------------
async def test_array_elements_get_their_own_ids(fake: FakeSlurm) -> None:
    slurm = executor()
    array = slurm.track("13")
    fake.squeue = data("squeue_array_limited_r.txt")
    await slurm.poll()
    assert array.array_elements[1].status is JobStatus.RUNNING
    assert array.array_elements[1].exec_host == "localhost"
    assert array.array_elements[9].status is JobStatus.PENDING
    # only started elements have ids of their own; pending ones still show the array's
    assert slurm.scheduler.element_ids == {"17": ("13", 1), "18": ("13", 2)}
    fake.squeue = data("squeue_array_limited_t_all.txt")
    await slurm.poll()
    assert array.status is JobStatus.DONE and array.exit_code == 0
    assert slurm.scheduler.element_ids["13"] == ("13", 10)  # the last to start took the array's id
    assert fake.argvs("sacct") == []


async def test_array_with_a_failed_element(fake: FakeSlurm) -> None:
    slurm = executor()
    fake.next_id = 14
    array = await slurm.submit_array("true", "arr", (1, 4))
    fake.squeue = data("squeue_array_fail_t_all.txt")
    fake.jobcomp = recorded_jobcomp()
    await slurm.poll()
    assert array.status is JobStatus.FAILED
    assert array.failed_element_indices == [3]
    assert array.array_elements[3].exit_code == 2
    assert array.exit_code == 2
    (argv,) = [a for a in fake.argvs("sacct") if "-c" in a]
    assert _requested_ids(argv) == ["21"]  # the failed element's own id, nothing else


async def test_purged_array_elements_resolved_by_their_own_ids(fake: FakeSlurm) -> None:
    """After MinJobAge only ``sacct -c`` remains, and it knows elements by their own ids
    alone; ``-j 14`` is whichever element took id 14. An element whose own id was never
    seen is left to its exit file rather than guessed."""
    slurm = executor()
    fake.next_id = 14
    array = await slurm.submit_array("true", "arr", (1, 4))
    fake.squeue = (
        row("14", "RUNNING", index="1", raw="19", end="NONE")
        + row("14", "RUNNING", index="2", raw="20", end="NONE")
        + row("14", "RUNNING", index="3", raw="21", end="NONE")
        + row("14", "PENDING", index="4", raw="14", nodes="", start="N/A", end="N/A")
    )
    await slurm.poll()
    fake.squeue = INVALID_JOB_ID
    fake.jobcomp = recorded_jobcomp()
    await slurm.poll()
    (argv,) = [a for a in fake.argvs("sacct") if "-c" in a]
    assert sorted(_requested_ids(argv), key=int) == ["14", "19", "20", "21"]
    elements = array.array_elements
    assert [elements[i].status for i in (1, 2, 3)] == [
        JobStatus.DONE,
        JobStatus.DONE,
        JobStatus.FAILED,
    ]
    assert elements[3].exit_code == 2
    assert elements[4].status is JobStatus.PENDING  # line 14 is not known to be element 4
    assert not array.is_terminal
    Path(exit_file_path(array.script_path or "", 4)).write_text("0\n")
    await slurm.poll()
    assert elements[4].status is JobStatus.DONE
    assert array.status is JobStatus.FAILED and array.failed_element_indices == [3]


def test_pending_array_expressions() -> None:
    assert expand_indices("3-10%2") == list(range(3, 11))
    assert expand_indices("1,4,7-11:2") == [1, 4, 7, 9, 11]
    long = parse_squeue(data("squeue_array_long_expression_bitstr_len_0.txt"))[0]
    assert len(expand_indices(long.index)) == 40
    truncated = parse_squeue(data("squeue_array_long_expression.txt"))[0]
    assert expand_indices(truncated.index) == []


async def test_array_pending_rest_without_r(fake: FakeSlurm) -> None:
    slurm = executor()
    array = slurm.track("13")
    fake.squeue = data("squeue_array_limited.txt")
    await slurm.poll()
    assert sorted(array.array_elements) == list(range(1, 11))
    assert array.array_elements[5].status is JobStatus.PENDING


# -- dependencies ------------------------------------------------------------------------
async def test_dependency_never_satisfied(fake: FakeSlurm) -> None:
    """With --kill-on-invalid-dep the dependant is CANCELLED; without it, it pends forever.
    Both end KILLED (never ran: API.md's end for a failed dependency) with the reason,
    and the pending one is cancelled."""
    slurm = executor()
    parent, killed = (slurm.track(i, JobStatus.RUNNING) for i in ("10", "11"))
    pending = slurm.track("12")
    fake.squeue = data("squeue_dependency_after_parent_failed.txt")
    fake.jobcomp = recorded_jobcomp()
    await slurm.poll()
    assert (parent.status, parent.exit_code) == (JobStatus.FAILED, 1)
    for record in (killed, pending):
        assert record.status is JobStatus.KILLED
        assert record.metadata["exit_reason"] == "DependencyNeverSatisfied"
    assert fake.argvs("scancel") == [["scancel", "-v", "12"]]
    assert _requested_ids(fake.argvs("sacct")[-1]) == ["10"]


async def test_cancel_does_not_relabel_a_job_slurm_reports_failed(fake: FakeSlurm) -> None:
    """scancel is silent for a job that had already failed: squeue's FAILED is its end,
    and a job scancel did kill shows CANCELLED (tests/data/slurm/scancel_*)."""
    slurm = executor()
    failed, killed = slurm.track("101", JobStatus.RUNNING), slurm.track("102", JobStatus.RUNNING)
    await slurm.cancel_all()
    fake.squeue = row("101", "FAILED", reason="NonZeroExitCode") + row("102", "CANCELLED")
    await slurm.poll()
    assert (failed.status, killed.status) == (JobStatus.FAILED, JobStatus.KILLED)


# -- scale -------------------------------------------------------------------------------
async def test_argv_stays_small_with_100k_jobs(fake: FakeSlurm) -> None:
    slurm = executor()
    for i in range(100_000):
        slurm.track(str(10_000_000 + i))
    fake.squeue = row("10000001", "RUNNING") + row("5", "RUNNING", name="someone-else")
    fake.jobcomp = jobcomp("10000002|10000002|COMPLETED|0:0|localhost||N/A|N/A", "7|7|FAILED|1:0")
    await slurm.poll()
    (argv,) = fake.argvs("squeue")
    assert sum(len(word.encode()) + 1 for word in argv) < 64 * 1024
    assert argv[-1] == "--me" and not any(w.startswith("--jobs") for w in argv)
    assert slurm.jobs["10000001"].status is JobStatus.RUNNING
    assert "5" not in slurm.jobs
    # Every other job left the queue: one history query for all of them, by time window.
    sacct = fake.argvs("sacct")[-1]
    assert "-c" in sacct and "--starttime=now-30days" in sacct
    assert sum(len(word.encode()) + 1 for word in sacct) < 64 * 1024
    assert slurm.jobs["10000002"].status is JobStatus.DONE
    assert "7" not in slurm.jobs


async def test_history_by_time_window_when_ids_do_not_fit(
    fake: FakeSlurm, monkeypatch: pytest.MonkeyPatch, tz
) -> None:
    tz("UTC0")
    monkeypatch.setattr(slurm_module.Slurm, "max_id_chars", 4)
    slurm = executor()
    first = await slurm.submit("true", "a")
    second = await slurm.submit("true", "b")
    first.submit_time = datetime(2026, 11, 20, 8, 30, tzinfo=timezone.utc)
    fake.squeue = ""
    fake.dbd = jobcomp(
        f"{first.job_id}|{first.job_id}|COMPLETED|0:0|n1||N/A|N/A",
        f"{second.job_id}|{second.job_id}|FAILED|2:0|n1||N/A|N/A",
        "999|999|FAILED|1:0|n1||N/A|N/A",
    )
    await slurm.poll()
    (squeue,) = fake.argvs("squeue")
    assert squeue[-1] == "--me"
    (sacct,) = fake.argvs("sacct")
    assert "--starttime=2026-11-20T08:30:00" in sacct
    assert not any(word.startswith("--jobs") for word in sacct)
    assert (first.status, second.status, second.exit_code) == (JobStatus.DONE, JobStatus.FAILED, 2)
    assert "999" not in slurm.jobs


async def test_ids_squeue_would_refuse_are_not_sent(fake: FakeSlurm) -> None:
    slurm = executor()
    slurm.track("101")
    slurm.track("not-an-id")
    fake.squeue = row("101", "RUNNING")
    await slurm.poll()
    assert _requested_ids(fake.argvs("squeue")[0]) == ["101"]
    assert slurm.jobs["101"].status is JobStatus.RUNNING


# -- scancel -----------------------------------------------------------------------------
async def test_cancel_all_batches_100_ids(fake: FakeSlurm) -> None:
    slurm = executor()
    ids = [str(1000 + i) for i in range(250)]
    for job_id in ids:
        slurm.track(job_id)
    await slurm.cancel_all()
    kills = fake.argvs("scancel")
    assert [len(argv) - 2 for argv in kills] == [100, 100, 50]
    assert sorted(job_id for argv in kills for job_id in argv[2:]) == ids


@pytest.mark.parametrize("done", [False, True])
async def test_cancel_one(fake: FakeSlurm, done: bool) -> None:
    slurm = executor()
    slurm.track("101")
    await slurm.cancel("101", done=done)
    assert fake.argvs("scancel") == [["scancel", "-v", "101"]]


async def test_cancel_refuses_option_like_ids(fake: FakeSlurm) -> None:
    await executor().cancel("--user=root")
    assert fake.argvs("scancel") == []


async def test_cancel_survives_scancel_complaints(fake: FakeSlurm) -> None:
    fake.scancel = CommandFailedError(
        "scancel: error: Kill job error on job id 5: Job/step already completing or completed"
    )
    slurm = executor()
    slurm.track("5")
    await slurm.cancel("5")
    assert len(fake.argvs("scancel")) == 1


@pytest.mark.parametrize(
    ("prefix", "pattern", "expected"),
    [("capi", "align*", ["11", "13"]), ("capi", "capi-align-2", ["13"]), (None, "sort*", ["12"])],
)
async def test_cancel_by_name(fake: FakeSlurm, prefix, pattern, expected) -> None:
    fake.squeue = (
        row("11", "RUNNING", name="capi-align-1")
        + row("12", "PENDING", name="sort-1")
        + row("13", "RUNNING", index="1", raw="15", name="capi-align-2")
        + row("13", "PENDING", index="2", name="capi-align-2")
        + row("14", "RUNNING", name="other")
        + row("16", "COMPLETED", name="capi-align-3")  # ended: nothing to cancel
    )
    await executor(job_name_prefix=prefix).cancel_by_name(pattern)
    (listing,) = fake.argvs("squeue")
    assert listing == ["squeue", "-h", "-t", "all", "-r", "-o", slurm_module.SQUEUE_FORMAT, "--me"]
    assert fake.argvs("scancel") == [["scancel", "-v", *expected]]


async def test_cancel_by_name_without_matches_cancels_nothing(fake: FakeSlurm) -> None:
    fake.squeue = row("14", "RUNNING", name="other")
    await executor().cancel_by_name("nothing*")
    assert fake.argvs("scancel") == []


# -- reconnect ---------------------------------------------------------------------------
RECONNECT_ANSWER = (
    row("201", "RUNNING", name="capi-plain", end="NONE")
    + row("202", "COMPLETED", index="1", raw="205", name="capi-arr")
    + row("202", "RUNNING", index="2", raw="206", name="capi-arr", end="NONE")
    + row("202", "PENDING", index="3", nodes="", name="capi-arr", start="N/A", end="N/A")
    + row("203", "COMPLETED", name="capi-finished")
    + row("204", "RUNNING", name="someone-else", end="NONE")
)


async def test_reconnect_rebuilds_records(fake: FakeSlurm) -> None:
    fake.squeue = lambda argv: RECONNECT_ANSWER
    slurm = executor()
    adopted = await slurm.reconnect()
    discover = fake.argvs("squeue")[0]
    assert discover == ["squeue", "-h", "-t", "all", "-r", "-o", SQUEUE_FORMAT, "--me"]
    by_id = {r.job_id: r for r in adopted}
    assert set(by_id) == {"201", "202"}
    plain, array = by_id["201"], by_id["202"]
    assert all(r.metadata["reconnected"] is True for r in adopted)
    assert (plain.name, plain.status, plain.exec_host) == (
        "capi-plain",
        JobStatus.RUNNING,
        "localhost",
    )
    assert array.name == "capi-arr"
    assert array.metadata["array_range"] == (1, 3)
    assert {i: e.status for i, e in array.array_elements.items()} == {
        1: JobStatus.DONE,
        2: JobStatus.RUNNING,
        3: JobStatus.PENDING,
    }
    assert slurm.scheduler.element_ids == {"205": ("202", 1), "206": ("202", 2)}
    assert set(slurm.active_jobs) == {"201", "202"}


async def test_reconnect_keeps_tracked_records_and_needs_a_prefix(fake: FakeSlurm) -> None:
    fake.squeue = RECONNECT_ANSWER
    slurm = executor()
    mine = slurm.track("201")
    adopted = await slurm.reconnect()
    assert "201" not in {r.job_id for r in adopted}
    assert slurm.jobs["201"] is mine
    with pytest.raises(ClusterAPIError):
        await executor(job_name_prefix=None).reconnect()
