"""Test helpers for code that drives LSF or Flux: simulators of their commands.

``install_simulator(path)`` creates a simulated cluster whose ``bsub``, ``bjobs``,
``bkill`` and ``bhist`` live in ``path/bin``; the pytest fixture ``lsf_simulator``
(plugin ``cluster_api.testing.plugin``) does it per test and puts them on ``PATH``.
``install_flux_simulator(path)`` and the ``flux_simulator`` fixture do the same for a
``flux`` with ``batch``, ``submit``, ``jobs`` and ``cancel``.
"""

from __future__ import annotations

import contextlib

from cluster_api.testing.flux_simulator import FluxSimulator, install_flux_simulator
from cluster_api.testing.pbs_simulator import PBSSimulator, install_pbs_simulator
from cluster_api.testing.simulator import Call, LSFSimulator, install_simulator

__all__ = [
    "Call",
    "FluxSimulator",
    "LSFSimulator",
    "PBSSimulator",
    "install_flux_simulator",
    "install_pbs_simulator",
    "install_simulator",
]

# ``pytest -p cluster_api.testing`` provides the fixture too; without pytest installed the
# simulator still works.
with contextlib.suppress(ImportError):
    from cluster_api.testing.plugin import (  # noqa: F401
        flux_simulator,
        lsf_simulator,
        pbs_simulator,
    )
