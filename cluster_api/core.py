"""The executor base class: the job table, submission, polling and cancellation, once
for every scheduler.

How it divides up: `.jobspec` checks what a submission asks for, `.script` writes the job
script, `.table` keeps the tracked jobs and applies each status answer through the
status rule of `.status`, and `.engine` runs a scheduler's commands (a
:class:`~cluster_api.scheduler.Scheduler` is pure translation). A concrete executor
supplies its directives (``_header_for``), how to hand a written script to the scheduler
(``_submit_script``), one status query for many jobs (``_query``) and how to cancel
(``_cancel_ids``, ``_cancel_name_pattern``); the engine supplies all four for batch
schedulers, and `.hooks` derives them from the design's hooks (``_submit_job``, ...).
Every scheduler command runs through `Executor._call`, the seam tests patch,
and behind it the executor's command runner (:mod:`.runner`).
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Iterable, Mapping, Sequence

from .errors import ClusterAPIError
from .files import reading_from
from .hooks import HookAdapter
from .models import JobRecord, JobStatus, check_single_line
from .reconnect import Reconnection
from .runner import ACTIVE_RUNNER, LOCAL_RUNNER
from .script import (
    safe_job_name,
)
from .status import (
    Observation,
    QueryResult,
    apply_report,
    exit_files_say_success,
    gc_paused,
)
from .table import JobTable

logger = logging.getLogger("cluster_api")


class Executor(HookAdapter, Reconnection):
    """Submits, tracks, polls and cancels jobs on one kind of scheduler."""

    # -- status ------------------------------------------------------------------------
    async def poll(self) -> dict[str, JobStatus]:
        """One status query for every active job; returns the status of every tracked
        job (those that ended in this poll included), as 0.8.1 did.

        A query the scheduler did not answer usefully (outage, timeout, missing binary,
        empty or garbled answer) is logged and changes nothing, and no job counts as
        unseen; it never raises, so a caller's loop survives an outage. The monitor calls
        `poll_strict` instead, and counts such failures in its health figures.
        """
        try:
            await self.poll_strict()
        except ClusterAPIError as exc:
            logger.warning("status query failed; no job changed: %s", exc)
        return {job_id: record.status for job_id, record in self._jobs.items()}

    async def poll_strict(self) -> dict[str, JobStatus]:
        """`poll`, but a query the scheduler did not answer usefully raises a
        ClusterAPIError subclass (no record changes then, no job counts as unseen);
        returns the status of the jobs that were active.

        Jobs whose cancel the scheduler accepted are asked about once more, until it
        reports how they ended (their exit code and finish time; their status is set).
        """
        table = self._table
        active = table.to_poll()
        if not active:  # tasks of submit_many may still take an end their array was given
            ended = table.settle_tasks()
            if ended:
                self.activity += 1
                self.persist(ended)
            return {}
        with reading_from(self.files):
            return await self._poll(table, active)

    async def _poll(self, table: JobTable, active: dict[str, JobRecord]) -> dict[str, JobStatus]:
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
        changed += table.settle_tasks()
        changed += await self._end_failed_dependants()
        if changed:
            self.activity += 1
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
        matching = [record.job_id for record in self.jobs_matching(name_pattern)]
        self._table.cancel_requested.update(matching)
        accepted = await self._cancel_name_pattern(pattern)
        self._mark_killed(matching if accepted is None else accepted, False)

    def jobs_matching(self, name_pattern: str) -> list[JobRecord]:
        """The active tracked jobs ``cancel_by_name(name_pattern)`` cancels (ValueError
        for an empty or multi-line pattern)."""
        pattern = self._scheduler_name_pattern(name_pattern)
        return [r for r in self.active_jobs.values() if fnmatch.fnmatchcase(r.name, pattern)]

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
        async with self._command_slot():
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
        """Run ``cmd`` (an argv, never a shell line) and return its stdout; a non-zero
        exit raises ``CommandFailedError`` keeping stdout, stderr and the exit status.

        The calling executor's runner runs it (`.runner.LocalRunner` outside one). The
        string returned still carries the command's stderr (`.runner.CommandOutput`).
        """
        runner = ACTIVE_RUNNER.get() or LOCAL_RUNNER
        result = await runner.run(cmd, timeout=timeout, env=env, stdin_file=stdin_file)
        return result.output()
