"""The executor base class: one place for everything schedulers have in common.

A concrete executor supplies four things: its directives (``build_header``), how to hand
a written script to the scheduler (``_submit_script``), one status query for many jobs
(``_query``) and how to cancel (``_cancel_ids``). Rendering, bookkeeping, status rules
and the exit-code fallback live here, so every scheduler behaves the same way.
Every scheduler command runs through `Executor._call`, the seam tests patch.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import gc
import itertools
import logging
import os
import re
import shlex
import signal
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any, ClassVar

from .config import ClusterConfig
from .errors import ClusterAPIError, CommandFailedError, CommandTimeoutError, SubmitError
from .journal import Journal, JournalError
from .models import (
    STATUS_RANK,
    TERMINAL_STATUSES,
    ArrayElement,
    JobRecord,
    JobStatus,
    ResourceSpec,
    check_single_line,
    check_utf8,
)
from .options import NoOptions
from .script import (
    environment_lines,
    exit_file_path,
    exit_record_lines,
    render_script,
    safe_job_name,
    validate_env,
    write_script,
)

logger = logging.getLogger("cluster_api")

# Waits before the second, third, ... lookup of a submission whose lookup failed.
LOOKUP_RETRY_DELAYS = (2.0, 5.0, 15.0)


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

    def seen(self, job_id: str) -> bool:
        return job_id in self.jobs or job_id in self.elements


@dataclass
class CommandAnswer:
    """What one scheduler command given ``ids`` printed, and whether it exited non-zero."""

    ids: list[str]
    stdout: str
    stderr: str = ""
    failed: bool = False


@dataclass
class JobSpec:
    """Everything needed to render and submit one job, after validation and defaults."""

    command: str
    name: str  # the scheduler-side name, prefix applied and sanitized
    resources: ResourceSpec  # config defaults already applied
    prologue: list[str]
    epilogue: list[str]
    env: dict[str, str]
    metadata: dict[str, Any]
    inherit_env: bool
    login_shell: bool
    depends_on: list[str]
    array_range: tuple[int, int] | None = None
    max_concurrent: int | None = None
    # Unique per script folder (the script's file name); lets a submission whose answer
    # was lost be found again on the scheduler.
    token: str = ""


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


def terminate_process_group(pid: int, sig: int = signal.SIGTERM) -> None:
    """Signal a whole process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class Executor(ABC):
    """Submits, tracks, polls and cancels jobs on one kind of scheduler."""

    name: ClassVar[str] = ""
    #: How this scheduler's directive lines start (``#BSUB``); empty for none.
    directive_prefix: ClassVar[str] = ""
    #: What this scheduler's job ids look like (None: anything), and an example of one.
    job_id_pattern: ClassVar[re.Pattern[str] | None] = None
    job_id_example: ClassVar[str] = ""
    #: Environment variable in which the scheduler gives an array element its index.
    array_index_variable: ClassVar[str | None] = None
    #: Whether ``cancel(done=True)`` makes the scheduler record the job as DONE.
    records_cancel_as_done: ClassVar[bool] = False
    #: The config keys of this scheduler: a dataclass of `cluster_api.options.option`
    #: fields, validated when the config is loaded and listed in the docs' reference.
    options: ClassVar[type[Any]] = NoOptions

    def __init__(self, config: ClusterConfig | None = None) -> None:
        self.config = config if config is not None else ClusterConfig(executor=self.name or "local")
        self._jobs: dict[str, JobRecord] = {}
        self._counter = itertools.count(1)
        self._command_slots = asyncio.Semaphore(self.config.max_concurrent_commands)
        self._changed: asyncio.Event | None = None
        self._cancel_requested: set[str] = set()
        # Jobs whose cancel the scheduler accepted -> the end that gave them (KILLED, or
        # DONE for done=True), kept until the scheduler reports that end in detail.
        self._kill_accepted: dict[str, JobStatus] = {}
        self._unseen_seconds: dict[str, float] = {}
        self._last_poll_ok: float | None = None
        self._last_poll_failed = False
        # A status query failed: the next command that succeeds wakes the monitor, so it
        # probes the scheduler then instead of sitting out its backoff.
        self._probe_wanted = False
        self._history_asked: set[str] = set()
        self._submitting: set[str] = set()  # journal keys of submissions awaiting an answer
        self._journal = (
            Journal(self.config.log_directory, self.name) if self.config.journal else None
        )

    # -- bookkeeping -------------------------------------------------------------------
    @property
    def jobs(self) -> dict[str, JobRecord]:
        """Every tracked record, by job id (a copy: changing it does not untrack)."""
        return dict(self._jobs)

    @property
    def active_jobs(self) -> dict[str, JobRecord]:
        """Tracked records that are not terminal yet."""
        return {k: r for k, r in self._jobs.items() if r.status not in TERMINAL_STATUSES}

    def track(self, job_id: str, status: JobStatus = JobStatus.PENDING) -> JobRecord:
        """Start tracking a job submitted elsewhere; returns its (possibly existing) record.

        With a journal, a job recorded there comes back as it was recorded."""
        job_id = str(job_id)
        check_single_line("job_id", job_id)
        existing = self._jobs.get(job_id)
        if existing is not None:
            return existing
        journalled = self._journal.get(job_id) if self._journal is not None else None
        if journalled is not None:  # known from an earlier process: keep all it knew
            journalled.metadata["reconnected"] = True
            self._register(journalled)
            return journalled
        record = JobRecord(job_id=job_id, name="", command="", status=JobStatus(status))
        record.metadata["tracked"] = True
        self._register(record)
        return record

    def remove_job(self, job_id: str) -> None:
        """Stop tracking a job (it keeps running on the scheduler)."""
        self._jobs.pop(str(job_id), None)
        self._unseen_seconds.pop(str(job_id), None)
        self._cancel_requested.discard(str(job_id))
        self._kill_accepted.pop(str(job_id), None)
        self._history_asked.discard(str(job_id))

    def unseen_seconds(self, job_id: str) -> float:
        """How long successful status queries have not mentioned this job."""
        return self._unseen_seconds.get(job_id, 0.0)

    def is_unseen(self, job_id: str) -> bool:
        """Whether no successful status query has mentioned this job since it was tracked
        or last seen: after a poll, true of an id the scheduler does not know."""
        return str(job_id) in self._unseen_seconds

    def unseen_for(self, seconds: float) -> list[JobRecord]:
        """Unfinished jobs that successful status queries have not mentioned for at least
        ``seconds`` (from the unseen table alone, not a scan of every job)."""
        found = []
        for job_id, unseen in self._unseen_seconds.items():
            record = self._jobs.get(job_id)
            if unseen >= seconds and record is not None and not record.status.is_terminal:
                found.append(record)
        return found

    def _register(self, record: JobRecord) -> None:
        self._jobs[record.job_id] = record
        self._notify_change()

    def persist(self, records: Iterable[JobRecord]) -> None:
        """Write these records to the journal, when one is configured. A failure is
        logged, never raised: the jobs exist and stay tracked here either way."""
        if self._journal is not None:
            try:
                self._journal.save(records)
            except Exception as exc:  # JournalError, or worse: never lose the poll over it
                logger.error("%s; these job updates are only in memory", exc)

    def _notify_change(self) -> None:
        if self._changed is not None:
            self._changed.set()

    async def wait_for_change(self, timeout: float) -> None:
        """Sleep up to ``timeout`` seconds, waking early when a job's state changed here
        (for executors that learn of exits directly, like the local one)."""
        if self._changed is None:
            self._changed = asyncio.Event()
        # asyncio.wait, not wait_for: wait_for may swallow a cancellation that arrives
        # together with the event (Python 3.11), and stop() must always be able to cancel.
        waiter = asyncio.ensure_future(self._changed.wait())
        try:
            await asyncio.wait({waiter}, timeout=timeout)
        finally:
            waiter.cancel()
        self._changed.clear()

    # -- submission --------------------------------------------------------------------
    async def submit(
        self,
        command: str,
        name: str,
        resources: ResourceSpec | None = None,
        prologue: Sequence[str] | None = None,
        epilogue: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        inherit_env: bool = True,
        login_shell: bool = False,
        depends_on: Sequence[JobRecord | str] | JobRecord | str | None = None,
    ) -> JobRecord:
        """Render, write and submit one job; return its record (already tracked)."""
        spec = self._job_spec(
            command,
            name,
            resources,
            prologue,
            epilogue,
            env,
            metadata,
            inherit_env,
            login_shell,
            depends_on,
        )
        return await self._submit(spec)

    async def submit_array(
        self,
        command: str,
        name: str,
        array_range: tuple[int, int],
        resources: ResourceSpec | None = None,
        prologue: Sequence[str] | None = None,
        epilogue: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        max_concurrent: int | None = None,
        inherit_env: bool = True,
        login_shell: bool = False,
        depends_on: Sequence[JobRecord | str] | JobRecord | str | None = None,
    ) -> JobRecord:
        """Submit a job array over the inclusive ``array_range``; elements read their
        index from ``$ARRAY_INDEX`` (and the scheduler's own variable)."""
        spec = self._job_spec(
            command,
            name,
            resources,
            prologue,
            epilogue,
            env,
            metadata,
            inherit_env,
            login_shell,
            depends_on,
        )
        spec.array_range = _check_array_range(array_range)
        if max_concurrent is not None:
            if (
                isinstance(max_concurrent, bool)
                or not isinstance(max_concurrent, int)
                or max_concurrent < 1
            ):
                raise ValueError(
                    f"max_concurrent must be a whole number >= 1, got {max_concurrent!r}"
                )
            spec.max_concurrent = max_concurrent
        spec.metadata["array_range"] = spec.array_range
        if spec.max_concurrent is not None:
            spec.metadata["max_concurrent"] = spec.max_concurrent
        return await self._submit(spec)

    def _job_spec(
        self,
        command: str,
        name: str,
        resources: ResourceSpec | None,
        prologue: Sequence[str] | None,
        epilogue: Sequence[str] | None,
        env: Mapping[str, str] | None,
        metadata: Mapping[str, Any] | None,
        inherit_env: bool,
        login_shell: bool,
        depends_on: Sequence[JobRecord | str] | JobRecord | str | None,
    ) -> JobSpec:
        if not isinstance(command, str) or not command.strip():
            raise ValueError(f"command must be a non-empty string, got {command!r}")
        check_utf8("command", command)
        if self.directive_prefix and any(
            line.lstrip().startswith(self.directive_prefix) for line in command.splitlines()
        ):
            raise ValueError(
                f"command contains a {self.directive_prefix} line; "
                "pass scheduler options as resources.extra_directives instead"
            )
        if isinstance(name, str):
            check_single_line("job name", name)
        full_name = safe_job_name(name, self.config.job_name_prefix)
        for line in (*(prologue or []), *(epilogue or [])):
            if not isinstance(line, str):
                raise ValueError(f"prologue/epilogue lines must be strings, got {line!r}")
        return JobSpec(
            command=command,
            name=full_name,
            resources=self.effective_resources(resources),
            prologue=list(prologue or []),
            epilogue=list(epilogue or []),
            env=validate_env(env),
            metadata=dict(metadata or {}),
            inherit_env=bool(inherit_env),
            login_shell=bool(login_shell),
            depends_on=_dependency_ids(depends_on),
        )

    def effective_resources(self, resources: ResourceSpec | None) -> ResourceSpec:
        """The job's resources with unset fields taken from the config, and work_dir made
        absolute: the job starts inside it, so paths into it (the script, the default
        logs) written relative to it would point somewhere else."""
        base = resources if resources is not None else ResourceSpec()
        if not isinstance(base, ResourceSpec):
            raise TypeError(f"resources must be a ResourceSpec, got {type(base).__name__}")
        changes: dict[str, Any] = {
            name: getattr(self.config, name)
            for name in ("cpus", "gpus", "memory", "walltime", "queue", "account")
            if getattr(base, name) is None
        }
        if not os.path.isabs(base.work_dir):
            changes["work_dir"] = os.path.abspath(base.work_dir)
        return replace(base, **changes) if changes else base

    async def _submit(self, spec: JobSpec) -> JobRecord:
        """Write the script, journal the intent, run the scheduler command, track the job.

        The intent goes to the journal before the command runs, so a process killed while
        the command is in flight leaves a trace ``reconnect()`` resolves by token. A
        journal that cannot be written stops the submission before the scheduler sees it.
        A submission that certainly did not happen leaves nothing behind.
        """
        self._validate(spec)
        path = self._write_job_script(spec)
        record = JobRecord(
            job_id="",
            name=spec.name,
            command=spec.command,
            resources=spec.resources,
            script_path=path,
            metadata=spec.metadata,
            submit_time=utcnow(),
            depends_on=list(spec.depends_on),
        )
        if spec.array_range is not None:
            start, end = spec.array_range
            for index in range(start, end + 1):
                record.array_elements[index] = ArrayElement(
                    index=index, submit_time=record.submit_time
                )
        key = os.path.abspath(path)
        if self._journal is not None:
            try:
                self._journal.intend(key, spec.token, record)
            except JournalError as exc:
                _remove_file(path)
                raise SubmitError(f"job {spec.name} was not submitted: {exc}") from exc
        self._submitting.add(key)
        try:
            record.job_id = await self._submit_script(spec, path)
        except (SubmitError, ValueError) as exc:
            if isinstance(exc, SubmitError) and exc.job_may_exist:
                logger.error("%s (its script %s is kept: the job may run it)", exc, path)
            else:
                self._forget_submission(key, path)
            raise
        finally:
            self._submitting.discard(key)
        self._register(record)
        self.persist([record])
        self._after_register(record)
        logger.info("submitted %s as job %s (%s)", spec.name, record.job_id, path)
        return record

    def _forget_submission(self, key: str, path: str) -> None:
        """Remove what a submission the scheduler never got left: its script, its intent."""
        _remove_file(path)
        if self._journal is not None:
            try:
                self._journal.discard(key)
            except JournalError as exc:
                logger.error("could not remove a refused submission from the journal: %s", exc)

    def _validate(self, spec: JobSpec) -> None:
        """Refuse a job this executor cannot run, before anything is written. Subclasses
        extend it (and call it): here, dependencies must look like this scheduler's ids,
        since they are written into a directive."""
        pattern = self.job_id_pattern
        if pattern is None:
            return
        for job_id in spec.depends_on:
            if not pattern.match(job_id):
                raise ValueError(
                    f"{self.name} dependency must be a job id such as "
                    f"{self.job_id_example}, got {job_id!r}"
                )

    def _after_register(self, record: JobRecord) -> None:
        """Hook for executors that act once a record is tracked (the local one starts it)."""

    def _write_job_script(self, spec: JobSpec) -> str:
        directory = spec.resources.work_dir
        while True:
            counter = next(self._counter)
            path = os.path.join(directory, f"{spec.name}.{counter}.sh")
            if os.path.exists(path):
                continue
            spec.token = f"{spec.name}.{counter}"
            header = self._header_for(spec)
            content = render_script(
                self.config,
                spec.command,
                header,
                spec.prologue,
                spec.epilogue,
                preamble=self._preamble(spec, path),
                login_shell=spec.login_shell,
            )
            try:
                return write_script(directory, content, spec.name, counter)
            except FileExistsError:
                continue
            except NotADirectoryError:
                raise ValueError(
                    f"ResourceSpec.work_dir {spec.resources.work_dir!r} is not a folder"
                ) from None
            except OSError as exc:
                raise ClusterAPIError(f"cannot write job script {path}: {exc}") from exc

    def _preamble(self, spec: JobSpec, path: str) -> list[str]:
        lines = environment_lines(spec.env)
        if spec.array_range is not None and self.array_index_variable not in (None, "ARRAY_INDEX"):
            lines.append(f'export ARRAY_INDEX="${{{self.array_index_variable}}}"')
        lines += exit_record_lines(path, spec.array_range is not None)
        return lines

    def _header_for(self, spec: JobSpec) -> list[str]:
        """The directive lines of one job, arrays and dependencies included."""
        return []

    def build_header(self, name: str, resources: ResourceSpec | None = None) -> list[str]:
        """The directive lines for a plain job called ``name`` (prefix applied)."""
        spec = self._job_spec("true", name, resources, None, None, None, None, True, False, None)
        return self._header_for(spec)

    @abstractmethod
    async def _submit_script(self, spec: JobSpec, script_path: str) -> str:
        """Hand the written script to the scheduler; return the new job id."""

    # -- status ------------------------------------------------------------------------
    async def poll(self) -> dict[str, JobStatus]:
        """One status query for every active job; updates the records in place.

        Jobs whose cancel the scheduler accepted are asked about once more, until it
        reports how they ended (their exit code and finish time; their status is set).
        Raises a ClusterAPIError subclass when the scheduler did not answer usefully; in
        that case no record changes and no job counts as unseen.
        """
        active = self.active_jobs
        for job_id in self._kill_accepted:
            record = self._jobs.get(job_id)
            if record is not None:
                active[job_id] = record
        if not active:
            return {}
        now = time.monotonic()
        self._probe_wanted = False
        try:
            result = await self._query(active)
        except ClusterAPIError:
            self._last_poll_failed = self._probe_wanted = True
            raise
        # Only time between two good answers counts as unseen: an outage is not evidence.
        interval = 0.0
        if self._last_poll_ok is not None and not self._last_poll_failed:
            interval = now - self._last_poll_ok
        self._last_poll_ok, self._last_poll_failed = now, False

        with gc_paused():
            changed, missing = self._apply_result(active, result, interval)
        # A job the scheduler no longer knows: its history says who ended it (an admin's
        # kill included), which an exit file cannot, so it is asked first, once; exit
        # files settle the rest. A job whose exit files all say 0 needs no history.
        lost = [
            r
            for r in missing
            if not r.status.is_terminal
            and r.job_id in result.not_found
            and r.job_id not in self._history_asked
            and not _exit_files_say_success(r)
        ]
        if lost:
            self._history_asked.update(r.job_id for r in lost)
            await self.recover_lost(lost)
            changed.extend(lost)
        for record in missing:
            if record.status.is_terminal and record.job_id not in self._kill_accepted:
                continue  # its history told
            mark = (record.status, record.completed_elements, record.exit_code)
            self._resolve_from_exit_files(record, {})
            if (record.status, record.completed_elements, record.exit_code) != mark:
                changed.append(record)
        self._forget_reported_kills(result, missing)
        if changed and self._journal is not None:
            self.persist(dict.fromkeys(changed))  # a record may be listed twice
        return {job_id: record.status for job_id, record in active.items()}

    def _apply_result(
        self, active: dict[str, JobRecord], result: QueryResult, interval: float
    ) -> tuple[list[JobRecord], list[JobRecord]]:
        """Apply one answer to the active jobs: the records that changed, and those the
        answer did not mention (their unseen time grows by ``interval``)."""
        jobs, elements, unseen = result.jobs, result.elements, self._unseen_seconds
        for job_id in self._kill_accepted:
            if job_id in jobs or job_id in elements:
                self._end_of_accepted_kill(job_id, jobs.get(job_id), elements.get(job_id))
        for job_id in [j for j in unseen if j in jobs or j in elements]:
            del unseen[job_id]  # seen again: the clock restarts
        changed: list[JobRecord] = []
        missing: list[JobRecord] = []
        for job_id, record in active.items():
            obs = jobs.get(job_id)
            reported = elements.get(job_id) if elements else None
            if reported is None:  # a plain job (the usual case), or one not mentioned
                if obs is not None and _is_array(record):
                    _skip_whole_job_record(job_id)
                    obs = None
                if obs is None:
                    unseen[job_id] = unseen.get(job_id, 0.0) + interval
                    missing.append(record)
                elif update_record(record, obs) or job_id in self._kill_accepted:
                    changed.append(record)
                continue
            if self._apply(record, obs, reported):
                changed.append(record)
            if len(reported) < len(record.array_elements) and (
                record.status not in TERMINAL_STATUSES
            ):
                done = record.completed_elements
                self._resolve_from_exit_files(record, reported)
                if record.completed_elements != done:
                    changed.append(record)
        return changed, missing

    def _end_of_accepted_kill(
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
        end = self._kill_accepted.get(job_id)
        if end is None:
            return
        if obs is not None and obs.status.is_terminal:
            obs.status = end
        for element in (elements or {}).values():
            if element.status.is_terminal:
                element.status = end

    def _forget_reported_kills(self, result: QueryResult, missing: list[JobRecord]) -> None:
        """Stop asking about killed jobs once the scheduler told their end, or forgot them."""
        if not self._kill_accepted:
            return
        gone = {r.job_id for r in missing}
        for job_id in list(self._kill_accepted):
            obs = result.jobs.get(job_id)
            elements = result.elements.get(job_id)
            ended = (obs is not None and obs.status.is_terminal) or (
                elements is not None and all(e.status.is_terminal for e in elements.values())
            )
            if ended or job_id in gone or job_id not in self._jobs:
                del self._kill_accepted[job_id]
                self._unseen_seconds.pop(job_id, None)

    async def recover_lost(self, records: list[JobRecord]) -> None:
        """Hook: ask a second source (job history) how these lost jobs ended. Called once
        when the scheduler first says it does not know a job, and again by the monitor
        before a job is declared a zombie."""

    @abstractmethod
    async def _query(self, active: dict[str, JobRecord]) -> QueryResult:
        """Ask the scheduler about every job in ``active`` in one command."""

    def _apply(
        self,
        record: JobRecord,
        obs: Observation | None,
        elements: dict[int, Observation] | None = None,
    ) -> bool:
        """Apply what a query said about one job (and its array elements); return whether
        anything the journal keeps (its status, an element's status) changed."""
        changed = False
        if obs is not None:
            if elements or _is_array(record):
                _skip_whole_job_record(record.job_id)
            else:
                changed = update_record(record, obs)
        if elements:
            for index, obs in elements.items():
                element = element_of(record, index)
                if element is None:
                    continue
                changed = update_element(element, obs) or changed
                if obs.reason and obs.status is JobStatus.FAILED:
                    record.metadata.setdefault("exit_reason", obs.reason)
            roll_up_array(record)
        return changed

    def _resolve_from_exit_files(self, record: JobRecord, reported: Mapping[int, Any]) -> None:
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
                    update_element(element, self._observation_from_exit_code(code, record))
            roll_up_array(record)
        else:
            code = read_exit_file(exit_file_path(record.script_path))
            if code is not None:
                update_record(record, self._observation_from_exit_code(code, record))
        if record.status.is_terminal:
            record.metadata["resolved_from"] = "exit_file"
            self._unseen_seconds.pop(record.job_id, None)
            logger.info(
                "job %s is no longer listed; its exit file says %s",
                record.job_id,
                record.status.value,
            )

    def _observation_from_exit_code(self, code: int, record: JobRecord) -> Observation:
        """What an exit file says: the code alone, so DONE or FAILED (who killed a job
        is the scheduler's to say: its history is asked first)."""
        obs = Observation(status=JobStatus.DONE if code == 0 else JobStatus.FAILED, exit_code=code)
        self._end_of_accepted_kill(record.job_id, obs)
        return obs

    # -- cancellation ------------------------------------------------------------------
    async def cancel(self, job_id: str, *, done: bool = False) -> None:
        """Cancel one job (``done=True`` asks the scheduler to record it as done, where it
        can). Returns once the scheduler answered; if it accepted, the record ends KILLED
        (DONE) now, and if it said the job had already ended, the next poll tells how."""
        job_id = str(job_id)
        check_single_line("job_id", job_id)
        self._cancel_requested.add(job_id)
        accepted = await self._cancel_ids([job_id], done=done)
        self._mark_killed([job_id] if accepted is None else accepted, done)

    async def cancel_all(self, *, done: bool = False) -> None:
        """Cancel every active tracked job, many ids per scheduler command."""
        ids = list(self.active_jobs)
        if not ids:
            return
        self._cancel_requested.update(ids)
        accepted = await self._cancel_ids(ids, done=done)
        self._mark_killed(ids if accepted is None else accepted, done)

    async def cancel_by_name(self, name_pattern: str) -> None:
        """Cancel jobs whose name matches ``name_pattern`` (``*`` wildcards allowed).

        The pattern is in the same terms as ``submit``'s name: the prefix is added
        unless the pattern already starts with it.
        """
        pattern = self._scheduler_name_pattern(name_pattern)
        matching = [record.job_id for record in self.jobs_matching(name_pattern)]
        self._cancel_requested.update(matching)
        accepted = await self._cancel_name_pattern(pattern)
        self._mark_killed(matching if accepted is None else accepted, False)

    def jobs_matching(self, name_pattern: str) -> list[JobRecord]:
        """The active tracked jobs ``cancel_by_name(name_pattern)`` cancels (ValueError
        for an empty or multi-line pattern)."""
        pattern = self._scheduler_name_pattern(name_pattern)
        return [r for r in self.active_jobs.values() if fnmatch.fnmatchcase(r.name, pattern)]

    def _mark_killed(self, job_ids: Iterable[str], done: bool) -> None:
        """End the tracked, unfinished jobs among those whose cancel the scheduler
        accepted: KILLED, or DONE where the scheduler records ``done=True`` as such. An
        array's unfinished elements end so. Callbacks fire in the next monitor cycle."""
        end = JobStatus.DONE if done and self.records_cancel_as_done else JobStatus.KILLED
        obs = Observation(end, finish_time=utcnow())
        marked = []
        for job_id in job_ids:
            record = self._jobs.get(job_id)
            if record is None or record.status.is_terminal:
                continue
            self._kill_accepted[job_id] = end
            if record.array_elements:
                for element in record.array_elements.values():
                    update_element(element, obs)
                roll_up_array(record)
            else:
                update_record(record, obs)
            marked.append(record)
        if marked:
            self.persist(marked)
            self._notify_change()

    def _scheduler_name_pattern(self, name_pattern: str) -> str:
        if not isinstance(name_pattern, str) or not name_pattern.strip():
            raise ValueError(f"name pattern must be a non-empty string, got {name_pattern!r}")
        check_single_line("name pattern", name_pattern)
        prefix = self.config.job_name_prefix
        if prefix and not name_pattern.startswith(f"{prefix}-"):
            name_pattern = f"{prefix}-{name_pattern}"
        return "*".join(safe_job_name(part) if part else "" for part in name_pattern.split("*"))

    @abstractmethod
    async def _cancel_ids(self, job_ids: list[str], *, done: bool) -> Collection[str] | None:
        """Cancel these jobs on the scheduler; return the ids it accepted (per its
        answer), or None when the command succeeding is all it says (all accepted)."""

    @abstractmethod
    async def _cancel_name_pattern(self, pattern: str) -> Collection[str] | None:
        """Cancel the jobs whose scheduler-side name matches ``pattern``; return the ids
        the scheduler accepted, or None when it accepted every tracked match."""

    async def _submit_exactly_once(
        self,
        spec: JobSpec,
        argv: list[str],
        *,
        stdin_file: str | None,
        env: Mapping[str, str] | None,
        transient: re.Pattern[str],
        parse: Callable[[str], str],
        retry_delay: float,
    ) -> str:
        """Submit, surviving one lost answer. After a timeout or a transient error the job
        is looked up by its unique token, ``retry_delay`` seconds later, before the
        command is tried again; only a lookup that succeeded and found nothing allows
        that, so the job is submitted exactly once. Any other refusal is final."""
        program = argv[0]
        failure: ClusterAPIError | None = None
        for _ in range(2):
            try:
                out = await self._run(argv, env=env, stdin_file=stdin_file)
            except CommandTimeoutError as exc:
                failure = exc
            except CommandFailedError as exc:
                if not transient.search(f"{exc} {exc.stderr} {exc.stdout}"):
                    raise SubmitError(f"{program} refused job {spec.name}: {exc}") from exc
                failure = exc
            else:
                try:
                    return parse(out)
                except SubmitError as exc:  # it answered, but not as documented
                    raise SubmitError(str(exc), job_may_exist=True) from exc
            logger.warning(
                "%s for %s failed (%s); checking whether it was submitted",
                program,
                spec.name,
                failure,
            )
            found = await self._look_up_submission(spec.name, spec.token, retry_delay)
            if found is not None:
                logger.info("job %s was submitted as %s despite the error", spec.name, found)
                return found
        raise SubmitError(f"{program} failed twice for job {spec.name}: {failure}") from failure

    async def _look_up_submission(self, name: str, token: str, first_delay: float) -> str | None:
        """The id of the job carrying ``token``, or None when the scheduler answered and
        has no such job. A lookup that fails is not "not found" (resubmitting on it makes
        two jobs): it is retried after ``LOOKUP_RETRY_DELAYS``, and when none succeeds
        this raises ``SubmitError(job_may_exist=True)``."""
        failure: ClusterAPIError | None = None
        for delay in (first_delay, *LOOKUP_RETRY_DELAYS):
            if delay > 0:
                await self._sleep(delay)
            try:
                return await self._find_submission(name, token)
            except ClusterAPIError as exc:
                failure = exc
                logger.warning("looking up submission %s of %s failed: %s", token, name, exc)
        raise SubmitError(
            f"cannot tell whether job {name} was submitted: every lookup of its token "
            f"{token} failed (last: {failure}); not submitting it again, to avoid a duplicate",
            job_may_exist=True,
        ) from failure

    async def _find_submission(self, name: str, token: str) -> str | None:
        """Hook: the id of the job called ``name`` carrying ``token``; None when the
        scheduler answered and has none; ``ClusterAPIError`` when its answer could not
        be read (that is not "not found")."""
        return None

    @staticmethod
    async def _sleep(seconds: float) -> None:
        """The seam every retry wait goes through (tests patch it instead of sleeping)."""
        await asyncio.sleep(seconds)

    async def _run_batches(
        self, argv: Sequence[str], ids: Sequence[str], size: int
    ) -> list[CommandAnswer]:
        """Run ``argv + batch`` for batches of at most ``size`` ids, concurrently (still at
        most ``max_concurrent_commands`` at once); what each printed, for the caller to
        read per-id answers from. A batch that fails is logged, not raised: cancel
        commands exit non-zero when some jobs had already ended, and the others were
        still cancelled."""

        async def one(batch: Sequence[str]) -> CommandAnswer:
            try:
                return CommandAnswer(list(batch), await self._run([*argv, *batch]))
            except CommandFailedError as exc:
                logger.info("%s reported: %s", argv[0], exc)
                return CommandAnswer(list(batch), exc.stdout, exc.stderr or str(exc), failed=True)

        return list(
            await asyncio.gather(*(one(ids[i : i + size]) for i in range(0, len(ids), size)))
        )

    # -- reconnection ------------------------------------------------------------------
    async def reconnect(self, *, finished_within_minutes: float = 0.0) -> list[JobRecord]:
        """Track again this prefix's unfinished jobs, then poll once.

        Jobs come from the journal when it is enabled (exactly as submitted, array range
        included) and from the scheduler; jobs that ended while nobody watched come back
        with their true end after the poll. With a journal, submissions whose answer an
        earlier process never heard (it died mid-submit) are looked up by their token
        first, and come back too, finished or not. ``finished_within_minutes`` also
        brings back journalled jobs already known to have ended that recently.
        """
        adopted: list[JobRecord] = []
        if self._journal is not None:
            prefix = self.config.job_name_prefix
            adopted += await self._resolve_intents(prefix)
            recent = (
                self._journal.finished_since(prefix, finished_within_minutes * 60)
                if finished_within_minutes > 0
                else []
            )
            for record in [*recent, *self._journal.unfinished(prefix)]:
                if record.job_id not in self._jobs:
                    record.metadata["reconnected"] = True
                    self._register(record)
                    adopted.append(record)
        adopted += await self._discover(require=self._journal is None)
        if adopted:
            try:
                await self.poll()
            except ClusterAPIError as exc:
                logger.warning(
                    "reconnected %d jobs but could not poll them yet: %s", len(adopted), exc
                )
        return adopted

    async def _resolve_intents(self, prefix: str | None) -> list[JobRecord]:
        """Settle the submissions an earlier process left without the scheduler's answer
        (it died while the command ran): each is looked up by its token. One the
        scheduler has is tracked, finished or not (the poll after ``reconnect`` tells its
        true end); one it certainly has not is forgotten. While the scheduler cannot be
        asked, the rest wait for the next ``reconnect``."""
        assert self._journal is not None
        adopted = []
        for intent in self._journal.intents(prefix):
            record = intent.record
            if intent.key in self._submitting:
                continue  # this process still waits for that command's answer
            try:
                job_id = await self._look_up_submission(record.name, intent.token, 0.0)
            except SubmitError as exc:
                logger.warning("submissions left unresolved until the next reconnect: %s", exc)
                break
            if job_id is None:
                if _left_an_exit_status(record):
                    logger.warning(
                        "job %s ran (its script %s recorded an exit status) but the scheduler "
                        "no longer lists it, so its id is unknown; forgetting it",
                        record.name,
                        record.script_path,
                    )
                else:
                    logger.info("job %s never reached the scheduler; forgetting it", record.name)
                self._journal.discard(intent.key)
                continue
            record.job_id = job_id
            record.metadata["reconnected"] = True
            self.persist([record])  # settled: no later reconnect asks again
            if job_id not in self._jobs:
                self._register(record)
                adopted.append(record)
        return adopted

    async def _discover(self, require: bool) -> list[JobRecord]:
        """Hook: find this prefix's unfinished jobs on the scheduler itself and track the
        ones not tracked yet. ``require`` is False when a journal is the main source."""
        return []

    # -- the seam ----------------------------------------------------------------------
    async def _run(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin_file: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Run a scheduler command through `_call`, at most
        ``max_concurrent_commands`` at once across this executor."""
        async with self._command_slots:
            out = await self._call(
                list(cmd),
                timeout=timeout if timeout is not None else self.config.command_timeout,
                env=dict(env) if env else None,
                stdin_file=stdin_file,
            )
        if self._probe_wanted:
            self._probe_wanted = False
            self._notify_change()
        return out

    @staticmethod
    async def _call(
        cmd: list[str],
        timeout: float = 100.0,
        env: dict[str, str] | None = None,
        stdin_file: str | None = None,
    ) -> str:
        """Run ``cmd`` (an argv, never a shell line) and return its stdout.

        Output is decoded as UTF-8 with replacement, so bytes a scheduler should not
        have printed become U+FFFD instead of an exception.
        """
        full_env = {**os.environ, **env} if env else None
        try:
            stdin = open(stdin_file, "rb") if stdin_file else None  # noqa: SIM115
        except OSError as exc:
            raise CommandFailedError(f"cannot read {stdin_file}: {exc}") from exc
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *cmd,
                    stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=full_env,
                    start_new_session=True,
                )
            except FileNotFoundError:
                raise CommandFailedError(f"{cmd[0]}: command not found (is it on PATH?)") from None
            except OSError as exc:
                raise CommandFailedError(f"{cmd[0]}: cannot run: {exc}") from exc
        finally:
            if stdin is not None:
                stdin.close()
        try:
            out_bytes, err_bytes = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            terminate_process_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise CommandTimeoutError(
                f"{shlex.join(cmd)[:300]} timed out after {timeout:g}s"
            ) from None
        except asyncio.CancelledError:
            terminate_process_group(proc.pid, signal.SIGKILL)
            raise
        out = out_bytes.decode("utf-8", errors="replace")
        if proc.returncode != 0:
            err = err_bytes.decode("utf-8", errors="replace").strip()
            detail = err or out.strip()
            raise CommandFailedError(
                f"{shlex.join(cmd)[:300]} exited {proc.returncode}: {detail[:1000]}",
                stdout=out,
                returncode=proc.returncode,
                stderr=err,
            )
        return out


# -- pure helpers ------------------------------------------------------------------------
def _check_array_range(array_range: Any) -> tuple[int, int]:
    try:
        start, end = array_range
    except (TypeError, ValueError):
        raise ValueError(f"array_range must be a (start, end) pair, got {array_range!r}") from None
    for value in (start, end):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"array_range bounds must be whole numbers, got {array_range!r}")
    if start < 0 or start > end:
        raise ValueError(f"array_range start must be >= 0 and <= end, got {array_range!r}")
    return (start, end)


def _dependency_ids(depends_on: Sequence[JobRecord | str] | JobRecord | str | None) -> list[str]:
    if depends_on is None:
        return []
    items = [depends_on] if isinstance(depends_on, (JobRecord, str)) else list(depends_on)
    ids = []
    for item in items:
        job_id = item.job_id if isinstance(item, JobRecord) else item
        if (
            not isinstance(job_id, (str, int))
            or isinstance(job_id, bool)
            or not str(job_id).strip()
        ):
            raise ValueError(f"depends_on takes job records or job ids, got {item!r}")
        check_single_line("depends_on", str(job_id))
        ids.append(str(job_id))
    return ids


def _left_an_exit_status(record: JobRecord) -> bool:
    """Whether the record's script ran far enough to record how it ended."""
    if record.script_path is None:
        return False
    if record.is_array:
        return any(
            read_exit_file(exit_file_path(record.script_path, index)) is not None
            for index in record.array_elements
        )
    return read_exit_file(exit_file_path(record.script_path)) is not None


def _remove_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


def read_exit_file(path: str) -> int | None:
    """The exit status a job script recorded, or None if there is none (yet)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as handle:
            text = handle.read().strip()
    except OSError:
        return None
    try:
        return int(text)
    except ValueError:
        return None


def _exit_files_say_success(record: JobRecord) -> bool:
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


def _is_array(record: JobRecord) -> bool:
    return record.is_array or bool(record.array_elements)


def _skip_whole_job_record(job_id: str) -> None:
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

    ``can_advance`` and ``JobRecord.advance`` written out, with the details copied inline:
    this runs for every job on every poll, and those calls were a twentieth of a poll.
    """
    new, old = obs.status, target.status
    if new is not old and (old in TERMINAL_STATUSES or STATUS_RANK[new] < STATUS_RANK[old]):
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
    record.advance(status)
