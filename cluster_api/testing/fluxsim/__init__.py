"""A small Flux (flux-core 0.88) simulator on ``simkit``: ``flux batch``, ``flux submit
--cc``, ``flux jobs --json`` and ``flux cancel``, with f58 ids and the exceptions Flux
raises for a time limit, a cancel and a dependency that can never be met.

``settings`` (names, knobs), ``formats`` (f58 ids, the ``# flux:`` directive words, the
job JSON), ``submit`` (both submit commands and the runner's job style), ``jobs`` and
``cancel`` (one module per command), ``main`` (one ``flux`` program, its subcommand the
first argument) and ``__main__`` (the launcher its wrapper runs by path). Each ``--cc``
copy is a job of its own, as in Flux. The shared fault knobs apply to the ``flux``
program as a whole.
"""

from .settings import COMMANDS, DEFAULT_SETTINGS, ENV_STATE_DIR

__all__ = ["COMMANDS", "DEFAULT_SETTINGS", "ENV_STATE_DIR"]
