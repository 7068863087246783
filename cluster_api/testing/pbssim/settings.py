"""Names and knobs of the simulated PBS Professional / Torque server."""

from __future__ import annotations

from ..simkit.store import Json

ENV_STATE_DIR = "CLUSTER_API_PBSSIM_DIR"
COMMANDS = ("qsub", "qstat", "qdel")
OUTAGE_MESSAGE = "qsub: cannot connect to server pbssim (errno=111)"

DEFAULT_SETTINGS: Json = {
    # "pbs" (PBS Pro / OpenPBS: qstat -f -F json, -J arrays) or "torque" (qstat -f -x
    # XML, -t arrays, -d, $PBS_ARRAYID).
    "flavour": "pbs",
    # The server's name, the suffix of every job id (123.pbssim).
    "server": "pbssim",
    # PBS: job_history_enable (finished jobs answer qstat -x); off: they vanish at once.
    "history": True,
    # Seconds a finished job stays known: PBS job_history_duration, Torque's
    # keep_completed (state C in plain qstat). Then: Unknown Job Id.
    "clean_period": 300.0,
    # Job slots of the whole simulated server (None: unlimited).
    "slots": None,
    # Real seconds in one minute of walltime, to test walltime kills quickly.
    "seconds_per_minute": 60.0,
    # What a walltime kill sends (SIGTERM, then SIGKILL after kill_delay).
    "runlimit_signals": ["TERM", "KILL"],
    # Seconds from SIGTERM to SIGKILL (kill_delay).
    "job_terminate_interval": 1.0,
    # Seconds between two samples of a running job's memory.
    "mem_sample_interval": 0.5,
    # max_array_size.
    "max_array_size": 10000,
}
