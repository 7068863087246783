"""ProgressView: plain lines off a terminal, a rich live display on one, and the
``wait_for(progress=True)`` hook of the monitor."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest
from conftest import check_snapshot

from cluster_api import ArrayElement, JobMonitor, JobRecord, JobStatus, LocalExecutor
from cluster_api.progress import ProgressView, format_elapsed, job_summary


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def plain_job(job_id: str = "101", name: str = "capi-one") -> JobRecord:
    return JobRecord(job_id=job_id, name=name, command="true")


def array_job(job_id: str = "202", name: str = "capi-arr", size: int = 10) -> JobRecord:
    record = JobRecord(
        job_id=job_id, name=name, command="true", metadata={"array_range": (1, size)}
    )
    for index in range(1, size + 1):
        record.array_elements[index] = ArrayElement(index=index)
    return record


def set_elements(record: JobRecord, **counts: int) -> None:
    """Give the first elements these statuses, in order (done=7, failed=1, ...)."""
    statuses = [JobStatus(name) for name, n in counts.items() for _ in range(n)]
    assert len(statuses) == len(record.array_elements)
    for element, status in zip(record.array_elements.values(), statuses, strict=True):
        element.status = status
    record.advance(record.compute_array_status())


def test_format_elapsed() -> None:
    assert format_elapsed(0) == "00:00"
    assert format_elapsed(12.7) == "00:12"
    assert format_elapsed(61) == "01:01"
    assert format_elapsed(3600 + 62) == "1:01:02"
    assert format_elapsed(-3) == "00:00"


def test_summaries() -> None:
    job = plain_job()
    assert job_summary(job) == "pending"
    job.advance(JobStatus.FAILED)
    job.exit_code = 3
    assert job_summary(job) == "failed (exit 3)"
    job.metadata["exit_reason"] = "TERM_RUNLIMIT: job killed after reaching LSF run time limit"
    assert job_summary(job).startswith("failed (exit 3, TERM_RUNLIMIT")
    zombie = plain_job()
    zombie.metadata["zombie"] = True
    zombie.advance(JobStatus.FAILED)
    assert job_summary(zombie) == "failed (lost by the scheduler)"

    array = array_job()
    set_elements(array, done=7, failed=1, running=2)
    assert job_summary(array) == "7/10 done, 1 failed, 2 running"
    set_elements(array, done=6, killed=1, failed=1, running=0, pending=2)
    assert job_summary(array) == "6/10 done, 1 failed, 0 running, 2 pending, 1 killed"


def test_elements_not_reported_yet_count_as_pending() -> None:
    record = JobRecord(job_id="7", name="capi-r", command="", metadata={"array_range": (1, 4)})
    record.array_elements[2] = ArrayElement(index=2, status=JobStatus.RUNNING)
    assert job_summary(record) == "0/4 done, 0 failed, 1 running, 3 pending"


def test_plain_lines_only_when_something_changed() -> None:
    stream, clock = io.StringIO(), FakeClock()
    job, array = plain_job(), array_job()
    view = ProgressView([job, array], stream, clock=clock)
    assert not view.uses_rich
    assert stream.getvalue().splitlines() == [
        "[00:00] capi-one 101: pending",
        "[00:00] capi-arr 202: 0/10 done, 0 failed, 0 running, 10 pending",
    ]
    clock.now += 5
    view.update()
    view.update()
    assert len(stream.getvalue().splitlines()) == 2  # nothing changed, nothing printed
    job.advance(JobStatus.RUNNING)
    view.update()
    assert stream.getvalue().splitlines()[-1] == "[00:05] capi-one 101: running"
    assert len(stream.getvalue().splitlines()) == 3


def test_plain_output_snapshot() -> None:
    """A whole run, from submission to the end of an array with one failure."""
    stream, clock = io.StringIO(), FakeClock()
    job, array = plain_job(), array_job()
    view = ProgressView([job, array], stream, clock=clock)
    steps: list[tuple[float, dict[str, int], JobStatus | None]] = [
        (2, {"running": 4, "pending": 6}, JobStatus.RUNNING),
        (5, {"done": 3, "running": 4, "pending": 3}, None),
        (9, {"done": 7, "failed": 1, "running": 2}, JobStatus.DONE),
        (12, {"done": 9, "failed": 1}, None),
    ]
    for at, counts, job_status in steps:
        clock.now = 1000.0 + at
        set_elements(array, **counts)
        if job_status is not None:
            if job_status is JobStatus.DONE:
                job.exit_code = 0
            job.advance(job_status)
        view.update()
    clock.now = 1000.0 + 3725
    view.close()
    view.close()  # idempotent
    check_snapshot("progress_plain.txt", stream.getvalue())


def test_default_stream_is_stderr_and_plain_off_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    view = ProgressView([plain_job()])
    view.close()
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == "[00:00] capi-one 101: pending\n"
    assert not view.uses_rich


def test_rich_display_on_a_terminal() -> None:
    pytest.importorskip("rich")
    stream = FakeTTY()
    array = array_job()
    job = plain_job()
    view = ProgressView([array, job], stream)
    assert view.uses_rich
    set_elements(array, done=7, failed=1, running=2)
    job.advance(JobStatus.RUNNING)
    view.update()
    job.exit_code = 0
    job.advance(JobStatus.DONE)
    view.close()
    text = stream.getvalue()
    assert "\x1b[" in text  # drawn by rich as a live display
    assert "7/10 done, 1 failed, 2 running" in text
    assert "done (exit 0)" in text
    assert "━" in text  # the bar


def test_use_rich_without_rich_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "rich", None)  # import rich -> ImportError
    with pytest.raises(RuntimeError, match="rich is not installed"):
        ProgressView([plain_job()], FakeTTY(), use_rich=True)
    view = ProgressView([plain_job()], FakeTTY())  # a terminal, but no rich: plain
    assert not view.uses_rich


@pytest.mark.integration
async def test_wait_for_progress_draws_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from cluster_api import ClusterConfig, ResourceSpec

    executor = LocalExecutor(
        ClusterConfig(log_directory=str(tmp_path / "logs"), poll_interval=0.05)
    )
    resources = ResourceSpec(work_dir=str(tmp_path))
    job = await executor.submit("exit 0", "quick", resources=resources)
    array = await executor.submit_array(
        'test "$ARRAY_INDEX" -ne 2', "arr", (1, 3), resources=resources
    )
    async with JobMonitor(executor) as monitor:
        await monitor.wait_for(job, array, timeout=20, progress=True)
    err = capsys.readouterr().err.splitlines()
    assert any(line.endswith(f"capi-quick {job.job_id}: done (exit 0)") for line in err)
    assert any(
        line.endswith(f"capi-arr {array.job_id}: 2/3 done, 1 failed, 0 running -> failed")
        for line in err
    )
