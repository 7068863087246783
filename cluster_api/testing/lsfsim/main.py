"""The LSF commands as the shared entry point runs them."""

from __future__ import annotations

import sys

from ..simkit import cli, runner
from .bhist import command_bhist
from .bjobs import command_bjobs
from .bkill import command_bkill
from .bsub import command_bsub
from .jobenv import JOB_STYLE
from .settings import DEFAULT_SETTINGS, ENV_STATE_DIR, OUTAGE_MESSAGE


def is_token_lookup(command: str, args: list[str]) -> bool:
    """A ``bjobs`` asking for job descriptions: how a client finds a lost submission."""
    return command == "bjobs" and any("job_description" in arg for arg in args)


def run_job(args: list[str], state_dir: str) -> int:
    return runner.run_job(JOB_STYLE, args, state_dir)


LSF = cli.Scheduler(
    program="lsfsim",
    env_state_dir=ENV_STATE_DIR,
    commands={
        "bsub": command_bsub,
        "bjobs": command_bjobs,
        "bkill": command_bkill,
        "bhist": command_bhist,
    },
    defaults=DEFAULT_SETTINGS,
    outage_message=OUTAGE_MESSAGE,
    is_token_lookup=is_token_lookup,
    run_job=run_job,
)


def main(argv: list[str] | None = None) -> int:
    return cli.main(LSF, argv)


if __name__ == "__main__":
    sys.exit(main())
