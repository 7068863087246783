"""What every simulated command does around its own work: find the state folder,
log the call, apply injected faults, turn a refused command line into its message
and exit code."""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

from .faults import apply_faults
from .procs import RUNNER_COMMAND
from .store import Json, append_call, ensure_layout, load_control

Handler = Callable[[list[str], str, Json], int]
"""A command: (its arguments, the state folder, the control file) -> exit code."""


class UsageError(Exception):
    """A command line the scheduler would reject: message for stderr and the exit code."""

    def __init__(self, message: str, code: int = 255) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


class Scheduler(NamedTuple):
    """One simulated scheduler, as the shared entry point needs to know it."""

    program: str
    """Name in our own usage line (``lsfsim``)."""
    env_state_dir: str
    """Variable naming the state folder (set by the wrapper scripts)."""
    commands: Mapping[str, Handler]
    defaults: Json
    """Knobs and their defaults."""
    outage_message: str
    is_token_lookup: Callable[[str, list[str]], bool]
    run_job: Callable[[list[str], str], int]
    """The ``_runner`` command: supervise one job (usually ``simkit.runner.run_job``)."""


def lazy_command(package: str, name: str) -> Handler:
    """``command_<name>`` of the module ``<package>.<name>``, imported when first called:
    a command loads only its own module (the status command runs far more often than
    the submit command with its runner and dependency parser)."""

    def handler(args: list[str], state_dir: str, control: Json) -> int:
        module = __import__(f"{package}.{name}", fromlist=[f"command_{name}"])
        run: Handler = getattr(module, f"command_{name}")
        return run(args, state_dir, control)

    return handler


def style_runner(package: str) -> Callable[[list[str], str], int]:
    """The ``_runner`` command with the job style ``<package>.jobenv.JOB_STYLE``."""

    def run_job(args: list[str], state_dir: str) -> int:
        from .runner import run_job as supervise

        style = __import__(f"{package}.jobenv", fromlist=["JOB_STYLE"]).JOB_STYLE
        return supervise(style, args, state_dir)

    return run_job


def answer_help_or_version(arg: str, usage: str, version: str) -> None:
    """``-h``/``-help`` and ``-V``, which every command of a scheduler answers alike."""
    if arg in ("-h", "-help"):
        raise UsageError(usage, 0)
    if arg == "-V":
        raise UsageError(version, 0)


def process_start_time() -> float:
    """When this process started (the wrapper's ``exec`` keeps it), as an epoch time:
    the call log then covers the interpreter's start-up too."""
    now = time.time()
    try:
        with open("/proc/self/stat", "rb") as handle:
            raw = handle.read()
        ticks = int(raw[raw.rfind(b")") + 2 :].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - age if 0 <= age < 60 else now


def main(scheduler: Scheduler, argv: list[str] | None = None) -> int:
    """Run ``argv`` (``<command> args...``) against the folder the environment names."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*scheduler.commands, RUNNER_COMMAND):
        names = "|".join(scheduler.commands)
        sys.stderr.write(f"usage: {scheduler.program}.py {{{names}}} [args...]\n")
        return 2
    command, args = argv[0], argv[1:]
    state_dir = os.environ.get(scheduler.env_state_dir, "")
    if not state_dir:
        sys.stderr.write(f"{scheduler.program}: {scheduler.env_state_dir} is not set\n")
        return 255
    state_dir = os.path.abspath(state_dir)
    ensure_layout(state_dir)
    if command == RUNNER_COMMAND:
        return scheduler.run_job(args, state_dir)
    call_id = f"{os.getpid()}-{time.time_ns()}"
    start = process_start_time()
    append_call(
        state_dir,
        {"event": "start", "id": call_id, "command": command, "argv": args, "start": start},
    )
    code = 255
    try:
        code = _answer(scheduler, command, args, state_dir)
    except UsageError as exc:
        sys.stderr.write(exc.message + "\n")
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        append_call(
            state_dir,
            {
                "event": "end",
                "id": call_id,
                "command": command,
                "end": time.time(),
                "exit_code": code,
            },
        )
    return code


def _answer(scheduler: Scheduler, command: str, args: list[str], state_dir: str) -> int:
    control = load_control(state_dir, scheduler.defaults)
    stop = apply_faults(
        command,
        state_dir,
        control,
        token_lookup=scheduler.is_token_lookup(command, args),
        outage_message=scheduler.outage_message,
    )
    return stop if stop is not None else scheduler.commands[command](args, state_dir, control)
