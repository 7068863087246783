"""The PBS commands as the shared entry point runs them (each command's module is
imported only when that command runs)."""

from __future__ import annotations

from ..simkit import cli
from .settings import COMMANDS, DEFAULT_SETTINGS, ENV_STATE_DIR, OUTAGE_MESSAGE


def is_token_lookup(command: str, args: list[str]) -> bool:
    """A full ``qstat`` of every job without subjobs (no ``-t``, no ids): how a client
    looks for the Variable_List token of a lost submission."""
    asks_all = all(a[:1] == "-" or a == "json" for a in args)
    return command == "qstat" and "-t" not in args and asks_all


def main(argv: list[str] | None = None) -> int:
    scheduler = cli.Scheduler(
        program="pbssim",
        env_state_dir=ENV_STATE_DIR,
        commands={name: cli.lazy_command(__package__, name) for name in COMMANDS},
        defaults=DEFAULT_SETTINGS,
        outage_message=OUTAGE_MESSAGE,
        is_token_lookup=is_token_lookup,
        run_job=cli.style_runner(__package__),
    )
    return cli.main(scheduler, argv)
