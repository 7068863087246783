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
from collections.abc import Callable, Collection, Sequence
from dataclasses import replace
from typing import Any, ClassVar

from .config import ClusterConfig
from .core import Executor
from .errors import ClusterAPIError, CommandFailedError, CommandTimeoutError, SubmitError
from .files import exit_paths, reading_from
from .history import (
    HistoryQuery,
    Key,
    apply_history,
    exit_codes_from_files,
    history_queries,
    merge_history,
    untold,
)
from .jobspec import JobSpec, set_array
from .models import JobRecord, JobStatus
from .packing import chunked, task_line, task_records, write_tasks_file
from .runner import CommandRunner
from .scheduler import (
    ELEMENT_IDS,
    Command,
    CommandAnswer,
    HistoryRetry,
    Scheduler,
    own_ids,
)
from .status import (
    Observation,
    QueryResult,
    exit_files_say_success,
    gc_paused,
    job_id_order,
)

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
        # Held dependants the scheduler released (`Scheduler.holds_dependants`).
        self._released: set[str] = set()

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
        return self.scheduler.header(self._as_scheduled(spec))

    def _as_scheduled(self, spec: JobSpec) -> JobSpec:
        """The job as the scheduler is told it: a dependency on an array of separate
        jobs is one on each of its elements."""
        depends = [own for job_id in spec.depends_on for own in self._scheduler_ids(job_id)]
        return spec if depends == spec.depends_on else replace(spec, depends_on=depends)

    def _validate(self, spec: JobSpec) -> None:
        super()._validate(spec)
        if spec.max_concurrent and not self.scheduler.caps_array_concurrency:
            raise ValueError(
                f"{self.name} cannot cap how many array elements run at once: "
                "max_concurrent is refused (submit smaller arrays instead)"
            )
        self.scheduler.validate(spec)

    def _preamble(self, spec: JobSpec, path: str) -> list[str]:
        return [*self.scheduler.preamble(spec), *super()._preamble(spec, path)]

    async def _submit_script(self, spec: JobSpec, script_path: str) -> str:
        """Submit, surviving one lost answer. After a timeout or a transient error the job
        is looked up by its unique token, a little later, before the command is tried
        again; only a lookup that succeeded and found nothing allows that, so the job is
        submitted exactly once. Any other refusal is final."""
        scheduler = self.scheduler
        command = scheduler.submit_command(self._as_scheduled(spec), script_path)
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
                    ids = scheduler.submitted_ids(out)
                except SubmitError as exc:  # it answered, but not as documented
                    raise SubmitError(str(exc), job_may_exist=True) from exc
                return await self._submitted(spec, ids)
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
                return await self._submitted(spec, self._found_ids(spec.array_range, found))
        raise SubmitError(f"{program} failed twice for job {spec.name}: {failure}") from failure

    async def _submitted(self, spec: JobSpec, ids: list[str]) -> str:
        """The tracked id of a submission. An array whose elements are separate jobs
        keeps their ids; one the scheduler took only in part is cancelled and refused
        (a job is tracked whole or not at all)."""
        if spec.array_range is None or not self.scheduler.array_elements_are_jobs:
            return ids[0]
        start, end = spec.array_range
        if len(set(ids)) == end - start + 1:
            spec.metadata[ELEMENT_IDS] = ids
            return ids[0]
        accepted = await self._cancel_ids(ids, done=False)
        raise SubmitError(
            f"{self.name} took {len(set(ids))} of the {end - start + 1} elements of "
            f"{spec.name}; cancelled {len(accepted)} of them ({', '.join(ids)})",
            job_may_exist=len(accepted) < len(set(ids)),
        )

    def _found_ids(self, array_range: object, found: str) -> list[str]:
        """A lookup's answer as ids: an array of separate jobs answers as its submit
        command would, with every element's id."""
        if array_range is not None and self.scheduler.array_elements_are_jobs:
            return self.scheduler.submitted_ids(found)
        return [found]

    def _found_id(self, record: JobRecord, found: str) -> str:
        """An array of separate jobs found on reconnect keeps its elements' ids."""
        ids = self._found_ids(record.metadata.get("array_range"), found)
        if self.scheduler.array_elements_are_jobs and record.array_elements:
            record.metadata[ELEMENT_IDS] = ids
        return ids[0]

    async def _submit_many(
        self, commands: list[str], spec_for: Callable[[str], JobSpec], max_concurrent: int | None
    ) -> list[JobRecord]:
        """One array per ``array_chunk_size`` commands (one submit command each), and a
        task record per command (`cluster_api.packing`), in order: each has its own
        callbacks, exit code, journal entry, and element id for ``cancel``.
        ``max_concurrent`` limits the running elements of each array. The tasks file
        is written where the job runs (over ssh: on the remote host), beside its script."""
        records: list[JobRecord] = []
        for chunk in chunked(commands, self.config.array_chunk_size):
            spec = spec_for("true")  # its command becomes the line that runs the task
            task_metadata = dict(spec.metadata)
            set_array(spec, (1, len(chunk)), max_concurrent)
            await self._place_work_dir(spec)
            tasks_path = await write_tasks_file(
                self.files, spec.resources.work_dir, spec.name, chunk
            )
            spec.command = task_line(tasks_path)
            spec.metadata["tasks_file"] = tasks_path
            try:
                array = await self._submit(spec)
            except (SubmitError, ValueError) as exc:
                if not (isinstance(exc, SubmitError) and exc.job_may_exist):
                    await self._remove_script(tasks_path)
                raise
            tasks = task_records(array, chunk, self.scheduler.element_id_format, task_metadata)
            for task in tasks:
                self._register(task)
            self.persist(tasks)
            records += tasks
        return records

    async def _find_submission(self, name: str, token: str) -> str | None:
        """Where the lookup sees only queued jobs, a job that already ended is looked
        for in the history, once the history has caught up with the lookup's moment:
        only then does "not there" mean not submitted."""
        scheduler = self.scheduler
        found = scheduler.parse_lookup(
            await self._answer(scheduler.lookup_command(name, token)), token
        )
        history = scheduler.lookup_history_command(name)
        if found is not None or history is None:
            return found
        await self._sleep(scheduler.history_lag)
        return scheduler.parse_lookup_history(await self._answer(history), token)

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
        await self.files.refresh(exit_paths(r for i, r in active.items() if not _told(result, i)))
        candidates = untold(active, result)
        # A lost job whose exit files all say 0 has nothing left for the history to tell.
        unsettled = [
            r
            for r in map(active.__getitem__, candidates)
            if not (r.job_id in result.not_found and exit_files_say_success(r))
        ]
        queries = history_queries(unsettled, result, self.scheduler.history_ids_per_call)
        self._history_asked_now = {job_id for query in queries for job_id in query.job_ids}
        if queries:
            finals = await self._history(queries, strict=False)
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
        self, queries: Sequence[HistoryQuery], *, strict: bool
    ) -> dict[Key, Observation]:
        """What the history says, one command per query (`.history.history_queries`
        sizes them by ``history_ids_per_call``; two commands when the first answer shows
        it must be asked another way). A history that cannot be asked never fails a poll
        (the exit files still tell); with ``strict`` one that does not answer in time
        raises (nothing may be concluded from its silence)."""
        finals: dict[Key, Observation] = {}
        for part in await asyncio.gather(*(self._history_of(q, strict) for q in queries)):
            finals.update(part)
        return finals

    async def _history_of(self, query: HistoryQuery, strict: bool) -> dict[Key, Observation]:
        """One history command for ``query`` (a second when the answer says so)."""
        try:
            for _ in range(2):
                command = self.scheduler.history_command(query)
                if command is None:
                    return {}
                answer = await self._answer(command, query.job_ids)
                try:
                    return self.scheduler.parse_history(answer, query)
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
        with reading_from(self.files):
            await self.files.refresh(exit_paths(todo))
            queries = history_queries(todo, result, self.scheduler.history_ids_per_call)
            finals = await self._history(queries, strict=True)
            for record in todo:
                apply_history(record, finals, self.scheduler.history_source)
        self.persist(todo)

    # -- dependencies ------------------------------------------------------------------
    async def _end_failed_dependants(self) -> list[JobRecord]:
        changed = await super()._end_failed_dependants()
        if self.scheduler.holds_dependants:
            await self._release_dependants()
        return changed

    async def _release_dependants(self) -> None:
        """Release the held dependants whose tracked parents all ended DONE (a parent we
        do not track is left to the scheduler's own wait). A release that fails is
        tried again at the next poll."""
        ready = [
            r.job_id
            for r in self._jobs.values()
            if r.depends_on
            and not r.status.is_terminal
            and r.job_id not in self._released
            and all(self._ended_done(parent) for parent in r.depends_on)
        ]
        if not ready:
            return
        try:
            answer = await self._answer(self.scheduler.release_command(ready), ready)
        except ClusterAPIError as exc:  # the poll itself succeeded
            logger.warning("could not release %s: %s", ready, exc)
            return
        released = self.scheduler.parse_cancel(answer)
        self._released.update(released)
        if set(ready) - released:
            logger.info("release of %s reported: %s", ready, answer.text.strip()[:500])

    def _ended_done(self, job_id: str) -> bool:
        parent = self._jobs.get(job_id)
        return parent is None or parent.status is JobStatus.DONE

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
        tracked = {i: self._scheduler_ids(i) for i in ids}
        ids = list(dict.fromkeys(own for i in ids for own in tracked[i]))
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
        # A tracked array of separate jobs is accepted when any element's cancel was.
        return accepted | {i for i, own in tracked.items() if accepted.intersection(own)}

    def _scheduler_ids(self, job_id: str) -> list[str]:
        record = self._jobs.get(job_id)
        return [job_id] if record is None else own_ids(record)

    async def _cancel_name_pattern(self, pattern: str) -> Collection[str] | None:
        command = self.scheduler.cancel_by_name_command(pattern)
        if command is None:  # list, match here, cancel the matches by id
            listing = self.scheduler.parse_listing(
                await self._answer(self.scheduler.listing_command(None))
            )
            ids = [
                own
                for job_id, name in listing.names.items()
                if fnmatch.fnmatchcase(name, pattern) and not _finished(listing.result, job_id)
                for own in listing.element_ids.get(job_id, [job_id])
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
    async def _parents_of(self, job_ids: list[str]) -> dict[str, list[str]]:
        if not self.scheduler.holds_dependants:
            return {}
        answer = await self._answer(self.scheduler.parents_command(job_ids), job_ids)
        return self.scheduler.parse_parents(answer)

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
        tracked = {own for record in self._jobs.values() for own in own_ids(record)}
        for job_id in sorted(listing.names, key=job_id_order):
            name = listing.names[job_id]
            own = listing.element_ids.get(job_id, [job_id])
            if not name.startswith(f"{prefix}-") or tracked.intersection(own):
                continue
            if _finished(result, job_id):
                continue
            if pattern is not None and not pattern.match(job_id):
                logger.warning("ignoring a listed job with id %r: not a %s id", job_id, self.name)
                continue
            record = JobRecord(job_id=job_id, name=name, command="")
            record.metadata["reconnected"] = True
            if job_id in listing.element_ids:
                record.metadata[ELEMENT_IDS] = own
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


def _told(result: QueryResult, job_id: str) -> bool:
    """Whether the status answer said all there is about a job, so that its exit files
    cannot add anything: a plain job listed and not failed."""
    obs = result.jobs.get(job_id)
    return obs is not None and obs.status is not JobStatus.FAILED and job_id not in result.elements
