"""The ``cluster-api`` command: submit, status, watch and cancel jobs; show and check config.

Built on the public API (``create_executor``, ``JobMonitor``, records), so anything the
command does, a script can do too; ``watch`` also reads the journal to find jobs submitted
after it started. Executors are created with ``journal=True``: a job
submitted by one ``cluster-api`` process is found again by the next one (``status``,
``watch``, ``cancel``) through the journal in the config's ``log_directory``.

Exit codes: 0 every job concerned succeeded; 1 a job failed or was killed (or the
scheduler could not be asked); 2 a usage or configuration error; 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import fnmatch
import json
import logging
import os
import re
import shlex
import sqlite3
import sys
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, NoReturn, TextIO

import yaml

from . import __version__
from .config import ClusterConfig, executor_class, find_config_file, load_config
from .core import Executor
from .errors import ClusterAPIError
from .executors import available_executors, get_executor_class
from .journal import Journal
from .models import JobRecord, JobStatus, ResourceSpec
from .monitor import JobMonitor
from .progress import (
    ProgressView,
    display_name,
    is_terminal,
    job_summary,
    rich_available,
    status_style,
)
from .script import safe_job_name

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "build_parser", "main"]

PROG = "cluster-api"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

#: Config values the command sets whatever the file says, and why (shown by ``config show``).
CLI_OVERRIDES: dict[str, Any] = {"journal": True}
#: Longest wait between two redraws of ``watch`` (the poll interval may be longer).
WATCH_TICK_SECONDS = 1.0


class UsageError(Exception):
    """A mistake in the command line or the configuration: exit code 2."""


class Ui:
    """Where output goes and how it looks: rich on a terminal (if installed), else plain."""

    def __init__(self, plain: bool = False, stdout: TextIO | None = None) -> None:
        self.out: TextIO = stdout if stdout is not None else sys.stdout
        self.rich = not plain and is_terminal(self.out) and rich_available()

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    @staticmethod
    def note(text: str) -> None:
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)

    @staticmethod
    def warning(text: str) -> None:
        print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True)

    @staticmethod
    def error(text: str) -> None:
        print(f"{PROG}: error: {text}", file=sys.stderr, flush=True)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], styles: Any) -> None:
        """A table; ``styles[i]`` is the rich style of row ``i``'s status column (col 2)."""
        if self.rich:
            from rich.console import Console
            from rich.table import Table
            from rich.text import Text

            table = Table(*headers, box=None, header_style="bold", pad_edge=False)
            for row, style in zip(rows, styles, strict=True):
                cells = [Text(cell) for cell in row]
                cells[2].stylize(style)
                table.add_row(*cells)
            Console(file=self.out).print(table)
            return
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
        for line in (headers, *rows):
            self.print(
                "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            )


# -- argument parsing ----------------------------------------------------------------------
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


def build_parser() -> argparse.ArgumentParser:
    """The ``cluster-api`` argument parser (also used to document the command)."""
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

    parser = _Parser(
        prog=PROG,
        description="Submit, watch and cancel batch jobs on LSF, Slurm or this machine.",
        epilog="Exit codes: 0 all jobs succeeded, 1 a job failed or was killed, "
        "2 usage or configuration error.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    submit = commands.add_parser(
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
    submit.set_defaults(handler=cmd_submit)

    status = commands.add_parser(
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
    status.set_defaults(handler=cmd_status)

    watch = commands.add_parser(
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
    watch.set_defaults(handler=cmd_watch)

    cancel = commands.add_parser(
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
    cancel.set_defaults(handler=cmd_cancel)

    config = commands.add_parser("config", help="show or check configuration")
    config_commands = config.add_subparsers(
        dest="config_command", metavar="ACTION", parser_class=_Parser
    )
    config_commands.required = True
    show = config_commands.add_parser(
        "show",
        parents=[common],
        help="the merged config and where each value came from",
    )
    show.add_argument("--json", action="store_true", help="print {key: {value, source}} as JSON")
    show.set_defaults(handler=cmd_config_show)
    check = config_commands.add_parser(
        "check", parents=[common], help="validate a config file (every profile)"
    )
    check.add_argument("file", metavar="FILE")
    check.set_defaults(handler=cmd_config_check)
    return parser


# -- entry point ---------------------------------------------------------------------------
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


@contextmanager
def _config_warnings() -> Iterator[list[str]]:
    """Collect the warnings of config loading, to show them as one-line messages."""
    messages: list[str] = []
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield messages
    for item in caught:
        text = str(item.message)
        if text not in messages:
            messages.append(text)


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    overrides = dict(CLI_OVERRIDES)
    if args.executor:
        overrides["executor"] = args.executor
    return overrides


def _load(args: argparse.Namespace) -> ClusterConfig:
    with _config_warnings() as messages:
        try:
            config = load_config(args.config, args.profile, _overrides(args))
        except (ValueError, FileNotFoundError) as exc:
            raise UsageError(str(exc)) from None
    for message in messages:
        Ui.warning(message)
    return config


def make_executor(args: argparse.Namespace) -> Executor:
    """The executor the config (file, profile, ``--executor``, journal on) describes."""
    config = _load(args)
    try:
        return executor_class(config)(config)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    except (OSError, sqlite3.Error) as exc:  # the journal in log_directory
        raise UsageError(f"cannot use log_directory {config.log_directory!r}: {exc}") from None


def _exit_code(records: Sequence[JobRecord]) -> int:
    failed = any(r.status in (JobStatus.FAILED, JobStatus.KILLED) for r in records)
    return EXIT_FAILED if failed else EXIT_OK


# -- submit --------------------------------------------------------------------------------
def _command_text(words: list[str]) -> str:
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise UsageError("no command given: cluster-api submit [OPTIONS] -- COMMAND [ARG ...]")
    return words[0] if len(words) == 1 else shlex.join(words)


def _default_name(command: str) -> str:
    try:
        first = shlex.split(command)[0]
    except (ValueError, IndexError):
        first = command.split()[0] if command.split() else "job"
    return os.path.basename(first) or "job"


def cmd_submit(args: argparse.Namespace) -> int:
    command = _command_text(list(args.cmd))
    if args.max_concurrent is not None and args.array is None:
        raise UsageError("--max-concurrent needs --array")
    env = dict(args.env)
    try:
        resources = ResourceSpec(
            cpus=args.cpus,
            gpus=args.gpus,
            memory=args.memory,
            walltime=args.walltime,
            queue=args.queue,
            account=args.account,
            work_dir=os.path.abspath(args.work_dir) if args.work_dir else os.getcwd(),
        )
    except ValueError as exc:
        message = re.sub(r"ResourceSpec\.(\w+)", lambda m: "--" + m[1].replace("_", "-"), str(exc))
        raise UsageError(message) from None
    executor = make_executor(args)
    ui = Ui(args.plain)
    return asyncio.run(_submit(executor, ui, args, command, resources, env))


async def _submit(
    executor: Executor,
    ui: Ui,
    args: argparse.Namespace,
    command: str,
    resources: ResourceSpec,
    env: dict[str, str],
) -> int:
    name = args.name or _default_name(command)
    try:
        if args.array is not None:
            record = await executor.submit_array(
                command,
                name,
                args.array,
                resources=resources,
                env=env,
                max_concurrent=args.max_concurrent,
            )
        else:
            record = await executor.submit(command, name, resources=resources, env=env)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if args.json:
        ui.print(json.dumps(record.to_dict(), indent=2))
    else:
        ui.print(record.job_id)  # alone on stdout, for `id=$(cluster-api submit ...)`
        what = f"array of {record.element_count}" if record.is_array else "job"
        Ui.note(f"submitted {what} {record.name} as job {record.job_id}")
    if args.wait:
        return await watch_records(executor, [record], ui, args.poll_interval)
    return EXIT_OK


# -- finding jobs again --------------------------------------------------------------------
async def find_jobs(
    executor: Executor, job_ids: Sequence[str]
) -> tuple[list[JobRecord], list[str]]:
    """The named jobs and the ids among them nobody knows, or, with no ids, this prefix's
    unfinished jobs; all freshly polled.

    An id is known when it is tracked, in the journal, or reported by the scheduler (a job
    of another prefix or program); any other id is unknown, and is not tracked further.
    """
    if not job_ids:
        # Jobs that ended within the retention window are shown too, so a quick job
        # submitted a moment ago is seen to finish rather than vanish.
        window = executor.config.completed_retention_minutes
        return await executor.reconnect(finished_within_minutes=window), []
    await executor.reconnect()
    known = executor.jobs
    records: list[JobRecord] = []
    fresh: list[JobRecord] = []
    for job_id in dict.fromkeys(job_ids):
        record = known.get(job_id)
        if record is None:
            try:
                record = executor.track(job_id)
            except ValueError as exc:
                raise UsageError(str(exc)) from None
            fresh.append(record)
        records.append(record)
    if fresh:
        await executor.poll()
    unknown = [
        r.job_id
        for r in fresh
        if r.metadata.get("tracked") and not r.is_terminal and executor.is_unseen(r.job_id)
    ]
    for job_id in unknown:
        executor.remove_job(job_id)
    return [r for r in records if r.job_id not in unknown], unknown


def report_unknown(executor: Executor, job_ids: Sequence[str], consequence: str = "") -> None:
    """Say, on stderr, which ids no source knows."""
    for job_id in job_ids:
        Ui.error(
            f"job {job_id}: unknown (not in this config's journal, and the {executor.name} "
            f"executor does not report it){consequence}"
        )


# -- status --------------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    executor = make_executor(args)
    ui = Ui(args.plain)
    records, unknown = asyncio.run(find_jobs(executor, args.jobs))
    report_unknown(executor, unknown)
    if args.json:
        ui.print(json.dumps([r.to_dict() for r in records], indent=2))
    elif not records and not unknown:
        ui.print("no recent or unfinished jobs")
    else:
        print_status_table(ui, records, unknown)
    return EXIT_FAILED if unknown else _exit_code(records)


def _time(record: JobRecord) -> str:
    moment = record.submit_time or record.start_time
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def print_status_table(ui: Ui, records: Sequence[JobRecord], unknown: Sequence[str] = ()) -> None:
    """The jobs' table; ids in ``unknown`` get a row that says so."""
    headers = ("JOB ID", "NAME", "STATUS", "EXIT", "PROGRESS", "HOST", "SUBMITTED")
    rows = []
    for r in records:
        progress = job_summary(r) if r.is_array or r.array_elements else "-"
        rows.append(
            (
                r.job_id,
                display_name(r),
                r.status.value,
                "-" if r.exit_code is None else str(r.exit_code),
                progress,
                r.exec_host or "-",
                _time(r),
            )
        )
    rows += [(job_id, "-", JobStatus.UNKNOWN.value, "-", "-", "-", "-") for job_id in unknown]
    styles = [status_style(r.status) for r in records]
    ui.table(headers, rows, styles + [status_style(JobStatus.UNKNOWN)] * len(unknown))


# -- watch ---------------------------------------------------------------------------------
def cmd_watch(args: argparse.Namespace) -> int:
    executor = make_executor(args)
    ui = Ui(args.plain)

    async def run() -> int:
        records, unknown = await find_jobs(executor, args.jobs)
        report_unknown(executor, unknown, "; not watched")
        if not records:
            if not unknown:
                ui.print(
                    "no recent or unfinished jobs (`cluster-api status JOB` shows an older one)"
                )
            return EXIT_FAILED if unknown else EXIT_OK
        code = await watch_records(
            executor, records, ui, args.poll_interval, follow_journal=not args.jobs
        )
        return EXIT_FAILED if unknown else code

    return asyncio.run(run())


async def watch_records(
    executor: Executor,
    records: Sequence[JobRecord],
    ui: Ui,
    poll_interval: float | None = None,
    *,
    follow_journal: bool = False,
) -> int:
    """Follow ``records`` with a `ProgressView` until all ended; return the exit code.

    Between two polls the view's status line counts down to the next query. With
    ``follow_journal``, jobs this config's journal records later (a `submit` in another
    shell) are followed too: found by reading the journal, so no extra scheduler query.
    """
    monitor = JobMonitor(executor, poll_interval)
    watched = list(records)
    view = ProgressView(watched, stream=ui.out, use_rich=ui.rich)

    def changed(record: JobRecord, old: JobStatus, new: JobStatus) -> None:
        view.update()

    monitor.on_status_change(changed)
    tick = min(monitor.poll_interval, WATCH_TICK_SECONDS)
    newcomers = JournalFollower(executor) if follow_journal else None
    try:
        async with monitor:
            while True:
                for record in newcomers.new_jobs() if newcomers is not None else []:
                    watched.append(record)
                    view.add(record)
                if all(r.is_terminal for r in watched):
                    break
                view.set_status(next_query_text(monitor, datetime.now(timezone.utc)))
                with contextlib.suppress(asyncio.TimeoutError):
                    await monitor.wait_for(*watched, timeout=tick)
                view.update()
    finally:
        view.close()
        if newcomers is not None:
            newcomers.close()
    ui.print(summary_line(watched))
    return _exit_code(watched)


def next_query_text(monitor: JobMonitor, now: datetime) -> str:
    """When the monitor asks the scheduler next (or why it is late), for the status line."""
    failures = monitor.consecutive_failures
    if failures:
        plural = "query" if failures == 1 else f"{failures} queries"
        return f"the scheduler did not answer the last {plural}; retrying with backoff"
    last = monitor.last_successful_poll
    if last is None:
        return "asking the scheduler..."
    left = round(monitor.poll_interval - (now - last).total_seconds())
    every = f"every {monitor.poll_interval:g} s"
    return f"next query in {left} s ({every})" if left > 0 else f"asking the scheduler ({every})"


class JournalFollower:
    """Finds jobs this config's journal recorded after the executor last looked: the
    journal is where every `cluster-api submit` writes its job first."""

    def __init__(self, executor: Executor) -> None:
        self._executor = executor
        self._journal = Journal(executor.config.log_directory, executor.name)
        self._since = time.time()

    def new_jobs(self) -> list[JobRecord]:
        """This prefix's journalled jobs not tracked yet, now tracked: the unfinished ones
        and those that ended since the follower started (a quick job may end before it
        is seen running)."""
        tracked = self._executor.jobs
        prefix = self._executor.config.job_name_prefix
        ended = self._journal.finished_since(prefix, time.time() - self._since)
        found = [*ended, *self._journal.unfinished(prefix)]
        return [self._executor.track(r.job_id) for r in found if r.job_id not in tracked]

    def close(self) -> None:
        self._journal.close()


def summary_line(records: Sequence[JobRecord]) -> str:
    """``2 jobs: 1 done, 1 failed`` (and the failed elements of arrays)."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    noun = "job" if len(records) == 1 else "jobs"
    text = f"{len(records)} {noun}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    for r in records:
        failed = r.failed_element_indices
        if failed:
            shown = ", ".join(map(str, failed[:20])) + (", …" if len(failed) > 20 else "")
            text += f"; {display_name(r)} {r.job_id} failed elements: {shown}"
    return text


# -- cancel --------------------------------------------------------------------------------
def cmd_cancel(args: argparse.Namespace) -> int:
    if not (args.jobs or args.name or args.all):
        raise UsageError("say which jobs: JOB..., --name PATTERN or --all")
    if args.jobs and (args.name or args.all):
        raise UsageError("give job ids, --name or --all, not several")
    executor = make_executor(args)
    ui = Ui(args.plain)
    return asyncio.run(_cancel(executor, ui, args))


def _name_matcher(executor: Executor, pattern: str) -> Callable[[JobRecord], bool]:
    """The records ``cancel_by_name(pattern)`` means (same prefix and sanitising rules)."""
    prefix = executor.config.job_name_prefix
    if prefix and not pattern.startswith(f"{prefix}-"):
        pattern = f"{prefix}-{pattern}"
    pattern = "*".join(safe_job_name(part) if part else "" for part in pattern.split("*"))
    return lambda record: fnmatch.fnmatchcase(record.name, pattern)


async def _cancel(executor: Executor, ui: Ui, args: argparse.Namespace) -> int:
    unknown: list[str] = []
    try:
        if args.jobs:
            found, unknown = await find_jobs(executor, args.jobs)
            report_unknown(executor, unknown, "; nothing sent")
            targets = [r for r in found if not r.is_terminal]
            for record in found:
                if record.is_terminal:
                    ui.print(
                        f"job {record.job_id} ({display_name(record)}): already ended, "
                        f"{job_summary(record)}; nothing sent"
                    )
            for record in targets:
                await executor.cancel(record.job_id)
        else:
            unfinished = await executor.reconnect()
            if args.all:
                targets = [r for r in unfinished if not r.is_terminal]
                await executor.cancel_all()
            else:
                matches = _name_matcher(executor, args.name)
                targets = [r for r in unfinished if not r.is_terminal and matches(r)]
                await executor.cancel_by_name(args.name)
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    code = EXIT_FAILED if unknown else EXIT_OK
    if not targets:
        if args.all or args.name:
            ui.print("no unfinished jobs matched")
        return code
    for record in targets:
        ui.print(f"job {record.job_id} ({display_name(record)}): cancel requested")
    if args.no_wait:
        return code
    monitor = JobMonitor(executor, min(executor.config.poll_interval, 1.0))
    try:
        async with monitor:
            await monitor.wait_for(*targets, timeout=args.timeout)
    except asyncio.TimeoutError:
        Ui.warning(f"some jobs had not ended after {args.timeout:g} s")
    for record in targets:
        ui.print(f"job {record.job_id} ({display_name(record)}): {job_summary(record)}")
    return code


# -- config --------------------------------------------------------------------------------
_CONFIG_FIELDS = [f.name for f in dataclasses.fields(ClusterConfig) if f.name != "sources"]


def _source_label(key: str, source: str, args: argparse.Namespace) -> str:
    if source != "override":
        return source
    if key == "executor" and args.executor:
        return "--executor"
    if key in CLI_OVERRIDES:
        return f"{PROG} (always)"
    return source


def cmd_config_show(args: argparse.Namespace) -> int:
    config = _load(args)
    ui = Ui(args.plain)
    values = {key: getattr(config, key) for key in _CONFIG_FIELDS}
    labels = {
        key: _source_label(key, config.sources.get(key, "default"), args) for key in _CONFIG_FIELDS
    }
    if args.json:
        doc = {key: {"value": values[key], "source": labels[key]} for key in _CONFIG_FIELDS}
        ui.print(json.dumps(doc, indent=2))
        return EXIT_OK
    found = find_config_file(args.config)
    ui.print(f"# config file: {found if found is not None else 'none (all defaults)'}")
    if args.profile:
        ui.print(f"# profile: {args.profile}")
    lines = [f"{key}: {yaml_scalar(values[key])}" for key in _CONFIG_FIELDS]
    width = max(len(line) for line in lines)
    for key, line in zip(_CONFIG_FIELDS, lines, strict=True):
        ui.print(f"{line.ljust(width)}  # {labels[key]}")
    return EXIT_OK


def yaml_scalar(value: Any) -> str:
    """``value`` as it would be written after ``key:`` in YAML, on one line."""
    text = yaml.safe_dump({"k": value}, default_flow_style=True, width=10**6).strip()
    return text[len("{k: ") : -1]


def cmd_config_check(args: argparse.Namespace) -> int:
    path = Path(args.file).expanduser()
    ui = Ui(args.plain)
    if not path.is_file():
        ui.error(f"{path}: no such file")
        return EXIT_USAGE
    errors, notes, profiles = check_config_file(path)
    for message in notes:
        ui.print(message)
    for message in errors:
        ui.print(message)
    if errors:
        ui.print(f"{path}: {len(errors)} error{'s' if len(errors) > 1 else ''}")
        return EXIT_USAGE
    checked = "base" + "".join(f", profile {p}" for p in profiles)
    ui.print(f"{path}: OK ({checked})")
    return EXIT_OK


def check_config_file(path: Path) -> tuple[list[str], list[str], list[str]]:
    """Check ``path`` key by key, then load it alone and with each of its profiles.

    Returns (errors, warnings, profile names), each message as ``FILE:LINE: kind: text``.
    Checking each key on its own reports every bad value, not only the first one.
    """
    text = path.read_text(encoding="utf-8", errors="replace")
    try:
        root: yaml.Node | None = yaml.compose(text)
    except yaml.YAMLError:
        root = None  # load_config reports it, with its line
    where = str(path)
    top = _mapping(root)
    profile_nodes = _mapping(top.get("profiles")) if top is not None else None
    profiles = list(profile_nodes) if profile_nodes is not None else []
    errors: list[str] = []
    notes: list[str] = []

    scopes: list[tuple[dict[str, yaml.Node], str | None]] = [(top or {}, None)]
    for name, node in (profile_nodes or {}).items():
        scopes.append((_mapping(node) or {}, name))
    with tempfile.TemporaryDirectory(prefix="cluster-api-check-") as scratch:
        for scope, profile in scopes:
            for key, node in scope.items():
                if key not in _CONFIG_FIELDS:
                    continue
                problem = _check_value(Path(scratch) / "one_key.yaml", text, key, node)
                if problem is not None:
                    line = _key_line(root, key, profile)
                    errors.append(_format(where, line, "error", problem, profile))

    for profile in [None, *profiles]:
        with _config_warnings() as caught:
            try:
                config: ClusterConfig | None = load_config(path, profile)
            except ValueError as exc:
                errors.append(_locate(where, str(exc), root, profile, "error"))
                config = None
        notes.extend(_locate(where, message, root, profile, "warning") for message in caught)
        if config is not None and config.executor not in available_executors():
            try:
                get_executor_class(config.executor)
            except ValueError as exc:
                source = config.sources.get("executor", where)
                in_profile = profile if source.startswith("profile ") else None
                line = _key_line(root, "executor", in_profile)
                errors.append(_format(where, line, "error", f"executor: {exc}", in_profile))
        if top is None:
            break  # not a mapping (or not YAML): the first load said so
    return _dedupe(errors), _dedupe(notes), profiles


def _check_value(scratch: Path, text: str, key: str, node: yaml.Node) -> str | None:
    """What is wrong with one key's value, judged by ``load_config`` itself: the value's
    text is copied alone into a scratch file (so it is read exactly as the real load
    reads it). None when it is fine or cannot be judged alone (e.g. a YAML alias)."""
    segment = text[node.start_mark.index : node.end_mark.index]
    block = isinstance(node, yaml.CollectionNode) and not node.flow_style
    if block:
        scratch.write_text(f"{key}:\n{' ' * node.start_mark.column}{segment}\n")
    else:
        scratch.write_text(f"{key}: {segment}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            config = load_config(scratch)
            if key == "executor":
                get_executor_class(config.executor)
        except ValueError as exc:
            message = str(exc).removeprefix(f"{scratch}: ")
            if "invalid YAML" in message:
                return None
            message = message.replace("config.", "")
            return message if message.startswith(key) else f"{key}: {message}"
    return None


def _dedupe(messages: list[str]) -> list[str]:
    return list(dict.fromkeys(messages))


def _mapping(node: Any) -> dict[str, Any] | None:
    """A YAML MappingNode as {key text: value node} (None for anything else)."""
    if not isinstance(node, yaml.MappingNode):
        return None
    return {str(k.value): v for k, v in node.value if isinstance(k, yaml.ScalarNode)}


def _key_line(root: Any, key: str, profile: str | None) -> int | None:
    """The 1-based line of ``key`` at the top level or in ``profiles: {profile: ...}``."""
    node, line = root, None
    for part in ["profiles", profile, key] if profile is not None else [key]:
        if not isinstance(node, yaml.MappingNode):
            return None
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == part:
                line, node = int(key_node.start_mark.line) + 1, value_node
                break
        else:
            return None
    return line


_YAML_AT = re.compile(r"invalid YAML at line (\d+), column (\d+): (.*)", re.S)
_PROFILE_ORIGIN = re.compile(r"^profile '([^']*)' in ")
_FIELD = re.compile(r"\bconfig\.(\w+)")
_UNKNOWN_KEY = re.compile(r"unknown config key '([^']*)'")


def _locate(where: str, message: str, root: Any, profile: str | None, kind: str) -> str:
    """Turn a load_config message into ``FILE:LINE: kind: text``."""
    syntax = _YAML_AT.search(message)
    if syntax:
        return f"{where}:{syntax[1]}:{syntax[2]}: {kind}: invalid YAML: {syntax[3]}"
    body, in_profile = message, None
    origin = _PROFILE_ORIGIN.match(body)
    if origin:
        in_profile = origin[1]
        body = body[origin.end() :]
    if body.startswith(f"{where}: "):
        body = body[len(where) + 2 :]
    if in_profile is None and profile is not None and f"profile {profile!r}" in body:
        in_profile = profile
    key_match = _FIELD.search(body) or _UNKNOWN_KEY.search(body)
    key = key_match[1] if key_match else None
    if key is None and "'profiles'" in body:
        key = "profiles"
    line: int | None = None
    if key is not None:
        line = _key_line(root, key, in_profile)
    elif in_profile is not None:
        top = _mapping(root) or {}
        profiles = _mapping(top.get("profiles")) or {}
        if in_profile in profiles:
            line = int(profiles[in_profile].start_mark.line) + 1
    body = body.replace("config.", "")
    return _format(where, line, kind, body, in_profile)


def _format(where: str, line: int | None, kind: str, text: str, profile: str | None) -> str:
    location = f"{where}:{line}" if line is not None else where
    suffix = f" [profile {profile}]" if profile is not None else ""
    return f"{location}: {kind}: {text}{suffix}"
