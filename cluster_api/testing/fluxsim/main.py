"""The ``flux`` program as the shared entry point runs it: the subcommand is the first
argument, and its module is imported only when it runs."""

from __future__ import annotations

from ..simkit import cli
from ..simkit.store import Json
from .settings import DEFAULT_SETTINGS, ENV_STATE_DIR, OUTAGE_MESSAGE, SUBCOMMANDS


def is_token_lookup(command: str, args: list[str]) -> bool:
    """``flux jobs -a``: how a client finds a lost submission by its job name."""
    return args[:1] == ["jobs"] and "-a" in args


#: The module holding each subcommand (a function of the subcommand's name).
MODULES = {"batch": "submitting", "submit": "submitting", "jobs": "jobs", "cancel": "cancel"}


def flux(args: list[str], state_dir: str, control: Json) -> int:
    if not args or args[0] not in SUBCOMMANDS:
        raise cli.UsageError(f"flux: usage: flux {{{'|'.join(SUBCOMMANDS)}}} ...", 1)
    module = __import__(f"{__package__}.{MODULES[args[0]]}", fromlist=[args[0]])
    run: cli.Handler = getattr(module, args[0])
    return run(args[1:], state_dir, control)


def run_job(args: list[str], state_dir: str) -> int:
    """The ``_runner`` command, with Flux's job style."""
    from ..simkit.runner import run_job as supervise
    from .submitting import JOB_STYLE

    return supervise(JOB_STYLE, args, state_dir)


#: program, state-folder variable, commands, knobs, outage message, lookup test, runner.
FLUX = cli.Scheduler(
    "fluxsim",
    ENV_STATE_DIR,
    {"flux": flux},
    DEFAULT_SETTINGS,
    OUTAGE_MESSAGE,
    is_token_lookup,
    run_job,
)


def main(argv: list[str] | None = None) -> int:
    return cli.main(FLUX, argv)
