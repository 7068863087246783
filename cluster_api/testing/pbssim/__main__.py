"""Start one simulated PBS command: ``python -I -S <this file> qstat -f``.

The wrapper scripts run this file by path so that a command imports only the simulator
(standard library, no ``cluster_api``, no yaml or asyncio) and starts fast: see
``simkit/boot.py``. ``python -m cluster_api.testing.pbssim`` works too.
"""

import os
import sys

if __package__:
    from .main import main
else:
    here = os.path.dirname(os.path.abspath(__file__))
    boot: dict = {"__file__": os.path.join(os.path.dirname(here), "simkit", "boot.py")}  # type: ignore[type-arg]
    with open(boot["__file__"], encoding="utf-8") as source:
        exec(compile(source.read(), boot["__file__"], "exec"), boot)
    main = boot["main_of"](here)

sys.exit(main())
