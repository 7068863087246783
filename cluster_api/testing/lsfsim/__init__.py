"""The LSF 10.1 simulator: ``bsub``, ``bjobs``, ``bkill``, ``bhist`` on ``simkit``.

``settings`` (names, knobs), ``formats`` (LSF's times, memory, names, ids),
``depend`` (``-w`` expressions), ``jobenv`` (``-env`` and the ``LSB_*`` variables: the
runner's job style), one module per command (option parsing, selection, state change
and formatting kept apart), ``main`` (the command table) and ``__main__`` (the launcher
the wrapper scripts run by path). ``cluster_api/testing/README_SIM.md`` documents it.
"""

from .settings import COMMANDS, DEFAULT_SETTINGS, ENV_STATE_DIR

__all__ = ["COMMANDS", "DEFAULT_SETTINGS", "ENV_STATE_DIR"]
