"""The PBS commands as the shared entry point runs them.

Each command's module is imported only when that command runs: ``qstat`` is polled far
more often than anything else and need not load ``qsub``'s runner or dependency parser.
"""

from __future__ import annotations

from ..simkit import cli
from ..simkit.store import Json
from .settings import COMMANDS, DEFAULT_SETTINGS, ENV_STATE_DIR, OUTAGE_MESSAGE


def is_token_lookup(command: str, args: list[str]) -> bool:
    """A full ``qstat`` of every job without subjobs (``-t``): how a client looks for
    the Variable_List token of a lost submission."""
    return (
        command == "qstat"
        and "-t" not in args
        and all(a.startswith("-") or a == "json" for a in args)
    )


def _command(name: str) -> cli.Handler:
    """``command_<name>`` of the module ``<name>``, imported when first called."""

    def handler(args: list[str], state_dir: str, control: Json) -> int:
        module = __import__(f"{__package__}.{name}", fromlist=[f"command_{name}"])
        run: cli.Handler = getattr(module, f"command_{name}")
        return run(args, state_dir, control)

    return handler


def run_job(args: list[str], state_dir: str) -> int:
    """The ``_runner`` command, with PBS job style."""
    from ..simkit.runner import run_job as supervise
    from .jobenv import JOB_STYLE

    return supervise(JOB_STYLE, args, state_dir)


PBS = cli.Scheduler(
    program="pbssim",
    env_state_dir=ENV_STATE_DIR,
    commands={name: _command(name) for name in COMMANDS},
    defaults=DEFAULT_SETTINGS,
    outage_message=OUTAGE_MESSAGE,
    is_token_lookup=is_token_lookup,
    run_job=run_job,
)


def main(argv: list[str] | None = None) -> int:
    return cli.main(PBS, argv)
