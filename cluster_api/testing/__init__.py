"""Test helpers for code that drives LSF: a simulator of the LSF 10.1 commands.

``install_simulator(path)`` creates a simulated cluster whose ``bsub``, ``bjobs``,
``bkill`` and ``bhist`` live in ``path/bin``; the pytest fixture ``lsf_simulator``
(plugin ``cluster_api.testing.plugin``) does it per test and puts them on ``PATH``.
"""

from __future__ import annotations

import contextlib

from cluster_api.testing.pbs_simulator import PBSSimulator, install_pbs_simulator
from cluster_api.testing.simulator import Call, LSFSimulator, install_simulator

__all__ = ["Call", "LSFSimulator", "PBSSimulator", "install_pbs_simulator", "install_simulator"]

# ``pytest -p cluster_api.testing`` provides the fixture too; without pytest installed the
# simulator still works.
with contextlib.suppress(ImportError):
    from cluster_api.testing.plugin import lsf_simulator, pbs_simulator  # noqa: F401
