"""pytest plugin (entry point ``cluster_api``): the ``lsf_simulator`` and
``pbs_simulator`` fixtures.

Use it by installing the package (the ``pytest11`` entry point registers it) or with
``pytest -p cluster_api.testing.plugin``::

    def test_submit(lsf_simulator):
        out = subprocess.run(["bsub"], input="sleep 0.1", capture_output=True, text=True)
        assert out.stdout.startswith("Job <")
        lsf_simulator.wait_idle()
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from cluster_api.testing.pbs_simulator import PBSSimulator, install_pbs_simulator
from cluster_api.testing.simulator import LSFSimulator, install_simulator

__all__ = ["lsf_simulator", "pbs_simulator"]

ENTRY_POINT_NAME = "cluster_api"


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Loaded with ``-p cluster_api.testing.plugin`` while the package's ``pytest11``
    entry point is installed too: keep pytest from registering this module twice."""
    if pluginmanager.get_plugin(ENTRY_POINT_NAME) is None:
        pluginmanager.set_blocked(ENTRY_POINT_NAME)


@pytest.fixture
def lsf_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[LSFSimulator]:
    """A private simulated LSF cluster whose commands come first on ``PATH``.

    Every job still running at teardown is killed, with its whole process tree.
    """
    simulator = install_simulator(tmp_path / "lsfsim")
    for name, value in simulator.env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("LSB_DISPLAY_YEAR", raising=False)
    monkeypatch.delenv("LSB_BJOBS_FORMAT", raising=False)
    try:
        yield simulator
    finally:
        simulator.kill_everything()


@pytest.fixture
def pbs_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[PBSSimulator]:
    """A private simulated PBS Pro server (``set(flavour="torque")`` for Torque) whose
    ``qsub``, ``qstat`` and ``qdel`` come first on ``PATH``; every job still running at
    teardown is killed, with its whole process tree."""
    simulator = install_pbs_simulator(tmp_path / "pbssim")
    for name, value in simulator.env.items():
        monkeypatch.setenv(name, value)
    try:
        yield simulator
    finally:
        simulator.kill_everything()
