"""Core behaviour shared by every executor: resources, names, scripts, records, ``_call``."""

from __future__ import annotations

import asyncio
import gc
import json
import os
import stat
import subprocess
import sys
import time
import warnings
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from conftest import bjobs_json, bjobs_record

import cluster_api
import cluster_api.core as core
from cluster_api import (
    ArrayElement,
    ClusterAPIError,
    ClusterConfig,
    CommandFailedError,
    CommandTimeoutError,
    Executor,
    JobExitCondition,
    JobMonitor,
    JobRecord,
    JobStatus,
    LSFExecutor,
    ResourceSpec,
    SubmitError,
)
from cluster_api.script import compose_script, render_script, safe_job_name, write_script
from cluster_api.testing.fake import FakeRunner

SUBMITTED = "Job <{}> is submitted to queue <normal>."


@pytest.fixture(autouse=True)
def in_work_dir(work_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """ResourceSpec.work_dir defaults to the cwd: keep every script inside the tmp dir."""
    monkeypatch.chdir(work_dir)


class FakeLSF:
    """Answers bsub with increasing ids and bjobs with ``self.states`` (id -> STAT), through
    the shared FakeRunner; ``self.calls`` is every call it saw."""

    def __init__(self, runner: FakeRunner, first_id: int = 101) -> None:
        self.calls = runner.calls
        self.next_id = first_id
        self.states: dict[str, tuple[str, ...]] = {}
        runner.on("bsub", self._bsub).on("bjobs", self._bjobs)
        for program in ("bkill", "bhist"):
            runner.on(program, "")

    def _bsub(self, argv: list[str]) -> str:
        job_id, self.next_id = self.next_id, self.next_id + 1
        return SUBMITTED.format(job_id)

    def _bjobs(self, argv: list[str]) -> str:
        records = []
        for job_id, state in self.states.items():
            stat_, code, reason = (*state, "", "")[:3]
            records.append(bjobs_record(job_id, stat_, exit_code=code, exit_reason=reason))
        return bjobs_json(*records)


@pytest.fixture
def fake(runner: FakeRunner) -> FakeLSF:
    return FakeLSF(runner)


def run_bash(script: str, cwd: str, env: dict[str, str] | None = None) -> int:
    full_env = {**os.environ, **(env or {})}
    return subprocess.run(["bash", script], cwd=cwd, env=full_env, timeout=30).returncode


def exit_file(script: str) -> Path:
    return Path(script[: -len(".sh")] + ".exit")


# -- ResourceSpec ------------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"cpus": -1},
        {"cpus": 0},
        {"cpus": 2.5},
        {"cpus": True},
        {"cpus": "4"},
        {"gpus": -1},
        {"memory": "lots"},
        {"memory": "8"},
        {"walltime": "1:75"},
        {"walltime": "soon"},
        {"queue": 5},
        {"extra_directives": "-P proj"},
        {"extra_args": [1]},
    ],
)
def test_resource_spec_rejects_bad_values(kwargs: dict[str, Any], work_dir: str) -> None:
    with pytest.raises(ValueError):
        ResourceSpec(**kwargs)
    assert os.listdir(work_dir) == []


def test_resource_spec_accepts_good_values(work_dir: str) -> None:
    spec = ResourceSpec(cpus=4, gpus=0, memory="8 GB", walltime="04:00", queue="normal")
    assert (spec.cpus, spec.gpus, spec.memory) == (4, 0, "8 GB")
    assert spec.work_dir == work_dir  # the cwd at construction


@pytest.mark.parametrize("char", ["\n", "\r", "\r\n"])
@pytest.mark.parametrize(
    "field", ["queue", "account", "work_dir", "stdout_path", "stderr_path", "memory", "walltime"]
)
def test_line_breaks_in_string_fields_are_rejected(field: str, char: str, work_dir: str) -> None:
    good = {"memory": "8 GB", "walltime": "01:00", "work_dir": work_dir}.get(field, "value")
    with pytest.raises(ValueError):
        ResourceSpec(**{field: f"{good}{char}#BSUB -q other"})
    assert os.listdir(work_dir) == []


@pytest.mark.parametrize("char", ["\n", "\r"])
@pytest.mark.parametrize("field", ["extra_directives", "extra_args", "cluster_options"])
def test_line_breaks_in_list_items_are_rejected(field: str, char: str, work_dir: str) -> None:
    with pytest.raises(ValueError), warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        ResourceSpec(**{field: ["-P proj", f"-q a{char}#BSUB -q b"]})
    assert os.listdir(work_dir) == []


async def test_spec_changed_after_construction_is_checked_before_writing(
    fake: FakeLSF, work_dir: str
) -> None:
    lsf = LSFExecutor(ClusterConfig(executor="lsf"))
    spec = ResourceSpec(work_dir=work_dir)
    spec.queue = "normal\n#BSUB -q vip"
    with pytest.raises(ValueError):
        await lsf.submit("echo hi", "job", resources=spec)
    assert os.listdir(work_dir) == []
    assert fake.calls == []


@pytest.mark.parametrize(
    "kwargs",
    [
        {"prologue": ["module load a\nmodule load b"]},
        {"epilogue": ["echo done\r"]},
        {"env": {"1BAD": "x"}},
        {"env": {"BAD-NAME": "x"}},
        {"env": {"": "x"}},
        {"env": {"A B": "x"}},
        {"env": {"A=B": "x"}},
        {"env": {"OK": "nul\x00byte"}},
        {"command": ""},
        {"command": "   "},
    ],
)
async def test_bad_submission_raises_before_anything_is_written(
    kwargs: dict[str, Any], fake: FakeLSF, work_dir: str
) -> None:
    lsf = LSFExecutor(ClusterConfig(executor="lsf"))
    args = {"command": "echo hi", "name": "job", **kwargs}
    with pytest.raises(ValueError):
        await lsf.submit(**args)
    assert os.listdir(work_dir) == []
    assert fake.calls == []


def test_cluster_options_is_a_deprecated_alias() -> None:
    with pytest.warns(DeprecationWarning, match="extra_directives"):
        spec = ResourceSpec(cluster_options=["-P proj"])
    assert spec.extra_directives == ["-P proj"]
    with pytest.warns(DeprecationWarning):
        both = ResourceSpec(extra_directives=["-q a"], cluster_options=["-P proj"])
    assert both.extra_directives == ["-q a", "-P proj"]


async def test_cluster_options_reach_the_script(fake: FakeLSF) -> None:
    lsf = LSFExecutor(ClusterConfig(executor="lsf"))
    with pytest.warns(DeprecationWarning):
        spec = ResourceSpec(cluster_options=["-P legacy_proj"])
    record = await lsf.submit("echo hi", "job", resources=spec)
    assert "#BSUB -P legacy_proj" in Path(record.script_path).read_text().splitlines()


def test_unset_resources_fall_back_to_config() -> None:
    lsf = LSFExecutor(ClusterConfig(executor="lsf", queue="normal", cpus=2, memory="4 GB"))
    effective = lsf.effective_resources(ResourceSpec(cpus=8))
    assert (effective.queue, effective.cpus, effective.memory) == ("normal", 8, "4 GB")


# -- names -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "prefix", "expected"),
    [
        ("align", "capi", "capi-align"),
        ("align", None, "align"),
        ("align sample/1", "capi", "capi-align-sample-1"),
        ("a[1]", None, "a-1-"),
        ("ok_name.v2-x", "p", "p-ok_name.v2-x"),
        ("naïve;rm -rf", None, "na-ve-rm--rf"),
        ("$(whoami)", "capi", "capi---whoami-"),
    ],
)
def test_safe_job_name(name: str, prefix: str | None, expected: str) -> None:
    assert safe_job_name(name, prefix) == expected


async def test_record_name_has_prefix_and_safe_characters(fake: FakeLSF) -> None:
    lsf = LSFExecutor(ClusterConfig(executor="lsf"))
    record = await lsf.submit("echo hi", "align sample/1")
    assert record.name == "capi-align-sample-1"
    assert os.path.basename(record.script_path).startswith("capi-align-sample-1.")


async def test_record_name_without_prefix(fake: FakeLSF) -> None:
    lsf = LSFExecutor(ClusterConfig(executor="lsf", job_name_prefix=None))
    record = await lsf.submit("echo hi", "align sample")
    assert record.name == "align-sample"


# -- script rendering --------------------------------------------------------------------
def test_script_layout_order() -> None:
    config = ClusterConfig(script_prologue=["CFG_PRO"], script_epilogue=["CFG_EPI"])
    text = compose_script(
        config,
        "THE_COMMAND",
        ["#BSUB -q normal", "#BSUB -n 2"],
        prologue=["JOB_PRO"],
        epilogue=["JOB_EPI"],
        preamble=["PREAMBLE"],
    )
    lines = text.splitlines()
    assert lines[0] == "#!/bin/bash"
    order = ["#BSUB -q normal", "#BSUB -n 2", "PREAMBLE", "CFG_PRO", "JOB_PRO", "THE_COMMAND"]
    order += ["JOB_EPI", "CFG_EPI"]
    positions = [lines.index(item) for item in order]
    assert positions == sorted(positions)
    assert text.endswith("\n")


def test_script_without_epilogue_ends_with_the_command() -> None:
    text = render_script(ClusterConfig(), "run_me --now", ["#BSUB -q x"])
    assert text.splitlines()[0] == "#!/bin/bash"
    assert text.splitlines()[-1] == "run_me --now"


def test_custom_shebang() -> None:
    text = render_script(ClusterConfig(shebang="#!/bin/zsh"), "true", [])
    assert text.startswith("#!/bin/zsh\n")


def test_render_rejects_multi_line_directives() -> None:
    with pytest.raises(ValueError):
        render_script(ClusterConfig(), "true", ["#BSUB -q a\n#BSUB -q b"])


async def test_submitted_script_layout(fake: FakeLSF) -> None:
    lsf = LSFExecutor(
        ClusterConfig(executor="lsf", script_prologue=["CFG_PRO=1"], script_epilogue=["CFG_EPI=1"])
    )
    record = await lsf.submit(
        "THE_COMMAND=1", "job", prologue=["JOB_PRO=1"], epilogue=["JOB_EPI=1"], env={"V": "x"}
    )
    lines = Path(record.script_path).read_text().splitlines()
    assert lines[0] == "#!/bin/bash"
    directive_rows = [i for i, line in enumerate(lines) if line.startswith("#BSUB")]
    assert directive_rows == list(range(1, len(directive_rows) + 1))
    order = ["export V=x", "CFG_PRO=1", "JOB_PRO=1", "THE_COMMAND=1", "JOB_EPI=1", "CFG_EPI=1"]
    positions = [lines.index(item) for item in order]
    assert positions == sorted(positions)
    assert positions[0] > directive_rows[-1]


@pytest.mark.integration
@pytest.mark.parametrize("code", [0, 1, 7, 42])
async def test_exit_status_survives_the_epilogue(fake: FakeLSF, work_dir: str, code: int) -> None:
    lsf = LSFExecutor(ClusterConfig(executor="lsf", script_epilogue=["echo cfg >> epi.txt"]))
    record = await lsf.submit(
        f"sh -c 'exit {code}'",
        "job",
        prologue=["echo pro >> epi.txt"],
        epilogue=["echo job >> epi.txt", "true"],
    )
    assert run_bash(record.script_path, work_dir) == code
    assert Path(work_dir, "epi.txt").read_text().split() == ["pro", "job", "cfg"]
    assert exit_file(record.script_path).read_text().strip() == str(code)


@pytest.mark.integration
async def test_exit_file_written_without_epilogue(fake: FakeLSF, work_dir: str) -> None:
    lsf = LSFExecutor(ClusterConfig(executor="lsf"))
    record = await lsf.submit("false", "job")
    assert run_bash(record.script_path, work_dir) == 1
    assert exit_file(record.script_path).read_text().strip() == "1"


@pytest.mark.integration
async def test_array_elements_write_their_own_exit_files(fake: FakeLSF, work_dir: str) -> None:
    lsf = LSFExecutor(ClusterConfig(executor="lsf"))
    record = await lsf.submit_array('exit "$LSB_JOBINDEX"', "arr", (1, 2))
    for index in (1, 2):
        assert run_bash(record.script_path, work_dir, {"LSB_JOBINDEX": str(index)}) == index
        stem = record.script_path[: -len(".sh")]
        assert Path(f"{stem}.{index}.exit").read_text().strip() == str(index)


ENV_VALUES = {
    "QUOTES": 'it\'s "quoted"',
    "DOLLAR": "$HOME and $(echo pwned) and `echo pwned`",
    "SPACES": "  two  spaces  ",
    "NEWLINE": "line1\nline2\n#BSUB -q vip",
    "BACKSLASH": "a\\b\\n",
    "TAB_CR": "a\tb\rc",
    "EMPTY": "",
    "GLOB": "*",
}


@pytest.mark.integration
async def test_env_values_are_exported_literally(fake: FakeLSF, work_dir: str) -> None:
    lsf = LSFExecutor(ClusterConfig(executor="lsf"))
    names = sorted(ENV_VALUES)
    dump = f"import json, os; print(json.dumps({{k: os.environ[k] for k in {names!r}}}))"
    command = f"{sys.executable} -c {json.dumps(dump)} > env.json"
    record = await lsf.submit(command, "env", env=ENV_VALUES)
    text = Path(record.script_path).read_text()
    assert not any(line.startswith("#BSUB -q vip") for line in text.splitlines())
    assert run_bash(record.script_path, work_dir) == 0
    assert json.loads(Path(work_dir, "env.json").read_text()) == ENV_VALUES
    assert not Path(work_dir, "pwned").exists()


# -- writing scripts ---------------------------------------------------------------------
def test_write_script_mode_and_path(tmp_path: Path) -> None:
    directory = tmp_path / "new" / "dir"
    path = write_script(str(directory), "#!/bin/bash\ntrue\n", "my job", 3)
    assert path == os.path.join(str(directory), "my-job.3.sh")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o700
    assert Path(path).read_text() == "#!/bin/bash\ntrue\n"


def test_write_script_never_overwrites(tmp_path: Path) -> None:
    path = write_script(str(tmp_path), "first\n", "job", 1)
    with pytest.raises(FileExistsError):
        write_script(str(tmp_path), "second\n", "job", 1)
    assert Path(path).read_text() == "first\n"


async def test_two_executors_in_one_folder_never_share_a_script(
    fake: FakeLSF, work_dir: str
) -> None:
    first = LSFExecutor(ClusterConfig(executor="lsf"))
    second = LSFExecutor(ClusterConfig(executor="lsf"))
    a = await first.submit("echo first", "same")
    b = await second.submit("echo second", "same")
    c = await first.submit("echo third", "same")
    paths = {a.script_path, b.script_path, c.script_path}
    assert len(paths) == 3
    assert all(os.path.dirname(p) == work_dir for p in paths)
    assert "echo first" in Path(a.script_path).read_text()
    assert "echo second" in Path(b.script_path).read_text()
    assert "echo third" in Path(c.script_path).read_text()


async def test_script_counter_skips_existing_files(fake: FakeLSF, work_dir: str) -> None:
    Path(work_dir, "capi-job.1.sh").write_text("precious\n")
    record = await LSFExecutor(ClusterConfig(executor="lsf")).submit("echo hi", "job")
    assert record.script_path != os.path.join(work_dir, "capi-job.1.sh")
    assert Path(work_dir, "capi-job.1.sh").read_text() == "precious\n"


# -- status model ------------------------------------------------------------------------
def test_status_values_and_terminality() -> None:
    assert {s.name: s.value for s in JobStatus} == {
        "PENDING": "pending",
        "RUNNING": "running",
        "DONE": "done",
        "FAILED": "failed",
        "KILLED": "killed",
        "UNKNOWN": "unknown",
    }
    assert {s for s in JobStatus if s.is_terminal} == {
        JobStatus.DONE,
        JobStatus.FAILED,
        JobStatus.KILLED,
    }
    assert {c.name for c in JobExitCondition} == {"SUCCESS", "FAILURE", "KILLED", "ANY"}


P, R, D, F, K, U = (
    JobStatus.PENDING,
    JobStatus.RUNNING,
    JobStatus.DONE,
    JobStatus.FAILED,
    JobStatus.KILLED,
    JobStatus.UNKNOWN,
)


@pytest.mark.parametrize(
    ("old", "new", "moves"),
    [
        (P, R, True),
        (P, D, True),
        (P, F, True),
        (R, D, True),
        (R, K, True),
        (U, R, True),
        (R, U, True),
        (R, P, False),
        (U, P, False),
        (D, R, False),
        (D, P, False),
        (D, F, False),
        (F, D, False),
        (K, D, False),
        (R, R, False),
    ],
)
def test_advance_never_goes_backwards(old: JobStatus, new: JobStatus, moves: bool) -> None:
    record = JobRecord(job_id="1", name="n", command="c", status=old)
    assert record.advance(new) is moves
    assert record.status is (new if moves else old)


def array_record(*statuses: JobStatus, array_range: tuple[int, int] | None = None) -> JobRecord:
    record = JobRecord(job_id="9", name="arr", command="c")
    record.metadata["array_range"] = array_range or (1, len(statuses))
    for index, status in enumerate(statuses, 1):
        record.array_elements[index] = ArrayElement(index=index, status=status)
    return record


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ((D, D, D), D),
        ((D, F, D), F),
        ((D, K, D), K),
        ((K, F, D), F),
        ((K, K), K),
        ((F,), F),
    ],
)
def test_array_roll_up_when_all_terminal(statuses: tuple[JobStatus, ...], expected: JobStatus):
    record = array_record(*statuses)
    assert record.compute_array_status() is expected
    assert record.is_array
    assert record.element_count == len(statuses)
    assert record.completed_elements == len(statuses)


@pytest.mark.parametrize("statuses", [(D, R), (F, P), (D, D, U), (K, R, D), (P, P), (F, F, R)])
def test_array_not_terminal_until_every_element_is(statuses: tuple[JobStatus, ...]) -> None:
    record = array_record(*statuses)
    assert not record.compute_array_status().is_terminal


def test_array_with_unreported_elements_is_not_terminal() -> None:
    record = array_record(D, D, array_range=(1, 5))
    assert record.element_count == 5
    assert not record.compute_array_status().is_terminal


def test_array_element_properties() -> None:
    record = array_record(D, F, R, F)
    assert record.completed_elements == 3
    assert record.failed_element_indices == [2, 4]
    plain = JobRecord(job_id="1", name="n", command="c")
    assert not plain.is_array
    assert plain.element_count == 0


# -- serialization -----------------------------------------------------------------------
def test_to_dict_from_dict_round_trip_through_json(work_dir: str) -> None:
    when = datetime(2026, 11, 22, 10, 31, 17, tzinfo=timezone.utc)
    record = JobRecord(
        job_id="123",
        name="capi-arr",
        command="echo $LSB_JOBINDEX",
        status=JobStatus.RUNNING,
        resources=ResourceSpec(cpus=2, memory="8 GB", queue="normal", extra_directives=["-P p"]),
        script_path=os.path.join(work_dir, "capi-arr.1.sh"),
        metadata={"array_range": (1, 2), "max_concurrent": 1, "mine": {"a": [1, 2]}},
        exec_host="node01",
        max_mem="2 Gbytes",
        submit_time=when,
        start_time=when + timedelta(minutes=1),
        depends_on=["100", "101"],
    )
    record.array_elements[1] = ArrayElement(
        index=1, status=JobStatus.DONE, exit_code=0, finish_time=when + timedelta(hours=1)
    )
    record.array_elements[2] = ArrayElement(index=2, status=JobStatus.RUNNING, exec_host="n2")
    data = json.loads(json.dumps(record.to_dict()))
    again = JobRecord.from_dict(data)
    assert again.to_dict() == record.to_dict()
    assert again.status is JobStatus.RUNNING
    assert again.metadata["array_range"] == (1, 2)
    assert again.start_time == when + timedelta(minutes=1)
    assert again.start_time.tzinfo is not None
    assert again.array_elements[1].status is JobStatus.DONE
    assert again.array_elements[1].finish_time == when + timedelta(hours=1)
    assert again.resources is not None and again.resources.memory == "8 GB"
    assert again.depends_on == ["100", "101"]
    assert again.element_count == 2


def test_to_dict_leaves_callbacks_out() -> None:
    record = JobRecord(job_id="1", name="n", command="c").on_exit(lambda r: None)
    data = record.to_dict()
    json.dumps(data)
    assert not any("callback" in key for key in data)
    assert not JobRecord.from_dict(data).has_pending_callbacks


# -- callbacks ---------------------------------------------------------------------------
def test_callback_registration_chains() -> None:
    record = JobRecord(job_id="1", name="n", command="c")
    same = record.on_success(print).on_failure(print).on_exit(print, JobExitCondition.KILLED)
    assert same is record
    with pytest.raises(TypeError):
        record.on_exit("not callable")  # type: ignore[arg-type]


async def finish(lsf: LSFExecutor, fake: FakeLSF, job_id: str, state: tuple[str, ...]) -> None:
    """One monitor cycle in which the scheduler reports ``state``; wait for callbacks."""
    fake.states[job_id] = state
    monitor = JobMonitor(lsf, poll_interval=1)
    await monitor.run_cycle()
    await monitor.stop()


@pytest.mark.parametrize(
    ("state", "fired"),
    [
        (("DONE", "0"), {"success_sync", "success_async", "any"}),
        (("EXIT", "3"), {"failure_sync", "failure_async", "any"}),
        (("EXIT", "130", "TERM_OWNER: job killed by owner"), {"killed", "any"}),
    ],
)
async def test_callbacks_fire_once_by_condition(
    fake: FakeLSF, state: tuple[str, ...], fired: set[str]
) -> None:
    lsf = LSFExecutor(ClusterConfig(executor="lsf"))
    record = lsf.track("101", JobStatus.RUNNING)
    calls: list[str] = []

    def sync(label: str) -> Any:
        return lambda r: calls.append(label)

    def asynchronous(label: str) -> Any:
        async def callback(r: JobRecord) -> None:
            await asyncio.sleep(0)
            assert r is record
            calls.append(label)

        return callback

    (
        record.on_success(sync("success_sync"))
        .on_success(asynchronous("success_async"))
        .on_failure(sync("failure_sync"))
        .on_failure(asynchronous("failure_async"))
        .on_exit(sync("killed"), JobExitCondition.KILLED)
        .on_exit(asynchronous("any"))
    )
    await finish(lsf, fake, "101", state)
    assert sorted(calls) == sorted(fired)
    assert not record.has_pending_callbacks
    # another cycle (even a late second answer) never fires them again
    await finish(lsf, fake, "101", state)
    assert sorted(calls) == sorted(fired)


async def test_a_failing_callback_does_not_stop_the_others(
    fake: FakeLSF, caplog: pytest.LogCaptureFixture
) -> None:
    lsf = LSFExecutor(ClusterConfig(executor="lsf"))
    record = lsf.track("101")
    calls: list[str] = []

    def boom(r: JobRecord) -> None:
        raise RuntimeError("callback bug")

    async def aboom(r: JobRecord) -> None:
        raise RuntimeError("async callback bug")

    record.on_exit(boom).on_exit(aboom).on_success(lambda r: calls.append("after"))
    await finish(lsf, fake, "101", ("DONE", ""))
    assert calls == ["after"]
    assert record.status is JobStatus.DONE
    assert "callback bug" in caplog.text


# -- _call, for real ---------------------------------------------------------------------
@pytest.mark.integration
async def test_call_returns_stdout() -> None:
    assert await Executor._call(["echo", "hello world"]) == "hello world"  # stripped, as 0.8.1


@pytest.mark.integration
async def test_call_passes_env_and_stdin(tmp_path: Path) -> None:
    out = await Executor._call(["sh", "-c", 'printf %s "$CAPI_TEST"'], env={"CAPI_TEST": "v 1"})
    assert out == "v 1"
    source = tmp_path / "in.txt"
    source.write_text("from stdin\n")
    assert await Executor._call(["cat"], stdin_file=str(source)) == "from stdin"


@pytest.mark.integration
async def test_call_nonzero_exit_keeps_stdout() -> None:
    with pytest.raises(CommandFailedError) as info:
        await Executor._call(["sh", "-c", "echo partial; echo oops >&2; exit 3"])
    assert info.value.stdout == "partial\n"
    assert isinstance(info.value, ClusterAPIError)
    assert "oops" in str(info.value)


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.integration
async def test_call_timeout_kills_the_process_tree(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = f"sleep 60 & echo $! > {pids}; echo $$ >> {pids}; wait"
    started = time.monotonic()
    with pytest.raises(CommandTimeoutError):
        await Executor._call(["sh", "-c", script], timeout=0.5)
    assert time.monotonic() - started < 10
    assert issubclass(CommandTimeoutError, ClusterAPIError)
    child_pids = [int(p) for p in pids.read_text().split()]
    assert len(child_pids) == 2
    deadline = time.monotonic() + 5
    while not all(_gone(p) for p in child_pids) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert all(_gone(p) for p in child_pids)


@pytest.mark.integration
async def test_cancelled_call_kills_the_process(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    task = asyncio.create_task(
        Executor._call(["sh", "-c", f"echo $$ > {pid_file}; exec sleep 60"], timeout=60)
    )
    deadline = time.monotonic() + 5
    while not (pid_file.exists() and pid_file.read_text().strip()):
        assert time.monotonic() < deadline
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    pid = int(pid_file.read_text())
    while not _gone(pid) and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    assert _gone(pid)


@pytest.mark.integration
async def test_call_missing_binary_is_a_cluster_api_error() -> None:
    with pytest.raises(CommandFailedError) as info:
        await Executor._call(["capi-no-such-binary-xyz", "-a"])
    assert isinstance(info.value, ClusterAPIError)
    assert not isinstance(info.value, FileNotFoundError)
    assert "capi-no-such-binary-xyz" in str(info.value)


@pytest.mark.integration
async def test_call_non_utf8_output_does_not_raise() -> None:
    out = await Executor._call(["printf", "ok \\377\\376 done"])
    assert out.startswith("ok ")
    assert out.endswith(" done")
    with pytest.raises(CommandFailedError) as info:
        await Executor._call(["sh", "-c", "printf 'bad \\377'; printf '\\376' >&2; exit 1"])
    assert info.value.stdout.startswith("bad ")


# -- public surface ----------------------------------------------------------------------
def test_exception_hierarchy() -> None:
    for cls in (CommandFailedError, CommandTimeoutError, SubmitError):
        assert issubclass(cls, ClusterAPIError)
    assert issubclass(ClusterAPIError, Exception)
    err = CommandFailedError("boom", stdout="out")
    assert (str(err), err.stdout) == ("boom", "out")
    assert CommandFailedError("boom").stdout == ""


def test_all_exports_the_contract() -> None:
    required = {
        "create_executor",
        "load_config",
        "ClusterConfig",
        "Executor",
        "LSFExecutor",
        "LocalExecutor",
        "JobMonitor",
        "JobRecord",
        "JobStatus",
        "JobExitCondition",
        "ResourceSpec",
        "ArrayElement",
        "ClusterAPIError",
        "CommandFailedError",
        "CommandTimeoutError",
        "SubmitError",
    }
    assert required <= set(cluster_api.__all__)
    for name in cluster_api.__all__:
        assert getattr(cluster_api, name) is not None


def test_gc_paused_restores_the_collector() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), core.gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with core.gc_paused():
            pass
        assert not gc.isenabled()  # a program that turned it off keeps it off
    finally:
        gc.enable()
