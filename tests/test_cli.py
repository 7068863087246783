"""The ``cluster-api`` command, run as a user runs it: a new process per command, in a
folder with its own ``cluster_api.yaml``, against the local executor and the LSF simulator.

Each command is a separate process, so these tests also exercise the journal: ``submit``
in one process, ``status``/``watch``/``cancel`` in the next.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import io
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from conftest import check_snapshot

from cluster_api import JobRecord, JobStatus, __version__

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).with_name("cluster-api")
HAVE_SIMULATOR = importlib.util.find_spec("cluster_api.testing") is not None
needs_simulator = pytest.mark.skipif(
    not HAVE_SIMULATOR, reason="cluster_api.testing (the LSF simulator) cannot be imported"
)


@dataclass
class Result:
    code: int
    out: str
    err: str

    @property
    def lines(self) -> list[str]:
        return self.out.splitlines()


class Project:
    """A folder with a config, where ``cluster-api`` runs as in a user's shell."""

    def __init__(self, path: Path, executor: str = "local", extra: str = "") -> None:
        self.path = path
        self.path.mkdir(parents=True, exist_ok=True)
        (path / "cluster_api.yaml").write_text(
            f"executor: {executor}\npoll_interval: 0.2\nlog_directory: {path / 'logs'}\n{extra}"
        )

    def command(self) -> list[str]:
        if CONSOLE_SCRIPT.exists():
            return [str(CONSOLE_SCRIPT)]
        return [sys.executable, "-m", "cluster_api"]

    def run(self, *args: str, timeout: float = 30, prefix: list[str] | None = None) -> Result:
        env = {k: v for k, v in os.environ.items() if k != "CLUSTER_API_CONFIG"}
        env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT on a hang prints every thread's stack
        with subprocess.Popen(
            [*(prefix or self.command()), *args],
            cwd=self.path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        ) as proc:
            try:
                out, err = proc.communicate(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.send_signal(signal.SIGABRT)
                out, err = proc.communicate()
                pytest.fail(f"cluster-api {shlex.join(args)} hung for {timeout} s:\n{out}\n{err}")
        return Result(proc.returncode, out, err)

    def submit(self, *args: str) -> str:
        """Submit and return the new job id."""
        result = self.run("submit", *args)
        assert result.code == 0, result
        assert re.fullmatch(r"\d+\n", result.out), result  # the bare id, for $(...)
        return result.out.strip()

    def wait_for_files(self, pattern: str, count: int, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while len(list(self.path.glob(pattern))) < count:
            assert time.monotonic() < deadline, f"no {count} files {pattern} in {self.path}"
            time.sleep(0.05)


@pytest.fixture
def project(tmp_path: Path) -> Iterator[Project]:
    proj = Project(tmp_path / "proj")
    yield proj
    _kill_leftover_jobs(proj)


def _kill_leftover_jobs(proj: Project) -> None:
    """Local jobs outlive the CLI: stop any a failing test left behind. Only process
    groups whose leader still runs one of this project's scripts (pids get reused)."""
    journal = proj.path / "logs" / "cluster_api_journal.sqlite3"
    if not journal.exists():
        return
    import sqlite3

    with contextlib.closing(sqlite3.connect(journal)) as db:
        rows = db.execute("SELECT record FROM jobs").fetchall()
    for (text,) in rows:
        meta = json.loads(text).get("metadata") or {}
        for pid in [meta.get("pid"), *(meta.get("pids") or {}).values()]:
            if not isinstance(pid, int):
                continue
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if str(proj.path).encode() in cmdline:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)


def normalize(text: str) -> str:
    """Job ids become <JOB1>, <JOB2>... in order of appearance; times become MM:SS."""
    ids: dict[str, str] = {}

    def job(match: re.Match[str]) -> str:
        return match[1] + ids.setdefault(match[2], f"<JOB{len(ids) + 1}>")

    text = re.sub(r"\[\d+:\d\d(:\d\d)?\]", "[MM:SS]", text)
    # local ids are pids, of any length: an id is a line of its own (submit's stdout), or
    # the number after "as job" or a job name
    return re.sub(r"(^|as job |capi-[\w.-]+ )(\d+)(?=$|\b(?! job))", job, text, flags=re.M)


# -- entry points and usage ------------------------------------------------------------------
@pytest.mark.integration
def test_console_script_and_module_entry_points(project: Project) -> None:
    assert CONSOLE_SCRIPT.exists(), "install the package: pip install -e . --no-deps"
    for prefix in ([str(CONSOLE_SCRIPT)], [sys.executable, "-m", "cluster_api"]):
        result = project.run("--version", prefix=prefix)
        assert (result.code, result.out.strip()) == (0, f"cluster-api {__version__}")
    result = project.run("--help")
    assert result.code == 0
    for command in ("submit", "status", "watch", "cancel", "config"):
        assert command in result.out


@pytest.mark.integration
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        ([], "required"),
        (["submit"], "no command given"),
        (["submit", "--max-concurrent", "2", "--", "true"], "--max-concurrent needs --array"),
        (["submit", "--array", "5-1", "--", "true"], "START must not exceed END"),
        (["submit", "--array", "many", "--", "true"], "expected START-END"),
        (["submit", "--memory", "lots", "--", "true"], "invalid memory 'lots'"),
        (["submit", "--cpus", "0", "--", "true"], "must be at least 1"),
        (["submit", "--env", "NOVALUE", "--", "true"], "expected NAME=VALUE"),
        (["submit", "--env", "1X=2", "--", "true"], "invalid environment variable name"),
        (["submit", "--executor", "nope", "--", "true"], "unknown executor 'nope'"),
        (["status", "--profile", "nope"], "unknown profile 'nope'"),
        (["status", "--config", "missing.yaml"], "Config file not found"),
        (["cancel"], "say which jobs"),
        (["cancel", "123", "--all"], "not several"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2(project: Project, argv: list[str], message: str) -> None:
    result = project.run(*argv)
    assert result.code == 2, result
    assert message in result.err
    assert "Traceback" not in result.err


@pytest.mark.integration
def test_bad_config_value_exits_2_naming_file_and_key(project: Project) -> None:
    config = project.path / "cluster_api.yaml"
    config.write_text(config.read_text() + "memory: lots\n")
    result = project.run("status")
    assert result.code == 2
    assert str(config.name) in result.err and "memory" in result.err
    assert "Traceback" not in result.err


# -- local executor ---------------------------------------------------------------------------
@pytest.mark.integration
def test_submit_wait_exit_codes(project: Project) -> None:
    ok = project.run(
        "submit", "--wait", "--name", "ok", "--env", "GREETING=hello", "--", "echo $GREETING"
    )
    assert ok.code == 0, ok
    job_id = ok.lines[0]
    assert f"submitted job capi-ok as job {job_id}" in ok.err
    assert ok.lines[-2].endswith(f"capi-ok {job_id}: done (exit 0)")
    assert ok.lines[-1] == "1 job: 1 done"
    assert (project.path / f"stdout.{job_id}.log").read_text() == "hello\n"

    bad = project.run("submit", "--wait", "--name", "bad", "--", "exit", "3")
    assert bad.code == 1, bad
    assert bad.lines[-2].endswith(": failed (exit 3)")
    assert bad.lines[-1] == "1 job: 1 failed"


@pytest.mark.integration
def test_array_with_work_dir_and_max_concurrent(project: Project, tmp_path: Path) -> None:
    work = tmp_path / "elsewhere"
    result = project.run(
        "submit",
        "--wait",
        "--name",
        "arr",
        "--array",
        "1-4",
        "--max-concurrent",
        "2",
        "--work-dir",
        str(work),
        "--",
        'echo "element $ARRAY_INDEX"; test "$ARRAY_INDEX" -ne 3',
    )
    assert result.code == 1, result
    job_id = result.lines[0]
    assert f"submitted array of 4 capi-arr as job {job_id}" in result.err
    assert "3/4 done, 1 failed, 0 running -> failed" in result.lines[-2]
    assert result.lines[-1].endswith("failed elements: 3")
    assert (work / f"stdout.{job_id}.2.log").read_text() == "element 2\n"


@pytest.mark.integration
def test_submit_then_status_and_watch_from_new_processes(project: Project) -> None:
    """The issue's scenario: submit in one process, follow the job from the next ones."""
    job_id = project.submit("--name", "hi", "--", "sleep 4; echo hello")  # outlives 2 commands

    status = project.run("status", "--json")
    assert status.code == 0, status
    records = [JobRecord.from_dict(d) for d in json.loads(status.out)]
    assert [(r.job_id, r.name) for r in records] == [(job_id, "capi-hi")]
    assert records[0].status in (JobStatus.PENDING, JobStatus.RUNNING)
    assert json.loads(status.out)[0] == records[0].to_dict()

    table = project.run("status")
    assert table.lines[0].split() == [
        "JOB", "ID", "NAME", "STATUS", "EXIT", "PROGRESS", "HOST", "SUBMITTED"
    ]  # fmt: skip
    assert table.lines[1].split()[:3] == [job_id, "capi-hi", records[0].status.value]

    watch = project.run("watch")
    assert watch.code == 0, watch
    assert watch.lines[-2].endswith(f"capi-hi {job_id}: done (exit 0)")
    assert watch.lines[-1] == "1 job: 1 done"
    assert (project.path / f"stdout.{job_id}.log").read_text() == "hello\n"

    after = project.run("status")
    # a job that ended within completed_retention_minutes is still listed, as done
    assert after.code == 0 and after.lines[1].split()[:4] == [job_id, "capi-hi", "done", "0"]


@pytest.mark.integration
def test_watch_output_snapshot(project: Project) -> None:
    """The plain (non-terminal) output of following a job and an array to their end.

    Sleeps keep each state on screen for several redraws, so the lines are the same on
    every run; ids and times are normalized.
    """
    job = project.run("submit", "--wait", "--name", "one", "--", "sleep 0.4; exit 3")
    array = project.run(
        "submit",
        "--wait",
        "--name",
        "arr",
        "--array",
        "1-2",
        "--",
        'sleep "0.$((ARRAY_INDEX * 4))"; test "$ARRAY_INDEX" -ne 2',
    )
    assert (job.code, array.code) == (1, 1), (job, array)
    check_snapshot("watch_plain.txt", normalize(job.out + array.out))


@pytest.mark.integration
def test_watch_reports_jobs_that_ended_unwatched(project: Project) -> None:
    """Jobs that ended while no process watched come back with their true ending."""
    ok = project.submit("--name", "ok", "--", "sleep 1")
    bad = project.submit("--name", "bad", "--", "sleep 1; exit 3")
    arr = project.submit(
        "--name", "arr", "--array", "1-4", "--", "sleep 1; test $ARRAY_INDEX -ne 3"
    )
    project.wait_for_files("*.exit", 6)
    result = project.run("watch", "--plain")
    assert result.code == 1, result
    last = {re.match(r"\[[\d:]+\] \S+ (\d+):", line)[1]: line for line in result.lines[:-1]}  # type: ignore[index]
    assert last[ok].endswith(f"capi-ok {ok}: done (exit 0)")
    assert last[bad].endswith(f"capi-bad {bad}: failed (exit 3)")
    assert last[arr].endswith(f"capi-arr {arr}: 3/4 done, 1 failed, 0 running -> failed")
    assert result.lines[-1] == f"3 jobs: 1 done, 2 failed; capi-arr {arr} failed elements: 3"


@pytest.mark.integration
def test_watch_without_rich_installed(project: Project) -> None:
    no_rich = [
        sys.executable,
        "-c",
        "import sys; sys.modules['rich'] = None\n"
        "from cluster_api.cli import main; sys.exit(main(sys.argv[1:]))",
    ]
    result = project.run("submit", "--wait", "--", "echo hi", prefix=no_rich)
    assert result.code == 0, result
    assert result.lines[-1] == "1 job: 1 done"
    status = project.run("status", prefix=no_rich)
    assert status.code == 0 and status.lines[1].split()[2:4] == ["done", "0"]


@pytest.mark.integration
def test_cancel_local_job_from_another_process(project: Project) -> None:
    job_id = project.submit("--name", "sleeper", "--", "sleep 30")
    result = project.run("cancel", job_id, "--timeout", "3")
    assert result.code == 0, result
    assert result.lines[-1] == f"job {job_id} (capi-sleeper): killed (exit 143)"


@pytest.mark.integration
def test_status_of_a_finished_local_job_by_id(project: Project) -> None:
    """A job asked for by id comes back from the journal, finished or not."""
    job_id = project.submit("--name", "quick", "--", "exit 4")
    project.wait_for_files("*.exit", 1)
    result = project.run("status", job_id, "--json")
    (record,) = json.loads(result.out)
    assert (record["status"], record["exit_code"], result.code) == ("failed", 4, 1)
    again = project.run("watch", job_id)
    assert again.code == 1 and again.lines[-1] == "1 job: 1 failed"


@pytest.mark.integration
def test_cancel_without_matches(project: Project) -> None:
    result = project.run("cancel", "--all")
    assert (result.code, result.out) == (0, "no unfinished jobs matched\n")


# -- LSF simulator ----------------------------------------------------------------------------
@pytest.fixture
def lsf_project(tmp_path: Path, lsf_simulator: Any) -> Project:
    return Project(tmp_path / "lsfproj", executor="lsf")


@pytest.mark.integration
@needs_simulator
def test_lsf_submit_wait_exit_codes(lsf_project: Project) -> None:
    ok = lsf_project.run("submit", "--wait", "--name", "ok", "--cpus", "2", "--", "echo hi")
    assert ok.code == 0, ok
    assert ok.lines[0] == "1"
    assert "submitted job capi-ok as job 1" in ok.err
    assert ok.lines[-2].endswith("capi-ok 1: done (exit 0)")
    bad = lsf_project.run("submit", "--wait", "--name", "bad", "--", "exit 2")
    assert bad.code == 1, bad
    assert bad.lines[-2].endswith("capi-bad 2: failed (exit 2)")


@pytest.mark.integration
@needs_simulator
def test_lsf_status_cancel_and_watch(lsf_project: Project, lsf_simulator: Any) -> None:
    sleeper = lsf_project.submit("--name", "sleeper", "--queue", "normal", "--", "sleep 30")
    other = lsf_project.submit("--name", "other", "--", "sleep 30")
    array = lsf_project.submit(
        "--name", "arr", "--array", "1-3", "--", 'sleep 1.5; test "$ARRAY_INDEX" -ne 2'
    )
    argv = next(c.argv for c in lsf_simulator.calls("bsub") if "capi-sleeper" in c.argv)
    assert "-q" in argv and "normal" in argv

    status = lsf_project.run("status", "--json")
    assert status.code == 0, status
    by_id = {d["job_id"]: JobRecord.from_dict(d) for d in json.loads(status.out)}
    assert set(by_id) == {sleeper, array, other}
    assert by_id[array].is_array and by_id[array].element_count == 3

    cancel = lsf_project.run("cancel", "--name", "sleep*")
    assert cancel.code == 0, cancel
    assert cancel.lines[-1].startswith(f"job {sleeper} (capi-sleeper): killed")
    # cancel returns once bkill accepted; the job's signals take a moment, as on LSF
    deadline = time.monotonic() + 15
    while lsf_simulator.status(sleeper) != "EXIT" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lsf_simulator.status(sleeper) == "EXIT"

    watch = lsf_project.run("watch", array)
    assert watch.code == 1, watch
    assert watch.lines[-1] == f"1 job: 1 failed; capi-arr {array} failed elements: 2"

    killed = lsf_project.run("status", sleeper)
    assert killed.code == 1
    assert killed.lines[1].split()[:3] == [sleeper, "capi-sleeper", "killed"]

    everything = lsf_project.run("cancel", "--all")
    assert everything.code == 0, everything
    assert everything.lines[-1].startswith(f"job {other} (capi-other): killed")
    deadline = time.monotonic() + 15  # accepted by bkill; the signal lands a moment later
    while lsf_simulator.unfinished() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert lsf_simulator.unfinished() == []


# -- config ------------------------------------------------------------------------------------
@pytest.mark.integration
def test_config_show_names_every_source(project: Project) -> None:
    config = project.path / "cluster_api.yaml"
    config.write_text(
        config.read_text() + "queue: normal\nprofiles:\n  gpu:\n    gpus: 1\n    queue: gpu\n"
    )
    result = project.run("config", "show", "--profile", "gpu", "--executor", "lsf")
    assert result.code == 0, result
    lines = {line.split(":", 1)[0]: line for line in result.lines if not line.startswith("#")}
    assert lines["executor"].split("#")[1].strip() == "--executor"
    assert lines["gpus"].split("#")[1].strip() == "profile 'gpu' in cluster_api.yaml"
    assert lines["queue"].startswith("queue: gpu ")
    assert lines["poll_interval"].split("#")[1].strip() == "cluster_api.yaml"
    assert lines["cpus"].split("#")[1].strip() == "default"
    assert lines["journal"].startswith("journal: true ")

    data = json.loads(project.run("config", "show", "--json").out)
    assert data["poll_interval"] == {"value": 0.2, "source": "cluster_api.yaml"}
    assert data["executor"] == {"value": "local", "source": "cluster_api.yaml"}


@pytest.mark.integration
def test_config_check_reports_file_key_and_line(project: Project) -> None:
    bad = project.path / "bad.yaml"
    bad.write_text(
        "executor: lsf\n"  # 1
        "queue: normal\n"  # 2
        "poll_interval: -1\n"  # 3
        "profiles:\n"  # 4
        "  gpu:\n"  # 5
        "    queu: gpu\n"  # 6
        "  big:\n"  # 7
        "    memory: lots\n"  # 8
        "    executor: condor\n"  # 9
    )
    result = project.run("config", "check", "bad.yaml")
    assert result.code == 2, result
    assert result.lines == [
        "bad.yaml:6: warning: unknown config key 'queu' ignored (did you mean 'queue'?)"
        " [profile gpu]",
        "bad.yaml:3: error: poll_interval must be more than 0, got -1",
        "bad.yaml:8: error: memory: invalid memory 'lots': expected a number and a unit, "
        "e.g. '512 MB' or '8 GB' [profile big]",
        "bad.yaml:9: error: executor: unknown executor 'condor'; known executors: "
        + ", ".join(__import__("cluster_api").available_executors())
        + " [profile big]",
        "bad.yaml: 3 errors",
    ]

    (project.path / "syntax.yaml").write_text("executor: lsf\nqueue: [normal\n")
    syntax = project.run("config", "check", "syntax.yaml")
    assert syntax.code == 2
    assert re.match(r"syntax\.yaml:3:\d+: error: invalid YAML: ", syntax.lines[0])

    good = project.run("config", "check", "cluster_api.yaml")
    assert (good.code, good.out) == (0, "cluster_api.yaml: OK (base)\n")
    missing = project.run("config", "check", "nope.yaml")
    assert missing.code == 2 and "nope.yaml: no such file" in missing.err


# -- rich output (in process, on a fake terminal) ---------------------------------------------
class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.integration
async def test_rich_watch_and_table_on_a_terminal(tmp_path: Path) -> None:
    pytest.importorskip("rich")
    from cluster_api import ClusterConfig, LocalExecutor, ResourceSpec
    from cluster_api.cli import Ui, print_status_table, watch_records

    ui = Ui(stdout=FakeTTY())
    assert ui.rich
    executor = LocalExecutor(ClusterConfig(log_directory=str(tmp_path), poll_interval=0.05))
    array = await executor.submit_array(
        'test "$ARRAY_INDEX" -ne 2', "arr", (1, 3), resources=ResourceSpec(work_dir=str(tmp_path))
    )
    assert await asyncio.wait_for(watch_records(executor, [array], ui), 30) == 1
    print_status_table(ui, [array])
    text = ui.out.getvalue()  # type: ignore[attr-defined]
    assert "\x1b[" in text and "━" in text
    assert "2/3 done, 1 failed, 0 running -> failed" in text
    assert "1 job: 1 failed; capi-arr" in text
    assert "JOB ID" in text and "capi-arr" in text
    assert not Ui(plain=True, stdout=FakeTTY()).rich


# -- the CLI's documentation ------------------------------------------------------------------
def _docs_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hook", ROOT / "docs/_hooks/reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_config_field_has_a_documented_description() -> None:
    hook = _docs_hook()
    assert hook.description_problems() == []
    assert "`clean_period`" in hook.lsfsim_settings()  # raises if a setting lacks one
    table = hook.config_reference()
    import dataclasses

    from cluster_api import ClusterConfig

    for field in dataclasses.fields(ClusterConfig):
        if field.name not in ("sources", "plugin_options"):
            assert f"| `{field.name}` |" in table


@pytest.mark.integration
def test_docs_build_strict(tmp_path: Path) -> None:
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python"):
        pytest.importorskip(module, reason="docs extra not installed")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path / "site")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "site" / "configuration" / "index.html").read_text()
    assert "zombie_timeout_minutes" in page and "config-reference" not in page
