"""The PBS Professional / OpenPBS and Torque simulator: ``qsub``, ``qstat``, ``qdel``
on ``simkit``, one server whose ``flavour`` knob says which it answers as.

``settings`` (names, knobs), ``depend`` (``-W depend=``), ``jobenv`` (the ``PBS_*``
variables: the runner's job style), ``formats`` (``qstat -f -F json`` attributes and
Torque's XML, exit statuses), one module per command, ``main`` (the command table) and
``__main__`` (the launcher the wrapper scripts run by path).
``cluster_api/testing/README_SIM.md`` documents it.
"""

from .settings import COMMANDS, DEFAULT_SETTINGS, ENV_STATE_DIR

__all__ = ["COMMANDS", "DEFAULT_SETTINGS", "ENV_STATE_DIR"]
