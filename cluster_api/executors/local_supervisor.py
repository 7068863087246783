"""The process that is a local job: it waits, runs the script (or the array's elements),
and writes down how each one ended.

Why a process of its own per job (and not tasks in the submitting program):

- the job id is this process's PID, so ids are unique among live processes of the machine
  (two programs sharing a journal and a work folder no longer hand out the same id, nor
  write into one log file);
- it runs in its own session and outlives the program that submitted it, so work that was
  still waiting (a dependant, the later elements of an array) is never stranded, and the
  CLI returns at once;
- it sees what happened to each process, so a job is KILLED only when our cancel signal
  reached it while it ran, never merely because a cancel was asked.

It is started as ``python -I -S local_supervisor.py SCRIPT SPEC_JSON`` and imports only
the standard library: a job costs about 6 MB of memory while it waits and 25 ms of CPU to
start (the price of not being stranded). Each element runs in a process group of its
own; a cancel (SIGTERM, or SIGUSR1 for "record it as done") reaches this
process, which passes SIGTERM to every running element and SIGKILL after a grace period,
then exits. Everything it learns is appended, one JSON object per line, to the events file
beside the script (``{stem}.events``): that file is the job's state for any process, and
the submitting process is woken through a pipe each time a line is added. At most
``slots`` processes run at once per log folder, across every supervisor: each running
process holds an ``flock`` on one slot file, and waiters queue on one gate lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import select
import signal
import sys
import threading
import time
from typing import Any

#: Seconds between the SIGTERM and the SIGKILL of a cancelled process, as schedulers do.
KILL_GRACE_SECONDS = 5.0
#: Seconds between two looks at a dependency's events when its exit cannot be awaited.
DEPENDENCY_POLL_SECONDS = 0.25
#: Seconds between two looks at the slot files while every slot is taken.
SLOT_POLL_SECONDS = 0.02
#: Signals that cancel a job: SIGUSR1 asks for the job to be recorded as done.
CANCEL_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGUSR1)
MINIMAL_ENV = ("PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TMPDIR")
SUPERVISOR_PATH = os.path.abspath(__file__)
#: The events a supervisor writes (see ``Supervisor.emit``).
EVENT_KINDS = ("start", "end", "error", "finished")


def events_path(script_path: str) -> str:
    """Where the supervisor of ``script_path`` records what happened."""
    stem = script_path[:-3] if script_path.endswith(".sh") else script_path
    return f"{stem}.events"


def log_path(
    template: str | None, work_dir: str, stream: str, job_id: str, index: int | None
) -> str:
    """The log file of one process; ``%J``/``%I`` in a given path work as on LSF."""
    if template is None:
        suffix = job_id if index is None else f"{job_id}.{index}"
        return os.path.join(work_dir, f"{stream}.{suffix}.log")
    path = template.replace("%J", job_id).replace("%I", str(index or 0))
    return path if os.path.isabs(path) else os.path.join(work_dir, path)


def command_line(pid: int) -> list[str] | None:
    """The argv of a live process, or None when it is gone (or cannot be read)."""
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            raw = handle.read()
    except FileNotFoundError:
        if os.path.isdir("/proc"):
            return None
        return _command_line_from_ps(pid)
    except OSError:
        return None
    return [part.decode(errors="replace") for part in raw.split(b"\0") if part]


def _command_line_from_ps(pid: int) -> list[str] | None:
    """Without /proc (macOS): ``ps`` prints the command, already joined by spaces."""
    import subprocess

    try:
        out = subprocess.run(
            ["ps", "-o", "command=", "-p", str(pid)], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out.split(" ") if out else None


def supervised_script(pid: int) -> str | None:
    """The job script that process ``pid`` supervises, or None when ``pid`` is not a
    supervisor of this library (gone, a zombie, or a reused pid running something else)."""
    argv = command_line(pid)
    if not argv or SUPERVISOR_PATH not in argv:
        return None
    where = argv.index(SUPERVISOR_PATH)
    return argv[where + 1] if len(argv) > where + 1 else None


def process_gone(pid: int) -> bool:
    """True once ``pid`` has exited (a zombie nobody has reaped yet counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] == b"Z"
    except (OSError, IndexError):
        return False


def read_events(path: str, offset: int = 0) -> tuple[list[dict[str, Any]], int]:
    """Complete event lines from ``offset`` on, and the offset after the last of them."""
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            data = handle.read()
    except OSError:
        return [], offset
    events, end = parse_events(data, path)
    return events, offset + end


def parse_events(data: bytes, source: str) -> tuple[list[dict[str, Any]], int]:
    """The complete event lines of ``data`` (read from ``source``) and the number of
    bytes they take (a line still being written is left for the next look)."""
    end = data.rfind(b"\n") + 1
    events = []
    for line in data[:end].splitlines():
        try:
            event = json.loads(line)
        except ValueError:
            event = None
        if isinstance(event, dict):
            events.append(event)
        else:  # a torn line from a crash, a damaged file: what follows is still readable
            import logging  # only then: a supervisor starts with as little as it can

            logging.getLogger("cluster_api").warning(
                "%s: skipped an unreadable event line %r", source, line[:200]
            )
    return events, end


def drain(fd: int) -> bool:
    """Read a non-blocking pipe empty; True when its writers are all gone (end of file)."""
    try:
        while os.read(fd, 4096):
            pass
    except BlockingIOError:
        return False
    return True


def verdict(code: int | None, signalled: bool, as_done: bool, timed_out: bool) -> str:
    """How one process ended, from what happened to it: exit 0 is done; killed at its
    walltime is failed; a non-zero exit after our cancel signal reached it is killed (done
    when the cancel asked for that); any other non-zero exit is failed."""
    if timed_out:
        return "failed"
    if code == 0:
        return "done"
    if signalled:
        return "done" if as_done else "killed"
    return "failed"


class SlotBroker:
    """Hands out machine-wide process slots (see the module docstring) from a thread, so
    the supervisor keeps watching its running elements while it queues for the next. Free
    slots are taken together, so elements that can start at once do."""

    def __init__(self, directory: str, count: int) -> None:
        os.makedirs(directory, exist_ok=True)
        self.directory, self.count = directory, count
        self.ready_r, self._ready_w = os.pipe()
        os.set_blocking(self.ready_r, False)
        self.granted: list[int] = []
        self.stopped = False
        self._wanted = 0
        self._changed = threading.Condition()
        threading.Thread(target=self._serve, daemon=True).start()

    def request(self) -> None:
        with self._changed:
            self._wanted += 1
            self._changed.notify()

    def take(self) -> list[int]:
        with self._changed:
            granted, self.granted = self.granted, []
        return granted

    def stop(self) -> None:
        with self._changed:
            self.stopped = True
            self._changed.notify()

    def _open(self, name: str) -> int:
        return os.open(os.path.join(self.directory, name), os.O_RDWR | os.O_CREAT, 0o600)

    def _serve(self) -> None:
        while True:
            with self._changed:
                self._changed.wait_for(lambda: self._wanted > 0 or self.stopped)
                if self.stopped:
                    return
            gate = self._open("gate.lock")
            try:
                fcntl.flock(gate, fcntl.LOCK_EX)
                slots = self._free_slots()
            finally:
                os.close(gate)  # closing releases the gate
            if not slots:
                return
            with self._changed:
                self.granted += slots
                self._wanted -= len(slots)
            os.write(self._ready_w, b"s")

    def _free_slots(self) -> list[int]:
        """Wait for at least one free slot, then take as many as are wanted and free."""
        while not self.stopped:
            taken: list[int] = []
            for number in range(self.count):
                if len(taken) >= self._wanted:
                    break
                fd = self._open(f"slot.{number}.lock")
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    taken.append(fd)
                except BlockingIOError:
                    os.close(fd)
            if taken:
                return taken
            time.sleep(SLOT_POLL_SECONDS)
        return []


class Process:
    """One running script (the job's, or one array element's)."""

    def __init__(self, index: int | None, popen: Any, slot: int, deadline: float | None) -> None:
        self.index, self.popen, self.slot, self.deadline = index, popen, slot, deadline
        self.signalled = False
        self.timed_out = False
        self.killed_at: float | None = None


class Supervisor:
    def __init__(self, script: str, spec: dict[str, Any]) -> None:
        self.script, self.spec = script, spec
        self.job_id = str(os.getpid())
        self.host = os.uname().nodename
        self.events = os.open(events_path(script), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        notify = spec.get("notify_fd")
        self.notify: int | None = notify if isinstance(notify, int) else None
        if self.notify is not None:
            os.set_blocking(self.notify, False)
        array = spec.get("array")
        self.pending: list[int | None] = list(range(array[0], array[1] + 1)) if array else [None]
        self.limit = min(spec.get("max_concurrent") or len(self.pending), len(self.pending))
        self.running: dict[int, Process] = {}
        self.cancelled: str | None = None  # "kill" or "done" once a cancel arrived
        self.asked = 0  # slots requested from the broker and not granted yet
        self._wake_r, wake_w = os.pipe()
        for fd in (self._wake_r, wake_w):
            os.set_blocking(fd, False)
        signal.set_wakeup_fd(wake_w)
        for signum in CANCEL_SIGNALS:
            signal.signal(signum, self._on_cancel)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # wakes select via the wakeup fd
        signal.pthread_sigmask(signal.SIG_UNBLOCK, CANCEL_SIGNALS)  # blocked by the submitter

    # -- reporting ---------------------------------------------------------------------
    def emit(self, event: str, **fields: Any) -> None:
        line = json.dumps({"event": event, "time": time.time(), **fields}) + "\n"
        os.write(self.events, line.encode())
        if self.notify is not None:
            try:
                os.write(self.notify, b".")
            except BlockingIOError:
                pass  # the reader already has a wake-up waiting
            except OSError:  # the submitting process is gone: the file is enough
                os.close(self.notify)
                self.notify = None

    def _on_cancel(self, signum: int, _frame: Any) -> None:
        if self.cancelled is None:
            self.cancelled = "done" if signum == signal.SIGUSR1 else "kill"
        for proc in self.running.values():
            self._signal(proc, signal.SIGTERM)

    def _signal(self, proc: Process, sig: int) -> None:
        if sig == signal.SIGTERM:
            proc.signalled = True
            proc.killed_at = proc.killed_at or time.monotonic() + KILL_GRACE_SECONDS
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.popen.pid, sig)

    # -- the job -----------------------------------------------------------------------
    def run(self) -> None:
        culprits = self.wait_for_dependencies()
        if culprits:
            self.emit("finished", dependency_failed=culprits)
            return
        slots = self.spec.get("slots") or [None, None]
        broker = SlotBroker(slots[0], slots[1]) if self.pending and not self.cancelled else None
        while self.running or (self.pending and not self.cancelled):
            if broker is not None and not self.cancelled:
                while self.pending and len(self.running) + self.asked < self.limit:
                    broker.request()
                    self.asked += 1
            self.wait(broker.ready_r if broker is not None else None)
            if broker is not None:
                self.start_granted(broker)
            self.reap()
            self.enforce_limits()
        if broker is not None:
            broker.stop()
        as_done = self.cancelled == "done"
        for index in self.pending:  # never started: cancelled while queued
            reason = "cancelled before it started"
            self.emit("end", index=index, status="done" if as_done else "killed", reason=reason)
        self.emit("finished")

    def wait_for_dependencies(self) -> list[str]:
        """Block until every dependency has finished; the ids of those that did not end
        done (or whose supervisor vanished without finishing)."""
        after = list(self.spec.get("after") or [])
        culprits: list[str] = []
        while after and not self.cancelled:
            for dep in list(after):
                status = _dependency_status(dep)
                if status is not None:
                    after.remove(dep)
                    if status != "done":
                        culprits.append(dep["id"])
            if after:
                self.wait(None, _dependency_fds(after), DEPENDENCY_POLL_SECONDS)
        if self.cancelled and after:
            return []  # run() reports the unstarted elements as cancelled
        return culprits

    def wait(self, ready: int | None, extra: list[int] | None = None, limit: float = 1.0) -> None:
        fds = [self._wake_r, *([ready] if ready is not None else []), *(extra or [])]
        now = time.monotonic()
        for proc in self.running.values():
            for moment in (proc.deadline, proc.killed_at):
                if moment is not None:
                    limit = min(limit, max(0.0, moment - now))
        with contextlib.suppress(InterruptedError):
            select.select(fds, [], [], limit)
        for fd in extra or []:
            os.close(fd)
        drain(self._wake_r)

    def start_granted(self, broker: SlotBroker) -> None:
        drain(broker.ready_r)
        started = []
        for slot in broker.take():
            self.asked -= 1
            if self.cancelled or not self.pending:
                os.close(slot)
            elif (proc := self.start(self.pending.pop(0), slot)) is not None:
                started.append(proc)
        for proc in started:  # reported together: elements that start at once are seen so
            self.emit("start", index=proc.index, pid=proc.popen.pid, host=self.host)
        if self.cancelled:  # a cancel arrived while they were being started
            for proc in started:
                self._signal(proc, signal.SIGTERM)

    def start(self, index: int | None, slot: int) -> Process | None:
        import subprocess

        spec = self.spec
        work_dir = spec["work_dir"]
        if spec.get("inherit_env", True):
            env = dict(os.environ)
        else:
            env = {k: os.environ[k] for k in MINIMAL_ENV if k in os.environ}
        if index is not None:
            env["LSB_JOBINDEX"] = env["ARRAY_INDEX"] = str(index)
        try:
            out_path = log_path(spec.get("stdout"), work_dir, "stdout", self.job_id, index)
            err_path = log_path(spec.get("stderr"), work_dir, "stderr", self.job_id, index)
            with open(out_path, "ab") as out, open(err_path, "ab") as err:
                popen = subprocess.Popen(
                    [self.script],
                    cwd=work_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
        except OSError as exc:
            os.close(slot)
            self.emit("end", index=index, status="failed", reason=f"cannot start: {exc}")
            return None
        walltime = spec.get("walltime")
        deadline = time.monotonic() + walltime if walltime else None
        proc = self.running[popen.pid] = Process(index, popen, slot, deadline)
        return proc

    def reap(self) -> None:
        for pid, proc in list(self.running.items()):
            returncode = proc.popen.poll()
            if returncode is None:
                continue
            del self.running[pid]
            os.close(proc.slot)
            code = returncode if returncode >= 0 else 128 - returncode
            status = verdict(code, proc.signalled, self.cancelled == "done", proc.timed_out)
            reason = "TERM_RUNLIMIT: walltime exceeded" if proc.timed_out else None
            self.emit("end", index=proc.index, status=status, exit_code=code, reason=reason)

    def enforce_limits(self) -> None:
        now = time.monotonic()
        for proc in self.running.values():
            if proc.deadline is not None and now >= proc.deadline and not proc.timed_out:
                proc.timed_out = True
                self._signal(proc, signal.SIGKILL)
            elif proc.killed_at is not None and now >= proc.killed_at:
                self._signal(proc, signal.SIGKILL)

    def crashed(self, exc: BaseException) -> None:
        """A bug here must not leave processes running untracked nor the job unfinished."""
        self.emit("error", message=f"{type(exc).__name__}: {exc}")
        for proc in self.running.values():
            self._signal(proc, signal.SIGKILL)
        for proc in self.running.values():
            proc.popen.wait()
        self.running.clear()
        self.emit("finished")


def _dependency_status(dep: dict[str, Any]) -> str | None:
    """``"done"``/``"failed"``/… once dependency ``dep`` has finished, else None. A
    dependency whose supervisor is gone without finishing counts as failed."""
    events, _ = read_events(dep["events"])
    if any(e.get("event") == "finished" for e in events):
        if any(e.get("dependency_failed") for e in events):
            return "killed"
        ends = [e.get("status") for e in events if e.get("event") == "end"]
        return "done" if ends and all(s == "done" for s in ends) else "failed"
    if supervised_script(dep["pid"]) is None or process_gone(dep["pid"]):
        events, _ = read_events(dep["events"])  # it may have finished just now
        if any(e.get("event") == "finished" for e in events):
            return _dependency_status(dep)
        return "lost"
    return None


def _dependency_fds(after: list[dict[str, Any]]) -> list[int]:
    """pidfds of the dependencies' supervisors (readable when they exit), where the
    system has them; elsewhere the caller looks again after a short wait."""
    fds = []
    for dep in after:
        with contextlib.suppress(AttributeError, OSError):
            fds.append(os.pidfd_open(dep["pid"]))
    return fds


def main(argv: list[str]) -> int:
    script, spec_text = argv[1], argv[2]
    supervisor = Supervisor(script, json.loads(spec_text))
    try:
        supervisor.run()
    except Exception as exc:
        supervisor.crashed(exc)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
