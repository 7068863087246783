"""Executor plugins: the entry-point group ``cluster_api.executors``.

A third-party package is simulated the way an installed one looks to
``importlib.metadata``: a folder on ``sys.path`` holding the package and a
``NAME-VERSION.dist-info`` with ``METADATA`` and ``entry_points.txt``, which is exactly
what ``pip install`` leaves in site-packages. Nothing is installed into the venv, so the
tests are fast and leave nothing behind, and a fresh interpreter (the ``cluster-api``
command) finds the plugin through ``PYTHONPATH`` as it would after a real install.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path

import pytest

from cluster_api import LocalExecutor, available_executors, create_executor
from cluster_api.executors import ENTRY_POINT_GROUP, get_executor_class

ROOT = Path(__file__).resolve().parents[1]
BUILTIN_TARGETS = {
    "flux": "cluster_api.executors.flux:FluxExecutor",
    "local": "cluster_api.executors.local:LocalExecutor",
    "lsf": "cluster_api.executors.lsf:LSFExecutor",
    "pbs": "cluster_api.executors.pbs:PBSExecutor",
    "slurm": "cluster_api.executors.slurm:SlurmExecutor",
    "sge": "cluster_api.executors.sge:SGEExecutor",
    "torque": "cluster_api.executors.torque:TorqueExecutor",
}

PLUGIN_MODULE = '''
"""A third-party executor: runs jobs locally and says so in the record."""
from cluster_api import LocalExecutor


class MyExecutor(LocalExecutor):
    name = "myexec"

    def _after_register(self, record):
        record.metadata["via"] = "myexec"
        super()._after_register(record)


class NotAnExecutor:
    pass
'''


def make_distribution(site: Path, entry_points_txt: str, name: str = "myexec_plugin") -> Path:
    """Lay out an installed distribution ``name`` 0.1 in ``site`` (a sys.path entry)."""
    package = site / name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(PLUGIN_MODULE)
    dist_info = site / f"{name}-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text(
        f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: 0.1\n"
    )
    (dist_info / "entry_points.txt").write_text(textwrap.dedent(entry_points_txt))
    return site


@pytest.fixture
def plugin_site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = make_distribution(
        tmp_path / "site",
        f"""\
        [{ENTRY_POINT_GROUP}]
        myexec = myexec_plugin:MyExecutor
        broken = myexec_plugin_missing:Nothing
        notanexecutor = myexec_plugin:NotAnExecutor
        """,
    )
    monkeypatch.syspath_prepend(str(site))
    yield site
    sys.modules.pop("myexec_plugin", None)


def test_plugin_is_listed_and_created(plugin_site: Path, tmp_path: Path) -> None:
    assert {"local", "lsf", "myexec"} <= set(available_executors())
    executor = create_executor(executor="myexec", log_directory=str(tmp_path / "logs"))
    assert type(executor).__name__ == "MyExecutor"
    assert isinstance(executor, LocalExecutor)
    assert executor.config.executor == "myexec"


@pytest.mark.integration
async def test_plugin_runs_a_job(plugin_site: Path, tmp_path: Path) -> None:
    from cluster_api import JobMonitor, JobStatus, ResourceSpec

    executor = create_executor(
        executor="myexec", log_directory=str(tmp_path / "logs"), poll_interval=0.05
    )
    job = await executor.submit("exit 0", "hello", resources=ResourceSpec(work_dir=str(tmp_path)))
    async with JobMonitor(executor) as monitor:
        await monitor.wait_for(job, timeout=20)
    assert (job.status, job.metadata["via"]) == (JobStatus.DONE, "myexec")


def test_broken_plugins_fail_only_when_used(plugin_site: Path) -> None:
    with pytest.raises(ValueError, match=r"executor 'broken' .* cannot be loaded"):
        get_executor_class("broken")
    with pytest.raises(ValueError, match="is not an Executor subclass"):
        get_executor_class("notanexecutor")
    assert get_executor_class("local") is LocalExecutor  # the others still work
    with pytest.raises(ValueError, match=r"unknown executor 'nope'; known executors: .*myexec"):
        create_executor(executor="nope")


def test_a_plugin_cannot_take_over_a_builtin_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    site = make_distribution(
        tmp_path / "site2",
        f"[{ENTRY_POINT_GROUP}]\nlocal = myexec_hijack:MyExecutor\n",
        name="myexec_hijack",
    )
    monkeypatch.syspath_prepend(str(site))
    with caplog.at_level(logging.WARNING, logger="cluster_api"):
        assert get_executor_class("local") is LocalExecutor
    assert "is a built-in executor" in caplog.text
    sys.modules.pop("myexec_hijack", None)


@pytest.mark.integration
def test_cli_uses_a_plugin_in_a_fresh_interpreter(plugin_site: Path, tmp_path: Path) -> None:
    """What a user sees after ``pip install`` of a plugin package: a new process finds it."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "cluster_api.yaml").write_text(
        f"executor: myexec\npoll_interval: 0.1\nlog_directory: {tmp_path / 'logs'}\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "CLUSTER_API_CONFIG"}
    env["PYTHONPATH"] = os.pathsep.join([str(plugin_site), str(ROOT)])
    listed = subprocess.run(
        [sys.executable, "-c", "import cluster_api; print(cluster_api.available_executors())"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert "'myexec'" in listed.stdout
    result = subprocess.run(
        [sys.executable, "-m", "cluster_api", "submit", "--wait", "--json", "--", "echo hi"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert '"via": "myexec"' in result.stdout
    assert result.stdout.splitlines()[-1] == "1 job: 1 done"


def test_builtins_are_registered_in_pyproject_and_installed_metadata() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["entry-points"][ENTRY_POINT_GROUP] == BUILTIN_TARGETS
    assert pyproject["project"]["scripts"] == {"cluster-api": "cluster_api.cli:main"}
    installed = {ep.name: ep.value for ep in entry_points(group=ENTRY_POINT_GROUP)}
    missing = {k: v for k, v in BUILTIN_TARGETS.items() if installed.get(k) != v}
    assert not missing, "installed metadata is stale: run pip install -e . --no-deps"
