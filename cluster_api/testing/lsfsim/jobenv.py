"""What an LSF job sees: the environment ``-env`` asks for, plus the ``LSB_*`` variables
(the runner's :class:`~..simkit.runner.JobStyle` for LSF)."""

from __future__ import annotations

import re

from ..simkit.cli import UsageError
from ..simkit.jobs import element_name
from ..simkit.procs import hostname
from ..simkit.runner import JobStyle
from ..simkit.start import output_path
from ..simkit.store import Json
from .depend import job_dependency
from .formats import expand
from .settings import DEFAULT_SETTINGS


def split_env_list(text: str) -> list[str]:
    items: list[str] = []
    current = ""
    quote = False
    for char in text:
        if char == "'":
            quote = not quote
            continue
        if char == "," and not quote:
            items.append(current.strip())
            current = ""
            continue
        current += char
    items.append(current.strip())
    return [item for item in items if item]


def job_environment(spec: str | None, submit_env: dict[str, str]) -> dict[str, str]:
    """Apply ``-env``: ``none``, ``all[, ~VAR][, VAR=value]``, or ``VAR[=value], ...``."""
    minimal: dict[str, str] = {
        key: submit_env[key] for key in ("HOME", "USER", "LOGNAME", "SHELL") if key in submit_env
    }
    minimal["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    if spec is None:
        return dict(submit_env)
    items = split_env_list(spec)
    if not items:
        raise UsageError(f"{spec}: Bad argument for option -env. Job not submitted.")
    if len(items) == 1 and items[0].lower() == "none":
        return minimal
    if items[0].lower() == "all":
        env = dict(submit_env)
        items = items[1:]
    else:
        env = minimal
    for item in items:
        if item.lower() in ("all", "none"):
            raise UsageError(f"{spec}: Bad argument for option -env. Job not submitted.")
        if item.startswith("~"):
            env.pop(item[1:].strip(), None)
            continue
        name, eq, value = item.partition("=")
        name = name.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UsageError(f"{spec}: Bad argument for option -env. Job not submitted.")
        if eq:
            env[name] = re.sub(
                r"\$(\w+)|\$\{(\w+)\}",
                lambda m: submit_env.get(m.group(1) or m.group(2), ""),
                value,
            )
        elif name in submit_env:
            env[name] = submit_env[name]
    return env


def lsb_variables(job: Json, idx: str, cwd: str) -> dict[str, str]:
    """``LSB_JOBID``, ``LSB_JOBINDEX``, ``LSB_HOSTS``, ... of one started element."""
    host = hostname()
    n = int(job.get("slots") or 1)
    env = {
        "LSB_JOBID": str(job["id"]),
        "LSB_JOBINDEX": idx if job.get("array") else "0",
        "LSB_JOBNAME": element_name(job, idx),
        "LSB_QUEUE": str(job["queue"]),
        "LSB_HOSTS": " ".join([host] * n),
        "LSB_MCPU_HOSTS": f"{host} {n}",
        "LSB_DJOB_NUMPROC": str(n),
        "LSB_SUB_HOST": str(job["from_host"]),
        "LSB_EXEC_CLUSTER": "lsfsim",
        "LSB_JOBFILENAME": str(job["job_file"]),
        "LS_SUBCWD": str(job["submit_cwd"]),
    }
    if job.get("array"):
        env["LSB_JOBINDEX_END"] = str(max(job["array"]["indices"]))
        env["LSB_JOBINDEX_STEP"] = "1"
    if job.get("out"):
        env["LSB_OUTPUTFILE"] = output_path(JOB_STYLE, str(job["out"]), job, idx, cwd, ".out")
    if job.get("err"):
        env["LSB_ERRORFILE"] = output_path(JOB_STYLE, str(job["err"]), job, idx, cwd, ".err")
    return env


JOB_STYLE = JobStyle(
    defaults=DEFAULT_SETTINGS,
    environment=lsb_variables,
    expand=expand,
    dependency=job_dependency,
)
