"""The local executor: each job is a real process on this machine.

It exists so a pipeline runs on a laptop exactly as on a cluster: same scripts, same
records, same callbacks. Processes run in their own session (cancel kills the whole
tree), and the executor learns of an exit the moment it happens instead of polling.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import subprocess
import time
from typing import ClassVar

from ..config import ClusterConfig
from ..core import (
    Executor,
    JobSpec,
    Observation,
    QueryResult,
    roll_up_array,
    terminate_process_group,
    update_element,
    update_record,
    utcnow,
)
from ..models import ArrayElement, JobRecord, JobStatus
from ..script import exit_file_path
from ..units import parse_walltime_seconds

logger = logging.getLogger("cluster_api")

# Seconds between SIGTERM and SIGKILL when cancelling, as schedulers do.
KILL_GRACE_SECONDS = 5.0
# Processes running at once: like a batch scheduler's slots, so a burst of submissions
# queues instead of forking thousands of processes (and starving the event loop).
MAX_RUNNING = max(8, 4 * (os.cpu_count() or 1))
_MINIMAL_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TMPDIR")


class LocalExecutor(Executor):
    """Runs each job (and each array element) as a local process."""

    name = "local"
    array_index_variable = "ARRAY_INDEX"
    records_cancel_as_done = True
    _last_id: ClassVar[int] = 0

    def __init__(self, config: ClusterConfig | None = None) -> None:
        super().__init__(config)
        self._specs: dict[str, JobSpec] = {}
        self._runners: dict[str, asyncio.Task[None]] = {}
        self._processes: dict[tuple[str, int | None], subprocess.Popen[bytes]] = {}
        self._as_done: set[str] = set()
        self._state = asyncio.Condition()
        self._slots = asyncio.Semaphore(MAX_RUNNING)
        self._cancel_events: dict[str, asyncio.Event] = {}
        self._host = socket.gethostname()

    @classmethod
    def _new_job_id(cls) -> str:
        """Increasing ids that stay unique across restarts (log names derive from them)."""
        cls._last_id = max(cls._last_id + 1, int(time.time() * 1000))
        return str(cls._last_id)

    def _validate(self, spec: JobSpec) -> None:
        super()._validate(spec)
        for job_id in spec.depends_on:
            if job_id not in self._jobs:
                raise ValueError(
                    f"unknown dependency {job_id!r}: the local executor only knows its own jobs"
                )

    async def _submit_script(self, spec: JobSpec, script_path: str) -> str:
        job_id = self._new_job_id()
        self._specs[job_id] = spec
        return job_id

    def _after_register(self, record: JobRecord) -> None:
        self._runners[record.job_id] = asyncio.create_task(
            self._run_job(record), name=f"cluster_api-local-{record.job_id}"
        )

    async def _run_job(self, record: JobRecord) -> None:
        spec = self._specs.pop(record.job_id)
        try:
            if not await self._dependencies_met(record):
                return
            if record.is_array:
                limit = asyncio.Semaphore(spec.max_concurrent or len(record.array_elements) or 1)
                await asyncio.gather(
                    *(
                        self._run_element(record, spec, element, limit)
                        for element in record.array_elements.values()
                    )
                )
            else:
                await self._run_single(record, spec)
        except Exception:  # a bug here must not leave the job forever "running"
            logger.exception("local job %s crashed in the executor", record.job_id)
            record.metadata["executor_error"] = True
            record.finish_time = utcnow()
            record.advance(JobStatus.FAILED)
        finally:
            self._runners.pop(record.job_id, None)
            self._cancel_events.pop(record.job_id, None)
            self.persist([record])
            await self._changed_state()

    async def _dependencies_met(self, record: JobRecord) -> bool:
        """Wait until every dependency ended; False (and the job FAILED) if one did not succeed."""
        if not record.depends_on:
            return True
        deps = [self._jobs.get(d) for d in record.depends_on]

        def settled() -> bool:
            cancelled = record.job_id in self._cancel_requested
            return cancelled or all(d is None or d.status.is_terminal for d in deps)

        async with self._state:
            await self._state.wait_for(settled)
        if record.job_id in self._cancel_requested:
            record.finish_time = utcnow()
            record.advance(JobStatus.KILLED)
            return False
        for dep in deps:
            if dep is not None and dep.status is not JobStatus.DONE:
                record.metadata["dependency_failed"] = dep.job_id
                record.finish_time = utcnow()
                record.advance(JobStatus.FAILED)
                return False
        return True

    async def _run_single(self, record: JobRecord, spec: JobSpec) -> None:
        if not await self._take_slot(record.job_id):
            record.finish_time = utcnow()
            record.advance(JobStatus.KILLED)
            return
        try:
            record.start_time, record.exec_host = utcnow(), self._host
            record.advance(JobStatus.RUNNING)
            await self._changed_state()
            obs = await self._run_process(record, spec, None)
            update_record(record, obs)
        finally:
            self._slots.release()

    async def _run_element(
        self, record: JobRecord, spec: JobSpec, element: ArrayElement, limit: asyncio.Semaphore
    ) -> None:
        async with limit:
            if not await self._take_slot(record.job_id):
                update_element(element, Observation(JobStatus.KILLED, finish_time=utcnow()))
            else:
                try:
                    element.start_time, element.exec_host = utcnow(), self._host
                    update_element(element, Observation(JobStatus.RUNNING))
                    roll_up_array(record)
                    await self._changed_state()
                    obs = await self._run_process(record, spec, element.index)
                    update_element(element, obs)
                finally:
                    self._slots.release()
            roll_up_array(record)
            await self._changed_state()

    async def _take_slot(self, job_id: str) -> bool:
        """Wait for one of the ``max_running`` process slots; False if the job was
        cancelled first (a queued job is cancelled at once, not when a slot frees)."""
        if job_id in self._cancel_requested:
            return False
        if not self._slots.locked():
            await self._slots.acquire()
            return True
        cancelled = self._cancel_events.setdefault(job_id, asyncio.Event())
        acquire = asyncio.ensure_future(self._slots.acquire())
        watch = asyncio.ensure_future(cancelled.wait())
        try:
            await asyncio.wait({acquire, watch}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            watch.cancel()
            if not acquire.done():
                acquire.cancel()
        if acquire.done() and not acquire.cancelled():
            if job_id in self._cancel_requested:
                self._slots.release()
                return False
            return True
        return False

    async def _run_process(
        self, record: JobRecord, spec: JobSpec, index: int | None
    ) -> Observation:
        assert record.script_path is not None
        res = spec.resources
        suffix = record.job_id if index is None else f"{record.job_id}.{index}"
        stdout = _log_path(res.stdout_path, res.work_dir, "stdout", suffix, record.job_id, index)
        stderr = _log_path(res.stderr_path, res.work_dir, "stderr", suffix, record.job_id, index)
        env = (
            dict(os.environ)
            if spec.inherit_env
            else {k: os.environ[k] for k in _MINIMAL_ENV if k in os.environ}
        )
        if index is not None:
            env["LSB_JOBINDEX"] = env["ARRAY_INDEX"] = str(index)
        try:
            with open(stdout, "ab") as out, open(stderr, "ab") as err:
                # Not an asyncio subprocess: asyncio kills its children when the loop
                # closes, and a job must outlive the process that submitted it.
                proc = subprocess.Popen(
                    [record.script_path],
                    cwd=res.work_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
        except OSError as exc:
            logger.error("local job %s could not start: %s", record.job_id, exc)
            return Observation(
                JobStatus.FAILED, finish_time=utcnow(), reason=f"cannot start: {exc}"
            )
        if index is None:
            record.metadata["pid"] = proc.pid
        else:
            record.metadata.setdefault("pids", {})[str(index)] = proc.pid
        self.persist([record])
        self._processes[(record.job_id, index)] = proc
        limit = parse_walltime_seconds(res.walltime) if res.walltime else None
        timed_out = False
        try:
            await asyncio.wait_for(_exited(proc), limit)
        except asyncio.TimeoutError:
            timed_out = True
            terminate_process_group(proc.pid, signal.SIGKILL)
            proc.wait()
        finally:
            self._processes.pop((record.job_id, index), None)
        returncode = proc.returncode if proc.returncode is not None else -signal.SIGKILL
        code = returncode if returncode >= 0 else 128 - returncode
        finished = utcnow()
        if timed_out:
            return Observation(
                JobStatus.FAILED,
                exit_code=code,
                finish_time=finished,
                reason="TERM_RUNLIMIT: walltime exceeded",
            )
        if record.job_id in self._cancel_requested and code != 0:
            status = JobStatus.DONE if record.job_id in self._as_done else JobStatus.KILLED
            return Observation(status, exit_code=code, finish_time=finished)
        status = JobStatus.DONE if code == 0 else JobStatus.FAILED
        return Observation(status, exit_code=code, finish_time=finished)

    async def _changed_state(self) -> None:
        async with self._state:
            self._state.notify_all()
        self._notify_change()

    async def _query(self, active: dict[str, JobRecord]) -> QueryResult:
        """No scheduler to ask: jobs run here are updated the moment they exit. Jobs
        adopted from the journal are seen while one of their processes lives; once none
        does, their exit files tell how they ended."""
        result = QueryResult()
        for job_id, record in active.items():
            if job_id in self._runners:
                result.jobs[job_id] = Observation(record.status)
            elif not _exit_recorded(record) and any(
                _is_job_process(pid, record) for pid in _pids(record)
            ):
                result.jobs[job_id] = Observation(JobStatus.RUNNING)
        return result

    async def _cancel_ids(self, job_ids: list[str], *, done: bool) -> None:
        if done:
            self._as_done.update(job_ids)
        wanted = set(job_ids)
        for job_id in wanted:
            event = self._cancel_events.get(job_id)
            if event is not None:
                event.set()
        targets = [p for (job_id, _), p in self._processes.items() if job_id in wanted]
        for proc in targets:
            terminate_process_group(proc.pid, signal.SIGTERM)
        # Jobs adopted from the journal run in process groups another process started.
        for job_id in wanted - set(self._runners):
            record = self._jobs.get(job_id)
            for pid in _pids(record) if record is not None else []:
                if record is not None and _is_job_process(pid, record):
                    terminate_process_group(pid, signal.SIGTERM)
        await self._changed_state()
        if targets:
            asyncio.get_running_loop().call_later(KILL_GRACE_SECONDS, _kill_survivors, targets)

    async def _cancel_name_pattern(self, pattern: str) -> None:
        await self._cancel_ids(
            [j for j in self.active_jobs if j in self._cancel_requested], done=False
        )


def _kill_survivors(processes: list[subprocess.Popen[bytes]]) -> None:
    for proc in processes:
        if proc.poll() is None:
            terminate_process_group(proc.pid, signal.SIGKILL)


async def _exited(proc: subprocess.Popen[bytes]) -> None:
    """Wait for a child to exit without a thread: its pidfd becomes readable on exit."""
    try:
        pidfd = os.pidfd_open(proc.pid)
    except (AttributeError, OSError):  # no pidfd (not Linux, old kernel)
        await asyncio.to_thread(proc.wait)
        return
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def mark_exited() -> None:
        if not exited.done():
            exited.set_result(None)

    loop.add_reader(pidfd, mark_exited)
    try:
        await exited
    finally:
        loop.remove_reader(pidfd)
        os.close(pidfd)
    proc.wait()


def _pids(record: JobRecord) -> list[int]:
    pids = [record.metadata.get("pid"), *(record.metadata.get("pids") or {}).values()]
    return [p for p in pids if isinstance(p, int)]


def _exit_recorded(record: JobRecord) -> bool:
    """True when a plain job's script already wrote its exit file (it has ended, even if
    its process is not reaped yet)."""
    if record.script_path is None or record.is_array:
        return False
    return os.path.exists(exit_file_path(record.script_path))


def _is_job_process(pid: int, record: JobRecord) -> bool:
    """Whether ``pid`` is still this job's process, not a reused pid: its command line
    names the job's script (where /proc cannot say, a live pid is trusted)."""
    if not _alive(pid):
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            cmdline = handle.read()
    except OSError:
        return True
    script = record.script_path
    return script is None or script.encode() in cmdline


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _log_path(
    template: str | None, work_dir: str, stream: str, suffix: str, job_id: str, index: int | None
) -> str:
    """The log file of one process; ``%J``/``%I`` in a given path work as on LSF."""
    if template is None:
        return os.path.join(work_dir, f"{stream}.{suffix}.log")
    path = template.replace("%J", job_id).replace("%I", str(index or 0))
    return path if os.path.isabs(path) else os.path.join(work_dir, path)
