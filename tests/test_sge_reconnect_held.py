"""Reconnecting to Grid Engine dependants that wait, held, for us to release them.

``-hold_jid`` waits for any exit, so our dependants are submitted held (``-h``) and the
executor releases them once their parents ended DONE. A fresh process with no journal (the
default) finds such a job in the listing without its parents; it must ask Grid Engine what
the job waits for (``qstat -j ids -xml``, the ``JB_jid_request_list`` that outlives the
parents) and track parents that already left the queue, or the dependant stays held for
ever. Unit tests use recorded answers (``tests/data/sge/qstat_j_held*.xml``); the
integration test runs it on the real dev cluster.
"""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
from test_sge import Scripted, qacct, qstat, read
from test_sge_integration import in_qstat, make_executor, require_sge

from cluster_api import ClusterConfig, JobStatus
from cluster_api.errors import ClusterAPIError
from cluster_api.executors.sge import SGEExecutor
from cluster_api.executors.sge_formats import parse_parents
from cluster_api.monitor import JobMonitor


def test_a_held_job_waits_for_the_jobs_it_requested() -> None:
    assert parse_parents(read("qstat_j_held.xml")) == {"5": ["4"], "6": ["4", "5"]}


def test_the_request_outlives_a_parent_that_ended() -> None:
    # job 4 is gone from JB_jid_predecessor_list once it ended; the request keeps it
    assert parse_parents(read("qstat_j_held_parent_ended.xml")) == {"5": ["4"], "6": ["4", "5"]}


def test_unknown_jobs_have_no_parents_and_odd_text_is_an_error() -> None:
    assert parse_parents(read("qstat_j_unknown.xml")) == {}
    assert parse_parents(read("qstat_j_pending.xml")) == {"1": []}
    with pytest.raises(ClusterAPIError, match="qstat -j"):
        parse_parents("error: commlib error")


def named(text: str, names: dict[str, str]) -> str:
    """A ``qstat`` answer whose entries carry these names (by job id) instead of the
    recorded one."""
    entries = text.split("<job_list")
    for position, entry in enumerate(entries):
        for job_id, name in names.items():
            if f"<JB_job_number>{job_id}</JB_job_number>" in entry:
                entries[position] = entry.replace("<JB_name>running<", f"<JB_name>{name}<")
    return "<job_list".join(entries)


@pytest.fixture
def runner() -> Scripted:
    return Scripted()


@pytest.fixture
def fresh(runner: Scripted, tmp_path: Path) -> SGEExecutor:
    config = ClusterConfig(
        executor="sge", log_directory=str(tmp_path), journal=False, job_name_prefix="p"
    )
    return SGEExecutor(config, runner=runner)


def listing(*entries: tuple[str, str]) -> tuple[str, str, int]:
    text = named(qstat(*entries), {job_id: f"p-j{job_id}" for job_id, _ in entries})
    return (text, "", 0)


async def test_reconnect_asks_what_held_jobs_wait_for_and_tracks_the_ended_parents(
    fresh: SGEExecutor, runner: Scripted
) -> None:
    queue = listing(("5", "hqw"), ("6", "hqw"), ("7", "r"))
    held = read("qstat_j_held_parent_ended.xml")
    runner.on("qstat", queue, (held, "", 0), queue)  # the listing, qstat -j, the poll
    runner.on("qacct", (qacct("4", 0), "", 0))
    runner.on("qrls", ("modified hold of job 5\n", "", 0))
    adopted = {r.job_id: r for r in await fresh.reconnect()}
    assert sorted(adopted) == ["4", "5", "6", "7"]
    assert ["qstat", "-j", "5,6", "-xml"] in runner.called("qstat")  # not the running 7
    assert adopted["6"].depends_on == ["4", "5"] and adopted["7"].depends_on == []
    assert adopted["4"].status is JobStatus.DONE  # from qacct: it had left the queue
    assert runner.called("qrls") == [["qrls", "5"]]  # 6 still waits for 5


async def test_reconnect_ends_the_dependants_of_a_parent_that_failed(
    fresh: SGEExecutor, runner: Scripted
) -> None:
    held = read("qstat_j_held_parent_ended.xml")
    runner.on("qstat", listing(("5", "hqw"), ("6", "hqw")), (held, "", 0), listing(("6", "hqw")))
    runner.on("qacct", (qacct("4", 3), "", 0))
    runner.on("qdel", ("root has deleted job 5\nroot has deleted job 6\n", "", 0))
    adopted = {r.job_id: r for r in await fresh.reconnect()}
    assert adopted["4"].status is JobStatus.FAILED and adopted["4"].exit_code == 3
    assert adopted["5"].status is JobStatus.KILLED
    assert adopted["5"].metadata["dependency_failed"] == ["4"]
    assert runner.called("qrls") == []


async def test_without_an_answer_the_held_jobs_are_adopted_and_the_log_says_so(
    fresh: SGEExecutor, runner: Scripted, caplog: pytest.LogCaptureFixture
) -> None:
    failed = ("", "error: no such option -j for you", 1)
    runner.on("qstat", listing(("5", "hqw")), failed, listing(("5", "hqw")))
    adopted = await fresh.reconnect()
    assert [r.job_id for r in adopted] == ["5"] and adopted[0].depends_on == []
    assert "cannot tell which jobs ['5'] wait for" in caplog.text


# -- on the real dev cluster -----------------------------------------------------------
FIRST_PROCESS = """
import asyncio, sys
from cluster_api import ResourceSpec, create_executor
async def main():
    ex = create_executor(executor="sge", log_directory=sys.argv[1], job_name_prefix=sys.argv[2])
    here = ResourceSpec(work_dir=sys.argv[1])
    ok = await ex.submit("sleep 1", "ok", resources=here)
    bad = await ex.submit("sleep 1; exit 3", "bad", resources=here)
    after_ok = await ex.submit("true", "after-ok", resources=here, depends_on=[ok])
    after_bad = await ex.submit("touch ran", "after-bad", resources=here, depends_on=[bad])
    print(ok.job_id, bad.job_id, after_ok.job_id, after_bad.job_id)
asyncio.run(main())
"""


@pytest.mark.integration
async def test_a_fresh_process_releases_or_ends_the_held_dependants_it_finds(
    tmp_path: Path,
) -> None:
    require_sge()
    prefix = f"held{uuid.uuid4().hex[:8]}"
    logs = tmp_path / "logs"
    logs.mkdir()
    first = subprocess.run(
        [sys.executable, "-c", FIRST_PROCESS, str(logs), prefix],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    ok_id, bad_id, after_ok_id, after_bad_id = first.stdout.split()
    deadline = time.monotonic() + 60
    while in_qstat(ok_id) or in_qstat(bad_id):  # nobody releases the dependants meanwhile
        assert time.monotonic() < deadline, "the parents did not end"
        time.sleep(0.5)
    executor = make_executor(tmp_path / "fresh-logs", prefix)
    adopted = {r.job_id: r for r in await executor.reconnect()}
    assert {ok_id, bad_id, after_ok_id, after_bad_id} == set(adopted)
    monitor = JobMonitor(executor, poll_interval=0.5)
    await monitor.start()
    try:
        await monitor.wait_for(adopted[after_ok_id], adopted[after_bad_id], timeout=90)
    finally:
        await monitor.stop()
        await executor.cancel_all()  # nothing left held for the next run
    assert adopted[after_ok_id].status is JobStatus.DONE
    assert adopted[after_bad_id].status is JobStatus.KILLED
    assert adopted[after_bad_id].metadata["dependency_failed"]
    assert not (logs / "ran").exists()
