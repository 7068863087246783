"""The test tooling itself: the process guard of conftest.py, the opt-in pytest plugin and
the shared fake command runner ``cluster_api.testing.fake``."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster_api import (
    ClusterConfig,
    CommandFailedError,
    CommandTimeoutError,
    LSFExecutor,
    ResourceSpec,
)
from cluster_api.core import Executor
from cluster_api.testing.fake import FakeRunner, RunnerCall

CONFTEST = Path(__file__).with_name("conftest.py")
LSF_DOWN = CommandFailedError("bjobs exited 255: LSF is down", stdout="partial", returncode=255)


def test_unmarked_test_that_starts_a_process_fails(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function")
    pytester.makeconftest(CONFTEST.read_text())
    pytester.makepyfile(
        test_spawns="""
        import asyncio
        import subprocess

        def test_runs_a_command():
            subprocess.run(["true"], check=True)

        def test_hides_the_refusal():
            try:
                subprocess.run(["true"], check=True)
            except OSError:
                pass

        async def test_asyncio_subprocess():
            await asyncio.create_subprocess_exec("true")
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(failed=2, passed=1, errors=3)
    result.stdout.fnmatch_lines(["*starts a process*not marked @pytest.mark.integration*"])


@pytest.mark.integration
def test_other_projects_pytest_runs_do_not_import_cluster_api(tmp_path: Path) -> None:
    """Installing the package adds no plugin to somebody else's pytest run."""
    (tmp_path / "test_theirs.py").write_text(
        "import sys\ndef test_untouched():\n    assert 'cluster_api' not in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CLUSTER_API_"))}
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_theirs.py"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


# -- FakeRunner ------------------------------------------------------------------------------
async def test_fake_runner_answers_in_order_and_repeats_the_last() -> None:
    runner = FakeRunner().on("bjobs", "first", LSF_DOWN, lambda argv: f"asked {argv[1:]}")
    assert await runner(["bjobs", "-a"]) == "first"
    with pytest.raises(CommandFailedError) as failed:
        await runner(["bjobs"])
    assert failed.value.stdout == "partial"
    assert await runner(["bjobs", "1"]) == "asked ['1']"
    assert await runner(["/usr/bin/bjobs", "2"]) == "asked ['2']"  # keyed by program name


async def test_fake_runner_functions_may_be_async_and_return_the_exception() -> None:
    async def timeout(argv: list[str]) -> BaseException:
        return CommandTimeoutError(f"{argv[0]} timed out")

    runner = FakeRunner().on("sacct", timeout)
    with pytest.raises(CommandTimeoutError, match="sacct timed out"):
        await runner(["sacct"])


async def test_fake_runner_refuses_an_unscripted_program() -> None:
    with pytest.raises(AssertionError, match="no answer scripted for"):
        await FakeRunner().on("bsub", "")(["bkill", "7"])
    with pytest.raises(ValueError, match="no answer given for 'bsub'"):
        FakeRunner().on("bsub")


async def test_fake_runner_records_every_call_and_the_peak_concurrency() -> None:
    release = asyncio.Event()

    async def slow(argv: list[str]) -> str:
        await release.wait()
        return "ok"

    runner = FakeRunner().on("squeue", slow)
    calls = [
        asyncio.ensure_future(runner(["squeue", str(i)], 5.0, {"A": "1"}, "in.sh"))
        for i in range(3)
    ]
    await asyncio.sleep(0)
    assert (runner.active, runner.peak) == (3, 3)
    release.set()
    assert await asyncio.gather(*calls) == ["ok"] * 3
    assert (runner.active, runner.peak) == (0, 3)
    assert runner.calls[0] == RunnerCall(["squeue", "0"], 5.0, {"A": "1"}, "in.sh")
    assert runner.argvs("squeue") == [["squeue", "0"], ["squeue", "1"], ["squeue", "2"]]


async def test_fake_runner_patch_answers_every_executor_and_restores_the_seam(
    work_dir: str,
) -> None:
    original = Executor.__dict__["_call"]
    runner = FakeRunner().on("bsub", "Job <77> is submitted to queue <normal>.\n")
    with runner.patch():
        executor = LSFExecutor(ClusterConfig(executor="lsf", log_directory=work_dir))
        record = await executor.submit("true", "j", resources=ResourceSpec(work_dir=work_dir))
    assert record.job_id == "77"
    (call,) = runner.calls
    assert call.program == "bsub" and call.argv[-1] == record.script_path
    assert Executor.__dict__["_call"] is original
