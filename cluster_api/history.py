"""The history fallback: which ends of jobs the status query could not tell a
scheduler's job history (``bhist``, ``sacct``) is asked for, and how what it says is
merged, in one way for every scheduler.

Keys are (tracked job id, element index or None), as `Scheduler.parse_history` gives them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from .models import JobRecord, JobStatus
from .script import exit_file_path
from .status import (
    Observation,
    QueryResult,
    element_of,
    is_array_job,
    job_id_order,
    read_exit_file,
    roll_up_array,
    update_element,
    update_record,
)

logger = logging.getLogger("cluster_api")

_DETAILS = ("exit_code", "exec_host", "max_mem", "start_time", "finish_time")

#: Where a history answer puts what it knows: (tracked job id, element index or None).
Key = tuple[str, int | None]


@dataclass(frozen=True)
class HistoryQuery:
    """The ends a status answer left untold, for a job history to tell. The engine decides
    which they are, the same way for every scheduler (`history_queries`); a scheduler
    only translates them into its history's command and reads its answer back.

    ``keys`` are the ends wanted, as `Scheduler.parse_history` returns them: ``(job id,
    None)`` for a plain job, ``(job id, index)`` for an array element. ``lost`` are the
    jobs among them the status answer no longer lists (a history that lists an array
    whole by its id may be asked for it). ``since`` is their oldest submission, None when
    one is unknown: where a history is asked by time window (too many ids for one
    command line), the window starts there.
    """

    keys: list[Key]
    lost: frozenset[str] = frozenset()
    since: datetime | None = None

    @property
    def job_ids(self) -> list[str]:
        """The tracked jobs asked about, each once, in the order of ``keys``."""
        return list(dict.fromkeys(job_id for job_id, _ in self.keys))


def lacks_exit_code(obs: Observation) -> bool:
    """An end the status answer gave without its exit code: the history may know it."""
    return obs.status is JobStatus.FAILED and obs.exit_code is None


def untold_ends(record: JobRecord, result: QueryResult) -> list[Key]:
    """The ends of one job the status answer left for the history to tell. A plain job's
    own, when the answer no longer lists it or gave its end without an exit code. An
    array's element by element: when the answer no longer lists the array, each
    unfinished element; otherwise those it gave without an exit code and the unfinished
    ones it left out."""
    job_id = record.job_id
    listed = result.elements.get(job_id)
    if listed is None:
        if job_id not in result.not_found:
            obs = result.jobs.get(job_id)
            return [(job_id, None)] if obs is not None and lacks_exit_code(obs) else []
        if not is_array_job(record):
            return [(job_id, None)]
        listed = {}
    keys: list[Key] = [(job_id, index) for index, obs in listed.items() if lacks_exit_code(obs)]
    keys += (
        (job_id, index)
        for index, element in record.array_elements.items()
        if index not in listed and not element.is_terminal
    )
    return keys


def history_queries(
    records: Sequence[JobRecord], result: QueryResult, per_call: int | None
) -> list[HistoryQuery]:
    """What to ask the history about these jobs (their `untold_ends`), at most
    ``per_call`` jobs a query (`Scheduler.history_ids_per_call`; None: all in one)."""
    asked = [(record, keys) for record in records if (keys := untold_ends(record, result))]
    size = per_call or len(asked) or 1
    return [_history_query(asked[i : i + size], result) for i in range(0, len(asked), size)]


def _history_query(
    asked: Sequence[tuple[JobRecord, list[Key]]], result: QueryResult
) -> HistoryQuery:
    submitted = [r.submit_time for r, _ in asked if r.submit_time is not None]
    return HistoryQuery(
        keys=[key for _, keys in asked for key in keys],
        lost=frozenset(r.job_id for r, _ in asked if r.job_id in result.not_found),
        since=min(submitted) if len(submitted) == len(asked) else None,
    )


def untold(active: Mapping[str, JobRecord], result: QueryResult) -> list[str]:
    """The ids of active jobs the status answer may have left untold (`untold_ends`
    decides), found from the answer itself: this runs every poll, and a scan of every
    job would cost as much as applying the answer."""
    failed = JobStatus.FAILED
    ids = {job_id for job_id, obs in result.jobs.items() if obs.status is failed}
    ids.update(result.not_found, result.elements)
    return sorted((i for i in ids if i in active), key=job_id_order)


def fill(obs: Observation, final: Observation) -> None:
    """Complete a status observation of an ended job with what the history knows."""
    for name in _DETAILS:
        if getattr(obs, name) is None:
            setattr(obs, name, getattr(final, name))


def apply_elements(record: JobRecord, elements: Mapping[int, Observation], source: str) -> None:
    """Apply the history's ends of some elements straight to the record."""
    for index, obs in elements.items():
        element = element_of(record, index)
        if element is None:
            continue
        if not element.is_terminal:
            update_element(element, obs)
        if obs.reason and obs.status is JobStatus.FAILED:
            record.metadata.setdefault("exit_reason", obs.reason)
    roll_up_array(record)
    if record.status.is_terminal:
        record.metadata["resolved_from"] = source


def merge_history(
    active: Mapping[str, JobRecord],
    result: QueryResult,
    finals: Mapping[Key, Observation],
    source: str,
) -> list[JobRecord]:
    """Put the history's answers into the status result; return the records changed
    directly (see below), for the journal.

    A job the answer still lists gets the details it lacks. A plain job it dropped is
    reported when the history knows its end. A dropped array is reported when the
    history accounts for every unfinished element; otherwise what it knows is applied
    to the record directly and the array stays unseen, so the exit files, and in the
    end the zombie timeout, settle the elements nobody can name.
    """
    found: dict[str, dict[int, Observation]] = {}
    for (job_id, index), final in finals.items():
        if job_id not in active or not final.status.is_terminal:
            continue
        if index is not None:
            found.setdefault(job_id, {})[index] = final
            continue
        seen = result.jobs.get(job_id)
        if seen is not None and seen.status.is_terminal:
            fill(seen, final)
        elif seen is None:
            result.jobs[job_id] = final
            result.not_found.discard(job_id)
            active[job_id].metadata["resolved_from"] = source
    changed = []
    for job_id, elements in found.items():
        listed = result.elements.get(job_id)
        if listed is not None:
            for index, final in elements.items():
                if index not in listed:
                    listed[index] = final
                elif listed[index].status.is_terminal:
                    fill(listed[index], final)
            continue
        record = active[job_id]
        unfinished = {i for i, e in record.array_elements.items() if not e.is_terminal}
        if unfinished <= set(elements):
            result.elements[job_id] = elements
            result.not_found.discard(job_id)
            record.metadata["resolved_from"] = source
        else:
            apply_elements(record, elements, source)
            changed.append(record)
    return changed


def apply_history(record: JobRecord, finals: Mapping[Key, Observation], source: str) -> None:
    """Apply the history's answer straight to a lost job's record."""
    if is_array_job(record):
        elements = {
            index: obs
            for (job_id, index), obs in finals.items()
            if job_id == record.job_id and index is not None and obs.status.is_terminal
        }
        if elements:
            apply_elements(record, elements, source)
    else:
        final = finals.get((record.job_id, None))
        if final is not None and final.status.is_terminal:
            update_record(record, final)
            record.metadata["resolved_from"] = source
    if record.status.is_terminal:
        logger.info("job %s ended %s according to %s", record.job_id, record.status.value, source)


def exit_codes_from_files(
    active: Mapping[str, JobRecord], result: QueryResult, ids: Iterable[str]
) -> None:
    """Ends the scheduler and its history left without an exit code get the one the
    job's script recorded, if any (never 0 for a job the scheduler says failed); ``ids``
    are the jobs ``untold`` found."""
    for job_id in ids:
        record = active[job_id]
        if record.script_path is None:
            continue
        plain = result.jobs.get(job_id)
        if plain is not None and lacks_exit_code(plain):
            plain.exit_code = read_exit_file(exit_file_path(record.script_path)) or None
        for index, obs in result.elements.get(job_id, {}).items():
            if lacks_exit_code(obs):
                obs.exit_code = read_exit_file(exit_file_path(record.script_path, index)) or None
