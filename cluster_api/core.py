"""The executor base class: the job table, submission, polling and cancellation, once
for every scheduler.

How it divides up: `.jobspec` checks what a submission asks for, `.script` writes the job
script, `.table` keeps the tracked jobs and applies each status answer through the
status rule of `.status`, and `.engine` runs a scheduler's commands (a
:class:`~cluster_api.scheduler.Scheduler` is pure translation). A concrete executor
supplies its directives (``_header_for``), how to hand a written script to the scheduler
(``_submit_script``), one status query for many jobs (``_query``) and how to cancel
(``_cancel_ids``, ``_cancel_name_pattern``); the engine supplies all four for batch
schedulers. Every scheduler command runs through `Executor._call`, the seam tests patch,
and behind it the executor's command runner (:mod:`.runner`).
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import itertools
import logging
import os
import re
from abc import ABC, abstractmethod
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, ClassVar

from .config import ClusterConfig
from .errors import ClusterAPIError, SubmitError
from .jobspec import JobSpec, effective_resources, job_spec, set_array
from .journal import Journal, JournalError
from .models import ArrayElement, JobRecord, JobStatus, ResourceSpec, check_single_line
from .runner import ACTIVE_RUNNER, LOCAL_RUNNER, CommandRunner
from .script import (
    environment_lines,
    exit_record_lines,
    render_script,
    safe_job_name,
    write_script,
)
from .status import (
    Observation,
    QueryResult,
    apply_report,
    exit_files_say_success,
    gc_paused,
    left_an_exit_status,
    utcnow,
)
from .table import JobTable

logger = logging.getLogger("cluster_api")

# Waits before the second, third, ... lookup of a submission whose lookup failed.
LOOKUP_RETRY_DELAYS = (2.0, 5.0, 15.0)


@dataclass
class CommandAnswer:
    """What one scheduler command given ``ids`` printed, and whether it exited non-zero."""

    ids: list[str]
    stdout: str
    stderr: str = ""
    failed: bool = False


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

    def __init__(
        self, config: ClusterConfig | None = None, *, runner: CommandRunner | None = None
    ) -> None:
        self.config = config if config is not None else ClusterConfig(executor=self.name or "local")
        #: Runs this executor's commands behind `_call` (this machine's processes by default).
        self.runner: CommandRunner = runner if runner is not None else LOCAL_RUNNER
        self._table = JobTable()
        self._jobs = self._table.records
        self._records_view = MappingProxyType(self._jobs)
        self._counter = itertools.count(1)
        self._command_slots = asyncio.Semaphore(self.config.max_concurrent_commands)
        self._changed: asyncio.Event | None = None
        # A status query failed: the next command that succeeds wakes the monitor, so it
        # probes the scheduler then instead of sitting out its backoff.
        self._probe_wanted = False
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
    def records(self) -> Mapping[str, JobRecord]:
        """Every tracked record, by job id: a live read-only view (no copy), for code that
        looks at the table every cycle, like the monitor."""
        return self._records_view

    @property
    def active_jobs(self) -> dict[str, JobRecord]:
        """Tracked records that are not terminal yet."""
        return self._table.active()

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
        self._table.remove(str(job_id))

    def unseen_seconds(self, job_id: str) -> float:
        """How long successful status queries have not mentioned this job."""
        return self._table.unseen.get(job_id, 0.0)

    def is_unseen(self, job_id: str) -> bool:
        """Whether no successful status query has mentioned this job since it was tracked
        or last seen: after a poll, true of an id the scheduler does not know."""
        return str(job_id) in self._table.unseen

    def unseen_for(self, seconds: float) -> list[JobRecord]:
        """Unfinished jobs that successful status queries have not mentioned for at least
        ``seconds``."""
        return self._table.unseen_for(seconds)

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
        spec = job_spec(
            self.config,
            self.directive_prefix,
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
        spec = job_spec(
            self.config,
            self.directive_prefix,
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
        set_array(spec, array_range, max_concurrent)
        return await self._submit(spec)

    def effective_resources(self, resources: ResourceSpec | None) -> ResourceSpec:
        """The job's resources with unset fields taken from the config, and work_dir made
        absolute (see `.jobspec.effective_resources`)."""
        return effective_resources(self.config, resources)

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
        spec = job_spec(
            self.config,
            self.directive_prefix,
            "true",
            name,
            resources,
            None,
            None,
            None,
            None,
            True,
            False,
            None,
        )
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
        table = self._table
        active = table.to_poll()
        if not active:
            return {}
        asked_at = table.clock()
        self._probe_wanted = False
        try:
            result = await self._query(active)
        except ClusterAPIError:
            table.query_failed()
            self._probe_wanted = True
            raise
        interval = table.query_answered(asked_at)
        with gc_paused():
            changed, missing = table.apply(active, result, interval)
        changed += await self._settle_missing(result, missing)
        table.forget_reported_kills(result, missing)
        changed += await self._end_failed_dependants()
        if changed and self._journal is not None:
            self.persist(dict.fromkeys(changed))  # a record may be listed twice
        return {job_id: record.status for job_id, record in active.items()}

    async def _settle_missing(
        self, result: QueryResult, missing: list[JobRecord]
    ) -> list[JobRecord]:
        """Find out how jobs the answer did not mention ended; return those that changed.

        A job the scheduler no longer knows: its history says who ended it (an admin's
        kill included), which an exit file cannot, so it is asked first, once; exit
        files settle the rest. A job whose exit files all say 0 needs no history."""
        changed: list[JobRecord] = []
        asked = self._table.history_asked
        lost = [
            r
            for r in missing
            if not r.status.is_terminal
            and r.job_id in result.not_found
            and r.job_id not in asked
            and not exit_files_say_success(r)
        ]
        if lost:
            asked.update(r.job_id for r in lost)
            await self.recover_lost(lost)
            changed.extend(lost)
        for record in missing:
            if record.status.is_terminal and record.job_id not in self._table.kill_accepted:
                continue  # its history told
            mark = (record.status, record.completed_elements, record.exit_code)
            self._table.resolve_from_exit_files(record, {})
            if (record.status, record.completed_elements, record.exit_code) != mark:
                changed.append(record)
        return changed

    async def _end_failed_dependants(self) -> list[JobRecord]:
        """Apply the dependency rule (`.table.JobTable.end_failed_dependants`) and cancel
        on the scheduler the dependants it ended, which would otherwise wait there."""
        changed, doomed = self._table.end_failed_dependants()
        if doomed:
            self._notify_change()
            try:
                await self._cancel_ids(doomed, done=False)
            except ClusterAPIError as exc:  # they are ended here either way
                logger.warning("could not cancel %s on the scheduler: %s", doomed, exc)
        return changed

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
        elements: Mapping[int, Observation] | None = None,
    ) -> bool:
        """Apply what a query said about one job (the status rule, `.status.apply_report`)."""
        return apply_report(record, obs, elements)

    # -- cancellation ------------------------------------------------------------------
    async def cancel(self, job_id: str, *, done: bool = False) -> None:
        """Cancel one job (``done=True`` asks the scheduler to record it as done, where it
        can). Returns once the scheduler answered; if it accepted, the record ends KILLED
        (DONE) now, and if it said the job had already ended, the next poll tells how."""
        job_id = str(job_id)
        check_single_line("job_id", job_id)
        self._table.cancel_requested.add(job_id)
        accepted = await self._cancel_ids([job_id], done=done)
        self._mark_killed([job_id] if accepted is None else accepted, done)

    async def cancel_all(self, *, done: bool = False) -> None:
        """Cancel every active tracked job, many ids per scheduler command."""
        ids = list(self.active_jobs)
        if not ids:
            return
        self._table.cancel_requested.update(ids)
        accepted = await self._cancel_ids(ids, done=done)
        self._mark_killed(ids if accepted is None else accepted, done)

    async def cancel_by_name(self, name_pattern: str) -> None:
        """Cancel jobs whose name matches ``name_pattern`` (``*`` wildcards allowed).

        The pattern is in the same terms as ``submit``'s name: the prefix is added
        unless the pattern already starts with it.
        """
        pattern = self._scheduler_name_pattern(name_pattern)
        matching = [
            job_id
            for job_id, record in self.active_jobs.items()
            if fnmatch.fnmatchcase(record.name, pattern)
        ]
        self._table.cancel_requested.update(matching)
        accepted = await self._cancel_name_pattern(pattern)
        self._mark_killed(matching if accepted is None else accepted, False)

    def _mark_killed(self, job_ids: Iterable[str], done: bool) -> None:
        """End the tracked, unfinished jobs among those whose cancel the scheduler
        accepted: KILLED, or DONE where the scheduler records ``done=True`` as such.
        Callbacks fire in the next monitor cycle."""
        end = JobStatus.DONE if done and self.records_cancel_as_done else JobStatus.KILLED
        marked = self._table.mark_killed(job_ids, end)
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
                if left_an_exit_status(record):
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
        """Run a scheduler command through `_call` (with this executor's runner behind
        it), at most ``max_concurrent_commands`` at once across this executor."""
        async with self._command_slots:
            token = ACTIVE_RUNNER.set(self.runner)
            try:
                out = await self._call(
                    list(cmd),
                    timeout=timeout if timeout is not None else self.config.command_timeout,
                    env=dict(env) if env else None,
                    stdin_file=stdin_file,
                )
            finally:
                ACTIVE_RUNNER.reset(token)
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
        """Run ``cmd`` (an argv, never a shell line) and return its stdout; a non-zero
        exit raises ``CommandFailedError`` keeping stdout, stderr and the exit status.

        The calling executor's runner runs it (`.runner.LocalRunner` outside one). The
        string returned still carries the command's stderr (`.runner.CommandOutput`).
        """
        runner = ACTIVE_RUNNER.get() or LOCAL_RUNNER
        result = await runner.run(cmd, timeout=timeout, env=env, stdin_file=stdin_file)
        return result.output()


def _remove_file(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
