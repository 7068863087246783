"""Start one simulated PBS command: ``python -I -S <this file> qstat -f``.

The wrapper scripts run this file by path so that a command imports only the simulator
(standard library, no ``cluster_api``, no yaml or asyncio) and starts fast. The folder
holding the simulator packages becomes the root of a bare package that is never
initialised, so their relative imports resolve without running ``cluster_api``'s or
``cluster_api.testing``'s ``__init__``. ``python -m cluster_api.testing.pbssim`` works too.
"""

import os
import sys
import types

if __package__:
    from .main import main
else:
    ROOT = "_clusterapi_sim"
    root = types.ModuleType(ROOT)
    root.__path__ = [os.path.dirname(os.path.dirname(os.path.abspath(__file__)))]
    sys.modules[ROOT] = root
    main = __import__(f"{ROOT}.pbssim.main", fromlist=["main"]).main

sys.exit(main())
