"""Names and knobs of the simulated Flux instance."""

from __future__ import annotations

from ..simkit.store import Json

ENV_STATE_DIR = "CLUSTER_API_FLUXSIM_DIR"
COMMANDS = ("flux",)
SUBCOMMANDS = ("batch", "submit", "jobs", "cancel")
OUTAGE_MESSAGE = "flux-jobs: ERROR: Unable to connect to Flux: Connection refused"

DEFAULT_SETTINGS: Json = {
    # Seconds an inactive job stays listed before it is purged (then "JobID X unknown").
    "clean_period": 3600.0,
    # Cores of the whole instance (None: unlimited).
    "slots": None,
    # Real seconds in one simulated minute, to test time limits quickly.
    "seconds_per_minute": 60.0,
    # Seconds between the job shell's SIGTERM and SIGKILL.
    "job_terminate_interval": 1.0,
    # Seconds between two samples of a running job's memory.
    "mem_sample_interval": 0.5,
}
