"""What a simulator's ``__main__`` launcher does, once for every simulator.

The wrapper scripts run a launcher by path so that a command imports only the simulator
(standard library, no ``cluster_api``) and starts fast: the folder holding the simulator
packages becomes the root of a bare package that is never initialised, so their relative
imports resolve without running ``cluster_api``'s or ``cluster_api.testing``'s
``__init__``. A launcher puts this folder on ``sys.path`` and calls `start`.
"""

import os
import sys
import types

ROOT = "_clusterapi_sim"


def start(package_dir: str) -> int:
    """Run the ``main`` of the simulator package in ``package_dir`` on ``sys.argv``."""
    if ROOT not in sys.modules:
        root = types.ModuleType(ROOT)
        root.__path__ = [os.path.dirname(package_dir)]
        sys.modules[ROOT] = root
    name = os.path.basename(package_dir)
    main = __import__(f"{ROOT}.{name}.main", fromlist=["main"]).main
    code: int = main()
    return code
