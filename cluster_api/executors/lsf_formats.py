"""How LSF's answers read: ``bjobs -json`` (every value a string, ``ERROR`` records for
unknown ids, times with or without a year), ``bhist -l`` and ``bkill``'s per-job lines.

Pure parsing, tested with recorded text. ``query_result_from_records`` runs for every
job on every poll and is tuned for it (see its docstring).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Container
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any

try:
    import orjson
except ImportError:  # not installed (e.g. PyPy): the standard library decodes
    orjson = None  # type: ignore[assignment]

from ..errors import ClusterAPIError
from ..models import JobStatus
from ..scheduler import CommandAnswer
from ..status import Observation, QueryResult

_STATUS = {
    "PEND": JobStatus.PENDING,
    "PROV": JobStatus.PENDING,
    "WAIT": JobStatus.PENDING,
    "PSUSP": JobStatus.PENDING,
    "RUN": JobStatus.RUNNING,
    "USUSP": JobStatus.RUNNING,
    "SSUSP": JobStatus.RUNNING,
    "DONE": JobStatus.DONE,
    "EXIT": JobStatus.FAILED,
    "UNKWN": JobStatus.UNKNOWN,
    "ZOMBI": JobStatus.KILLED,
}
# EXIT reasons of a job that was killed, not one that failed: by its owner or an admin, or
# by LSF as an orphan whose dependency can never be met (the end of any failed dependant).
_KILL_REASONS = (
    "TERM_OWNER",
    "TERM_ADMIN",
    "TERM_FORCE_OWNER",
    "TERM_FORCE_ADMIN",
    "TERM_ORPHAN_SYSTEM",
)


# -- status ------------------------------------------------------------------------------
def parse_bjobs_json(text: str) -> list[dict[str, Any]]:
    """The records of a ``bjobs -json`` answer; ClusterAPIError if it is not one.

    Text before the JSON (site banners, warnings) is skipped.
    """
    start = text.find("{")
    if start < 0:
        raise ClusterAPIError(f"bjobs printed no JSON: {text.strip()[:200]!r}")
    data = _decode_json(text[start:])
    records = data.get("RECORDS") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise ClusterAPIError(f"bjobs JSON has no RECORDS list: {text.strip()[:200]!r}")
    if set(map(type, records)) <= {dict}:  # the usual answer, checked at C speed
        return records
    return [r for r in records if isinstance(r, dict)]


def _decode_json(text: str) -> Any:
    """The JSON value ``text`` starts with. orjson decodes a 10k-job answer in half the
    time of the standard library; anything orjson refuses (trailing text, NaN, huge
    numbers, lone surrogates) and platforms without it go through the standard library,
    which also words the error."""
    if orjson is not None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.JSONDecoder().raw_decode(text)[0]
    except (ValueError, RecursionError) as exc:
        raise ClusterAPIError(
            f"bjobs printed invalid JSON ({exc}): {text.strip()[:200]!r}"
        ) from None


def _text(record: dict[str, Any], key: str) -> str | None:
    """A bjobs value, or None when it is empty (``""``/``"-"``). Hot: called ~10x a job."""
    value = record.get(key)
    if not value:
        return None
    if value.__class__ is not str:
        value = str(value)
    if value[0] == " " or value[-1] == " ":
        value = value.strip()
    if not value or value == "-":
        return None
    return value


_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


# LSF times are local wall-clock times at minute or second precision. A poll meets
# thousands of distinct times but only a few distinct local hours, so each hour's start is
# converted once ("Nov 22 10 2026" -> epoch seconds) and the minutes and seconds added.
_TIME = re.compile(
    r"([A-Z][a-z]{2} +\d{1,2} +\d{1,2}):(\d{2})(?::(\d{2}))?(?: +(\d{4}))?(?: +[LEX])?"
)
_HOUR_STARTS: dict[str, float] = {}
_SIXTY = {f"{n:02d}": n for n in range(60)}  # "00".."59": a minute or a second
_ZONE: list[object] = [None]


def parse_lsf_time(value: str | None, now: datetime | None = None) -> datetime | None:
    """An LSF time (``Nov 22 10:31[:17] [2026] [L]``, local time) as an aware UTC datetime.

    Without a year (sites without ``LSB_DISPLAY_YEAR=Y``) the most recent such date not
    more than a day in the future is meant, which is right across New Year.
    """
    _forget_hours_if_the_zone_changed()
    return _parse_time(value, now)


def _forget_hours_if_the_zone_changed() -> None:
    zone = (time.timezone, time.altzone, time.tzname)
    if _ZONE[0] != zone:
        _HOUR_STARTS.clear()
        _ZONE[0] = zone


def _parse_time(value: str | None, now: datetime | None) -> datetime | None:
    """``parse_lsf_time`` for callers that checked the time zone already."""
    if not value or value.__class__ is not str:
        return None
    # LSF's usual shape, "Nov 22 10:31:17 2026", once a time of its hour has been read.
    if len(value) == 20 and value[9] == ":" and value[12] == ":":
        start = _HOUR_STARTS.get(value[:9] + value[15:])
        minute, second = _SIXTY.get(value[10:12]), _SIXTY.get(value[13:15])
        if start is not None and minute is not None and second is not None:
            return datetime.fromtimestamp(start + 60 * minute + second, timezone.utc)
    match = _TIME.fullmatch(value.strip())
    if match is None:
        return None
    day_hour, minute_text, second_text, year = match.groups()
    minute, second = _SIXTY.get(minute_text), _SIXTY.get(second_text or "00")
    if minute is None or second is None:
        return None
    seconds = 60 * minute + second
    try:
        if year is not None:
            return datetime.fromtimestamp(_hour_start(day_hour, year) + seconds, timezone.utc)
        now = now or datetime.now(timezone.utc)
        start = _hour_start(day_hour, str(now.year))
        moment = datetime.fromtimestamp(start + seconds, timezone.utc)
        if (moment - now).days >= 1:
            start = _hour_start(day_hour, str(now.year - 1))
            moment = datetime.fromtimestamp(start + seconds, timezone.utc)
        return moment
    except (KeyError, ValueError, OverflowError, OSError):
        return None


def _hour_start(day_hour: str, year: str) -> float:
    """Epoch seconds at the start of a local hour (``"Nov 22 10"`` of ``"2026"``)."""
    key = f"{day_hour} {year}"
    start = _HOUR_STARTS.get(key)
    if start is None:
        month, day, hour = day_hour.split()
        local = datetime(int(year), _MONTHS[month], int(day), int(hour))
        start = _HOUR_STARTS[key] = local.astimezone().timestamp()
    return start


_EMPTY = frozenset({"", "-"})
_UNSET: Any = object()


def _exit_code(value: str | None, status: JobStatus) -> int | None:
    if value and value != "-":
        try:
            return int(value)
        except ValueError:
            return None
    return 0 if status is JobStatus.DONE else None


_PENDING, _DONE, _FAILED, _KILLED = (
    JobStatus.PENDING,
    JobStatus.DONE,
    JobStatus.FAILED,
    JobStatus.KILLED,
)


# The fields a poll reads, in the order query_result_from_records unpacks them.
_FIELDS = (
    "JOBID",
    "JOBINDEX",
    "STAT",
    "EXIT_CODE",
    "EXEC_HOST",
    "MAX_MEM",
    "SUBMIT_TIME",
    "START_TIME",
    "FINISH_TIME",
    "EXIT_REASON",
)
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
    now = datetime.now(timezone.utc)
    times: dict[Any, datetime | None] = {None: None, "": None, "-": None}
    _forget_hours_if_the_zone_changed()
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
            submit_time = times[submit] = _parse_time(submit, now)
        except TypeError:  # a list or an object, not a time
            submit_time = None
        if status is _PENDING:  # its START_TIME and FINISH_TIME are estimates
            obs = Observation(status, None, host, mem, submit_time)
        else:
            try:
                start_time = times[start]
            except KeyError:
                start_time = times[start] = _parse_time(start, now)
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
                    finish_time = times[finish] = _parse_time(finish, now)
                except TypeError:  # a list or an object, not a time
                    finish_time = None
                if status is _FAILED and reason and any(k in reason for k in _KILL_REASONS):
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


def parse_bhist_long(text: str) -> dict[str, Observation]:
    """Final states from ``bhist -l`` (keys ``"123"`` or ``"123[4]"``); jobs that have not
    ended are left out. bhist wraps long lines with indented continuations."""
    joined = re.sub(r"\n {10,}", "", text)
    finals: dict[str, Observation] = {}
    for block in re.split(r"(?m)^(?=Job <)", joined):
        head = re.match(r"Job <(\d+(?:\[\d+\])?)>", block)
        if head is None:
            continue
        exited = re.search(r"Exited with exit code (\d+)", block)
        reason_match = re.search(r"\b(TERM_[A-Z_]+)", block)
        reason = reason_match.group(1) if reason_match else None
        if "Done successfully" in block:
            obs = Observation(JobStatus.DONE, exit_code=0)
        elif exited or re.search(r"\bExited\b", block):
            killed = reason is not None and reason in _KILL_REASONS
            obs = Observation(
                JobStatus.KILLED if killed else JobStatus.FAILED,
                exit_code=int(exited.group(1)) if exited else None,
                reason=reason,
            )
        else:
            continue
        finals[head.group(1)] = obs
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
