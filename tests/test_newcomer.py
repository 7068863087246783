"""A newcomer's first hour (issue #16): what the README promises is what happens.

Unit tests use plain data and the ``_call`` seam; the ones that start processes (the
quick start, the ``cluster-api`` command, local jobs) are marked ``integration``.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import pytest
from conftest import bjobs_by_id, bjobs_record

from cluster_api import (
    ArrayElement,
    ClusterConfig,
    JobRecord,
    JobStatus,
    LocalExecutor,
    LSFExecutor,
    ResourceSpec,
    create_executor,
    load_config,
)
from cluster_api.cli import Ui, find_jobs, next_query_text, print_status_table
from cluster_api.errors import CommandFailedError
from cluster_api.progress import ProgressView

ROOT = Path(__file__).resolve().parents[1]
CONSOLE_SCRIPT = Path(sys.executable).with_name("cluster-api")


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


# -- 3: what the README says about newlines and dependencies is true -------------------------
@pytest.mark.parametrize(
    "make",
    [
        lambda: ResourceSpec(queue="normal\n#BSUB -q vip"),
        lambda: ResourceSpec(work_dir="/tmp/a\nb"),
        lambda: ResourceSpec(extra_directives=["-P a\r"]),
    ],
)
def test_a_newline_in_a_resource_value_is_refused(make: Any) -> None:
    with pytest.raises(ValueError, match="newline"):
        make()


async def test_a_newline_in_a_name_or_prologue_line_is_refused(tmp_path: Path) -> None:
    executor = LocalExecutor(ClusterConfig(log_directory=str(tmp_path)))
    here = ResourceSpec(work_dir=str(tmp_path))
    with pytest.raises(ValueError, match="newline"):
        await executor.submit("true", "a\nb", resources=here)
    with pytest.raises(ValueError, match="newline"):
        await executor.submit("true", "ok", resources=here, prologue=["cd /\nrm x"])
    assert list(tmp_path.iterdir()) == []  # refused before anything was written


@pytest.mark.integration
async def test_env_values_and_commands_may_span_lines(tmp_path: Path) -> None:
    """README: environment values are shell-quoted, so they may hold newlines; a command of
    several lines runs as several lines."""
    executor = LocalExecutor(ClusterConfig(log_directory=str(tmp_path), poll_interval=0.05))
    job = await executor.submit(
        'printf "%s|" "$NOTE"\necho second line',
        "lines",
        resources=ResourceSpec(work_dir=str(tmp_path)),
        env={"NOTE": "one\ntwo; rm -rf $HOME"},
    )
    for _ in range(400):
        if job.is_terminal:
            break
        await executor.wait_for_change(0.05)
        await executor.poll()
    assert job.status is JobStatus.DONE
    out = (tmp_path / f"stdout.{job.job_id}.log").read_text()
    assert out == "one\ntwo; rm -rf $HOME|second line\n"


def test_readme_and_home_page_say_what_is_true() -> None:
    readme = (ROOT / "README.md").read_text()
    home = (ROOT / "docs" / "index.md").read_text()
    assert "a newline in any field is refused" not in readme
    assert "environment values are shell-quoted, so they may hold any" in readme
    assert "needs only PyYAML" not in home
    assert "orjson" in home


# -- 4: completed_elements keeps its released meaning ----------------------------------------
def _array(*statuses: JobStatus) -> JobRecord:
    record = JobRecord(job_id="9", name="capi-chunks", command="x")
    record.metadata["array_range"] = (1, len(statuses))
    for index, status in enumerate(statuses, 1):
        record.array_elements[index] = ArrayElement(index=index, status=status)
    return record


def test_completed_elements_counts_every_ended_element_as_0_8_1_does() -> None:
    """Checked against py-cluster-api 0.8.1 as a black box: DONE, FAILED, KILLED, RUNNING
    elements give completed_elements 3 and failed_element_indices [2, 3]."""
    record = _array(JobStatus.DONE, JobStatus.FAILED, JobStatus.KILLED, JobStatus.RUNNING)
    assert record.completed_elements == 3
    assert record.failed_element_indices == [2, 3]
    assert record.element_count == 4


def test_readme_array_callback_does_not_call_failed_elements_done() -> None:
    """The README's array callback, applied to 498 successes and 2 failures."""
    readme = (ROOT / "README.md").read_text()
    callback = re.search(r"array\.on_exit\(\s*(lambda a: .*?)\n\)\n", readme, re.S)
    assert callback, "the README's array example has no on_exit(lambda a: ...)"
    statuses = [JobStatus.DONE] * 500
    statuses[6] = statuses[12] = JobStatus.FAILED
    printed = io.StringIO()
    on_exit = eval(callback[1], {"print": lambda *a: print(*a, file=printed)})
    on_exit(_array(*statuses))
    assert "500 done" not in printed.getvalue()
    assert printed.getvalue() == "500/500 ended, failed: [7, 13]\n"


# -- 5: the quick start leaves nothing behind ------------------------------------------------
@pytest.mark.integration
def test_quickstart_leaves_no_folder_behind(tmp_path: Path) -> None:
    scratch, cwd = tmp_path / "tmp", tmp_path / "cwd"
    scratch.mkdir()
    cwd.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "CLUSTER_API_CONFIG"}
    env["TMPDIR"] = str(scratch)
    result = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    assert "output of capi-hello: hello from" in result.stdout
    assert "removed " in result.stdout
    assert list(scratch.iterdir()) == [] and list(cwd.iterdir()) == []


# -- 6: config typos -------------------------------------------------------------------------
def test_unknown_key_suggests_the_nearest(tmp_path: Path) -> None:
    path = tmp_path / "cluster_api.yaml"
    path.write_text("poll_intervall: 3\nprofiles:\n  big:\n    memroy: 8 GB\n")
    with pytest.warns(UserWarning) as caught:
        load_config(path, "big")
    messages = [str(w.message) for w in caught]
    assert (
        f"{path}: unknown config key 'poll_intervall' ignored (did you mean 'poll_interval'?)"
        in messages
    )
    assert any("'memroy' ignored (did you mean 'memory'?)" in m for m in messages)


def test_unknown_key_far_from_every_key_gets_no_guess(tmp_path: Path) -> None:
    path = tmp_path / "cluster_api.yaml"
    path.write_text("frobnicate: 1\n")
    with pytest.warns(UserWarning, match=r"'frobnicate' ignored$"):
        load_config(path)


def test_unknown_override_suggests_the_nearest() -> None:
    with pytest.raises(ValueError, match=r"'queu' \(did you mean 'queue'\?\)"):
        load_config(overrides={"queu": "short"})


@pytest.mark.parametrize(
    ("text", "origin"),
    [
        ("executor: slurmm\n", "{path}"),
        ("profiles:\n  hpc:\n    executor: slurmm\n", "profile 'hpc' in {path}"),
    ],
)
def test_unknown_executor_names_file_key_and_nearest(
    tmp_path: Path, text: str, origin: str
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text(text)
    profile = "hpc" if "profiles" in text else None
    with pytest.raises(ValueError) as raised:
        create_executor(profile=profile, config_path=path)
    message = str(raised.value)
    assert message.startswith(origin.format(path=path) + ": config.executor: ")
    assert "unknown executor 'slurmm' (did you mean 'slurm'?)" in message
    assert "known executors: local, lsf, pbs, slurm, torque" in message


def test_unknown_executor_as_keyword_says_override() -> None:
    with pytest.raises(ValueError, match=r"^override: config\.executor: unknown executor 'lfs'"):
        create_executor(executor="lfs")


# -- 10: watch keeps the clock moving --------------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_plain_view_on_a_terminal_rewrites_a_status_line() -> None:
    clock, stream = Clock(), FakeTTY()
    record = JobRecord(job_id="5", name="capi-a", command="x")
    view = ProgressView([record], stream=stream, use_rich=False, clock=clock)
    clock.now = 3
    view.set_status("next query in 7 s")
    clock.now = 4
    view.set_status("next query in 6 s")
    record.status = JobStatus.RUNNING
    view.update()
    view.close()
    assert stream.getvalue() == (
        "[00:00] capi-a 5: pending\n"
        "\r[00:03] next query in 7 s\x1b[K"
        "\r[00:04] next query in 6 s\x1b[K"
        "\r\x1b[K[00:04] capi-a 5: running\n"
        "\r[00:04] next query in 6 s\x1b[K"
        "\r\x1b[K"
    )


def test_plain_view_in_a_file_writes_change_lines_only() -> None:
    stream = io.StringIO()
    record = JobRecord(job_id="5", name="capi-a", command="x")
    view = ProgressView([record], stream=stream, use_rich=False, clock=Clock())
    view.set_status("next query in 7 s")
    view.close()
    assert stream.getvalue() == "[00:00] capi-a 5: pending\n"


def test_rich_view_shows_the_status_line_and_added_jobs() -> None:
    pytest.importorskip("rich")
    stream = FakeTTY()
    view = ProgressView([JobRecord(job_id="5", name="capi-a", command="x")], stream=stream)
    view.add(JobRecord(job_id="6", name="capi-late", command="y"))
    view.set_status("next query in 7 s (every 10 s)")
    text = stream.getvalue()
    view.close()
    assert "next query in 7 s (every 10 s)" in text and "capi-late" in text


class FakeMonitor:
    def __init__(self, last: datetime | None, failures: int = 0) -> None:
        self.poll_interval = 10.0
        self.last_successful_poll = last
        self.consecutive_failures = failures


def test_next_query_text_counts_down() -> None:
    now = datetime(2026, 12, 1, 12, 0, 0, tzinfo=timezone.utc)
    assert next_query_text(FakeMonitor(now - timedelta(seconds=3)), now) == (  # type: ignore[arg-type]
        "next query in 7 s (every 10 s)"
    )
    assert next_query_text(FakeMonitor(now - timedelta(seconds=11)), now) == (  # type: ignore[arg-type]
        "asking the scheduler (every 10 s)"
    )
    assert next_query_text(FakeMonitor(None), now) == "asking the scheduler..."  # type: ignore[arg-type]
    assert "did not answer the last 3 queries" in next_query_text(FakeMonitor(now, 3), now)  # type: ignore[arg-type]


# -- 11: unknown ids are unknown -------------------------------------------------------------
async def test_find_jobs_reports_ids_nobody_knows(tmp_path: Path, mock_call: AsyncMock) -> None:
    """77 is a job of another program (bjobs reports it), 4242 is nobody's: bjobs says
    "not found" and bhist knows nothing."""

    async def lsf(argv: list[str], *args: Any, **kwargs: Any) -> str:
        if argv[0] == "bhist":
            raise CommandFailedError("bhist exited 255", stdout="No matching job found")
        if "-J" in argv:  # reconnect's search for this prefix's jobs
            raise CommandFailedError("bjobs exited 255: No job found")
        return bjobs_by_id({"77": [bjobs_record("77", "RUN", name="theirs")]}, argv)

    mock_call.side_effect = lsf
    executor = LSFExecutor(ClusterConfig(executor="lsf", log_directory=str(tmp_path), journal=True))
    records, unknown = await find_jobs(executor, ["77", "4242"])
    assert [(r.job_id, r.status) for r in records] == [("77", JobStatus.RUNNING)]
    assert unknown == ["4242"]
    assert "4242" not in executor.jobs  # not followed further


def test_status_table_shows_unknown_ids() -> None:
    ui = Ui(plain=True, stdout=io.StringIO())
    print_status_table(ui, [], ["4242"])
    assert ui.out.getvalue().splitlines()[1].split() == ["4242", "-", "unknown", "-", "-", "-", "-"]  # type: ignore[attr-defined]


# -- the command line, as a user runs it -----------------------------------------------------
def _cli(cwd: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k != "CLUSTER_API_CONFIG"}
    return subprocess.run(
        [str(CONSOLE_SCRIPT), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path) -> Path:
    (tmp_path / "cluster_api.yaml").write_text(
        f"executor: local\npoll_interval: 0.2\nlog_directory: {tmp_path / 'logs'}\n"
    )
    return tmp_path


@pytest.mark.integration
def test_submit_prints_the_bare_id_on_stdout(project: Path) -> None:
    result = _cli(project, "submit", "--name", "hi", "--", "echo hello")
    assert result.returncode == 0, result.stderr
    assert re.fullmatch(r"\d+\n", result.stdout), result.stdout
    job_id = result.stdout.strip()
    assert f"submitted job capi-hi as job {job_id}" in result.stderr
    shell = subprocess.run(
        ["bash", "-c", f'id=$("{CONSOLE_SCRIPT}" submit -- true 2>/dev/null) && echo "<$id>"'],
        cwd=project, capture_output=True, text=True, timeout=60,
        env={k: v for k, v in os.environ.items() if k != "CLUSTER_API_CONFIG"},
    )  # fmt: skip
    assert re.fullmatch(r"<\d+>\n", shell.stdout), shell


@pytest.mark.integration
def test_status_watch_and_cancel_of_an_unknown_id_exit_1(project: Path) -> None:
    status = _cli(project, "status", "4242")
    assert status.returncode == 1
    assert status.stdout.splitlines()[1].split()[:3] == ["4242", "-", "unknown"]
    assert "job 4242: unknown" in status.stderr
    watch = _cli(project, "watch", "4242")
    assert watch.returncode == 1 and "job 4242: unknown" in watch.stderr
    cancel = _cli(project, "cancel", "999999")
    assert cancel.returncode == 1
    assert "job 999999: unknown" in cancel.stderr and "nothing sent" in cancel.stderr
    assert "cancel sent" not in cancel.stdout + cancel.stderr


@pytest.mark.integration
def test_watch_follows_a_job_submitted_after_it_started(project: Path) -> None:
    first = _cli(project, "submit", "--name", "first", "--", "sleep 3").stdout.strip()
    env = {k: v for k, v in os.environ.items() if k != "CLUSTER_API_CONFIG"}
    with subprocess.Popen(
        [str(CONSOLE_SCRIPT), "watch"], cwd=project, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    ) as watch:  # fmt: skip
        assert watch.stdout is not None
        assert f"capi-first {first}" in watch.stdout.readline()  # watch is running
        late = _cli(project, "submit", "--name", "late", "--", "exit 3").stdout.strip()
        out, err = watch.communicate(timeout=60)
    assert watch.returncode == 1, err
    assert f"capi-late {late}: failed (exit 3)" in out
    assert out.splitlines()[-1] == "2 jobs: 1 done, 1 failed"
