"""The engine for batch schedulers: runs a `Scheduler`'s commands, every policy once.

A scheduler only translates (`cluster_api.scheduler`); `BatchExecutor` runs what it
asks for through `Executor._run` (bounded concurrency, the `_call` seam, the runner) and
does the rest the same way for every scheduler: exactly-once submission (a lost answer
is looked up by the job's token before anything is tried again), the status query, the
history fallback for jobs the query cannot tell the end of (`.history`), cancels in
batches with KILLED only for what the scheduler accepted, cancel by name, and adopting
this prefix's jobs on reconnect. The job table, the journal, exit files, zombie timing
and the dependency rule are the base class's (`cluster_api.core`).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from collections.abc import Collection, Mapping, Sequence
from typing import Any, ClassVar

from .config import ClusterConfig
from .core import Executor
from .errors import ClusterAPIError, CommandFailedError, CommandTimeoutError, SubmitError
from .history import apply_history, exit_codes_from_files, merge_history, needs_history, untold
from .jobspec import JobSpec, job_spec, set_array
from .models import JobRecord, ResourceSpec
from .packing import checked_commands, chunked, task_line, task_records, write_tasks_file
from .runner import CommandRunner
from .scheduler import Command, CommandAnswer, HistoryRetry, Key, Scheduler
from .status import (
    Observation,
    QueryResult,
    exit_files_say_success,
    gc_paused,
    job_id_order,
)
from .submission import _remove_file

logger = logging.getLogger("cluster_api")

#: What an executor class takes from its scheduler class.
_SCHEDULER_TRAITS = (
    "name",
    "directive_prefix",
    "job_id_pattern",
    "job_id_example",
    "array_index_variable",
    "records_cancel_as_done",
)


class BatchExecutor(Executor):
    """An executor whose jobs live on a batch scheduler; ``scheduler_class`` says which.

    A new scheduler is a `Scheduler` subclass and two lines::

        class PBSExecutor(BatchExecutor):
            scheduler_class = PBS
    """

    scheduler_class: ClassVar[type[Scheduler]] = Scheduler

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        scheduler = cls.__dict__.get("scheduler_class")
        if scheduler is not None:
            for trait in _SCHEDULER_TRAITS:
                if trait not in cls.__dict__:
                    setattr(cls, trait, getattr(scheduler, trait))

    def __init__(
        self, config: ClusterConfig | None = None, *, runner: CommandRunner | None = None
    ) -> None:
        super().__init__(config, runner=runner)
        self.scheduler = self.scheduler_class(self.config)
        # Jobs whose history the last status query already asked for.
        self._history_asked_now: set[str] = set()

    async def _answer(self, command: Command, ids: Sequence[str] = ()) -> CommandAnswer:
        """Run one scheduler command; a non-zero exit is an answer too (the scheduler's
        parser decides whether it says something). Timeouts and commands that cannot
        run raise."""
        try:
            out = await self._run(command.argv, env=command.env, stdin_file=command.stdin_file)
        except CommandFailedError as exc:
            return CommandAnswer(list(ids), exc.stdout, exc.stderr or str(exc), True, exc)
        return CommandAnswer(list(ids), out, getattr(out, "stderr", ""))

    # -- submission --------------------------------------------------------------------
    def _header_for(self, spec: JobSpec) -> list[str]:
        return self.scheduler.header(spec)

    def _validate(self, spec: JobSpec) -> None:
        super()._validate(spec)
        self.scheduler.validate(spec)

    def _preamble(self, spec: JobSpec, path: str) -> list[str]:
        return [*self.scheduler.preamble(spec), *super()._preamble(spec, path)]

    async def _submit_script(self, spec: JobSpec, script_path: str) -> str:
        """Submit, surviving one lost answer. After a timeout or a transient error the job
        is looked up by its unique token, a little later, before the command is tried
        again; only a lookup that succeeded and found nothing allows that, so the job is
        submitted exactly once. Any other refusal is final."""
        scheduler = self.scheduler
        command = scheduler.submit_command(spec, script_path)
        program = command.argv[0]
        failure: ClusterAPIError | None = None
        for _ in range(2):
            try:
                out = await self._run(command.argv, env=command.env, stdin_file=command.stdin_file)
            except CommandTimeoutError as exc:
                failure = exc
            except CommandFailedError as exc:
                if not scheduler.transient.search(f"{exc} {exc.stderr} {exc.stdout}"):
                    raise SubmitError(f"{program} refused job {spec.name}: {exc}") from exc
                failure = exc
            else:
                try:
                    return scheduler.parse_submit(out)
                except SubmitError as exc:  # it answered, but not as documented
                    raise SubmitError(str(exc), job_may_exist=True) from exc
            logger.warning(
                "%s for %s failed (%s); checking whether it was submitted",
                program,
                spec.name,
                failure,
            )
            delay = scheduler.submit_retry_delay
            found = await self._look_up_submission(spec.name, spec.token, delay)
            if found is not None:
                logger.info("job %s was submitted as %s despite the error", spec.name, found)
                return found
        raise SubmitError(f"{program} failed twice for job {spec.name}: {failure}") from failure

    async def submit_many(
        self,
        commands: Sequence[str],
        name: str,
        resources: ResourceSpec | None = None,
        prologue: Sequence[str] | None = None,
        epilogue: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        max_concurrent: int | None = None,
        inherit_env: bool = True,
        login_shell: bool = False,
        depends_on: Sequence[JobRecord | str] | JobRecord | str | None = None,
    ) -> list[JobRecord]:
        """One array per ``array_chunk_size`` commands (one submit command each), and a
        task record per command (`cluster_api.packing`), in order: each has its own
        callbacks, exit code, journal entry, and element id for ``cancel``.
        ``max_concurrent`` limits the running elements of each array."""
        records: list[JobRecord] = []
        for chunk in chunked(checked_commands(commands), self.config.array_chunk_size):
            spec = job_spec(
                self.config,
                self.directive_prefix,
                "true",  # replaced by the line that runs the element's task
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
            set_array(spec, (1, len(chunk)), max_concurrent)
            tasks_path = write_tasks_file(spec.resources.work_dir, spec.name, chunk)
            spec.command = task_line(tasks_path)
            spec.metadata["tasks_file"] = tasks_path
            try:
                array = await self._submit(spec)
            except (SubmitError, ValueError) as exc:
                if not (isinstance(exc, SubmitError) and exc.job_may_exist):
                    _remove_file(tasks_path)
                raise
            tasks = task_records(
                array, chunk, self.scheduler.element_id_format, dict(metadata or {})
            )
            for task in tasks:
                self._register(task)
            self.persist(tasks)
            records += tasks
        return records

    async def _find_submission(self, name: str, token: str) -> str | None:
        answer = await self._answer(self.scheduler.lookup_command(name, token))
        return self.scheduler.parse_lookup(answer, token)

    # -- status ------------------------------------------------------------------------
    async def _query(self, active: dict[str, JobRecord]) -> QueryResult:
        """One status command for every active job; then one history command for those
        whose end it could not tell in full."""
        command = self.scheduler.status_command(active)
        ids = list(active)
        answer = CommandAnswer(ids, "") if command is None else await self._answer(command, ids)
        with gc_paused():
            result = self.scheduler.parse_status(answer, active)
        if result.doomed:
            await self._cancel_doomed(sorted(result.doomed, key=job_id_order))
        candidates = untold(active, result)
        lost = [
            r
            for r in map(active.__getitem__, candidates)
            if needs_history(r, result)
            and not (r.job_id in result.not_found and exit_files_say_success(r))
        ]
        self._history_asked_now = {r.job_id for r in lost}
        if lost:
            finals = await self._history(lost, result, strict=False)
            source = self.scheduler.history_source
            self.persist(merge_history(active, result, finals, source))
        exit_codes_from_files(active, result, candidates)
        return result

    async def _cancel_doomed(self, job_ids: list[str]) -> None:
        """Cancel jobs the scheduler holds that can never run; the next poll retries."""
        logger.info("cancelling jobs whose dependency can never be met: %s", job_ids)
        try:
            await self._cancel_ids(job_ids, done=False)
        except ClusterAPIError as exc:
            logger.warning("could not cancel %s: %s", job_ids, exc)

    async def _history(
        self, records: Sequence[JobRecord], result: QueryResult, *, strict: bool
    ) -> dict[Key, Observation]:
        """What the history says about these jobs, in one command (two when the first
        answer shows it must be asked another way). A history that cannot be asked
        never fails a poll (the exit files still tell); with ``strict`` one that does
        not answer in time raises (nothing may be concluded from its silence)."""
        try:
            for _ in range(2):
                command = self.scheduler.history_command(records, result)
                if command is None:
                    return {}
                answer = await self._answer(command, [r.job_id for r in records])
                try:
                    return self.scheduler.parse_history(answer, records, result)
                except HistoryRetry as retry:
                    logger.info("%s; asking the job history again", retry)
        except ClusterAPIError as exc:
            if strict and isinstance(exc, CommandTimeoutError):
                raise
            logger.warning("job history failed; job ends will come from exit files: %s", exc)
        return {}

    async def recover_lost(self, records: list[JobRecord]) -> None:
        """Ask the history (one command) how jobs that left the queue ended; jobs the
        last status query already asked about are skipped."""
        todo = [
            r
            for r in records
            if not r.status.is_terminal and r.job_id not in self._history_asked_now
        ]
        if not todo:
            return
        result = QueryResult(not_found={r.job_id for r in todo})
        finals = await self._history(todo, result, strict=True)
        for record in todo:
            apply_history(record, finals, self.scheduler.history_source)
        self.persist(todo)

    # -- cancellation ------------------------------------------------------------------
    async def _cancel_ids(self, job_ids: list[str], *, done: bool) -> set[str]:
        """Cancel in batches of ``cancel_batch`` ids, concurrently (still at most
        ``max_concurrent_commands`` at once); the ids the scheduler accepted. A batch
        that fails is logged, not raised: cancel commands exit non-zero when some jobs
        had already ended, and the others were still cancelled."""
        pattern = self.scheduler.job_id_pattern
        ids = [i for i in job_ids if pattern is None or pattern.match(i)]
        for bad in sorted(set(job_ids) - set(ids)):
            logger.warning("not a %s job id, not cancelled: %r", self.name, bad)
        size = self.scheduler.cancel_batch
        batches = [ids[i : i + size] for i in range(0, len(ids), size)]
        answers = await asyncio.gather(
            *(self._answer(self.scheduler.cancel_command(b, done), b) for b in batches)
        )
        accepted: set[str] = set()
        for answer in answers:
            if answer.failed:
                logger.info("cancel reported: %s", answer.stderr.strip()[:500])
            accepted |= self.scheduler.parse_cancel(answer)
        return accepted

    async def _cancel_name_pattern(self, pattern: str) -> Collection[str] | None:
        command = self.scheduler.cancel_by_name_command(pattern)
        if command is None:  # list, match here, cancel the matches by id
            listing = self.scheduler.parse_listing(
                await self._answer(self.scheduler.listing_command(None))
            )
            ids = [
                job_id
                for job_id, name in listing.names.items()
                if fnmatch.fnmatchcase(name, pattern) and not _finished(listing.result, job_id)
            ]
            return (
                await self._cancel_ids(sorted(ids, key=job_id_order), done=False) if ids else set()
            )
        answer = await self._answer(command)
        if answer.failed:
            logger.info("cancel by name %s reported: %s", pattern, answer.stderr.strip()[:500])
        accepted = self.scheduler.parse_cancel(answer)
        return accepted or (set() if answer.failed else None)  # None: every tracked match

    # -- reconnection ------------------------------------------------------------------
    async def _discover(self, require: bool) -> list[JobRecord]:
        """Track the unfinished jobs whose names start with this config's prefix."""
        prefix = self.config.job_name_prefix
        if not prefix:
            if not require:
                return []
            raise ClusterAPIError("reconnect() needs job_name_prefix to tell our jobs from others")
        answer = await self._answer(self.scheduler.listing_command(prefix))
        listing = self.scheduler.parse_listing(answer)
        result, pattern = listing.result, self.scheduler.job_id_pattern
        adopted = []
        for job_id in sorted(listing.names, key=job_id_order):
            name = listing.names[job_id]
            if not name.startswith(f"{prefix}-") or job_id in self._jobs:
                continue
            if _finished(result, job_id):
                continue
            if pattern is not None and not pattern.match(job_id):
                logger.warning("ignoring a listed job with id %r: not a %s id", job_id, self.name)
                continue
            record = JobRecord(job_id=job_id, name=name, command="")
            record.metadata["reconnected"] = True
            if job_id in result.elements:
                indices = sorted(result.elements[job_id])
                record.metadata["array_range"] = (indices[0], indices[-1])
            self._register(record)
            self._apply(record, result.jobs.get(job_id), result.elements.get(job_id))
            adopted.append(record)
        return adopted


def _finished(result: QueryResult, job_id: str) -> bool:
    """True when the job (every element of an array) has ended: nothing to reconnect to."""
    if job_id in result.elements:
        return all(obs.status.is_terminal for obs in result.elements[job_id].values())
    plain = result.jobs.get(job_id)
    return plain is not None and plain.status.is_terminal
