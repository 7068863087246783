"""``python -m cluster_api``: the same as the ``cluster-api`` command."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
