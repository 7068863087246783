"""Flux (flux-core) as pure translation, from its 0.88.0 manuals, sources and recorded
answers (``tests/data/flux/README.md``). Ids are F58 (``ƒQ4FqC3``, ``fQ4FqC3`` outside a
UTF-8 locale), kept as printed and compared by the number they encode. An array is
``flux submit --cc``: one job per index, no parent id, ids in no set order, so each element's
name carries its index (``{token}[{cc}]``). job-list shows no free field but the name
(flux-accounting checks ``project``/``bank``), so the name is the exactly-once token
``{name}.{n}``. There is no memory request: ``memory`` is refused. Inactive jobs stay listed
by id until purged, so the status command is the history too.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import shlex
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import reduce
from typing import Any

from ..core import JobSpec, Observation, QueryResult
from ..errors import ClusterAPIError, SubmitError
from ..models import JobStatus
from ..script import directive_lines
from ..units import parse_walltime_seconds
from .local_supervisor import MINIMAL_ENV

logger = logging.getLogger("cluster_api")

DIRECTIVE = "# flux:"
ARRAY_INDEX_VARIABLE = "FLUX_JOB_CC"
# Nothing caps how many --cc copies run at once: the engine enforces max_concurrent or
# refuses it. flux cancel cannot record a job as done.
CAN_CAP_ARRAY_CONCURRENCY = False
CAN_CANCEL_AS_DONE = False
STATUS_INCLUDES_HISTORY = True
MAX_ID_CHARS = 32_000  # above this, list all of the user's jobs instead of naming ids
CANCEL_BATCH = 100  # ids per flux cancel
JOB_ID_EXAMPLE = "ƒQ4FqC3, fQ4FqC3 or 15133048832"

_F58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
JOB_ID_PATTERN = re.compile(rf"^(?:[ƒf][{_F58}]{{1,11}}|[0-9]{{1,20}})$")


def job_number(job_id: object) -> int | None:
    """The 64-bit number a Flux id encodes (F58, either prefix, or decimal), else None."""
    if not isinstance(job_id, str) or not JOB_ID_PATTERN.match(job_id):
        return None
    digits = (_F58.index(c) for c in job_id[1:])
    number = int(job_id) if job_id.isdigit() else reduce(lambda n, d: n * 58 + d, digits, 0)
    return number if number < 2**64 else None


_BARE = re.compile(r"^[A-Za-z0-9_./:%@+,=*{}\[\]-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEMPLATES = re.compile(r"\{\{[^{}]*\}\}|\{cc\}")  # mustache tags, and the --cc index


def directive_words(text: str) -> list[str]:
    """The words Flux reads after ``# flux:`` (RFC 36): shell-like, ``#`` a comment,
    ``();<>|&`` words of their own, ``\\`` escaping quotes in either quotes; ValueError for
    text it cannot split or that opens a multi-line value (three quotes)."""
    if re.search(r"[\"']{3}", text):
        raise ValueError(f"three quotes in a row in {text!r}")
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.escapedquotes = "\"'"
    return list(lexer)


def _option(field: str, flag: str, value: str, array: bool) -> str:
    """``flag`` + ``value``, bare when safe, else double-quoted; refused (naming ``field``)
    unless Flux reads back exactly ``flag + value``. ``flux submit --cc`` passes values
    through ``str.format`` (keeping ``{{...}}``), with no escape for a literal brace."""
    if _CONTROL.search(value):
        raise ValueError(f"{field} {value!r} contains a control character")
    if array and re.search("[{}]", _TEMPLATES.sub("", value)):
        raise ValueError(f"{field} {value!r}: flux submit --cc reads braces as {{cc}} fields")
    text = flag + (value if _BARE.match(value) else '"' + re.sub(r'(["\\])', r"\\\1", value) + '"')
    with contextlib.suppress(ValueError):
        if directive_words(text) == [flag + value]:
            return text
    raise ValueError(f"{field} {value!r} cannot be written as a Flux directive")


def flux_job_name(name: str, token: str) -> str:
    """A submission's Flux job name: its token ``{name}.{n}`` (or ``name`` with none)."""
    if token and not re.fullmatch(re.escape(name) + r"\.[0-9]+", token):
        raise ValueError(f"submission token {token!r} is not {name!r} followed by .N")
    return token or name


_OUR_NAME = re.compile(r"^(?P<token>(?P<name>[ -~]+)\.[0-9]+)(?:\[(?P<index>[0-9]+)\])?$")


def parse_job_name(flux_name: object) -> tuple[str, str, int | None] | None:
    """(name, token, array index or None) of a job name we wrote; None for other names."""
    match = _OUR_NAME.match(flux_name) if isinstance(flux_name, str) else None
    if match is None:
        return None
    index = match.group("index")
    return match.group("name"), match.group("token"), None if index is None else int(index)


def _log_option(given: str | None, work_dir: str, stream: str, array: bool) -> str:
    flag = {"stdout": "--output=", "stderr": "--error="}[stream]
    if given:
        return _option(f"ResourceSpec.{stream}_path", flag, given, array)
    if "{{" in work_dir or "}}" in work_dir:  # a mustache tag in the log path, no escape
        raise ValueError(f"ResourceSpec.work_dir {work_dir!r}: '{{{{' makes a Flux template")
    path = f"{work_dir}/{stream}.{{{{id}}}}{'.{cc}' if array else ''}.log"
    return _option("ResourceSpec.work_dir", flag, path, array)


def flux_options(spec: JobSpec) -> list[str]:
    """One job's options, one a string: ``flux batch`` directives, ``flux submit`` argv."""
    res, array = spec.resources, spec.array_range is not None
    if res.memory:
        message = "Flux has no memory request (jobs get their cores' or nodes' memory)"
        raise ValueError(f"ResourceSpec.memory {res.memory!r}: {message}; leave it unset")
    if spec.max_concurrent:
        raise ValueError("Flux cannot cap how many array elements run at once (max_concurrent)")
    name = flux_job_name(spec.name, spec.token) + ("[{cc}]" if array else "")
    options = [
        _option("job name", "--job-name=", name, array),
        _log_option(res.stdout_path, res.work_dir, "stdout", array),
        _log_option(res.stderr_path, res.work_dir, "stderr", array),
        "-n1",  # one slot (batch) or task (submit): the script runs once
    ]
    options += [f"-c{res.cpus}"] if res.cpus else []
    options += [f"-g{res.gpus}"] if res.gpus else []
    if res.walltime:
        options.append(f"--time-limit={parse_walltime_seconds(res.walltime)}s")
    if res.queue:
        options.append(_option("ResourceSpec.queue", "--queue=", res.queue, array))
    if res.account:
        options.append(_option("ResourceSpec.account", "--bank=", res.account, array))
    options.append(_option("ResourceSpec.work_dir", "--cwd=", res.work_dir, array))
    for job_id in spec.depends_on:
        if job_number(job_id) is None:
            raise ValueError(f"depends_on {job_id!r} is not a Flux job id ({JOB_ID_EXAMPLE})")
        options.append(_option("depends_on", "--dependency=", f"afterok:{job_id}", array))
    if not spec.inherit_env:  # empty, then the minimal set back (as local jobs get)
        minimal = f"/^({'|'.join(MINIMAL_ENV)})$/"
        options += ["--env=-*", _option("environment", "--env=", minimal, array)]
    return options + list(res.extra_directives or [])


def directives(spec: JobSpec, skip: Sequence[str] = (), extra: Sequence[str] = ()) -> list[str]:
    """``# flux:`` lines: generated (minus config ``directives_skip``), then config extras."""
    return directive_lines(DIRECTIVE, flux_options(spec), skip, extra)


def submit_argv(
    spec: JobSpec,
    script_path: str,
    header: Sequence[str],
    extra_args: Sequence[str] = (),
    use_stdin: bool = False,
) -> tuple[list[str], str | None]:
    """(argv, file for stdin): ``flux batch [extra] SCRIPT`` (reads the directives), or
    for an array ``flux submit --cc=S-E [options] [extra] SCRIPT``, the ``# flux:`` lines
    of ``header`` read as flux batch would and put on argv (flux submit reads none)."""
    if spec.array_range is None and use_stdin:
        return ["flux", "batch", *extra_args], script_path
    if spec.array_range is None:
        return ["flux", "batch", *extra_args, script_path], None
    if "{" in script_path or "}" in script_path:  # {cc} and mustache apply to it too
        raise ValueError(f"script path {script_path!r}: flux submit --cc reads its braces")
    start, end = spec.array_range
    idset = str(start) if start == end else f"{start}-{end}"
    argv = ["flux", "submit", f"--cc={idset}"]
    for line in header:
        if line.startswith(DIRECTIVE):
            argv += directive_words(line[len(DIRECTIVE) :])
    return [*argv, *extra_args, script_path], None


def parse_submit(stdout: str) -> list[str]:
    """The ids printed: one, or one per accepted array element (fewer: a partial array)."""
    ids = [line.strip() for line in stdout.splitlines() if JOB_ID_PATTERN.match(line.strip())]
    if not ids:
        raise SubmitError(f"flux did not report a job id: {stdout.strip()[:500]!r}")
    return ids


_STATE = {s: JobStatus.PENDING for s in ("NEW", "DEPEND", "PRIORITY", "SCHED")}
_STATE.update(RUN=JobStatus.RUNNING, CLEANUP=JobStatus.RUNNING)  # CLEANUP: epilogs run
# The time limit is FAILED, with the reason; only a cancel is KILLED.
_RESULT = dict(COMPLETED=JobStatus.DONE, FAILED=JobStatus.FAILED, TIMEOUT=JobStatus.FAILED)
_RESULT.update(CANCELED=JobStatus.KILLED)
_UNKNOWN_ID = re.compile(r"^JobID (\S+) unknown$", re.MULTILINE)


def status_argv(ids: Collection[str], all_users: bool = False) -> list[str]:
    """``flux jobs --json IDS`` (any state), or all the user's (``-A``: everyone's) jobs."""
    if sum(len(i) + 1 for i in ids) <= MAX_ID_CHARS:
        return ["flux", "jobs", "--json", *ids]
    return ["flux", "jobs", "-a", "-c", "0", "--json", *(["-A"] if all_users else [])]


def _moment(value: object) -> datetime | None:
    with contextlib.suppress(OverflowError, OSError, ValueError):
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > 0:
            return datetime.fromtimestamp(value, timezone.utc)
    return None


def _text(record: Mapping[str, Any], key: str) -> str | None:
    value = record.get(key)
    return value.strip() if isinstance(value, str) and value.strip() else None


def observation_of(record: Mapping[str, Any]) -> Observation | None:
    """One job of ``flux jobs --json``; None for a missing or unknown state. An end Flux
    imposed (an exception: timeout, alloc, dependency, exec...) gives ``type: note`` as
    the reason; CANCELED, and only that, is KILLED."""
    exception = record["exception"] if isinstance(record.get("exception"), dict) else {}
    kind = _text(exception, "type") if exception.get("occurred") is True else None
    state, result = record.get("state"), record.get("result")
    if state == "INACTIVE":
        if not isinstance(result, str) or result not in _RESULT:  # derive it as job-list does
            result = "COMPLETED" if record.get("success") is True else "FAILED"
            result = {"cancel": "CANCELED", "timeout": "TIMEOUT"}.get(kind or "", result)
        status = _RESULT[result]
    elif isinstance(state, str) and state in _STATE:
        status = _STATE[state]
    else:
        return None
    ran = _moment(record.get("t_run")) if status is not JobStatus.PENDING else None
    host = _text(record, "nodelist") if ran else None
    submitted = _moment(record.get("t_submit"))
    if not status.is_terminal:
        return Observation(status, exec_host=host, submit_time=submitted, start_time=ran)
    code = record.get("returncode")
    if status is JobStatus.DONE:
        exit_code: int | None = 0
    elif ran is None or isinstance(code, bool) or not isinstance(code, int) or code == -128:
        exit_code = None  # never ran: Flux's returncode (1, or -128) is made up
    else:  # a negative code: the job shell died of that signal
        exit_code = (128 - code if code < 0 else code) or None  # never 0 for a failure
    note = _text(exception, "note")
    reason = None if status is JobStatus.DONE or kind is None else kind
    reason = f"{reason}: {note}" if reason and note else reason
    finished = _moment(record.get("t_cleanup")) or _moment(record.get("t_inactive"))
    return Observation(status, exit_code, host, None, submitted, ran, finished, reason)


def _jobs(stdout: str) -> Iterator[tuple[int, Mapping[str, Any], Observation | None]]:
    """(number, job, observation) of each job in ``{"jobs": [...]}`` or in the one job
    object printed when one id was asked; ClusterAPIError for anything else."""
    start = stdout.find("{")
    try:
        data = json.JSONDecoder().raw_decode(stdout[start:])[0] if start >= 0 else None
    except (ValueError, RecursionError) as exc:
        raise ClusterAPIError(f"flux jobs printed invalid JSON ({exc}): {stdout[:200]!r}") from None
    if isinstance(data, dict) and "id" in data:
        data = {"jobs": [data]}
    if not isinstance(data, dict) or not isinstance(data.get("jobs"), list):
        raise ClusterAPIError(f"flux jobs printed no job list: {stdout.strip()[:200]!r}")
    for record in data["jobs"]:
        number = record.get("id") if isinstance(record, dict) else None
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < 2**64:
            number = job_number(record.get("jobid")) if isinstance(record, dict) else None
        if number is not None:
            yield number, record, observation_of(record)


def parse_status(
    stdout: str,
    wanted: Collection[str],
    stderr: str = "",
    array_of: Mapping[str, str] | None = None,
) -> QueryResult:
    """``status_argv(wanted)``'s answer under the ids as written; an element (``array_of``:
    its id -> the array's) goes to ``elements[array][index from its name]``; stderr's
    ``JobID X unknown`` (purged) is ``not_found``. Odd jobs are logged and skipped."""
    array_of = array_of or {}
    by_number: dict[int, list[str]] = {}
    for job_id in wanted:  # ids that are no Flux id go under -1, which no job has
        by_number.setdefault(job_number(job_id) or -1, []).append(job_id)
    result = QueryResult(not_found=set(_UNKNOWN_ID.findall(stderr)) & set(wanted))
    if not stdout.strip() and result.not_found:
        return result
    for number, record, obs in _jobs(stdout):
        if obs is None or number not in by_number:
            if number in by_number:
                logger.warning("skipping a flux jobs record in state %r", record.get("state"))
            continue
        index = (parse_job_name(record.get("name")) or ("", "", None))[2]
        for job_id in by_number[number]:
            if job_id not in array_of:
                result.jobs[job_id] = obs
            elif index is None:
                logger.warning("skipping array element %s: no index in its name", job_id)
            else:
                result.elements.setdefault(array_of[job_id], {})[index] = obs
    return result


_CANCEL_ERROR = re.compile(r"^flux-cancel: ERROR: (\S+): (.+)$")
Answer = tuple[frozenset[str], frozenset[str]]


def cancel_argv(ids: Sequence[str]) -> list[str]:
    """``flux cancel ID...``; one unreadable id makes it cancel none, so each is checked."""
    for job_id in ids:
        if job_number(job_id) is None:
            raise ValueError(f"not a Flux job id: {job_id!r} ({JOB_ID_EXAMPLE})")
    return ["flux", "cancel", *ids]


def parse_cancel(stdout: str, stderr: str, returncode: int, ids: Sequence[str]) -> Answer:
    """(ids accepted, ids that had ended: inactive, or unknown as purged). flux cancel is
    silent, exit 0, when it cancelled all; else it names each one it did not
    (``flux-cancel: ERROR: ƒ…: job is inactive``). An error naming no job accepted none."""
    if returncode == 0:
        return frozenset(ids), frozenset()
    refused: dict[int | None, str] = {}
    for line in filter(None, map(str.strip, f"{stdout}\n{stderr}".splitlines())):
        match = _CANCEL_ERROR.match(line)
        if match is None or job_number(match.group(1)) is None:
            return frozenset(), frozenset()
        refused[job_number(match.group(1))] = match.group(2).strip()
    said = {i: refused.get(job_number(i)) for i in ids}
    ended = frozenset(i for i in ids if said[i] in ("job is inactive", "unknown job id"))
    return frozenset(i for i in ids if said[i] is None), ended


@dataclass(frozen=True)
class ListedJob:
    """One of our jobs in a listing: id as printed, name, token, array index or None."""

    job_id: str
    name: str
    token: str
    index: int | None
    observation: Observation


def _listed(stdout: str) -> list[ListedJob]:
    listed = []
    for number, record, obs in _jobs(stdout):
        parsed, job_id = parse_job_name(record.get("name")), _text(record, "jobid")
        if parsed and obs and job_number(job_id) == number:
            listed.append(ListedJob(job_id or "", *parsed, obs))
    return listed


def lookup_argv(flux_name: str, is_array: bool = False) -> list[str]:
    """Jobs named ``flux_name``, any state; for an array (``{flux_name}[i]``) all of them."""
    argv = ["flux", "jobs", "-a", "-c", "0", "--json"]
    return argv if is_array else [*argv, f"--name={flux_name}"]


def parse_lookup(stdout: str, flux_name: str) -> dict[int | None, str]:
    """Ids carrying this submission's token, by array index (None: a plain job), the
    newest when several do. Empty: Flux answered and has none. An unreadable answer
    raises ClusterAPIError, so a failed lookup never reads as "not submitted"."""
    ours = [job for job in _listed(stdout) if job.token == flux_name]
    return {j.index: j.job_id for j in sorted(ours, key=lambda j: job_number(j.job_id) or 0)}


def listing_argv(all_users: bool = False) -> list[str]:
    """The user's (``-A``: everyone's) pending and running jobs, for reconnect()."""
    return ["flux", "jobs", "--json", "-c", "0", *(["-A"] if all_users else [])]


def parse_listing(stdout: str, prefix: str) -> list[ListedJob]:
    """Our unfinished jobs whose names start with ``{prefix}-``."""
    listed = [job for job in _listed(stdout) if job.name.startswith(f"{prefix}-")]
    return [job for job in listed if not job.observation.status.is_terminal]
