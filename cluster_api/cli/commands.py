"""What each ``cluster-api`` command does, on the public API (``load_config``,
executors, ``JobMonitor``, `cluster_api.lookup`); how it is shown is `ui`'s part."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shlex
import sqlite3
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..config import (
    CONFIG_FIELDS_IN_ORDER,
    ClusterConfig,
    executor_class,
    find_config_file,
    load_config,
    plugin_keys,
)
from ..core import Executor
from ..lookup import JournalFollower, find_jobs
from ..models import JobRecord, JobStatus, ResourceSpec
from ..monitor import JobMonitor
from ..progress import ProgressView, display_name, job_summary
from .config_check import check_config_file
from .ui import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    PROG,
    Ui,
    UsageError,
    exit_code,
    next_query_text,
    print_status_table,
    report_unknown,
    summary_line,
    yaml_scalar,
)

#: Config values the command sets whatever the file says, and why (shown by ``config show``).
CLI_OVERRIDES: dict[str, Any] = {"journal": True}
#: Longest wait between two redraws of ``watch`` (the poll interval may be longer).
WATCH_TICK_SECONDS = 1.0


# -- the config and the executor -------------------------------------------------------------
@contextmanager
def config_warnings() -> Iterator[list[str]]:
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
    with config_warnings() as messages:
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


async def _find(executor: Executor, job_ids: Sequence[str]) -> tuple[list[JobRecord], list[str]]:
    try:
        return await find_jobs(executor, job_ids)
    except ValueError as exc:  # an id that cannot be one of this scheduler's
        raise UsageError(str(exc)) from None


# -- submit ------------------------------------------------------------------------------------
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


# -- status and watch --------------------------------------------------------------------------
def cmd_status(args: argparse.Namespace) -> int:
    executor = make_executor(args)
    ui = Ui(args.plain)
    records, unknown = asyncio.run(_find(executor, args.jobs))
    report_unknown(executor.name, unknown)
    if args.json:
        ui.print(json.dumps([r.to_dict() for r in records], indent=2))
    elif not records and not unknown:
        ui.print("no recent or unfinished jobs")
    else:
        print_status_table(ui, records, unknown)
    return EXIT_FAILED if unknown else exit_code(records)


def cmd_watch(args: argparse.Namespace) -> int:
    executor = make_executor(args)
    ui = Ui(args.plain)

    async def run() -> int:
        records, unknown = await _find(executor, args.jobs)
        report_unknown(executor.name, unknown, "; not watched")
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
    return exit_code(watched)


# -- cancel ------------------------------------------------------------------------------------
def cmd_cancel(args: argparse.Namespace) -> int:
    if not (args.jobs or args.name or args.all):
        raise UsageError("say which jobs: JOB..., --name PATTERN or --all")
    if args.jobs and (args.name or args.all):
        raise UsageError("give job ids, --name or --all, not several")
    executor = make_executor(args)
    ui = Ui(args.plain)
    return asyncio.run(_cancel(executor, ui, args))


async def _send_cancels(
    executor: Executor, ui: Ui, args: argparse.Namespace
) -> tuple[list[JobRecord], list[str]]:
    """Ask the scheduler to cancel the jobs ``args`` name; return them (those that had
    not ended) and the ids nobody knows."""
    if args.jobs:
        found, unknown = await _find(executor, args.jobs)
        report_unknown(executor.name, unknown, "; nothing sent")
        for record in found:
            if record.is_terminal:
                ui.print(
                    f"job {record.job_id} ({display_name(record)}): already ended, "
                    f"{job_summary(record)}; nothing sent"
                )
        targets = [r for r in found if not r.is_terminal]
        for record in targets:
            await executor.cancel(record.job_id)
        return targets, unknown
    unfinished = await executor.reconnect()
    if args.all:
        targets = [r for r in unfinished if not r.is_terminal]
        await executor.cancel_all()
    else:
        targets = executor.jobs_matching(args.name)
        await executor.cancel_by_name(args.name)
    return targets, []


async def _cancel(executor: Executor, ui: Ui, args: argparse.Namespace) -> int:
    try:
        targets, unknown = await _send_cancels(executor, ui, args)
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


# -- config ------------------------------------------------------------------------------------
def _source_label(key: str, source: str, args: argparse.Namespace) -> str:
    if source != "override":
        return source
    if key == "executor" and args.executor:
        return "--executor"
    if key in CLI_OVERRIDES:
        return f"{PROG} (always)"
    return source


def _shown_values(config: ClusterConfig) -> dict[str, Any]:
    """Every key's value: the fields, then the keys the executor declares beyond them."""
    values = {key: getattr(config, key) for key in CONFIG_FIELDS_IN_ORDER}
    extra = sorted(plugin_keys(config.executor))
    if extra:
        options = config.options_for(executor_class(config).options)
        values.update((key, getattr(options, key)) for key in extra)
    return values


def cmd_config_show(args: argparse.Namespace) -> int:
    config = _load(args)
    ui = Ui(args.plain)
    values = _shown_values(config)
    labels = {key: _source_label(key, config.sources.get(key, "default"), args) for key in values}
    if args.json:
        doc = {key: {"value": value, "source": labels[key]} for key, value in values.items()}
        ui.print(json.dumps(doc, indent=2))
        return EXIT_OK
    found = find_config_file(args.config)
    ui.print(f"# config file: {found if found is not None else 'none (all defaults)'}")
    if args.profile:
        ui.print(f"# profile: {args.profile}")
    lines = {key: f"{key}: {yaml_scalar(value)}" for key, value in values.items()}
    width = max(len(line) for line in lines.values())
    for key, line in lines.items():
        ui.print(f"{line.ljust(width)}  # {labels[key]}")
    return EXIT_OK


def cmd_config_check(args: argparse.Namespace) -> int:
    path = Path(args.file).expanduser()
    ui = Ui(args.plain)
    if not path.is_file():
        ui.error(f"{path}: no such file")
        return EXIT_USAGE
    report = check_config_file(path)
    for message in [*report.warnings, *report.errors]:
        ui.print(message)
    if report.errors:
        count = len(report.errors)
        ui.print(f"{path}: {count} error{'s' if count > 1 else ''}")
        return EXIT_USAGE
    checked = "base" + "".join(f", profile {p}" for p in report.profiles)
    ui.print(f"{path}: OK ({checked})")
    return EXIT_OK
