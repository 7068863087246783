"""The LSF commands as the shared entry point runs them.

Each command's module is imported only when that command runs: ``bjobs`` is polled far
more often than anything else and need not load ``bsub``'s runner or dependency parser.
"""

from __future__ import annotations

from ..simkit import cli
from ..simkit.store import Json
from .settings import COMMANDS, DEFAULT_SETTINGS, ENV_STATE_DIR, OUTAGE_MESSAGE


def is_token_lookup(command: str, args: list[str]) -> bool:
    """A ``bjobs`` asking for job descriptions: how a client finds a lost submission."""
    return command == "bjobs" and any("job_description" in arg for arg in args)


def _command(name: str) -> cli.Handler:
    """``command_<name>`` of the module ``<name>``, imported when first called."""

    def handler(args: list[str], state_dir: str, control: Json) -> int:
        module = __import__(f"{__package__}.{name}", fromlist=[f"command_{name}"])
        run: cli.Handler = getattr(module, f"command_{name}")
        return run(args, state_dir, control)

    return handler


def run_job(args: list[str], state_dir: str) -> int:
    """The ``_runner`` command, with LSF's job style."""
    from ..simkit.runner import run_job as supervise
    from .jobenv import JOB_STYLE

    return supervise(JOB_STYLE, args, state_dir)


LSF = cli.Scheduler(
    program="lsfsim",
    env_state_dir=ENV_STATE_DIR,
    commands={name: _command(name) for name in COMMANDS},
    defaults=DEFAULT_SETTINGS,
    outage_message=OUTAGE_MESSAGE,
    is_token_lookup=is_token_lookup,
    run_job=run_job,
)


def main(argv: list[str] | None = None) -> int:
    return cli.main(LSF, argv)
