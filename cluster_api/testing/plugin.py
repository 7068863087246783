"""pytest plugin with the ``lsf_simulator``, ``pbs_simulator`` and ``flux_simulator``
fixtures; opt-in, loaded only where asked for.

Load it with ``pytest -p cluster_api.testing.plugin``, or in a ``conftest.py``::

    pytest_plugins = ["cluster_api.testing.plugin"]

    def test_submit(lsf_simulator):
        out = subprocess.run(["bsub"], input="sleep 0.1", capture_output=True, text=True)
        assert out.stdout.startswith("Job <")
        lsf_simulator.wait_idle()

Why opt-in rather than a ``pytest11`` entry point: pytest imports entry-point plugins
before any other plugin's early hooks, so an installed entry point imported ``cluster_api``
before pytest-cov started measuring (every module's top-level lines counted as missed)
and loaded into every pytest run of every project that merely installs the package. A
lazily importing entry point cannot help: this module sits inside the package, and
importing it imports ``cluster_api`` first.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TypeVar

import pytest

from cluster_api.testing.flux_simulator import FluxSimulator, install_flux_simulator
from cluster_api.testing.handle import SimulatorHandle
from cluster_api.testing.pbs_simulator import PBSSimulator, install_pbs_simulator
from cluster_api.testing.simulator import LSFSimulator, install_simulator

__all__ = ["flux_simulator", "lsf_simulator", "pbs_simulator"]

Handle = TypeVar("Handle", bound=SimulatorHandle)


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
    yield from _on_path(install_pbs_simulator(tmp_path / "pbssim"), monkeypatch)


@pytest.fixture
def flux_simulator(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FluxSimulator]:
    """A private simulated Flux instance whose ``flux`` comes first on ``PATH``; every
    job still running at teardown is killed, with its whole process tree."""
    yield from _on_path(install_flux_simulator(tmp_path / "fluxsim"), monkeypatch)


def _on_path(simulator: Handle, monkeypatch: pytest.MonkeyPatch) -> Iterator[Handle]:
    for name, value in simulator.env.items():
        monkeypatch.setenv(name, value)
    try:
        yield simulator
    finally:
        simulator.kill_everything()
