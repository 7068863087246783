"""The local executor: each job is a real process on this machine.

It exists so a pipeline runs on a laptop exactly as on a cluster: same scripts, same
records, same callbacks. Each job (plain, array or dependant) is started at submit as a
small detached supervisor process (:mod:`.local_supervisor`, which says why); its PID is
the job id. The supervisor does the waiting (dependencies, slots, ``max_concurrent``) and
records every start and end in the job's events file; this class only translates those
events into observations.

The submitting executor learns of each event the moment it is written (the supervisor
writes a byte into a pipe this process reads from the event loop), so an exit reaches the
callbacks without waiting for a poll. Any other process (``reconnect()``, ``track(pid)``,
``cancel(pid)``) reads the same events file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..config import ClusterConfig
from ..core import Executor
from ..errors import SubmitError, UnknownJobError
from ..jobspec import JobSpec
from ..models import ArrayElement, JobRecord, JobStatus
from ..options import LocalOptions
from ..runner import CommandRunner, terminate_process_group
from ..status import Observation, QueryResult, end_job, roll_up_array, update_record, utcnow
from ..table import record_dependency_failure
from ..units import parse_walltime_seconds
from .local_events import apply_event, event_time
from .local_supervisor import (
    CANCEL_SIGNALS,
    KILL_GRACE_SECONDS,
    SUPERVISOR_PATH,
    command_line,
    drain,
    events_path,
    process_gone,
    read_events,
    supervised_script,
)

logger = logging.getLogger("cluster_api")

#: Processes running at once per log folder when ``local_max_running`` is not set: like a
#: batch scheduler's slots, a burst of submissions queues instead of forking thousands.
DEFAULT_MAX_RUNNING = max(8, 4 * (os.cpu_count() or 1))
#: Seconds between two looks at a cancelled job's supervisor until it is gone.
CANCEL_CHECK_SECONDS = 0.02
#: How long a cancel waits beyond the supervisor's own grace period before it kills it.
CANCEL_MARGIN_SECONDS = 2.0


@dataclass
class _Child:
    """A supervisor this process started: its process, the read end of its pipe and the
    event loop that watches that pipe."""

    popen: subprocess.Popen[bytes]
    wake: int
    loop: asyncio.AbstractEventLoop | None = None


class LocalExecutor(Executor):
    """Runs each job (and each array element) as a local process."""

    name = "local"
    array_index_variable = "ARRAY_INDEX"
    records_cancel_as_done = True
    options = LocalOptions

    def __new__(
        cls, config: ClusterConfig | None = None, *, runner: CommandRunner | None = None
    ) -> LocalExecutor:
        """With ``ssh`` in the config the jobs run on that host instead (`.local_remote`)."""
        if cls is LocalExecutor and config is not None and config.ssh is not None:
            from .local_remote import RemoteLocalExecutor

            return super().__new__(RemoteLocalExecutor)
        return super().__new__(cls)

    def __init__(
        self, config: ClusterConfig | None = None, *, runner: CommandRunner | None = None
    ) -> None:
        super().__init__(config, runner=runner)
        self.max_running = self.config.local_max_running or DEFAULT_MAX_RUNNING
        self._children: dict[str, _Child] = {}
        self._offsets: dict[str, int] = {}  # bytes of each job's events file applied
        self._finished: set[str] = set()  # jobs whose supervisor recorded its last event
        self._exit_watches: dict[str, int] = {}  # pidfds of supervisors started elsewhere
        self._force_killed: set[str] = set()

    # -- submission --------------------------------------------------------------------
    def _validate(self, spec: JobSpec) -> None:
        super()._validate(spec)
        for job_id in spec.depends_on:
            dep = self._jobs.get(job_id)
            if dep is None or dep.script_path is None:
                raise ValueError(
                    f"unknown dependency {job_id!r}: the local executor waits only for jobs "
                    "it submitted or reconnected to"
                )
        if spec.max_concurrent is not None and spec.max_concurrent > self.max_running:
            logger.warning(
                "max_concurrent=%d for %s is more than local_max_running=%d: at most %d "
                "processes run at once (set local_max_running in the config to change that)",
                spec.max_concurrent,
                spec.name,
                self.max_running,
                self.max_running,
            )

    def _slots_directory(self) -> str:
        return os.path.join(os.path.abspath(self.config.log_directory), "local-slots")

    def _plan(self, spec: JobSpec, slots: str, notify_fd: int | None) -> dict[str, Any]:
        """What the supervisor of ``spec`` is told (its SPEC argument)."""
        res = spec.resources
        after = []
        for job_id in spec.depends_on:
            dep = self._jobs[job_id]
            if dep.status is not JobStatus.DONE:
                assert dep.script_path is not None  # checked by _validate
                after.append(
                    {
                        "id": job_id,
                        "pid": _pid(job_id),
                        "events": events_path(os.path.abspath(dep.script_path)),
                    }
                )
        return {
            "work_dir": os.path.abspath(res.work_dir),
            "stdout": res.stdout_path,
            "stderr": res.stderr_path,
            "array": spec.array_range,
            "max_concurrent": spec.max_concurrent,
            "walltime": parse_walltime_seconds(res.walltime) if res.walltime else None,
            "inherit_env": spec.inherit_env,
            "after": after,
            "slots": [slots, self.max_running],
            "notify_fd": notify_fd,
        }

    async def _submit_script(self, spec: JobSpec, script_path: str) -> str:
        try:  # the supervisors' slot files; refused now rather than failing the job later
            os.makedirs(self._slots_directory(), exist_ok=True)
        except OSError as exc:
            raise SubmitError(f"cannot create {self._slots_directory()}: {exc}") from exc
        work_dir = os.path.abspath(spec.resources.work_dir)
        wake, notify = os.pipe()
        os.set_blocking(wake, False)
        plan = self._plan(spec, self._slots_directory(), notify)
        argv = [
            sys.executable,
            "-I",
            "-S",
            SUPERVISOR_PATH,
            os.path.abspath(script_path),
            json.dumps(plan),
        ]
        # The supervisor starts with the cancel signals blocked (the mask survives exec)
        # and unblocks them once its handlers are in place: a cancel that arrives while
        # Python is still starting waits for it instead of killing it unrecorded.
        previous_mask = signal.pthread_sigmask(signal.SIG_BLOCK, CANCEL_SIGNALS)
        try:
            popen = subprocess.Popen(
                argv,
                cwd=work_dir,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                pass_fds=(notify,),
                start_new_session=True,
            )
        except OSError as exc:
            os.close(wake)
            with contextlib.suppress(OSError):
                os.unlink(script_path)
            raise SubmitError(f"cannot start local job {spec.name}: {exc}") from exc
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, previous_mask)
            os.close(notify)
        job_id = str(popen.pid)
        self._children[job_id] = _Child(popen, wake)
        return job_id

    def _after_register(self, record: JobRecord) -> None:
        self._watch_child(record.job_id)

    def _watch_child(self, job_id: str) -> None:
        """Read the supervisor's pipe from the running loop (again, when a program runs
        one ``asyncio.run`` to submit and another to wait)."""
        child = self._children[job_id]
        loop = asyncio.get_running_loop()
        if child.loop is not loop:
            loop.add_reader(child.wake, self._on_wake, job_id)
            child.loop = loop

    def _on_wake(self, job_id: str) -> None:
        """The supervisor wrote events (or exited: end of file on its pipe)."""
        child = self._children[job_id]
        ended = drain(child.wake)
        self._refresh(job_id)
        if ended:
            asyncio.get_running_loop().remove_reader(child.wake)
            os.close(child.wake)
            self._reap(job_id)

    def _reap(self, job_id: str) -> None:
        child = self._children[job_id]
        returncode = child.popen.poll()
        if returncode is None:  # the pipe closed a moment before the process ended
            asyncio.get_running_loop().call_later(0.01, self._reap, job_id)
            return
        del self._children[job_id]
        self._refresh(job_id)
        if job_id not in self._finished:
            self._supervisor_lost(job_id, f"exit status {returncode}")

    # -- events ------------------------------------------------------------------------
    def _refresh(self, job_id: str) -> None:
        """Apply the events the job's supervisor wrote since the last look."""
        record = self._jobs.get(job_id)
        if record is None or record.script_path is None:
            return
        events = self._new_events(job_id, record.script_path)
        if not events:
            return
        for event in events:
            self._apply_event(record, event)
        if record.is_array:
            roll_up_array(record)
        self.persist([record])
        self._notify_change()

    def _new_events(self, job_id: str, script_path: str) -> list[dict[str, Any]]:
        """The job's events past those already applied."""
        path = events_path(os.path.abspath(script_path))
        events, self._offsets[job_id] = read_events(path, self._offsets.get(job_id, 0))
        return events

    def _apply_event(self, record: JobRecord, event: dict[str, Any]) -> None:
        if not apply_event(record, event):
            return
        # The supervisor's last word: it ends what it left unfinished.
        self._finished.add(record.job_id)
        culprits = event.get("dependency_failed")
        if culprits and "dependency_failed" not in record.metadata:
            record_dependency_failure(record, [str(c) for c in culprits])
        self._close_out(record, JobStatus.FAILED, event_time(event))

    def _close_out(self, record: JobRecord, status: JobStatus, when: datetime | None) -> None:
        """End whatever the supervisor left unfinished (a dependant that never ran; parts
        our forced kill of a supervisor took with it)."""
        end_job(record, Observation(status, finish_time=when or utcnow()))

    def _supervisor_lost(self, job_id: str, how: str) -> None:
        """The job's supervisor ended without recording the job's end. After our forced
        kill (which took the job's processes too) the job is KILLED. Otherwise (killed
        by someone else, crashed unrecorded) a part that never started can no longer
        run and fails now; a part it started runs on in a session of its own, or ended
        leaving its exit file: that file tells how it ended, as for a job whose
        supervisor another process started (and the zombie check ends it if none
        comes)."""
        record = self._jobs.get(job_id)
        if record is None:
            return
        if job_id in self._force_killed:
            self._finished.add(job_id)
            self._close_out(record, JobStatus.KILLED, None)
        else:
            record.metadata["executor_error"] = f"local supervisor ended ({how}) before the job"
            logger.error(
                "local job %s: supervisor ended (%s) before the job; what it started ends "
                "as its exit files say",
                job_id,
                how,
            )
            self._table.resolve_from_exit_files(record, {})
            running = _still_running(record)
            for index, part in _parts(record):
                if not part.status.is_terminal and _started_pid(record, index) not in running:
                    update_record(part, Observation(JobStatus.FAILED, finish_time=utcnow()))
            if record.is_array:
                roll_up_array(record)
        self.persist([record])
        self._notify_change()

    # -- status ------------------------------------------------------------------------
    async def _query(self, active: dict[str, JobRecord]) -> QueryResult:
        """Jobs started here are updated the moment their supervisor writes; the others
        are read from their events files. A job whose supervisor is gone without having
        finished is not mentioned (its exit files, then the zombie check, decide)."""
        result = QueryResult()
        for job_id, record in active.items():
            if job_id in self._children:
                self._watch_child(job_id)
            else:
                pid = _pid(job_id)
                if record.script_path is None and pid is not None:
                    record.script_path = _script_of(pid)  # a job tracked by its pid alone
                self._refresh(job_id)
                if job_id not in self._finished and not self._supervising(record):
                    continue
                self._watch_exit(job_id)
            result.add_seen(record)
        return result

    def _supervising(self, record: JobRecord) -> bool:
        """Whether the job's supervisor (started by another process) still runs."""
        pid = _pid(record.job_id)
        if pid is None or record.script_path is None or process_gone(pid):
            return False
        return supervised_script(pid) == os.path.abspath(record.script_path)

    def _watch_exit(self, job_id: str) -> None:
        """Learn at once when a supervisor started elsewhere exits (Linux pidfd); without
        pidfd the next poll does."""
        pid = _pid(job_id)
        if job_id in self._exit_watches or job_id in self._finished or pid is None:
            return
        try:
            fd = os.pidfd_open(pid)
        except (AttributeError, OSError):
            return
        self._exit_watches[job_id] = fd
        asyncio.get_running_loop().add_reader(fd, self._adopted_exit, job_id)

    def _adopted_exit(self, job_id: str) -> None:
        fd = self._exit_watches.pop(job_id)
        asyncio.get_running_loop().remove_reader(fd)
        os.close(fd)
        self._refresh(job_id)
        self._notify_change()

    # -- cancellation ------------------------------------------------------------------
    async def _cancel_ids(self, job_ids: list[str], *, done: bool) -> None:
        """Signal each job's supervisor (SIGUSR1 asks it to record the job as done) and
        return once every one of them is gone, their records updated. An id whose process
        is not one of this library's jobs is refused without a signal. A job whose
        supervisor died unrecorded has the processes it had started signalled instead."""
        sig = signal.SIGUSR1 if done else signal.SIGTERM
        refused: list[str] = []
        signalled: list[tuple[str, int]] = []
        for job_id in job_ids:
            record = self._jobs.get(job_id)
            self._refresh(job_id)
            if job_id in self._finished:
                continue  # it had already ended: its record keeps its true end
            pid = _pid(job_id)
            alive = pid is not None and not process_gone(pid)
            script = supervised_script(pid) if pid is not None and alive else None
            expected = None
            if record is not None and record.script_path is not None:
                expected = os.path.abspath(record.script_path)
            if pid is None or script is None or expected not in (None, script):
                if alive or expected is None:
                    refused.append(job_id)
                elif record is not None:  # its supervisor is gone; what it started may run on
                    for element in _still_running(record):
                        terminate_process_group(element, signal.SIGTERM)
                        signalled.append((job_id, element))
                continue
            if record is not None and record.script_path is None:
                record.script_path = script  # tracked by pid alone: now its events can be read
            terminate_process_group(pid, sig)
            signalled.append((job_id, pid))
        await self._until_gone(signalled)
        if refused:
            raise UnknownJobError(
                f"not cancelled: {', '.join(refused)} is not the pid of a running local job "
                "of cluster_api (nothing was signalled)",
                refused,
            )

    async def _until_gone(self, signalled: list[tuple[str, int]]) -> None:
        deadline = time.monotonic() + KILL_GRACE_SECONDS + CANCEL_MARGIN_SECONDS
        waiting = signalled
        while waiting:
            waiting = [(j, p) for j, p in waiting if not self._gone(j, p)]
            if waiting and time.monotonic() > deadline:
                for job_id, pid in waiting:
                    logger.error("local job %s: supervisor ignored the cancel; killing it", job_id)
                    self._force_killed.add(job_id)
                    self._kill_everything(job_id, pid)
                deadline = float("inf")
            if waiting:
                await asyncio.sleep(CANCEL_CHECK_SECONDS)
        for job_id, _ in signalled:
            if job_id in self._force_killed and job_id not in self._finished:
                self._supervisor_lost(job_id, "killed by cancel")
            else:
                self._refresh(job_id)

    def _gone(self, job_id: str, pid: int) -> bool:
        if job_id in self._children:
            self._watch_child(job_id)
            return False  # _reap removes it once the process ended and its events are read
        return process_gone(pid)

    def _kill_everything(self, job_id: str, pid: int) -> None:
        """SIGKILL a supervisor and each element group it started (from its events)."""
        script = supervised_script(pid)
        terminate_process_group(pid, signal.SIGKILL)
        if script is None:
            return
        events, _ = read_events(events_path(script))
        for event in events:
            element = event.get("pid")
            if event.get("event") != "start" or not isinstance(element, int):
                continue
            if _runs_script(element, script):  # still that element, not a reused pid
                terminate_process_group(element, signal.SIGKILL)

    async def _cancel_name_pattern(self, pattern: str) -> None:
        await self._cancel_ids(
            [j for j in self.active_jobs if j in self._table.cancel_requested], done=False
        )


def _pid(job_id: str) -> int | None:
    return int(job_id) if job_id.isdigit() and int(job_id) > 0 else None


def _parts(record: JobRecord) -> list[tuple[int | None, JobRecord | ArrayElement]]:
    """What runs as a process of its own: the job, or each element of an array."""
    if record.is_array:
        return list(record.array_elements.items())
    return [(None, record)]


def _started_pid(record: JobRecord, index: int | None) -> int | None:
    """The PID the supervisor reported for the job (element ``index``) when it started."""
    pid = (
        record.metadata.get("pid")
        if index is None
        else record.metadata.get("pids", {}).get(str(index))
    )
    return pid if isinstance(pid, int) else None


def _still_running(record: JobRecord) -> list[int]:
    """The PIDs of the job's unfinished parts whose processes still run its script."""
    script = os.path.abspath(record.script_path or "")
    pids = [_started_pid(record, i) for i, part in _parts(record) if not part.status.is_terminal]
    return [pid for pid in pids if pid is not None and _runs_script(pid, script)]


def _runs_script(pid: int, script: str) -> bool:
    """Whether process ``pid`` still runs ``script`` (and is not a reused PID)."""
    argv = command_line(pid)
    return argv is not None and script in argv


def _script_of(pid: int) -> str | None:
    return supervised_script(pid) if not process_gone(pid) else None
