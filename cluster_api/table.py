"""The job table: every tracked record, and what the executor knows about each beyond it.

Besides the records themselves: how long status queries have not mentioned a job (the
unseen clock, for zombie detection), which jobs' cancels the scheduler accepted, whose
history was asked. One status answer is applied here (through the status rule of
:mod:`.status`), exit files settle jobs the scheduler forgot, and the dependency rule
decides what becomes of a job whose dependency did not succeed.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from .models import TERMINAL_STATUSES, JobRecord, JobStatus
from .packing import ARRAY_INDEX, PACKED_IN, element_observation, is_task
from .script import exit_file_path
from .status import (
    Observation,
    QueryResult,
    apply_report,
    end_job,
    is_array_job,
    read_exit_file,
    roll_up_array,
    skip_whole_job_record,
    update_element,
    update_record,
    utcnow,
)

logger = logging.getLogger("cluster_api")

#: How a job ends that can never run because a dependency did not succeed (its record's
#: ``metadata["dependency_failed"]`` lists the culprits).
DEPENDENCY_FAILED_END = JobStatus.KILLED


class JobTable:
    """The tracked jobs of one executor."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.records: dict[str, JobRecord] = {}
        self.clock = clock
        # Seconds good status answers have not mentioned a job (only unfinished jobs).
        self.unseen: dict[str, float] = {}
        # Jobs whose cancel the scheduler accepted -> the end that gave them (KILLED, or
        # DONE for done=True), kept until the scheduler reports that end in detail.
        self.kill_accepted: dict[str, JobStatus] = {}
        self.cancel_requested: set[str] = set()
        self.history_asked: set[str] = set()
        # Task records of submit_many left out of the last to_poll(): their arrays are
        # asked about instead, and settle_tasks() copies each element's state to its task.
        self.tasks_to_settle: list[JobRecord] = []
        self._last_ok: float | None = None
        self._last_failed = False

    def active(self) -> dict[str, JobRecord]:
        """Tracked records that are not terminal yet."""
        return {k: r for k, r in self.records.items() if r.status not in TERMINAL_STATUSES}

    def to_poll(self) -> dict[str, JobRecord]:
        """The jobs a status query asks about: the active ones, and those whose accepted
        cancel the scheduler has not told the end of yet. Task records of submit_many
        are not asked about (their arrays are): they wait in ``tasks_to_settle``."""
        wanted = self.active()
        for job_id in self.kill_accepted:
            record = self.records.get(job_id)
            if record is not None:
                wanted[job_id] = record
        tasks = [r for r in wanted.values() if is_task(r)]
        for task in tasks:
            del wanted[task.job_id]
        self.tasks_to_settle = tasks
        return wanted

    def settle_tasks(self) -> list[JobRecord]:
        """Give each task record waiting in ``tasks_to_settle`` the state of its element
        in its array's record, or the array's end when the array was ended as a whole
        (the status rule decides, as for any report; a task whose cancel was accepted
        keeps that end); return the tasks that changed."""
        changed = []
        for task in self.tasks_to_settle:
            array = self.records.get(task.metadata[PACKED_IN])
            elements = {} if array is None else array.array_elements
            element = elements.get(task.metadata[ARRAY_INDEX])
            if element is None:
                continue
            obs = element_observation(element)
            if array is not None and array.status.is_terminal and not obs.status.is_terminal:
                # the array was ended as a whole (a zombie): so was each unfinished task
                obs = Observation(array.status, finish_time=array.finish_time)
            self.end_of_accepted_kill(task.job_id, obs)
            mark = (task.status, task.exit_code, task.start_time, task.finish_time)
            update_record(task, obs)
            if obs.status.is_terminal:
                self.kill_accepted.pop(task.job_id, None)
            if (task.status, task.exit_code, task.start_time, task.finish_time) != mark:
                changed.append(task)
        self.tasks_to_settle = []
        return changed

    def remove(self, job_id: str) -> None:
        self.records.pop(job_id, None)
        self.unseen.pop(job_id, None)
        self.cancel_requested.discard(job_id)
        self.kill_accepted.pop(job_id, None)
        self.history_asked.discard(job_id)

    def unseen_for(self, seconds: float) -> list[JobRecord]:
        """Unfinished jobs that good status answers have not mentioned for at least
        ``seconds`` (from the unseen table alone, not a scan of every job)."""
        found = []
        for job_id, unseen in self.unseen.items():
            record = self.records.get(job_id)
            if unseen >= seconds and record is not None and not record.status.is_terminal:
                found.append(record)
        return found

    def query_failed(self) -> None:
        self._last_failed = True

    def query_answered(self, asked_at: float) -> float:
        """Note a good answer to a query sent at ``asked_at``; return the seconds that
        count as unseen for the jobs it does not mention. Only time between two good
        answers counts: an outage is not evidence."""
        interval = 0.0
        if self._last_ok is not None and not self._last_failed:
            interval = asked_at - self._last_ok
        self._last_ok, self._last_failed = asked_at, False
        return interval

    def apply(
        self, active: dict[str, JobRecord], result: QueryResult, interval: float
    ) -> tuple[list[JobRecord], list[JobRecord]]:
        """Apply one answer to the active jobs: the records that changed, and those the
        answer did not mention (their unseen time grows by ``interval``)."""
        jobs, elements, unseen = result.jobs, result.elements, self.unseen
        for job_id in self.kill_accepted:
            if job_id in jobs or job_id in elements:
                self.end_of_accepted_kill(job_id, jobs.get(job_id), elements.get(job_id))
        for job_id in [j for j in unseen if j in jobs or j in elements]:
            del unseen[job_id]  # seen again: the clock restarts
        changed: list[JobRecord] = []
        missing: list[JobRecord] = []
        for job_id, record in active.items():
            obs = jobs.get(job_id)
            reported = elements.get(job_id) if elements else None
            if reported is None:  # a plain job (the usual case), or one not mentioned
                if obs is not None and is_array_job(record):
                    skip_whole_job_record(job_id)
                    obs = None
                if obs is None:
                    unseen[job_id] = unseen.get(job_id, 0.0) + interval
                    missing.append(record)
                elif update_record(record, obs) or job_id in self.kill_accepted:
                    changed.append(record)
                continue
            if apply_report(record, obs, reported):
                changed.append(record)
            if len(reported) < len(record.array_elements) and (
                record.status not in TERMINAL_STATUSES
            ):
                done = record.completed_elements
                self.resolve_from_exit_files(record, reported)
                if record.completed_elements != done:
                    changed.append(record)
        return changed, missing

    def end_of_accepted_kill(
        self,
        job_id: str,
        obs: Observation | None,
        elements: Mapping[int, Observation] | None = None,
    ) -> None:
        """The one place a job's end comes from our cancel rather than from the words of
        a status answer: once the scheduler accepted the cancel (``bkill``'s per-job
        answer, a local kill), the job was marked with that end, and whatever end the
        scheduler reports for it afterwards only brings the details (exit code, finish
        time). Everywhere else an Observation says KILLED only when the scheduler said
        so (an exit reason such as ``TERM_OWNER``, a ``CANCELLED`` state, the signal a
        local job died of); a cancel the scheduler did not accept relabels nothing."""
        end = self.kill_accepted.get(job_id)
        if end is None:
            return
        if obs is not None and obs.status.is_terminal:
            obs.status = end
        for element in (elements or {}).values():
            if element.status.is_terminal:
                element.status = end

    def forget_reported_kills(self, result: QueryResult, missing: list[JobRecord]) -> None:
        """Stop asking about killed jobs once the scheduler told their end, or forgot them."""
        if not self.kill_accepted:
            return
        gone = {r.job_id for r in missing}
        for job_id in list(self.kill_accepted):
            obs = result.jobs.get(job_id)
            elements = result.elements.get(job_id)
            ended = (obs is not None and obs.status.is_terminal) or (
                elements is not None and all(e.status.is_terminal for e in elements.values())
            )
            if ended or job_id in gone or job_id not in self.records:
                del self.kill_accepted[job_id]
                self.unseen.pop(job_id, None)

    def resolve_from_exit_files(self, record: JobRecord, reported: Mapping[int, Any]) -> None:
        """Finish a job (or the elements the scheduler no longer reports) from the exit
        files their scripts left; ``reported`` holds the element indices just reported."""
        if record.script_path is None:
            return
        if record.is_array:
            for index, element in record.array_elements.items():
                if element.status.is_terminal or index in reported:
                    continue
                code = read_exit_file(exit_file_path(record.script_path, index))
                if code is not None:
                    update_element(element, self.observation_from_exit_code(code, record))
            roll_up_array(record)
        else:
            code = read_exit_file(exit_file_path(record.script_path))
            if code is not None:
                update_record(record, self.observation_from_exit_code(code, record))
        if record.status.is_terminal:
            record.metadata["resolved_from"] = "exit_file"
            self.unseen.pop(record.job_id, None)
            logger.info(
                "job %s is no longer listed; its exit file says %s",
                record.job_id,
                record.status.value,
            )

    def observation_from_exit_code(self, code: int, record: JobRecord) -> Observation:
        """What an exit file says: the code alone, so DONE or FAILED (who killed a job
        is the scheduler's to say: its history is asked first)."""
        obs = Observation(status=JobStatus.DONE if code == 0 else JobStatus.FAILED, exit_code=code)
        self.end_of_accepted_kill(record.job_id, obs)
        return obs

    def mark_killed(self, job_ids: Iterable[str], end: JobStatus) -> list[JobRecord]:
        """End the tracked, unfinished jobs among those whose cancel the scheduler
        accepted with ``end`` (KILLED, or DONE where the scheduler records ``done=True``
        as such); an array's unfinished elements end so. Returns the records ended."""
        obs = Observation(end, finish_time=utcnow())
        marked = []
        for job_id in job_ids:
            record = self.records.get(job_id)
            if record is None or record.status.is_terminal:
                continue
            self.kill_accepted[job_id] = end
            end_job(record, obs)
            marked.append(record)
        return marked

    def end_failed_dependants(self) -> tuple[list[JobRecord], list[str]]:
        """The dependency rule: a job waiting for a job that ended without succeeding can
        never run, so it ends ``DEPENDENCY_FAILED_END`` with the culprits' ids in
        ``metadata["dependency_failed"]``. A dependant the scheduler already ended for
        that reason without running it (LSF's orphan termination, Slurm's invalid
        dependency: both translated to the same end) gets the metadata. Returns the
        records changed and the ids of those still unfinished (for the scheduler to
        cancel)."""
        changed, doomed = [], []
        for record in self.records.values():
            if not record.depends_on or "dependency_failed" in record.metadata:
                continue
            if record.status.is_terminal and record.has_started:
                continue
            culprits = [
                dep_id
                for dep_id in record.depends_on
                if (dep := self.records.get(dep_id)) is not None
                and dep.status.is_terminal
                and dep.status is not JobStatus.DONE
            ]
            if culprits:
                if not record.status.is_terminal:
                    doomed.append(record.job_id)
                record_dependency_failure(record, culprits)
                changed.append(record)
        return changed, doomed


def record_dependency_failure(record: JobRecord, culprits: list[str]) -> None:
    """End ``record`` (if it has not ended) as a job that never ran because ``culprits``
    did not succeed: the one place that says how such a job ends."""
    record.metadata["dependency_failed"] = list(culprits)
    end_job(record, Observation(DEPENDENCY_FAILED_END, finish_time=utcnow()))
    logger.info(
        "job %s cannot run: dependency %s did not succeed", record.job_id, ", ".join(culprits)
    )
