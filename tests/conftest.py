"""Shared fixtures. Unit tests patch ``Executor._call``; nothing here starts a scheduler."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock, patch

import pytest

from cluster_api import ClusterConfig, LocalExecutor, LSFExecutor
from cluster_api.core import Executor
from cluster_api.errors import CommandFailedError

SNAPSHOTS = Path(__file__).parent / "snapshots"


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
def lsf(work_dir: str) -> LSFExecutor:
    return LSFExecutor(ClusterConfig(executor="lsf", log_directory=work_dir))


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
