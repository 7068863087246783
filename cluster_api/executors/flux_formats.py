"""Flux's answers, read: f58 ids, the ``# flux:`` directive syntax, and the JSON of
``flux jobs --json``, ``flux submit``/``flux batch`` and ``flux cancel``, from flux-core
0.88.0's manuals, sources and recorded answers (``tests/data/flux/README.md``).

Inactive jobs stay listed by id until purged, so the status answer is the history too. An
element of an ``--cc`` array is a job of its own; its name carries its index
(``{token}[{cc}]``). Odd records are logged and skipped, never guessed at.
"""

from __future__ import annotations

import contextlib
import logging
import re
import shlex
from collections.abc import Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import reduce
from typing import Any

from ..errors import ClusterAPIError, SubmitError
from ..jsontext import decode_json
from ..models import JobStatus
from ..status import Observation, QueryResult
from ..table import DEPENDENCY_FAILED_END

logger = logging.getLogger("cluster_api")

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


_OUR_NAME = re.compile(r"^(?P<token>(?P<name>[ -~]+)\.[0-9]+)(?:\[(?P<index>[0-9]+)\])?$")


def parse_job_name(flux_name: object) -> tuple[str, str, int | None] | None:
    """(name, token, array index or None) of a job name we wrote; None for other names."""
    match = _OUR_NAME.match(flux_name) if isinstance(flux_name, str) else None
    if match is None:
        return None
    index = match.group("index")
    return match.group("name"), match.group("token"), None if index is None else int(index)


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
        # A dependency that can never be met: the job never ran, as the dependency rule ends it.
        status = DEPENDENCY_FAILED_END if kind == "dependency" else _RESULT[result]
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
    data = decode_json(stdout[start:], "flux jobs") if start >= 0 else None
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


def listed_jobs(stdout: str) -> list[ListedJob]:
    """Our jobs (by name) in a ``flux jobs --json`` answer."""
    listed = []
    for number, record, obs in _jobs(stdout):
        parsed, job_id = parse_job_name(record.get("name")), _text(record, "jobid")
        if parsed and obs and job_number(job_id) == number:
            listed.append(ListedJob(job_id or "", *parsed, obs))
    return listed


def parse_lookup(stdout: str, flux_name: str) -> dict[int | None, str]:
    """Ids carrying this submission's token, by array index (None: a plain job), the
    newest when several do. Empty: Flux answered and has none. An unreadable answer
    raises ClusterAPIError, so a failed lookup never reads as "not submitted"."""
    ours = [job for job in listed_jobs(stdout) if job.token == flux_name]
    return {j.index: j.job_id for j in sorted(ours, key=lambda j: job_number(j.job_id) or 0)}
