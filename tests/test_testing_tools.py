"""The test tooling itself: the process guard of conftest.py, the opt-in pytest plugin and
the shared fake command runner ``cluster_api.testing.fake``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

CONFTEST = Path(__file__).with_name("conftest.py")


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
