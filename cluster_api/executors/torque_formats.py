"""Torque as pure translation (no I/O, no record changes), from ``SCHEDULERS.md`` §2.

Torque speaks classic PBS: the same ``qsub``/``qstat``/``qdel``, ``#PBS`` lines, ids
(``123.srv``, arrays ``123[].srv``) and stderr messages, so those rules come from
``pbs``. What differs is here: ``qstat -f -x`` means *XML* (not history; there is no
history: finished jobs stay in state ``C`` for ``keep_completed`` seconds, then only the
exit files tell), ``-t`` arrays with ``$PBS_ARRAYID``, ``-l nodes=1:ppn=N``, ``-d`` for
the work dir, lower-case ``exit_status`` with Torque's own negative codes and 271 for a
cancelled running job.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timezone
from typing import Any

from ..errors import ClusterAPIError
from ..jobspec import JobSpec
from ..models import JobStatus
from ..status import Observation, QueryResult
from ..units import format_memory, parse_memory_bytes, parse_walltime_seconds
from . import pbs_formats as pbs
from .pbs_formats import (
    GONE,
    Listing,
    common_options,
    ending,
    find_token,
    first_look,
    ids_named,
    integer,
    listing,
    quote,
    sort_jobs,
    text,
)

# The same as on PBS Pro (classic PBS behaviour both keep).
DIRECTIVE, JOB_ID_PATTERN, JOB_ID_EXAMPLE = pbs.DIRECTIVE, pbs.JOB_ID_PATTERN, pbs.JOB_ID_EXAMPLE
TOKEN_VARIABLE, TRANSIENT = pbs.TOKEN_VARIABLE, pbs.TRANSIENT
parse_submit, cancel_argv, parse_cancel = pbs.parse_submit, pbs.cancel_argv, pbs.parse_cancel
ARRAY_INDEX_VARIABLE = "PBS_ARRAYID"
#: What Torque reports for a running job it cancelled (server's exit_code_canceled_job).
CANCELLED_EXIT = 271
_TORQUE_CODES = {
    -10: "JOB_EXEC_OVERLIMIT_MEM",
    -11: "JOB_EXEC_OVERLIMIT_WT",
    -12: "JOB_EXEC_OVERLIMIT_CPUT",
}
_STATES = dict.fromkeys("QHWT", JobStatus.PENDING) | dict.fromkeys("RSE", JobStatus.RUNNING)
# Torque's MXML writes values raw: '&' as is and '<' as \x0e, so no XML parser reads every
# answer; this reads its plain <Tag>value</Tag> shape instead.
_TOKEN = re.compile(r"<(/?)([A-Za-z_][\w.-]*)\s*(/?)>|([^<]+)")


# -- directives --------------------------------------------------------------------------
def directives(spec: JobSpec, *, suppress_email: bool = True) -> list[str]:
    """The qsub options of one job, one per string (``-l nodes=1:ppn=4``)."""
    res = spec.resources
    own = []
    if spec.array_range is not None:
        start, end = spec.array_range
        own.append(f"-t {start}-{end}{f'%{spec.max_concurrent}' if spec.max_concurrent else ''}")
    node = ["nodes=1", *([f"ppn={res.cpus}"] if res.cpus else [])]
    node += [f"gpus={res.gpus}"] if res.gpus else []
    own += [f"-l {':'.join(node)}"] if len(node) > 1 else []
    own += [f"-l mem={format_memory(parse_memory_bytes(res.memory), 'MB')}mb"] if res.memory else []
    own.append(f"-d {quote('ResourceSpec.work_dir', res.work_dir)}")
    # An array is waited for with afterokarray (all its subjobs), a plain job with afterok.
    plain = [i for i in spec.depends_on if "[]" not in i]
    arrays = [i for i in spec.depends_on if "[]" in i]
    depend = [f"afterok:{':'.join(plain)}"] if plain else []
    depend += [f"afterokarray:{':'.join(arrays)}"] if arrays else []
    return own + common_options(spec, depend, suppress_email)


def work_dir_lines(work_dir: str) -> list[str]:
    """Nothing: ``-d`` already starts the job in its work dir."""
    return []


def submit_argv(
    script_path: str, extra_args: Iterable[str] = (), *, use_stdin: bool = False
) -> tuple[list[str], str | None]:
    """(argv, file for stdin). No ``-f`` here: on Torque it marks the job fault tolerant."""
    argv = ["qsub", *extra_args]
    return (argv, script_path) if use_stdin else ([*argv, script_path], None)


# -- answers -----------------------------------------------------------------------------
def job_objects(stdout: str, stderr: str = "") -> dict[str, Any]:
    """The ``<Job>`` elements of ``qstat -f -x`` answers (one ``<Data>`` per id asked
    about) as nested dicts by ``Job_Id``; ClusterAPIError when it is not such an answer."""
    if "<Data>" not in stdout:  # every answer is <Data> elements
        if stdout.strip() or not ids_named(stderr, GONE):
            raise ClusterAPIError(f"qstat printed no XML: {(stdout or stderr).strip()[:200]!r}")
        return {}
    jobs: dict[str, Any] = {}
    stack: list[tuple[str, dict[str, Any]]] = []
    for close, tag, empty, value in _TOKEN.findall(stdout):
        if value:
            if stack:
                stack[-1][1]["#text"] = stack[-1][1].get("#text", "") + value
        elif empty:
            if stack:
                stack[-1][1][tag] = ""
        elif not close:
            stack.append((tag, {}))
        elif not stack or stack[-1][0] != tag:
            raise ClusterAPIError(f"qstat printed malformed XML near </{tag}>: {stdout[:200]!r}")
        else:
            name, node = stack.pop()
            content = node.pop("#text", "")
            item = node or content.strip()
            if name == "Job" and isinstance(item, dict):
                jobs[str(text(item.get("Job_Id")))] = item
            elif stack:
                stack[-1][1][name] = item
    return jobs


def _epoch(value: Any) -> datetime | None:
    seconds = integer(value)
    try:
        return datetime.fromtimestamp(seconds, timezone.utc) if seconds and seconds > 0 else None
    except (ValueError, OverflowError, OSError):
        return None


def _out_of_walltime(attrs: Mapping[str, Any]) -> bool:
    """Whether the job used all the walltime it asked for: older Torque reports a walltime
    kill as the signal (265, 271), not as -11."""
    try:
        used = parse_walltime_seconds(attrs["resources_used"]["walltime"])
        return used >= parse_walltime_seconds(attrs["Resource_List"]["walltime"])
    except (KeyError, TypeError, ValueError):
        return False


def observe(attrs: Mapping[str, Any]) -> Observation | None:
    """One ``<Job>`` as an Observation; None for an unknown state."""
    state, obs = first_look(attrs, _STATES, _epoch)
    if state == "C":
        code = integer(attrs.get("exit_status"))
        obs.status, obs.exit_code, obs.reason = ending(code, _TORQUE_CODES)
        if code == CANCELLED_EXIT and not _out_of_walltime(attrs):
            obs.status, obs.reason = JobStatus.KILLED, "cancelled (exit status 271)"
        elif code is not None and code > 128 and _out_of_walltime(attrs):
            obs.reason = _TORQUE_CODES[-11]
        obs.finish_time = _epoch(attrs.get("comp_time"))
    elif state not in _STATES:
        return None
    if obs.status is not JobStatus.PENDING:
        obs.start_time = _epoch(attrs.get("start_time"))
    return obs


def status_argv(ids: Iterable[str]) -> list[str]:
    """One qstat for every tracked id, in XML; ``-t`` lists each subjob of an array."""
    return ["qstat", "-f", "-x", "-t", *ids]


def parse_status(
    stdout: str, stderr: str = "", wanted: Collection[str] | None = None
) -> QueryResult:
    """What qstat listed (ended jobs as ``C`` while Torque keeps them), and in not_found
    the ids it no longer knows (``qstat: Unknown Job Id Error 12.srv``, exit 153)."""
    return sort_jobs(job_objects(stdout, stderr), wanted, observe, stderr)


# -- lookup and listing ------------------------------------------------------------------
def lookup_argv() -> list[str]:
    """Every job Torque still holds (finished ones for ``keep_completed``), in XML."""
    return ["qstat", "-f", "-x"]


def parse_lookup(stdout: str, stderr: str, name: str, token: str) -> str | None:
    """The id of the submission carrying ``token``; None only when qstat answered and has
    no such job; ClusterAPIError for an answer that cannot be read."""
    return find_token(job_objects(stdout or "<Data></Data>", stderr), name, token)


def listing_argv() -> list[str]:
    """Every job and subjob Torque holds, for reconnect to pick its own."""
    return ["qstat", "-f", "-x", "-t"]


def parse_listing(stdout: str, prefix: str | None) -> Listing:
    """Our jobs and arrays by name (a subjob's name is the array's plus ``-4``)."""
    return listing(job_objects(stdout or "<Data></Data>"), prefix, observe)
