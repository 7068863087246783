"""How LSF's answers read: ``bjobs -json`` (every value a string, ``ERROR`` records for
unknown ids, times with or without a year), ``bhist -l`` and ``bkill``'s per-job lines.

Pure parsing, tested with recorded text. ``query_result_from_records`` runs for every
job on every poll and is tuned for it (see its docstring).
"""

from __future__ import annotations

import re
from collections.abc import Container
from datetime import datetime
from operator import itemgetter
from typing import Any

from ..errors import ClusterAPIError
from ..history import Key
from ..jsontext import decode_json
from ..localtime import month_time_reader
from ..models import JobStatus
from ..scheduler import CommandAnswer
from ..status import Observation, QueryResult

# What bjobs -o prints for the status poll: a job's name only names it (for a listing).
BJOBS_FIELDS = (
    "jobid jobindex job_name stat exit_code exec_host max_mem "
    "submit_time start_time finish_time exit_reason"
)
_STATUS = dict.fromkeys(("PEND", "PROV", "WAIT", "PSUSP"), JobStatus.PENDING)
_STATUS |= dict.fromkeys(("RUN", "USUSP", "SSUSP"), JobStatus.RUNNING)
_STATUS |= {"DONE": JobStatus.DONE, "EXIT": JobStatus.FAILED, "ZOMBI": JobStatus.KILLED}
_STATUS["UNKWN"] = JobStatus.UNKNOWN  # lost contact with the host: not an end
# EXIT reasons of a job that was killed, not one that failed: by its owner or an admin, or
# by LSF as an orphan whose dependency can never be met (the end of any failed dependant).
_KILL_REASON = re.compile("TERM_(?:OWNER|ADMIN|FORCE_OWNER|FORCE_ADMIN|ORPHAN_SYSTEM)")


# -- status ------------------------------------------------------------------------------
def parse_bjobs_json(text: str) -> list[dict[str, Any]]:
    """The records of a ``bjobs -json`` answer; ClusterAPIError if it is not one.

    Text before the JSON (site banners, warnings) is skipped.
    """
    start = text.find("{")
    if start < 0:
        raise ClusterAPIError(f"bjobs printed no JSON: {text.strip()[:200]!r}")
    data = decode_json(text[start:], "bjobs")
    records = data.get("RECORDS") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise ClusterAPIError(f"bjobs JSON has no RECORDS list: {text.strip()[:200]!r}")
    if set(map(type, records)) <= {dict}:  # the usual answer, checked at C speed
        return records
    return [r for r in records if isinstance(r, dict)]


_EMPTY = frozenset({"", "-"})


def field_text(record: dict[str, Any], key: str) -> str | None:
    """A bjobs value as text, or None when it is empty (``""``/``"-"``)."""
    value = str(record.get(key) or "").strip()
    return None if value in _EMPTY else value


def _exit_code(value: str | None, status: JobStatus) -> int | None:
    if value and value != "-":
        try:
            return int(value)
        except ValueError:
            return None
    return 0 if status is JobStatus.DONE else None


_PENDING, _DONE = JobStatus.PENDING, JobStatus.DONE
_FAILED, _KILLED = JobStatus.FAILED, JobStatus.KILLED


# The fields a poll reads, in the order query_result_from_records unpacks them.
_FIELDS = tuple(f.upper() for f in BJOBS_FIELDS.split() if f != "job_name")
_all_fields = itemgetter(*_FIELDS)
_NOT_FOUND: Any = object()  # stands in for STAT in an ERROR record


def _record_fields(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each record's ``_FIELDS`` (None where missing; STAT ``_NOT_FOUND`` in ERROR records)."""
    try:
        return list(map(_all_fields, records))  # the usual answer: every field everywhere
    except KeyError:
        pass
    rows = []
    for record in records:
        fields = tuple(map(record.get, _FIELDS))
        if "ERROR" in record:
            fields = (fields[0], None, _NOT_FOUND, *fields[3:])
        rows.append(fields)
    return rows


def query_result_from_records(
    records: list[dict[str, Any]], wanted: Container[str] | None = None
) -> QueryResult:
    """Sort bjobs records into plain jobs, array elements and unknown ids, keeping only
    the ``wanted`` job ids when given (a by-name query also returns jobs we don't track).

    This runs for every job on every poll, so it is one straight loop with no helper
    calls per record. bjobs values are strings; anything else counts as empty. Thousands
    of jobs share each distinct time, so each is parsed once per answer (``times``).
    """
    result = QueryResult()
    jobs, elements = result.jobs, result.elements
    read_time = month_time_reader()
    times: dict[Any, datetime | None] = {None: None, "": None, "-": None}
    for job_id, index, stat, code, host, mem, submit, start, finish, reason in _record_fields(
        records
    ):
        if job_id.__class__ is not str or not job_id:
            continue
        if "[" in job_id:
            job_id = job_id.split("[", 1)[0]
        if wanted is not None and job_id not in wanted:
            continue
        status = _STATUS.get(stat) if stat.__class__ is str else None
        if status is None:
            if stat is _NOT_FOUND:
                result.not_found.add(job_id)
            continue
        if host.__class__ is not str or host in _EMPTY:
            host = None
        if mem.__class__ is not str or mem in _EMPTY:
            mem = None
        try:
            submit_time = times[submit]
        except KeyError:
            submit_time = times[submit] = read_time(submit)
        except TypeError:  # a list or an object, not a time
            submit_time = None
        if status is _PENDING:  # its START_TIME and FINISH_TIME are estimates
            obs = Observation(status, None, host, mem, submit_time)
        else:
            try:
                start_time = times[start]
            except KeyError:
                start_time = times[start] = read_time(start)
            except TypeError:  # a list or an object, not a time
                start_time = None
            if status is not _DONE and status is not _FAILED and status is not _KILLED:
                obs = Observation(status, None, host, mem, submit_time, start_time)
            else:
                if reason.__class__ is not str or reason in _EMPTY:
                    reason = None
                try:
                    finish_time = times[finish]
                except KeyError:
                    finish_time = times[finish] = read_time(finish)
                except TypeError:  # a list or an object, not a time
                    finish_time = None
                if status is _FAILED and reason and _KILL_REASON.search(reason):
                    status = _KILLED
                exit_code = _exit_code(code if code.__class__ is str else None, status)
                obs = Observation(
                    status, exit_code, host, mem, submit_time, start_time, finish_time, reason
                )
        if index is None or index == "0" or index == "":
            jobs[job_id] = obs
            continue
        if index.__class__ is str and not index.isascii():  # int() reads "٣" as 3
            continue
        try:
            element = int(index)
        except (TypeError, ValueError, OverflowError):  # OverflowError: a JSON Infinity
            continue
        if element == 0:
            jobs[job_id] = obs
        elif element > 0:
            elements.setdefault(job_id, {})[element] = obs
    return result


def parse_bhist_long(text: str) -> dict[Key, Observation]:
    """Final states from ``bhist -l``, by (job id, element index or None); jobs that have
    not ended are left out. bhist wraps long lines with indented continuations."""
    joined = re.sub(r"\n {10,}", "", text)
    finals: dict[Key, Observation] = {}
    for block in re.split(r"(?m)^(?=Job <)", joined):
        head = re.match(r"Job <(\d+)(?:\[(\d+)\])?>", block)
        if head is None:
            continue
        exited = re.search(r"Exited with exit code (\d+)", block)
        reason_match = re.search(r"\b(TERM_[A-Z_]+)", block)
        reason = reason_match.group(1) if reason_match else None
        if "Done successfully" in block:
            obs = Observation(JobStatus.DONE, exit_code=0)
        elif exited or re.search(r"\bExited\b", block):
            killed = reason is not None and _KILL_REASON.fullmatch(reason) is not None
            obs = Observation(
                JobStatus.KILLED if killed else JobStatus.FAILED,
                exit_code=int(exited.group(1)) if exited else None,
                reason=reason,
            )
        else:
            continue
        job_id, index = head.groups()
        finals[(job_id, int(index) if index else None)] = obs
    return finals


# bkill answers each job on a line of its own: stdout for a kill it accepted, stderr
# (exit 255) for one it refused ("Job <7>: Job has already finished").
_BKILL_ACCEPTED = re.compile(r"Job <([^<>\s]+)> is being (?:terminated|signaled)")
_BKILL_ANSWERED = re.compile(r"Job <([^<>\s]+)>(?: is being|:)")


def accepted_by_bkill(answer: CommandAnswer) -> set[str]:
    """The jobs a bkill accepted, by the ids it names. An answer naming no job at all
    (a bare ``bkill`` stand-in, or an error about bkill itself) accepted every job it was
    given if it succeeded, and none if it failed."""
    text = f"{answer.stdout}\n{answer.stderr}"
    accepted = set(_BKILL_ACCEPTED.findall(text))
    if accepted or _BKILL_ANSWERED.search(text):
        return accepted
    return set() if answer.failed else set(answer.ids)
