"""Reconnection: find this prefix's jobs again, from the journal and the scheduler, and
settle submissions an earlier process left without an answer.

Part of `cluster_api.core.Executor`; a scheduler supplies the token lookup
(``_find_submission``) and the listing of its jobs (``_discover``).
"""

from __future__ import annotations

import asyncio
import logging

from .base import ExecutorBase
from .errors import ClusterAPIError, SubmitError
from .files import exit_paths, reading_from
from .models import JobRecord, JobStatus
from .status import left_an_exit_status

logger = logging.getLogger("cluster_api")

# Waits before the second, third, ... lookup of a submission whose lookup failed.
LOOKUP_RETRY_DELAYS = (2.0, 5.0, 15.0)


class Reconnection(ExecutorBase):
    """The reconnecting part of an executor."""

    # Journal keys of submissions whose command has not answered yet.
    _submitting: set[str]

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

    def _found_id(self, record: JobRecord, found: str) -> str:
        """Hook: the tracked id of a submission a lookup found (its answer ``found``)."""
        return found

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
        found = await self._discover(require=self._journal is None)
        adopted += found + await self._adopt_parents(found)
        if adopted:
            try:
                await self.poll_strict()
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
                await self.files.refresh(exit_paths([record]))
                with reading_from(self.files):
                    ran = left_an_exit_status(record)
                if ran:
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
            record.job_id = job_id = self._found_id(record, job_id)
            record.metadata["reconnected"] = True
            self.persist([record])  # settled: no later reconnect asks again
            if job_id not in self._jobs:
                self._register(record)
                adopted.append(record)
        return adopted

    async def _adopt_parents(self, found: list[JobRecord]) -> list[JobRecord]:
        """Where the scheduler's own dependency waits for any exit (Grid Engine), our
        dependants wait held for the executor to release them, and one found on the
        scheduler with no journal to remember it comes back without its parents: they
        are asked for. A parent that already left the queue is tracked again too, so the
        poll after reconnect learns how it ended and the dependant is released or ended
        by the dependency rule. Without an answer the dependants stay held (and the log
        says so) until the next reconnect."""
        waiting = [r.job_id for r in found if r.status is JobStatus.PENDING and not r.depends_on]
        try:
            parents = await self._parents_of(waiting) if waiting else {}
        except ClusterAPIError as exc:
            logger.warning(
                "cannot tell which jobs %s wait for; held ones stay held: %s", waiting, exc
            )
            return []
        adopted = []
        for record in found:
            record.depends_on = parents.get(record.job_id) or record.depends_on
            for parent_id in record.depends_on:
                if parent_id not in self._jobs:
                    parent = JobRecord(job_id=parent_id, name="", command="")
                    parent.metadata["reconnected"] = True
                    self._register(parent)
                    adopted.append(parent)
        return adopted

    async def _parents_of(self, job_ids: list[str]) -> dict[str, list[str]]:
        """Hook: the ids of the jobs each of ``job_ids`` waits for, where the executor
        itself enforces dependencies on held jobs; empty elsewhere."""
        return {}

    async def _discover(self, require: bool) -> list[JobRecord]:
        """Hook: find this prefix's unfinished jobs on the scheduler itself and track the
        ones not tracked yet. ``require`` is False when a journal is the main source."""
        return []
