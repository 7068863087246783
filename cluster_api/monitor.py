"""JobMonitor: the loop that turns scheduler answers into callbacks.

Each cycle: one poll for all active jobs (which also ends jobs whose dependency failed),
zombie detection, status listeners and callbacks of what happened (in the order it
happened), waking ``wait_for`` callers, and purging old finished records. A failed poll
is retried with exponential backoff, capped at a few poll intervals; while the scheduler
does not answer, nothing is concluded.

Every listener and callback runs as a task of its own, so an async one that awaits never
delays polling. A sync one runs on the event loop (as it always has: it may touch the
loop's objects, such as an ``asyncio.Event``), so while it runs nothing else does; one that
holds the loop for long is reported in the log.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from datetime import datetime, timezone
from types import TracebackType
from typing import Any

from .core import Executor
from .errors import ClusterAPIError, WaitTimeoutError
from .models import Callback, JobRecord, JobStatus, steps_between
from .polling import PollSchedule
from .status import utcnow

logger = logging.getLogger("cluster_api")

#: While the scheduler keeps failing, polls are at most this many poll intervals apart.
#: Each poll is one command however long the wait, so waiting longer spares the scheduler
#: little and only delays noticing that it is back.
MAX_BACKOFF_FACTOR = 4.0
#: ... and never further apart than this (unless the poll interval itself is longer).
MAX_BACKOFF_SECONDS = 300.0
StatusListener = Callable[[JobRecord, JobStatus, JobStatus], Awaitable[None] | None]

#: How long ``stop()`` waits for callbacks that are still running.
STOP_CALLBACK_GRACE_SECONDS = 30.0

#: A callback that holds the event loop this long is reported: polling and every other
#: callback waited for it.
SLOW_CALLBACK_SECONDS = 1.0

#: How many unfinished jobs a ``wait_for`` timeout names (the rest are counted).
TIMEOUT_NAMES_SHOWN = 10

# The callback task the running code belongs to: the callback itself, or a task it started
# (asyncio.wait_for and gather start one), since tasks inherit their creator's context.
_CALLBACK_TASK: ContextVar[asyncio.Task[Any] | None] = ContextVar(
    "cluster_api_callback_task", default=None
)


class JobMonitor:
    """Polls an executor, fires callbacks, detects zombies and purges old records."""

    def __init__(
        self,
        executor: Executor,
        poll_interval: float | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """``clock`` (seconds, only differences count) times how long a callback held the
        event loop and how far apart polls are; tests pass their own."""
        interval = executor.config.poll_interval if poll_interval is None else poll_interval
        if isinstance(interval, bool) or not isinstance(interval, (int, float)) or interval <= 0:
            raise ValueError(
                f"poll_interval must be a number of seconds > 0, got {poll_interval!r}"
            )
        self.executor = executor
        self.poll_interval = float(interval)
        #: When the next poll comes (`cluster_api.polling`: sooner after a change).
        self.schedule = PollSchedule.from_config(executor.config, self.poll_interval)
        self._activity_seen = -1  # the first poll counts as following a change
        self.clock = clock
        self.last_successful_poll: datetime | None = None
        self.consecutive_failures = 0
        self._task: asyncio.Task[None] | None = None
        self._callback_tasks: dict[str, set[asyncio.Task[None]]] = {}
        self._cycle_done: asyncio.Event | None = None
        self._status_listeners: list[StatusListener] = []
        self._last_status: dict[str, JobStatus] = {}

    def on_status_change(self, listener: StatusListener) -> StatusListener:
        """Call ``listener(record, old_status, new_status)`` whenever a tracked job's status
        changes (sync or async; run as a task like callbacks). Returns the listener, so it
        can be used as a decorator.

        A job's transitions are told in the order they happened, each once: one that
        started and ended between two polls is told ``PENDING -> RUNNING``, then its
        ``on_start`` callbacks fire, then ``RUNNING -> DONE`` and its exit callbacks."""
        if not callable(listener):
            raise TypeError(f"listener must be callable, got {listener!r}")
        self._status_listeners.append(listener)
        return listener

    # -- lifecycle ---------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start polling in the background (no-op if already running)."""
        if self.running:
            return
        self._cycle_done = asyncio.Event()
        self._task = asyncio.create_task(self._loop(), name="cluster_api-monitor")

    async def stop(self) -> None:
        """Stop polling; wait (bounded) for callbacks still running so none is lost.

        Refused while called from one of this monitor's own callbacks or listeners (or a
        task one started, as ``asyncio.wait_for`` does) that is still running: it would
        wait for that very callback. A task started by a callback that has returned since
        (``asyncio.ensure_future(monitor.stop())``) stops it.
        """
        if self._calling_callback() is not None:
            raise ClusterAPIError(
                "JobMonitor.stop() awaited from one of its own callbacks: stop() waits for "
                "the callbacks still running, so it would wait for itself. Return from the "
                "callback and stop the monitor in the code that started it (for example, "
                "set an asyncio.Event in the callback and await it there)"
            )
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        pending = [t for tasks in self._callback_tasks.values() for t in tasks]
        if pending:
            _, still = await asyncio.wait(pending, timeout=STOP_CALLBACK_GRACE_SECONDS)
            for t in still:
                logger.warning("callback %s still running at stop(); cancelling it", t.get_name())
                t.cancel()

    async def __aenter__(self) -> JobMonitor:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _loop(self) -> None:
        while self._task is not None:
            began = self.clock()
            ok = await self.run_cycle()
            seen = self.executor.activity
            await self.executor.wait_for_change(self._next_delay(ok))
            if self.executor.activity != seen:  # woken early, by a submit or a change
                await self._wait_out_floor(began)

    async def _wait_out_floor(self, began: float) -> None:
        """Hold the next status query until ``poll_floor`` after the last one began, while
        delivering at once what an executor learns of itself (the local one applies a
        job's end the moment the job's supervisor writes it)."""
        while self._task is not None:
            rest = self.schedule.rest_of_floor(self.clock() - began)
            if rest <= 0:
                return
            self._deliver_all()
            self._wake_waiters()
            await self.executor.wait_for_change(rest)

    def _next_delay(self, ok: bool) -> float:
        if ok:
            activity = self.executor.activity != self._activity_seen
            self._activity_seen = self.executor.activity
            return self.schedule.next_wait(activity)
        backoff = self.poll_interval * (2 ** min(self.consecutive_failures, 16))
        ceiling = max(
            self.poll_interval, min(self.poll_interval * MAX_BACKOFF_FACTOR, MAX_BACKOFF_SECONDS)
        )
        jitter: float = random.uniform(0.8, 1.2)
        return float(min(backoff, ceiling) * jitter)

    # -- one cycle ---------------------------------------------------------------------
    async def run_cycle(self) -> bool:
        """Run one monitoring cycle now; return whether the poll succeeded."""
        ok = await self._poll()
        if ok:
            await self._check_zombies()
        self._deliver_all()
        self._purge()
        self._wake_waiters()
        return ok

    def _wake_waiters(self) -> None:
        """Let every ``wait_for`` look at its records again."""
        if self._cycle_done is not None:
            self._cycle_done.set()
            self._cycle_done = asyncio.Event()

    async def _poll(self) -> bool:
        try:
            await self.executor.poll_strict()  # raises when the query failed
        except ClusterAPIError as exc:
            self.consecutive_failures += 1
            if self.consecutive_failures == 1:
                logger.warning("status query failed, retrying with backoff: %s", exc)
            else:
                logger.debug("status query failed again (%d): %s", self.consecutive_failures, exc)
            return False
        except Exception:
            self.consecutive_failures += 1
            logger.exception("unexpected error while polling; will retry")
            return False
        if self.consecutive_failures:
            logger.warning(
                "scheduler answers again after %d failed queries", self.consecutive_failures
            )
        self.consecutive_failures = 0
        self.last_successful_poll = datetime.now(timezone.utc)
        return True

    async def _check_zombies(self) -> None:
        candidates = self.executor.unseen_for(self.executor.config.zombie_timeout_minutes * 60)
        if not candidates:
            return
        # Last chance: the scheduler's history may still know how they ended.
        try:
            await self.executor.recover_lost(candidates)
        except ClusterAPIError as exc:
            logger.warning("could not ask job history about %d lost jobs: %s", len(candidates), exc)
            return
        for record in candidates:
            if record.status.is_terminal:
                continue
            record.metadata["zombie"] = True
            record.finish_time = record.finish_time or utcnow()
            record.advance(JobStatus.FAILED)
            logger.warning(
                "job %s unseen by the scheduler for %.0f s: marked FAILED (zombie)",
                record.job_id,
                self.executor.unseen_seconds(record.job_id),
            )
        self.executor.persist(candidates)

    def _deliver_all(self) -> None:
        jobs = self.executor.records
        for job_id in [j for j in self._last_status if j not in jobs]:
            del self._last_status[job_id]
        announce = bool(self._status_listeners)
        for record in list(jobs.values()):
            if announce or record.has_pending_callbacks:
                self._deliver(record, announce)

    def _deliver(self, record: JobRecord, announce: bool) -> None:
        """Start the listeners and callbacks of what happened to this job since it was last
        looked at, in the order it happened: listeners of its move to running, its
        ``on_start`` callbacks, listeners of its ending, its exit callbacks. Each starts
        as a task, after the ones before it."""
        steps: list[tuple[JobStatus, JobStatus]] = []
        if announce:
            old = self._last_status.get(record.job_id, JobStatus.PENDING)
            steps = steps_between(old, record.status, record.has_started)
            if steps:
                self._last_status[record.job_id] = record.status
        if not steps and not record.has_pending_callbacks:
            return
        started, ended = record.take_callbacks()
        for old, new in steps:
            if not new.is_terminal:
                self._announce(record, old, new)
        self._call_back(record, started)
        for old, new in steps:
            if new.is_terminal:
                self._announce(record, old, new)
        self._call_back(record, ended)

    def _announce(self, record: JobRecord, old: JobStatus, new: JobStatus) -> None:
        for listener in self._status_listeners:
            self._spawn(
                _invoke(self.clock, listener, record, old, new),
                f"status-{record.job_id}",
                record.job_id,
            )

    def _call_back(self, record: JobRecord, callbacks: list[Callback]) -> None:
        for callback in callbacks:
            name = getattr(callback, "__name__", "callback")
            self._spawn(
                _invoke(self.clock, callback, record), f"{name}-{record.job_id}", record.job_id
            )

    def _deliver_late(self, record: JobRecord) -> None:
        """A callback was registered on an ended record this monitor no longer tracks: no
        cycle will see it, so start it now (when there is no running event loop to start
        it on, ``wait_for`` does)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            return
        self._deliver(record, announce=False)

    def _calling_callback(self) -> asyncio.Task[Any] | None:
        """The still running callback task of this monitor that the running code belongs
        to, if any: waiting for it from there would be waiting for oneself."""
        task = _CALLBACK_TASK.get()
        if task is None or task.done():
            return None
        return task if any(task in tasks for tasks in self._callback_tasks.values()) else None

    def _spawn(self, coro: Awaitable[None], name: str, job_id: str) -> None:
        task = asyncio.ensure_future(coro)
        task.set_name(f"cluster_api-{name}")
        tasks = self._callback_tasks.setdefault(job_id, set())
        tasks.add(task)

        def forget(t: asyncio.Task[None]) -> None:
            tasks.discard(t)
            if not tasks:
                self._callback_tasks.pop(job_id, None)

        task.add_done_callback(forget)

    def _purge(self) -> None:
        retention = self.executor.config.completed_retention_minutes * 60
        for job_id, record in list(self.executor.records.items()):
            age = record.terminal_age
            if (
                age is not None
                and age >= retention
                and not record.has_pending_callbacks
                and job_id not in self._callback_tasks
            ):
                self.executor.remove_job(job_id)
                record._on_late_callback = self._deliver_late

    # -- waiting -----------------------------------------------------------------------
    async def wait_for(
        self, *records: JobRecord, timeout: float | None = None, progress: bool = False
    ) -> None:
        """Return once every record is terminal and its callbacks have run.

        Starts the monitor if it is not running. A record that has already ended returns
        at once (its callbacks registered since are started now). After ``timeout``
        seconds raises ``WaitTimeoutError`` (a ``TimeoutError``
        naming the jobs still unfinished); the jobs keep running and stay tracked.
        ``progress=True`` draws a live view of the jobs on stderr (a bar per array with
        rich installed, lines otherwise). Raises ``ValueError`` for a record that has not
        ended and that this monitor's executor does not track: it could never end here.
        """
        self._check_waitable(records)
        await self.start()
        view = None
        if progress:
            from .progress import ProgressView

            view = ProgressView(records)
        try:
            await asyncio.wait_for(self._wait(records, view, self._calling_callback()), timeout)
        except asyncio.TimeoutError:
            raise self._timeout_error(records, timeout) from None
        finally:
            if view is not None:
                view.close()

    async def _wait(
        self,
        records: tuple[JobRecord, ...],
        view: Any = None,
        caller: asyncio.Task[Any] | None = None,
    ) -> None:
        """Wait for the records, and then for their callbacks still running except
        ``caller``: a callback waiting for its own job must not wait for itself."""
        jobs = self.executor.records
        while True:
            if view is not None:
                view.update()
            finished = True
            for record in records:
                if record.status.is_terminal:
                    if record.has_pending_callbacks:  # registered since it ended
                        tracked = jobs.get(record.job_id) is record
                        self._deliver(record, announce=tracked and bool(self._status_listeners))
                else:
                    finished = False
            if finished:
                break
            self._check_waitable(records)
            assert self._cycle_done is not None
            await self._cycle_done.wait()
        pending = [
            t for r in records for t in self._callback_tasks.get(r.job_id, ()) if t is not caller
        ]
        if pending:
            await asyncio.wait(pending)

    def _check_waitable(self, records: Sequence[JobRecord]) -> None:
        jobs = self.executor.records
        for record in records:
            if not record.status.is_terminal and jobs.get(record.job_id) is not record:
                raise ValueError(
                    f"job {record.job_id} has not ended and is not tracked by this monitor's "
                    f"{type(self.executor).__name__}, so it can never end here "
                    "(was it removed, or submitted through another executor?)"
                )

    def _timeout_error(
        self, records: Sequence[JobRecord], timeout: float | None
    ) -> WaitTimeoutError:
        unfinished = [
            r
            for r in dict.fromkeys(records)
            if not r.status.is_terminal
            or r.has_pending_callbacks
            or r.job_id in self._callback_tasks
        ]
        shown = [
            f"{r.job_id} ({r.status.value})"
            if not r.status.is_terminal
            else f"{r.job_id} ({r.status.value}, callbacks still running)"
            for r in unfinished[:TIMEOUT_NAMES_SHOWN]
        ]
        more = len(unfinished) - len(shown)
        listed = ", ".join(shown) + (f" and {more} more" if more > 0 else "")
        return WaitTimeoutError(
            f"wait_for timed out after {timeout:g} s with {len(unfinished)} of "
            f"{len(dict.fromkeys(records))} jobs unfinished: {listed}",
            unfinished,
        )


async def _invoke(
    clock: Callable[[], float], callback: Callable[..., Any], record: JobRecord, *args: Any
) -> None:
    """Run one callback; its failure is logged and touches nothing else."""
    _CALLBACK_TASK.set(asyncio.current_task())  # this task's own context: no reset needed
    try:
        began = clock()
        result = callback(record, *args)
        held = clock() - began
        if held >= SLOW_CALLBACK_SECONDS:
            logger.warning(
                "callback %s for job %s held the event loop for %.1f s, and polling and "
                "every other callback waited: make it async, or move its slow part to "
                "asyncio.to_thread",
                getattr(callback, "__qualname__", repr(callback)),
                record.job_id,
                held,
            )
        if inspect.isawaitable(result):
            await result
    except Exception:
        logger.exception("callback for job %s raised", record.job_id)
