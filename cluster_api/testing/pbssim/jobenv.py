"""What a simulated PBS job sees: its ``PBS_*`` variables and paths (the runner's job
style). A job starts in ``$HOME`` unless Torque's ``-d`` names its folder."""

from __future__ import annotations

from ..simkit.jobs import element_name
from ..simkit.runner import JobStyle
from ..simkit.store import Json
from .depend import job_dependency
from .settings import DEFAULT_SETTINGS


def job_id(job: Json, idx: str | None = None) -> str:
    """``12.srv``; an array ``12[].srv``, its subjob ``12[3].srv``."""
    index = "" if not job.get("array") else f"[{idx or ''}]"
    return f"{job['id']}{index}.{job['server']}"


def pbs_variables(job: Json, idx: str, cwd: str) -> dict[str, str]:
    env = {
        "PBS_JOBID": job_id(job, idx),
        "PBS_JOBNAME": str(job["name"]),
        "PBS_O_WORKDIR": str(job["submit_cwd"]),
        "PBS_O_HOME": str(job["home"]),
        "PBS_QUEUE": str(job["queue"]),
        "PBS_ENVIRONMENT": "PBS_BATCH",
        "PBS_JOBDIR": cwd,
        **job["variables"],
    }
    if job.get("array"):
        variable = "PBS_ARRAYID" if job["flavour"] == "torque" else "PBS_ARRAY_INDEX"
        env[variable] = idx
        env["PBS_JOBNAME"] = element_name(job, idx) if job["flavour"] == "torque" else job["name"]
    return env


def expand(pattern: str, job: Json, idx: str) -> str:
    """``^array_index^`` in ``-o``/``-e`` paths is the subjob's index."""
    return pattern.replace("^array_index^", idx)


JOB_STYLE = JobStyle(
    defaults=DEFAULT_SETTINGS,
    environment=pbs_variables,
    expand=expand,
    dependency=job_dependency,
)
