"""The Grid Engine dev cluster (``scripts/sge-dev-cluster.sh up``) does a real round trip.

No executor is involved: this checks the cluster that later Grid Engine work runs against,
with the commands and formats recorded in ``tests/data/sge/``. Skipped when Grid Engine does
not answer, except with ``CLUSTER_API_REQUIRE_SGE=1``, where it fails instead (a skipped
test would hide a cluster that did not come up).
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

pytestmark = pytest.mark.integration

T = TypeVar("T")

# Scheduling runs every second on the dev cluster; accounting is flushed every 15 s.
START_TIMEOUT = 60.0
ACCOUNTING_TIMEOUT = 60.0


def sge_absent_reason() -> str | None:
    """Why Grid Engine cannot be used here, or None when qmaster answers."""
    if shutil.which("qstat") is None:
        return "qstat is not installed (run scripts/sge-dev-cluster.sh up)"
    try:
        answer = subprocess.run(
            ["qstat", "-u", "*"], capture_output=True, text=True, timeout=20, check=False
        )
    except subprocess.TimeoutExpired:
        return "qstat did not answer within 20 s"
    if answer.returncode != 0:
        return f"qstat failed (rc {answer.returncode}): {answer.stderr.strip()[:200]}"
    return None


def require_sge() -> None:
    reason = sge_absent_reason()
    if reason is None:
        return
    if os.environ.get("CLUSTER_API_REQUIRE_SGE") == "1":
        pytest.fail(f"Grid Engine is required here (CLUSTER_API_REQUIRE_SGE=1): {reason}")
    pytest.skip(reason)


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=check)


def poll(what: str, probe: Callable[[], T | None], timeout: float) -> T:
    """Call ``probe`` until it returns something other than None."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def qstat_state(job_id: str) -> tuple[str, str] | None:
    """(section, state) of the job in ``qstat -xml``: section is ``queue_info`` for
    running jobs and ``job_info`` for pending ones. None when the job is not listed."""
    root = ET.fromstring(run("qstat", "-xml").stdout)
    for section in root:
        for job in section.iter("job_list"):
            if job.findtext("JB_job_number") == job_id:
                return section.tag, job.findtext("state") or ""
    return None


def qacct_fields(job_id: str) -> dict[str, str] | None:
    """The first record of ``qacct -j``, or None while accounting has not flushed it."""
    answer = run("qacct", "-j", job_id, check=False)
    if answer.returncode != 0:
        return None
    fields: dict[str, str] = {}
    for line in answer.stdout.splitlines():
        name, _, value = line.partition(" ")
        if name and not name.startswith("="):
            fields.setdefault(name, value.strip())
    return fields


def test_qsub_qstat_qacct_round_trip(tmp_path: Path) -> None:
    require_sge()
    release = tmp_path / "release"
    script = tmp_path / "job.sh"
    # Waits for the test's signal, so the job is certainly seen running; exit 3 shows the
    # job's own status reaches accounting (0 would also be the "nothing known" value).
    script.write_text(f"while [ ! -e {shlex.quote(str(release))} ]; do sleep 0.1; done\nexit 3\n")
    name = f"it{uuid.uuid4().hex[:8]}"

    submitted = run(
        "qsub", "-terse", "-wd", str(tmp_path), "-N", name, "-o", "/dev/null", "-j", "y",
        str(script),
    )  # fmt: skip
    job_id = submitted.stdout.strip()
    assert re.fullmatch(r"[0-9]+", job_id), submitted.stdout
    try:
        # A running job is listed under queue_info, a pending one under job_info.
        poll(
            f"job {job_id} to run",
            lambda: True if qstat_state(job_id) == ("queue_info", "r") else None,
            START_TIMEOUT,
        )

        release.touch()
        poll(
            f"job {job_id} to leave qstat",
            lambda: True if qstat_state(job_id) is None else None,
            START_TIMEOUT,
        )
        record = poll(
            f"qacct to report job {job_id}", lambda: qacct_fields(job_id), ACCOUNTING_TIMEOUT
        )
    finally:
        run("qdel", job_id, check=False)

    assert record["jobname"] == name
    assert record["failed"] == "0"
    assert record["exit_status"] == "3"
