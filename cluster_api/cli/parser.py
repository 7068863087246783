"""The ``cluster-api`` command line: its arguments, with the handler of each command."""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Callable
from typing import NoReturn, TypeAlias

from .. import __version__
from . import commands
from .ui import EXIT_USAGE, PROG


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _whole_number_at_least(minimum: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    return parse


_positive_int = _whole_number_at_least(1)
_non_negative_int = _whole_number_at_least(0)


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be more than 0, got {text}")
    return value


_ARRAY_RANGE = re.compile(r"^\s*(\d+)\s*-\s*(\d+)\s*$")


def parse_array_range(text: str) -> tuple[int, int]:
    """``"1-50"`` as ``(1, 50)`` (both ends included)."""
    match = _ARRAY_RANGE.match(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected START-END such as 1-50, got {text!r}")
    start, end = int(match[1]), int(match[2])
    if start > end:
        raise argparse.ArgumentTypeError(f"START must not exceed END, got {text!r}")
    return (start, end)


def parse_env_pair(text: str) -> tuple[str, str]:
    """``"K=V"`` as ``("K", "V")``."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return key, value


def _common_options() -> _Parser:
    """The options every command that reads the config takes."""
    common = _Parser(add_help=False)
    group = common.add_argument_group("configuration")
    group.add_argument(
        "--config",
        metavar="PATH",
        help="config file (default: $CLUSTER_API_CONFIG, ./cluster_api.yaml, "
        "~/.config/cluster_api/config.yaml)",
    )
    group.add_argument("--profile", metavar="NAME", help="profile of the config file to apply")
    group.add_argument(
        "--executor", metavar="NAME", help="executor to use instead of the config's (local, lsf, …)"
    )
    group.add_argument(
        "--plain", action="store_true", help="plain text output even on a terminal (no rich)"
    )
    group.add_argument(
        "-v", "--verbose", action="count", default=0, help="log what the library does (-vv: more)"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    """The ``cluster-api`` argument parser (also used to document the command)."""
    common = _common_options()
    parser = _Parser(
        prog=PROG,
        description="Submit, watch and cancel batch jobs on LSF, Slurm or this machine.",
        epilog="Exit codes: 0 all jobs succeeded, 1 a job failed or was killed, "
        "2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    subcommands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    subcommands.required = True
    _add_submit(subcommands, common)
    _add_status_and_watch(subcommands, common)
    _add_cancel(subcommands, common)
    _add_config(subcommands, common)
    return parser


Subcommands: TypeAlias = "argparse._SubParsersAction[_Parser]"


def _add_submit(subcommands: Subcommands, common: _Parser) -> None:
    submit = subcommands.add_parser(
        "submit",
        parents=[common],
        help="submit a job or a job array",
        description="Submit the command after `--`. One argument is run as shell text "
        "(pipes, $VARIABLES); several are quoted word by word.",
    )
    submit.add_argument(
        "--name", help="job name (the config's prefix is added; default: the command's first word)"
    )
    res = submit.add_argument_group("resources (default: the config's)")
    res.add_argument("--cpus", type=_positive_int, metavar="N")
    res.add_argument("--gpus", type=_non_negative_int, metavar="N")
    res.add_argument("--memory", metavar="SIZE", help='e.g. "8 GB", 512MB')
    res.add_argument("--walltime", metavar="TIME", help="[D-]HH:MM[:SS], e.g. 01:30")
    res.add_argument("--queue", metavar="NAME", help="queue (LSF) or partition (Slurm)")
    res.add_argument("--account", metavar="NAME", help="project/account to charge")
    res.add_argument(
        "--work-dir",
        metavar="DIR",
        help="where the job runs and writes its script and logs (default: the current directory)",
    )
    arr = submit.add_argument_group("arrays")
    arr.add_argument(
        "--array",
        type=parse_array_range,
        metavar="START-END",
        help="submit a job array, e.g. 1-50 (index in $ARRAY_INDEX)",
    )
    arr.add_argument(
        "--max-concurrent",
        type=_positive_int,
        metavar="N",
        help="at most N elements of the array run at once",
    )
    submit.add_argument(
        "--env",
        type=parse_env_pair,
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set a variable in the job (repeatable)",
    )
    submit.add_argument(
        "--wait",
        action="store_true",
        help="watch the job until it ends; the exit code tells how it ended",
    )
    submit.add_argument(
        "--poll-interval",
        type=_positive_float,
        metavar="SECONDS",
        help="with --wait: seconds between polls (default: the config's)",
    )
    submit.add_argument("--json", action="store_true", help="print the job record as JSON")
    submit.add_argument("cmd", nargs=argparse.REMAINDER, metavar="-- COMMAND [ARG ...]")
    submit.set_defaults(handler=commands.cmd_submit)


def _add_status_and_watch(subcommands: Subcommands, common: _Parser) -> None:
    status = subcommands.add_parser(
        "status",
        parents=[common],
        help="show jobs (default: this config's unfinished and recently ended jobs)",
        description=(
            "Show the given jobs, or this config's unfinished jobs and those that ended "
            "within completed_retention_minutes."
        ),
    )
    status.add_argument("jobs", nargs="*", metavar="JOB", help="job ids")
    status.add_argument("--json", action="store_true", help="print records as a JSON list")
    status.set_defaults(handler=commands.cmd_status)

    watch = subcommands.add_parser(
        "watch",
        parents=[common],
        help="follow jobs until they end",
        description="Show the jobs live until every one has ended (a progress bar per "
        "array on a terminal, one line per change otherwise).",
    )
    watch.add_argument(
        "jobs", nargs="*", metavar="JOB", help="job ids (default: unfinished and recently ended)"
    )
    watch.add_argument(
        "--poll-interval",
        type=_positive_float,
        metavar="SECONDS",
        help="seconds between polls (default: the config's)",
    )
    watch.set_defaults(handler=commands.cmd_watch)


def _add_cancel(subcommands: Subcommands, common: _Parser) -> None:
    cancel = subcommands.add_parser(
        "cancel",
        parents=[common],
        help="cancel jobs by id, by name or all of them",
        description="Cancel jobs and wait (up to --timeout) until the scheduler ended them.",
    )
    cancel.add_argument("jobs", nargs="*", metavar="JOB", help="job ids")
    which = cancel.add_mutually_exclusive_group()
    which.add_argument(
        "--name", metavar="PATTERN", help="cancel unfinished jobs whose name matches (* wildcards)"
    )
    which.add_argument("--all", action="store_true", help="cancel every unfinished job")
    cancel.add_argument(
        "--timeout",
        type=_positive_float,
        default=30.0,
        metavar="SECONDS",
        help="how long to wait for the jobs to end (default: 30)",
    )
    cancel.add_argument("--no-wait", action="store_true", help="do not wait for the jobs to end")
    cancel.set_defaults(handler=commands.cmd_cancel)


def _add_config(subcommands: Subcommands, common: _Parser) -> None:
    config = subcommands.add_parser("config", help="show or check configuration")
    actions = config.add_subparsers(dest="config_command", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    show = actions.add_parser(
        "show",
        parents=[common],
        help="the merged config and where each value came from",
    )
    show.add_argument("--json", action="store_true", help="print {key: {value, source}} as JSON")
    show.set_defaults(handler=commands.cmd_config_show)
    check = actions.add_parser(
        "check", parents=[common], help="validate a config file (every profile)"
    )
    check.add_argument("file", metavar="FILE")
    check.set_defaults(handler=commands.cmd_config_check)
