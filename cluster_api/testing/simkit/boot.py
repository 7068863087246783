"""How a simulator's ``__main__.py``, run by path, finds its ``main`` without importing
``cluster_api``: the folder holding the simulator packages becomes the root of a bare
package that is never initialised, so their relative imports resolve without running
``cluster_api``'s or ``cluster_api.testing``'s ``__init__``. Read and executed by path
(standard library only, nothing imported)."""

import os
import sys
import types

ROOT = "_clusterapi_sim"


def main_of(package_dir: str):  # type: ignore[no-untyped-def]
    """The ``main`` of the simulator package in ``package_dir`` (``.../lsfsim``)."""
    if ROOT not in sys.modules:
        root = types.ModuleType(ROOT)
        root.__path__ = [os.path.dirname(package_dir)]
        sys.modules[ROOT] = root
    name = os.path.basename(package_dir)
    return __import__(f"{ROOT}.{name}.main", fromlist=["main"]).main
