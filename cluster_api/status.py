"""The status rule, once: how what a scheduler said about a job changes its record.

Schedulers only translate their answers into `Observation`s (a `QueryResult` per status
query); everything here decides what those observations do to `JobRecord`s and their
array elements: a status only moves forward, details fill in, an array's parent follows
its elements, and an exit file a job script left settles a job the scheduler forgot.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone

from .files import ACTIVE_FILES
from .models import TERMINAL_STATUSES, ArrayElement, JobRecord, JobStatus, can_advance
from .script import exit_file_path

logger = logging.getLogger("cluster_api")

#: Every (old, new) status pair ``can_advance`` allows, for the hot loop.
ALLOWED_MOVES = frozenset(
    (old, new) for old in JobStatus for new in JobStatus if can_advance(old, new)
)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector while one answer is parsed and applied.

    A poll builds tens of thousands of short-lived containers at once; each few hundred
    would start a collection that walks every tracked job again (a quarter of a 100k-job
    poll). The objects made here form no cycles, so nothing is lost by collecting once
    afterwards. A program that turned the collector off keeps it off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


@dataclass(slots=True)
class Observation:
    """What one status query said about one job or array element.

    Its status is the scheduler's word: KILLED only when the scheduler said the job was
    killed (an exit reason such as ``TERM_OWNER``, a ``CANCELLED`` state, the signal a
    local job died of), never because we asked for a cancel (see
    ``Executor._end_of_accepted_kill``)."""

    status: JobStatus
    exit_code: int | None = None
    exec_host: str | None = None
    max_mem: str | None = None
    submit_time: datetime | None = None
    start_time: datetime | None = None
    finish_time: datetime | None = None
    reason: str | None = None


@dataclass
class QueryResult:
    """The answer to one status query: plain jobs, array elements, and ids the scheduler
    said it does not know. Tracked jobs in none of these were simply not mentioned."""

    jobs: dict[str, Observation] = field(default_factory=dict)
    elements: dict[str, dict[int, Observation]] = field(default_factory=dict)
    not_found: set[str] = field(default_factory=set)
    # Jobs the scheduler still holds that can never run (a dependency that can never be
    # met): the engine cancels them.
    doomed: set[str] = field(default_factory=set)

    def seen(self, job_id: str) -> bool:
        return job_id in self.jobs or job_id in self.elements

    def add_seen(self, record: JobRecord) -> None:
        """Report ``record`` as seen, as it already stands (an executor that updates its
        records itself, like the local one): an array through its elements."""
        if record.array_elements:
            self.elements[record.job_id] = {
                index: Observation(element.status)
                for index, element in record.array_elements.items()
            }
        else:
            self.jobs[record.job_id] = Observation(record.status)


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def left_an_exit_status(record: JobRecord) -> bool:
    """Whether the record's script ran far enough to record how it ended."""
    if record.script_path is None:
        return False
    if record.is_array:
        return any(
            read_exit_file(exit_file_path(record.script_path, index)) is not None
            for index in record.array_elements
        )
    return read_exit_file(exit_file_path(record.script_path)) is not None


def read_exit_file(path: str) -> int | None:
    """The exit status a job script recorded, or None if there is none (yet); read from
    the working executor's files (`.files.ACTIVE_FILES`)."""
    text = ACTIVE_FILES.get().read_text(path)
    if text is None:
        return None
    try:
        return int(text.strip())
    except ValueError:
        return None


def exit_files_say_success(record: JobRecord) -> bool:
    """True when the exit files of every unfinished part of this job say 0 (nothing
    left for a job history to tell)."""
    if record.script_path is None:
        return False
    if not record.array_elements:
        return read_exit_file(exit_file_path(record.script_path)) == 0
    return all(
        read_exit_file(exit_file_path(record.script_path, index)) == 0
        for index, element in record.array_elements.items()
        if not element.status.is_terminal
    )


def is_number(text: str) -> bool:
    """ASCII digits only: ``"²".isdigit()`` is True, but ``int("²")`` raises."""
    return text.isascii() and text.isdigit()


def job_id_order(job_id: str) -> tuple[int, str]:
    """Sort key putting numeric job ids in numeric order, the others first."""
    return (int(job_id), "") if is_number(job_id) else (0, job_id)


def is_array_job(record: JobRecord) -> bool:
    return record.is_array or bool(record.array_elements)


def skip_whole_job_record(job_id: str) -> None:
    logger.warning(
        "ignoring a record without an element index for array job %s: "
        "an array's status comes from its elements",
        job_id,
    )


def element_of(record: JobRecord, index: int) -> ArrayElement | None:
    """The array element a report about ``index`` is for, created if the array does not
    hold it yet; None (logged) for an index outside the submitted range, which must not
    count toward the array's completion."""
    element = record.array_elements.get(index)
    if element is not None:
        return element
    bounds = record.metadata.get("array_range")
    if index < 0 or (bounds and not int(bounds[0]) <= index <= int(bounds[1])):
        logger.warning(
            "ignoring a report of element %d of job %s: outside its range %s",
            index,
            record.job_id,
            bounds,
        )
        return None
    element = record.array_elements[index] = ArrayElement(index=index)
    return element


def update_record(target: JobRecord | ArrayElement, obs: Observation) -> bool:
    """Apply an observation to a job or an array element; return whether its status
    changed. A status only moves forward, so a stale answer changes nothing.

    This is the one place a record's status changes (``JobRecord.advance`` comes here
    too). It runs for every job on every poll, so the details are copied inline and
    ``can_advance`` is looked up in a table made from it once.
    """
    new, old = obs.status, target.status
    if new is not old and (old, new) not in ALLOWED_MOVES:
        return False
    if obs.exit_code is not None:
        target.exit_code = obs.exit_code
    if obs.exec_host is not None:
        target.exec_host = obs.exec_host
    if obs.max_mem is not None:
        target.max_mem = obs.max_mem
    if obs.submit_time is not None and target.submit_time is None:
        target.submit_time = obs.submit_time  # ours, taken at submission, is exact
    if obs.start_time is not None:
        target.start_time = obs.start_time
    if obs.finish_time is not None:
        target.finish_time = obs.finish_time
    if new is old:
        return False
    target.status = new
    if new in TERMINAL_STATUSES and isinstance(target, JobRecord):
        target._terminal_since = time.monotonic()
        if new is not JobStatus.DONE and obs.reason:
            target.metadata["exit_reason"] = obs.reason
    return True


update_element = update_record  # the same rules; the name says what the call site holds


def roll_up_array(record: JobRecord) -> None:
    """Recompute an array parent from its elements (status, times, exit code)."""
    elements = record.array_elements.values()
    starts = [e.start_time for e in elements if e.start_time is not None]
    if starts:
        record.start_time = min(starts)
    hosts = {e.exec_host for e in elements if e.exec_host}
    if hosts and record.exec_host is None:
        record.exec_host = sorted(hosts)[0]
    status = record.compute_array_status()
    if status.is_terminal:
        finishes = [e.finish_time for e in elements if e.finish_time is not None]
        record.finish_time = max(finishes) if finishes else utcnow()
        failed = [
            e for e in sorted(elements, key=lambda e: e.index) if e.status is JobStatus.FAILED
        ]
        record.exit_code = (
            failed[0].exit_code if failed else (0 if status is JobStatus.DONE else None)
        )
    update_record(record, Observation(status))


def end_job(record: JobRecord, obs: Observation) -> None:
    """End whatever of a job has not ended with one observation (a kill the scheduler
    accepted, a dependency that failed): each unfinished element of an array, which is
    then rolled up, or the job itself."""
    if record.array_elements:
        for element in record.array_elements.values():
            if not element.is_terminal:
                update_element(element, obs)
        roll_up_array(record)
    elif not record.status.is_terminal:
        update_record(record, obs)


def apply_report(
    record: JobRecord,
    obs: Observation | None,
    elements: Mapping[int, Observation] | None = None,
) -> bool:
    """Apply what a query said about one job (and its array elements); return whether
    anything the journal keeps (its status, an element's status) changed."""
    changed = False
    if obs is not None:
        if elements or is_array_job(record):
            skip_whole_job_record(record.job_id)
        else:
            changed = update_record(record, obs)
    if elements:
        for index, reported in elements.items():
            element = element_of(record, index)
            if element is None:
                continue
            changed = update_element(element, reported) or changed
            if reported.reason and reported.status is JobStatus.FAILED:
                record.metadata.setdefault("exit_reason", reported.reason)
        roll_up_array(record)
    return changed
