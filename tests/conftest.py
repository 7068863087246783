"""Shared fixtures. Unit tests patch ``Executor._call``; nothing here starts a scheduler.

A test that starts a process (simulator, CLI subprocess, local jobs, real Slurm) is slow and
depends on the machine, so it must carry ``@pytest.mark.integration``; the autouse guard
below fails any unmarked test that tries, which keeps ``-m "not integration"`` fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any
from unittest.mock import AsyncMock, patch

import pytest

from cluster_api import ClusterConfig, LocalExecutor, LSFExecutor, create_executor
from cluster_api.core import Executor
from cluster_api.errors import CommandFailedError
from cluster_api.executors.slurm import SlurmExecutor

if TYPE_CHECKING:  # imported in the fixture: importing cluster_api.testing here would load
    # the plugin module before pytest_plugins does (no assertion rewriting, a warning)
    from cluster_api.testing.fake import FakeRunner

# The plugin is opt-in (see its docstring); loading it here, not with ``-p``, keeps it after
# pytest-cov has started, so coverage counts the library's import-time lines.
pytest_plugins = ["cluster_api.testing.plugin", "pytester"]
# The scheduler contract's tests live in a helper module: rewrite its asserts as a test's.
pytest.register_assert_rewrite("contract")

SNAPSHOTS = Path(__file__).parent / "snapshots"

# The primitives every way of starting a process ends in: subprocess (and asyncio's
# subprocess transport, built on it), fork (multiprocessing) and posix_spawn.
_SPAWNERS: list[tuple[Any, str]] = [
    (subprocess.Popen, "_execute_child"),
    (os, "fork"),
    (os, "forkpty"),
    (os, "posix_spawn"),
    (os, "posix_spawnp"),
    (os, "system"),
]


class ProcessRefused(OSError):
    """Raised where a unit test would have started a process: an OSError, as a failed
    launch is, so the code under test takes its ordinary error path."""


@pytest.fixture(autouse=True)
def _unit_tests_start_no_process(
    request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> Iterator[None]:
    """Refuse any process started by a test not marked integration, and fail that test.

    The failure is reported at teardown, so code that swallows the refusal (a retry loop,
    ``except OSError``) cannot hide it."""
    if request.node.get_closest_marker("integration") is not None:
        yield
        return
    attempts: list[str] = []

    def refuse(name: str) -> Callable[..., Any]:
        def refused(*args: Any, **kwargs: Any) -> Any:
            attempts.append(name)
            raise ProcessRefused(f"unit test may not start a process ({name})")

        return refused

    for owner, name in _SPAWNERS:
        if hasattr(owner, name):
            monkeypatch.setattr(owner, name, refuse(name))
    yield
    if attempts:
        pytest.fail(
            f"starts a process ({', '.join(sorted(set(attempts)))}) but is not marked "
            "@pytest.mark.integration: mark it, or fake the commands through Executor._call",
            pytrace=False,
        )


@pytest.fixture
def tz(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[str], None]]:
    """Set the process's time zone (``tz("Europe/Berlin")``) for one test."""

    def set_tz(name: str) -> None:
        monkeypatch.setenv("TZ", name)
        time.tzset()

    yield set_tz
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def work_dir(tmp_path: Any) -> str:
    path = tmp_path / "work"
    path.mkdir()
    return str(path)


@pytest.fixture
def mock_call() -> Iterator[AsyncMock]:
    """Replace the scheduler seam; set ``.return_value`` or ``.side_effect`` per test."""
    with patch.object(Executor, "_call", new_callable=AsyncMock) as mocked:
        mocked.return_value = ""
        yield mocked


@pytest.fixture
def runner() -> Iterator[FakeRunner]:
    """The scheduler seam answered by a FakeRunner; script it with ``runner.on(...)``."""
    from cluster_api.testing.fake import FakeRunner

    with FakeRunner().patch() as fake:
        yield fake


@pytest.fixture
def lsf(work_dir: str) -> LSFExecutor:
    return LSFExecutor(ClusterConfig(executor="lsf", log_directory=work_dir))


@pytest.fixture
def slurm(tmp_path: Path) -> SlurmExecutor:
    """An executor for the real Slurm of the integration tests (skipped, or failed under
    CLUSTER_API_REQUIRE_SLURM=1, when Slurm does not answer), with a prefix of its own."""
    from test_integration import require_slurm

    require_slurm()
    executor = create_executor(
        executor="slurm",
        poll_interval=0.5,
        log_directory=str(tmp_path / "logs"),
        job_name_prefix=f"it{uuid.uuid4().hex[:8]}",
        command_timeout=30.0,
    )
    assert isinstance(executor, SlurmExecutor)
    return executor


@pytest.fixture
def local(work_dir: str) -> LocalExecutor:
    return LocalExecutor(
        ClusterConfig(executor="local", log_directory=work_dir, poll_interval=0.05)
    )


def bjobs_json(*records: dict[str, str]) -> str:
    """A ``bjobs -json`` answer as LSF prints it (all values strings)."""
    return json.dumps({"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": list(records)})


def bjobs_record(job_id: str, stat: str, index: str = "0", **fields: str) -> dict[str, str]:
    record = {
        "JOBID": job_id,
        "JOBINDEX": index,
        "JOB_NAME": fields.pop("name", "capi-job"),
        "STAT": stat,
        "EXIT_CODE": "",
        "EXEC_HOST": "",
        "MAX_MEM": "",
        "SUBMIT_TIME": "Nov 22 10:31",
        "START_TIME": "",
        "FINISH_TIME": "",
        "EXIT_REASON": "",
    }
    record.update({k.upper(): v for k, v in fields.items()})
    return record


def bjobs_by_id(known: dict[str, list[dict[str, str]]], argv: list[str]) -> str:
    """What bjobs prints for the ids in ``argv``: their records and an ``ERROR`` record per
    unknown id; like LSF it then exits 255 (CommandFailedError that keeps the stdout)."""
    out: list[dict[str, str]] = []
    missing = False
    for job_id in (a for a in argv[1:] if a.isdigit()):
        if job_id in known:
            out.extend(known[job_id])
        else:
            out.append({"JOBID": job_id, "ERROR": f"Job <{job_id}> is not found"})
            missing = True
    text = bjobs_json(*out)
    if missing:
        raise CommandFailedError("bjobs exited 255", stdout=text, returncode=255)
    return text


def check_snapshot(name: str, text: str) -> None:
    """Compare with ``tests/snapshots/<name>``; ``UPDATE_SNAPSHOTS=1`` rewrites it."""
    path = SNAPSHOTS / name
    if os.environ.get("UPDATE_SNAPSHOTS") or not path.exists():
        path.parent.mkdir(exist_ok=True)
        path.write_text(text)
        if not os.environ.get("UPDATE_SNAPSHOTS"):
            pytest.fail(f"snapshot {path} did not exist; written now, check it and re-run")
    assert text == path.read_text()
