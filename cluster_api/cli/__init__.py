"""The ``cluster-api`` command: submit, status, watch and cancel jobs; show and check config.

Built on the public API (``create_executor``, ``JobMonitor``, records), so anything the
command does, a script can do too; ``watch`` also reads the journal to find jobs submitted
after it started. Executors are created with ``journal=True``: a job
submitted by one ``cluster-api`` process is found again by the next one (``status``,
``watch``, ``cancel``) through the journal in the config's ``log_directory``.

The package is split by concern: `parser` (the arguments), `commands` (what each command
does), `ui` (how it is shown) and `config_check` (``config check``).

Exit codes: 0 every job concerned succeeded; 1 a job failed or was killed (or the
scheduler could not be asked); 2 a usage or configuration error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from ..errors import ClusterAPIError
from ..lookup import find_jobs
from .commands import watch_records
from .parser import build_parser
from .ui import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    Ui,
    UsageError,
    next_query_text,
    print_status_table,
)

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "Ui",
    "build_parser",
    "find_jobs",
    "main",
    "next_query_text",
    "print_status_table",
    "watch_records",
]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _setup_logging(args.verbose)
    handler: Callable[[argparse.Namespace], int] = args.handler
    try:
        return handler(args)
    except UsageError as exc:
        Ui.error(str(exc))
        return EXIT_USAGE
    except ClusterAPIError as exc:
        Ui.error(str(exc))
        return EXIT_FAILED
    except KeyboardInterrupt:
        Ui.note("interrupted; submitted jobs keep running (`cluster-api watch` follows them)")
        return EXIT_INTERRUPTED
    except BrokenPipeError:  # output piped into `head` and the like
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return EXIT_FAILED


def _setup_logging(verbosity: int) -> None:
    if verbosity:
        logging.basicConfig(
            level=logging.DEBUG if verbosity > 1 else logging.INFO,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            datefmt="%H:%M:%S",
        )
