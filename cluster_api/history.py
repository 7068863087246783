"""The history fallback: what a scheduler's job history (``bhist``, ``sacct``) says about
jobs the status query could not tell the whole end of, merged in one way for every
scheduler.

Keys are (tracked job id, element index or None), as `Scheduler.parse_history` gives them.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping

from .models import JobRecord, JobStatus
from .scheduler import Key
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


def lacks_exit_code(obs: Observation) -> bool:
    """An end the status answer gave without its exit code: the history may know it."""
    return obs.status is JobStatus.FAILED and obs.exit_code is None


def needs_history(record: JobRecord, result: QueryResult) -> bool:
    """Whether the status answer left this job's end (or an element's) untold: the
    scheduler no longer knows it, it ended without an exit code, or some unfinished
    elements of a listed array are missing from the answer."""
    job_id = record.job_id
    if job_id in result.not_found:
        return True
    elements = result.elements.get(job_id)
    if elements is None:
        obs = result.jobs.get(job_id)
        return obs is not None and lacks_exit_code(obs)
    if any(lacks_exit_code(obs) for obs in elements.values()):
        return True
    return any(
        index not in elements and not element.is_terminal
        for index, element in record.array_elements.items()
    )


def untold(active: Mapping[str, JobRecord], result: QueryResult) -> list[str]:
    """The ids of active jobs the status answer may have left untold (``needs_history``
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
