"""PBS Professional / OpenPBS answers and directives, from ``SCHEDULERS.md`` §1 (pure
functions; `.pbs` is the translation that uses them). Torque (`.torque_formats`) reuses
the id, quoting, value, stderr and cancel rules defined here."""

from __future__ import annotations

import logging
import posixpath
import re
import signal
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime
from functools import partial
from typing import Any

from ..errors import ClusterAPIError, SubmitError
from ..jobspec import JobSpec
from ..jsontext import decode_json
from ..localtime import parse_month_time
from ..models import JobStatus
from ..script import shell_word
from ..status import Observation, QueryResult
from ..units import format_memory, parse_memory_bytes, parse_walltime_seconds

logger = logging.getLogger("cluster_api")

DIRECTIVE = "#PBS"
ARRAY_INDEX_VARIABLE = "PBS_ARRAY_INDEX"
TOKEN_VARIABLE = "CLUSTER_API_TOKEN"  # carries the exactly-once token in Variable_List (-v)
MAX_NAME_LENGTH = 230  # PBS_MAXJOBNAME
JOB_ID_PATTERN = re.compile(r"^(\d+)(?:\[(\d*)\])?(\.[A-Za-z0-9][A-Za-z0-9._-]*)?$")
JOB_ID_EXAMPLE = "123.server or 123[].server"
#: qsub/qstat messages worth one more try (ERT retries PBSE_BADCRED/PROTOCOL/SYSTEM).
_RETRY = "cannot connect to server|Batch protocol error|Premature end of message|System error"
TRANSIENT = re.compile(f"{_RETRY}|No free connections|Invalid credential|refused|timed out", re.I)
#: On stderr (exit 0, no ``Jobs``) where job_history_enable is off: ask no more.
HISTORY_OFF = "PBS is not configured to maintain job history"
GONE = ("Unknown Job Id", "Job has finished", "nonexistent job id")
_NAME_CHARS = re.compile(r"^[A-Za-z0-9_.+-]+$")
_BARE = re.compile(r"^[A-Za-z0-9_./%@+,=^:-]+$")
# The JOB_EXEC_* resource kills (src/include/job.h), -24 to -29; others keep their number.
_KILLS = ("NCPUS_BURST", "NCPUS_SUM", "VMEM", "MEM", "CPUT", "WALLTIME")
_PBS_CODES = {-24 - i: f"JOB_EXEC_KILL_{name}" for i, name in enumerate(_KILLS)}
# E is exiting: Exit_status not final yet. F (finished) and X (subjob expired) are ends.
_STATES = dict.fromkeys("QHWTM", JobStatus.PENDING) | dict.fromkeys("RSUBE", JobStatus.RUNNING)
_KILLED_COMMENT = re.compile(r"\band terminated\b|^Subjob terminated")
_SIGNALS = {int(s): s.name for s in signal.Signals}
Ending = tuple[JobStatus, int | None, str | None]
Observe = Callable[[Mapping[str, Any]], Observation | None]
Cancelled = tuple[set[str], set[str]]  # ids a qdel accepted, ids it said had already ended
Listing = tuple[QueryResult, dict[str, str]]  # observations, and each job's or array's name


def quote(field: str, value: str) -> str:
    """``value`` as qsub's directive parser reads it: bare, or in ' or " (nothing special
    inside); a value with both cannot be written and is refused."""
    if _BARE.match(value):
        return value
    for mark in "'\"":
        if mark not in value:
            return f"{mark}{value}{mark}"
    raise ValueError(f"{field} {value!r} holds both ' and \", which a #PBS line cannot carry")


def checked_name(name: str, limit: int = MAX_NAME_LENGTH, what: str = "job name") -> str:
    if not _NAME_CHARS.match(name) or len(name) > limit:
        raise ValueError(f"{what} {name!r} must be 1-{limit} of A-Z a-z 0-9 _ . + - for PBS")
    return name


def log_path(field: str, given: str | None, work_dir: str) -> str:
    """A ``-o``/``-e`` path: the one given (relative to work_dir), else the work dir as a
    folder (``dir/``: the scheduler names the file after the job id). ``:`` is refused."""
    path = posixpath.join(work_dir, given) if given else work_dir.rstrip("/") + "/"
    if ":" in path:
        field = field if given else "ResourceSpec.work_dir"
        raise ValueError(f"{field} {path!r} contains ':', which PBS reads as host:path")
    return quote(field, path)


def common_options(spec: JobSpec, depend: list[str], suppress_email: bool) -> list[str]:
    """The options PBS Pro and Torque write alike: names, logs, token, queue, limits."""
    res = spec.resources
    seconds = parse_walltime_seconds(res.walltime) if res.walltime else 0
    for job_id in spec.depends_on:
        if not JOB_ID_PATTERN.match(job_id):
            raise ValueError(f"depends_on {job_id!r} is not a PBS job id ({JOB_ID_EXAMPLE})")
    written = {  # option -> value, in this order; unset ones are left out
        "-N": checked_name(spec.name),
        "-o": log_path("ResourceSpec.stdout_path", res.stdout_path, res.work_dir),
        "-e": log_path("ResourceSpec.stderr_path", res.stderr_path, res.work_dir),
        "-v": spec.token and f"{TOKEN_VARIABLE}={checked_name(spec.token, 4096, 'token')}",
        "-q": res.queue and quote("ResourceSpec.queue", res.queue),
        "-l": seconds
        and f"walltime={seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}",
        "-A": res.account and quote("ResourceSpec.account", res.account),
        "-W": depend and f"depend={','.join(depend)}",
    }
    options = [f"{flag} {value}" for flag, value in written.items() if value]
    options += ["-V"] if spec.inherit_env else []
    return [*options, *(["-m n"] if suppress_email else []), *(res.extra_directives or [])]


def directives(spec: JobSpec, *, suppress_email: bool = True) -> list[str]:
    """The qsub options of one job, one per string (``-l select=1:ncpus=4``)."""
    res = spec.resources
    own = []
    if spec.array_range is not None:
        start, end = spec.array_range
        if start >= end:
            raise ValueError(f"PBS array jobs need at least two indices, got {spec.array_range}")
        own.append(f"-J {start}-{end}{f'%{spec.max_concurrent}' if spec.max_concurrent else ''}")
    chunk = [f"ncpus={res.cpus}"] if res.cpus else []
    chunk += [f"ngpus={res.gpus}"] if res.gpus else []
    chunk += [f"mem={format_memory(parse_memory_bytes(res.memory), 'MB')}mb"] if res.memory else []
    own += [f"-l select=1:{':'.join(chunk)}"] if chunk else []
    depend = [f"afterok:{':'.join(spec.depends_on)}"] if spec.depends_on else []
    return own + common_options(spec, depend, suppress_email)


def work_dir_lines(work_dir: str) -> list[str]:
    """Script lines that move the job to its work dir (it starts in ``$HOME``)."""
    return [f"cd {shell_word(work_dir)} || exit 1"]


def submit_argv(
    script_path: str, extra_args: Iterable[str] = (), *, use_stdin: bool = False
) -> tuple[list[str], str | None]:
    """(argv, stdin file). ``-f``: no background helper left behind (qsub.1B)."""
    argv = ["qsub", "-f", *extra_args]
    return (argv, script_path) if use_stdin else ([*argv, script_path], None)


def parse_submit(stdout: str) -> str:
    """The job id qsub printed (its last line, kept whole: ``123.srv``, ``123[].srv``)."""
    last = (stdout.strip().splitlines() or [""])[-1].strip()
    if JOB_ID_PATTERN.match(last):
        return last
    raise SubmitError(f"qsub did not report a job id: {stdout.strip()[:500]!r}")


def text(value: Any) -> str | None:
    """A qstat value as text (JSON turns numeric strings into numbers); None if empty."""
    if value is None or isinstance(value, (bool, dict, list)):
        return None
    return str(value).strip() or None


def integer(value: Any) -> int | None:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    found = re.fullmatch(r"-?[0-9]+", text(value) or "")
    return int(found.group()) if found else None


def moment(value: Any) -> datetime | None:
    """A ``qstat -f`` time: ``ctime()`` text in local time (``Fri Nov 11 17:57:05 2016``)."""
    return parse_month_time(text(value))


def ending(code: int | None, negative: Mapping[int, str]) -> Ending:
    """(status, exit code, reason) from a finished job's exit status: 0 DONE, 1-255 FAILED,
    256+signal FAILED by it (as 128+signal), below 0 FAILED with the scheduler's reason."""
    if code is None:
        return JobStatus.FAILED, None, "ended without an exit status"
    if code >= 256:
        return JobStatus.FAILED, code - 128, _SIGNALS.get(code - 256, f"signal {code - 256}")
    if code < 0:
        return JobStatus.FAILED, None, negative.get(code, f"exit status {code}")
    return (JobStatus.DONE, 0, None) if code == 0 else (JobStatus.FAILED, code, None)


def first_look(
    attrs: Mapping[str, Any], states: Mapping[str, JobStatus], when: Callable[[Any], Any]
) -> tuple[str, Observation]:
    """A record's state letter, and its status (from ``states``), hosts, memory, submit."""
    state, used = text(attrs.get("job_state")) or "", attrs.get("resources_used")
    names = [part.split("/", 1)[0] for part in (text(attrs.get("exec_host")) or "").split("+")]
    return state, Observation(
        states.get(state, JobStatus.PENDING),
        exec_host=",".join(dict.fromkeys(n for n in names if n)) or None,
        max_mem=text(used.get("mem")) if isinstance(used, dict) else None,
        submit_time=when(attrs.get("qtime")) or when(attrs.get("ctime")),
    )


def observe(attrs: Mapping[str, Any]) -> Observation | None:
    """One ``qstat -f -F json`` job object as an Observation; None for an unknown state."""
    state, obs = first_look(attrs, _STATES, moment)
    if state in ("F", "X"):  # substate 91 is JOB_SUBSTATE_TERMINATED: deleted (qdel)
        comment = text(attrs.get("comment")) or ""
        code = integer(attrs.get("Exit_status"))
        obs.status, obs.exit_code, obs.reason = ending(code, _PBS_CODES)
        if integer(attrs.get("substate")) == 91 or _KILLED_COMMENT.search(comment):
            obs.status, obs.reason = JobStatus.KILLED, comment or "terminated"
        elif code is None and comment == "Subjob finished":  # its exit status is gone
            obs.status, obs.exit_code, obs.reason = JobStatus.DONE, 0, None
        obs.finish_time = moment(attrs.get("obittime")) or moment(attrs.get("mtime"))
    elif state not in _STATES:
        return None
    if obs.status is not JobStatus.PENDING:
        obs.start_time = moment(attrs.get("stime"))
    return obs


def ids_named(stderr: str, phrases: Collection[str]) -> set[str]:
    """The job ids in stderr lines holding one of ``phrases`` (``qstat: Unknown Job Id 1.s``)."""
    found: set[str] = set()
    for line in stderr.splitlines():
        words = re.findall(r"[^\s,:]+", line)
        if words and any(p in line for p in phrases):
            found.update(w for w in words if JOB_ID_PATTERN.match(w) and not w.isdigit())
            found.update(words[-1:] if words[-1].isdigit() else [])
    return found


def sort_jobs(
    objects: Mapping[str, Any], wanted: Collection[str] | None, observe: Observe, stderr: str = ""
) -> QueryResult:
    """Job objects into jobs and array elements (``123[4].srv``: element 4 of ``123[].srv``,
    whose own entry adds nothing), odd ones skipped; ids stderr says are gone: not_found."""
    gone = ids_named(stderr, GONE)
    result = QueryResult(not_found=gone if wanted is None else gone & set(wanted))
    for job_id, attrs in objects.items():
        parts = JOB_ID_PATTERN.match(job_id)
        obs = observe(attrs) if parts and isinstance(attrs, dict) else None
        if parts is None or obs is None:
            logger.warning("skipping an unreadable qstat record for job %r", job_id)
            continue
        number, index, server = parts.groups()
        key = job_id if not index else f"{number}[]{server or ''}"
        if wanted is not None and key not in wanted:
            continue
        if index is None:
            result.jobs[key] = obs
        elif index:
            result.elements.setdefault(key, {})[int(index)] = obs
    return result


def job_objects(stdout: str, stderr: str = "") -> dict[str, Any]:
    """The ``Jobs`` of a ``qstat -F json`` answer; ClusterAPIError if it is not one."""
    start = stdout.find("{")
    if start < 0:
        if stdout.strip() or not ids_named(stderr, GONE):
            raise ClusterAPIError(f"qstat printed no JSON: {(stdout or stderr).strip()[:200]!r}")
        return {}
    data = decode_json(stdout[start:], "qstat")  # control characters in Variable_List kept
    jobs = data.get("Jobs", {}) if isinstance(data, dict) else None
    if not isinstance(jobs, dict):
        raise ClusterAPIError(f"qstat JSON has no Jobs object: {stdout.strip()[:200]!r}")
    return jobs


def qstat_argv(ids: Iterable[str] = (), *, history: bool = False, subjob: bool = True) -> list[str]:
    """One ``qstat -f -F json`` for all ``ids`` (none: every job on the server); ``-t``
    lists each subjob, ``-x`` adds finished jobs (only where the server keeps history)."""
    flags = [*(["-x"] if history else []), *(["-t"] if subjob else [])]
    return ["qstat", "-f", "-F", "json", *flags, *ids]


status_argv = listing_argv = qstat_argv  # the status poll; every job, for reconnect
history_argv = partial(qstat_argv, history=True)  # ids the status poll said are gone
lookup_argv = partial(qstat_argv, subjob=False)  # every job, to find a token: history=...


def parse_status(
    stdout: str, stderr: str = "", wanted: Collection[str] | None = None, *, final: bool = False
) -> QueryResult:
    """What qstat listed, and ids it says are gone (ended: purged or in the history; exit
    153 or 35, the others still on stdout). ``final`` keeps only ended jobs (history)."""
    result = sort_jobs(job_objects(stdout, stderr), wanted, observe, stderr)
    if final:
        result.jobs = {k: o for k, o in result.jobs.items() if o.status.is_terminal}
        for key, elements in result.elements.items():
            result.elements[key] = {i: o for i, o in elements.items() if o.status.is_terminal}
    return result


parse_history = partial(parse_status, final=True)


def cancel_argv(ids: Collection[str]) -> list[str]:
    """qdel for a batch of ids; malformed ones refused (Torque's qdel stops there)."""
    for job_id in ids:
        if not JOB_ID_PATTERN.match(job_id):
            raise ValueError(f"not a PBS job id: {job_id!r} ({JOB_ID_EXAMPLE})")
    return ["qdel", *ids]


def parse_cancel(stdout: str, stderr: str, returncode: int, ids: Collection[str]) -> Cancelled:
    """(accepted ids, ids already ended). qdel names each job it refuses on stderr (``qdel:
    Job has finished 12.srv``); failing with a line about no job (no server), it took none."""
    named = ids_named(stderr, [""]) & set(ids)
    ended = ids_named(stderr, GONE) & set(ids)
    general = [s for s in stderr.splitlines() if s.strip() and not named & set(s.split())]
    if returncode != 0 and general:
        return set(), ended
    return set(ids) - named, ended


def find_token(objects: Mapping[str, Any], name: str, token: str) -> str | None:
    """The id of the job called ``name`` whose Variable_List (an object in JSON, ``A=1,B=2``
    in Torque's XML) carries ``token`` (the last such job, if several)."""
    found = []
    for job_id, attrs in objects.items():
        if not isinstance(attrs, dict) or text(attrs.get("Job_Name")) != name:
            continue
        variables = attrs.get("Variable_List")
        if not isinstance(variables, dict):
            variables = dict(v.partition("=")[::2] for v in str(variables).split(","))
        if text(variables.get(TOKEN_VARIABLE)) == token and JOB_ID_PATTERN.match(job_id):
            found.append(job_id)
    return found[-1] if found else None


def parse_lookup(stdout: str, stderr: str, name: str, token: str) -> str | None:
    """The id of the submission carrying ``token``; None only when qstat answered without
    it. Anything unclear raises ClusterAPIError: a wrong "not found" submits twice."""
    if HISTORY_OFF in stderr:
        raise ClusterAPIError(f"qstat -x is refused here ({HISTORY_OFF}); look up without -x")
    return find_token(job_objects(stdout or "{}", stderr), name, token)


def listing(objects: Mapping[str, Any], prefix: str | None, observe: Observe) -> Listing:
    """Our jobs (names starting ``prefix-``; every job for None) and each one's name."""
    names = {k: str(text(a.get("Job_Name"))) for k, a in objects.items() if isinstance(a, dict)}
    ours = f"{prefix}-" if prefix is not None else ""
    mine = {k: objects[k] for k, name in names.items() if name.startswith(ours)}
    arrays_and_jobs = {k: names[k] for k in mine if "[" not in k or "[]" in k}
    return sort_jobs(mine, None, observe), arrays_and_jobs


def parse_listing(stdout: str, prefix: str | None) -> Listing:
    return listing(job_objects(stdout or "{}"), prefix, observe)
