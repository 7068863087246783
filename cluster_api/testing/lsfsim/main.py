"""The LSF commands as the shared entry point runs them.

Each command's module is imported only when that command runs: ``bjobs`` is polled far
more often than anything else and need not load ``bsub``'s runner or dependency parser.
"""

from __future__ import annotations

from ..simkit import cli
from .settings import COMMANDS, DEFAULT_SETTINGS, ENV_STATE_DIR, OUTAGE_MESSAGE


def is_token_lookup(command: str, args: list[str]) -> bool:
    """A ``bjobs`` asking for job descriptions: how a client finds a lost submission."""
    return command == "bjobs" and any("job_description" in arg for arg in args)


LSF = cli.Scheduler(
    program="lsfsim",
    env_state_dir=ENV_STATE_DIR,
    commands={name: cli.lazy_command(__package__, name) for name in COMMANDS},
    defaults=DEFAULT_SETTINGS,
    outage_message=OUTAGE_MESSAGE,
    is_token_lookup=is_token_lookup,
    run_job=cli.style_runner(__package__),
)


def main(argv: list[str] | None = None) -> int:
    return cli.main(LSF, argv)
