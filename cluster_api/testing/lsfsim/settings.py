"""Names and knobs of the simulated LSF cluster."""

from __future__ import annotations

from ..simkit.store import Json

ENV_STATE_DIR = "CLUSTER_API_LSFSIM_DIR"
COMMANDS = ("bsub", "bjobs", "bkill", "bhist")
VERSION = "IBM Spectrum LSF 10.1.0.0 (lsfsim), simulated"
OUTAGE_MESSAGE = "LSF is down. Please wait ..."

DEFAULT_SETTINGS: Json = {
    # lsb.params CLEAN_PERIOD: seconds a finished job stays visible to bjobs.
    "clean_period": 3600.0,
    # lsf.conf LSB_DISPLAY_YEAR (the environment variable of that name also works).
    "display_year": False,
    # lsf.conf LSB_BSUB_PARSE_SCRIPT: read #BSUB lines of `bsub script.sh`.
    "parse_script": False,
    # Job slots of the whole simulated cluster (None: unlimited).
    "slots": None,
    # lsf.conf LSF_UNIT_FOR_LIMITS: unit of a bare number given to -M.
    "unit_for_limits": "MB",
    # Real seconds in one LSF minute, to test -W run limits quickly.
    "seconds_per_minute": 60.0,
    # lsb.params JOB_TERMINATE_INTERVAL: seconds between SIGTERM and SIGKILL.
    "job_terminate_interval": 1.0,
    # Seconds between two samples of a running job's memory.
    "mem_sample_interval": 0.5,
    # lsb.params MAX_JOB_ARRAY_SIZE.
    "max_array_size": 1000,
}
