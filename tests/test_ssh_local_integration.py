"""The local executor with ``ssh`` set, for real: a remote workstation as the "scheduler"
(issue #15). Its jobs run on the dev sshd's host as ``capi-remote``; skipped when the dev
sshd is not up (failed with ``CLUSTER_API_REQUIRE_SSHD=1``)."""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from test_remote_ssh import dev_target
from test_ssh_executor_integration import remote, remote_config
from test_sshd_dev import REMOTE_USER, DevSshd
from test_sshd_dev import dev as _dev_fixture  # noqa: F401 (the dev sshd fixture)

from cluster_api import ClusterConfig, JobStatus, LocalExecutor
from cluster_api.errors import ClusterAPIError
from cluster_api.executors.local_remote import RemoteLocalExecutor
from cluster_api.models import JobRecord
from cluster_api.remote import SSHRunner

pytestmark = pytest.mark.integration


@pytest.fixture
def sshd(request: pytest.FixtureRequest) -> DevSshd:
    found: DevSshd = request.getfixturevalue("_dev_fixture")
    return found


@pytest.fixture
async def work(sshd: DevSshd) -> AsyncIterator[str]:
    """A fresh work_dir under the remote home, removed afterwards."""
    folder = f"capi-local-{uuid.uuid4().hex[:10]}"
    try:
        yield folder
    finally:
        runner = SSHRunner(dev_target(sshd))
        await remote(runner, f"rm -rf ~/{folder}")
        await runner.close()


def local_config(sshd: DevSshd, tmp_path: Path, work: str) -> ClusterConfig:
    return remote_config(sshd, tmp_path, work, executor="local")


async def until_ended(executor: LocalExecutor, records: list[JobRecord], limit: float = 60) -> None:
    deadline = time.monotonic() + limit
    while not all(r.status.is_terminal for r in records):
        assert time.monotonic() < deadline, [r.status for r in records]
        with contextlib.suppress(ClusterAPIError):  # an outage is retried
            await executor.poll()
        await asyncio.sleep(0.2)


async def test_jobs_run_on_the_remote_host_with_true_endings(
    sshd: DevSshd, work: str, tmp_path: Path
) -> None:
    hostile = f"{work}/it's a $(touch pwned) dir"  # only ever an argv word, never shell text
    executor = LocalExecutor(local_config(sshd, tmp_path, hostile))
    assert isinstance(executor, RemoteLocalExecutor)
    try:
        who = await executor.submit("id -un > whoami.txt", "who")
        bad = await executor.submit("exit 3", "bad")
        array = await executor.submit_array(
            'echo "$ARRAY_INDEX" >> elements.txt', "arr", (1, 3), max_concurrent=1
        )
        await until_ended(executor, [who, bad, array])
        listing = await remote(
            executor.runner,  # type: ignore[arg-type]
            f"cd ~/{work}/it* && cat whoami.txt elements.txt && ! ls ~/pwned ~/{work}/pwned",
        )
    finally:
        await executor.runner.close()  # type: ignore[attr-defined]
    assert who.status is JobStatus.DONE
    assert (bad.status, bad.exit_code) == (JobStatus.FAILED, 3)
    assert array.status is JobStatus.DONE
    assert [e.status for e in array.array_elements.values()] == [JobStatus.DONE] * 3
    assert listing.split() == [REMOTE_USER, "1", "2", "3"]


async def test_a_cancel_ends_killed_and_a_fresh_executor_reconnects(
    sshd: DevSshd, work: str, tmp_path: Path
) -> None:
    config = local_config(sshd, tmp_path, work)
    first = LocalExecutor(config)
    try:
        doomed = await first.submit("sleep 60", "doomed")
        later = await first.submit("sleep 2; exit 5", "later")
        await first.poll()
        await first.cancel(doomed.job_id)
        assert doomed.status is JobStatus.KILLED
    finally:
        await first.runner.close()  # type: ignore[attr-defined]
    second = LocalExecutor(config)
    try:
        found = await second.reconnect()
        assert later.job_id in {r.job_id for r in found}
        record = second.jobs[later.job_id]
        await until_ended(second, [record])
    finally:
        await second.runner.close()  # type: ignore[attr-defined]
    assert (record.status, record.exit_code) == (JobStatus.FAILED, 5)
