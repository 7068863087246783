"""The executor's job table side: tracking, the journal, and waking the monitor.

`cluster_api.core.Executor` is built from this base, `.submission` and `.reconnect`;
see `cluster_api.core` for how the parts divide up.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import re
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, ClassVar

from .config import ClusterConfig
from .files import LOCAL_FILES, JobFiles, RemoteFiles
from .journal import Journal
from .models import JobRecord, JobStatus, check_single_line
from .options import NoOptions
from .remote import MAX_SESSIONS, SSHRunner
from .runner import ACTIVE_RUNNER, LOCAL_RUNNER, CommandRunner
from .ssh_target import SSHTarget
from .table import JobTable

logger = logging.getLogger("cluster_api")


class ExecutorBase(ABC):
    """What every part of an executor shares: its config, its job table, its journal."""

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

    def __init__(
        self, config: ClusterConfig | None = None, *, runner: CommandRunner | None = None
    ) -> None:
        self.config = config if config is not None else ClusterConfig(executor=self.name or "local")
        #: Runs this executor's commands behind `_call`: this machine's processes, or the
        #: ``ssh`` host's when the config names one.
        self.runner: CommandRunner = runner if runner is not None else runner_for(self.config)
        #: Where its job scripts are written and exit files read: where the commands run.
        self.files: JobFiles = (
            RemoteFiles(self.runner, self.config.command_timeout)
            if isinstance(self.runner, SSHRunner)
            else LOCAL_FILES
        )
        self._table = JobTable()
        self._jobs = self._table.records
        self._records_view = MappingProxyType(self._jobs)
        self._counter: Iterator[int] = itertools.count(1)
        self._command_slots = asyncio.Semaphore(self.config.max_concurrent_commands)
        self._changed: asyncio.Event | None = None
        #: Counts submits and observed changes of job state: the monitor polls sooner
        #: after either (adaptive polling, `cluster_api.polling`).
        self.activity = 0
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

    @contextlib.asynccontextmanager
    async def _command_slot(self) -> AsyncIterator[None]:
        """One of the executor's ``max_concurrent_commands`` slots, with its runner behind
        `_call` for the commands run inside."""
        async with self._command_slots:
            token = ACTIVE_RUNNER.set(self.runner)
            try:
                yield
            finally:
                ACTIVE_RUNNER.reset(token)

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
        self.activity += 1
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

    @abstractmethod
    async def poll(self) -> dict[str, JobStatus]:
        """One status query for every active job (`cluster_api.core.Executor.poll`)."""

    @abstractmethod
    async def poll_strict(self) -> dict[str, JobStatus]:
        """`poll` that raises when the query failed (`cluster_api.core.Executor.poll_strict`)."""


def runner_for(config: ClusterConfig) -> CommandRunner:
    """This machine's runner, or one SSH connection to the config's ``ssh`` host (at most
    sshd's MaxSessions commands at once over it: past that, sessions log in again)."""
    if config.ssh is None:
        return LOCAL_RUNNER  # the other ssh keys only say how to reach a host, if any
    keys = ("ssh", "ssh_port", "ssh_identity", "ssh_options")
    target = SSHTarget.from_config({key: getattr(config, key) for key in keys})
    assert target is not None
    return SSHRunner(target, max_concurrent=min(config.max_concurrent_commands, MAX_SESSIONS))
