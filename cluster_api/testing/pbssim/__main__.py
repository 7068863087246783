"""Start one simulated PBS command: ``python -I -S <this file> qstat -f``
(``simkit/launch.py`` says why by path). ``python -m cluster_api.testing.pbssim`` works too."""

import os
import sys

if __package__:
    from .main import main

    sys.exit(main())
HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "simkit"))
from launch import start  # type: ignore[import-not-found]  # noqa: E402

sys.exit(start(HERE))
