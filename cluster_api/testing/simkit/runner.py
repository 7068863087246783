"""Job supervision: one detached runner process per submitted job (or whole array).

The runner waits for the job's dependency and for free slots, starts each element in
its own session with the scheduler's variables, enforces the run and memory limits,
carries out kill requests that the kill command left in the state, and records how
each element ended. Everything a scheduler names differently comes in through a
:class:`JobStyle`; the exit reasons it records (``TERM_RUNLIMIT``, ``TERM_MEMLIMIT``,
``TERM_ORPHAN_SYSTEM``, ``TERM_CWD_NOTEXIST``) are the kit's vocabulary.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

from .jobs import STAT_FINISHED, finish_element, sorted_elements
from .procs import (
    RUNNER_COMMAND,
    signal_group,
    signal_number,
    trees_rss_kb,
)
from .start import Element, launch
from .store import (
    STATE_FILE,
    Json,
    load_control,
    load_state,
    locked,
    read_json,
    save_state,
)

KILL_SIGNALS = ["INT", "TERM", "KILL"]
PASS_INTERVAL = 0.05
"""Seconds between two passes of a runner over its job."""
START_BATCH_SECONDS = 0.25
"""Longest a pass holds the cluster's lock starting elements (about 0.6 ms each here):
bsub and bkill wait for that lock, so a big array starts over a few passes."""
PEAK_PUBLISH_INTERVAL = 1.0
"""Seconds between two updates that only publish memory peaks."""


class Dependency(NamedTuple):
    """A job's parsed dependency condition, as the runner evaluates it."""

    check: Callable[[Json, Json, float, str | None], int]
    """(state, settings, now, own index or None) -> 1 satisfied, 0 not yet, -1 never."""
    per_element: bool
    """Evaluated for each array element on its own (LSF's ``name[*]``)."""


class JobStyle(NamedTuple):
    """What a scheduler's jobs see and how its submit options are read."""

    defaults: Json
    """The scheduler's knobs (the runner reads ``slots``, ``seconds_per_minute``,
    ``runlimit_signals`` (default USR2 then KILL),
    ``job_terminate_interval`` and ``mem_sample_interval``)."""
    environment: Callable[[Json, str, str], dict[str, str]]
    """(job, element key, working directory) -> the scheduler's job variables."""
    expand: Callable[[str, Json, str], str]
    """Fill a path pattern's placeholders (job id, array index) for one element."""
    dependency: Callable[[Json], Dependency | None]


def spawn_runner(state_dir: str, job_id: int, launcher: str, env_state_dir: str) -> int:
    """Start the job's runner, detached: it outlives the submit command by design."""
    import subprocess

    env = dict(os.environ)
    env[env_state_dir] = state_dir
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", launcher, RUNNER_COMMAND, str(job_id)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        start_new_session=True,
        cwd="/",
        env=env,
    )
    proc.returncode = 0  # never waited for here: it outlives the submit command by design
    return proc.pid


class StopRequest:
    """Set by SIGTERM: the runner leaves between two passes, never in the middle of one,
    so every element it started has its pid (or its failure) recorded."""

    def __init__(self) -> None:
        self.requested = False

    def __call__(self, signum: int, frame: object) -> None:
        self.requested = True


def run_job(style: JobStyle, args: list[str], state_dir: str) -> int:
    """The ``_runner`` command: supervise job ``args[0]`` until every element ended."""
    stop = StopRequest()
    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    supervisor = JobSupervisor(style, state_dir, args[0])
    while not stop.requested:
        if supervisor.run_pass():
            return 0
        time.sleep(PASS_INTERVAL)
    return 143


class Ending(NamedTuple):
    """How a reaped element's main process ended."""

    element: Element
    code: int
    """The exit code, 128+N for a signal N."""
    killed_by: int
    """The signal that ended it, or 0."""
    cpu: float


class JobSupervisor:
    """One job's runner, pass after pass. The state file holds every element of the
    job (and of every other job), so reading and rewriting it costs as much as the
    cluster is big: a pass does it at most once, under the lock, for everything the
    pass found (elements ended, memory peaks, elements started), never per element."""

    def __init__(self, style: JobStyle, state_dir: str, job_key: str) -> None:
        self.style = style
        self.state_dir = state_dir
        self.job_key = job_key
        self.state = load_state(state_dir)
        job: Json = self.state["jobs"][job_key]
        self.submit_env: dict[str, str] = read_json(str(job["env_file"]), {})
        self.dependency = style.dependency(job)
        self.running: dict[str, Element] = {}
        self.loaded_key = _state_file_key(state_dir)
        self.loaded_at = time.time()
        self.next_publish = 0.0

    def run_pass(self) -> bool:
        """Enforce limits and kill requests, reap what ended, then record the ends, the
        peaks due and the starts in one locked update; True once every element ended."""
        settings: Json = load_control(self.state_dir, self.style.defaults)["settings"]
        now = time.time()
        job = self._current_job(now)
        ended: list[Ending] = []
        due = [el.pid for el in self.running.values() if now >= el.next_sample]
        rss = trees_rss_kb(due) if due else {}
        for idx, el in list(self.running.items()):
            _enforce(job, el, job["elements"][idx], settings, now, rss.get(el.pid))
            ending = _reap(el)
            if ending is not None:
                ended.append(ending)
                del self.running[idx]
        publish = now >= self.next_publish and any(
            el.peak_kb > el.recorded_kb for el in self.running.values()
        )
        start = self._may_start(job, settings, bool(ended))
        if ended or publish or start:
            job = self._update(ended, start, settings, now)
        return not self.running and not any(e["stat"] == "PEND" for e in job["elements"].values())

    def _current_job(self, now: float) -> Json:
        """The job as the state file holds it, reread only when the file changed (or
        half a second passed)."""
        key = _state_file_key(self.state_dir)
        if key is None or key != self.loaded_key or now - self.loaded_at > 0.5:
            self.state = load_state(self.state_dir)
            self.loaded_key, self.loaded_at = key, now
        job: Json = self.state["jobs"][self.job_key]
        return job

    def _may_start(self, job: Json, settings: Json, ended: bool) -> bool:
        """Whether scheduling may start (or orphan) an element now. Decided on the state
        last read, without the lock, so a job that waits does not keep taking it; ends
        of this pass free slots that state does not show yet, so then the lock decides."""
        if not any(e["stat"] == "PEND" for e in job["elements"].values()):
            return False
        if _running_blocked(job, self.running):
            return False
        if ended:
            return True
        return plan_start(self.state, self.job_key, self.dependency, self.running, settings)[0]

    def _update(self, ended: list[Ending], start: bool, settings: Json, now: float) -> Json:
        """The pass's one read-modify-write of the state, under the lock."""
        with locked(self.state_dir):
            state = load_state(self.state_dir)
            job: Json = state["jobs"][self.job_key]
            end_time = time.time()
            for ending in ended:
                record_end(job["elements"][ending.element.idx], ending, end_time)
            self._publish_peaks(job, now)
            try:
                if start:
                    self._start(state, settings)
            finally:  # a launch that fails oddly must not lose the ones before it
                save_state(self.state_dir, state)
        self.state = state
        self.loaded_key = None
        return job

    def _publish_peaks(self, job: Json, now: float) -> None:
        """Running elements' memory peaks so far (a peaks-only update comes at most once
        a second)."""
        for el in self.running.values():
            if el.peak_kb <= el.recorded_kb:
                continue
            record = job["elements"][el.idx]
            if record["stat"] == "RUN":
                record["max_mem_kb"] = max(el.peak_kb, int(record.get("max_mem_kb") or 0))
            el.recorded_kb = el.peak_kb
            self.next_publish = now + PEAK_PUBLISH_INTERVAL

    def _start(self, state: Json, settings: Json) -> None:
        """Start what may start, for at most ``START_BATCH_SECONDS`` (the rest are
        started by the next passes: bsub and bkill wait for this lock)."""
        starting = plan_start(state, self.job_key, self.dependency, self.running, settings)[1]
        job: Json = state["jobs"][self.job_key]
        began = time.monotonic()
        for idx in starting:
            if time.monotonic() - began > START_BATCH_SECONDS:
                break
            el = launch(self.style, self.state_dir, job, idx, self.submit_env)
            if el is not None:
                self.running[idx] = el


def _state_file_key(state_dir: str) -> tuple[int, int, int] | None:
    """Identity of the state file's current version: reread only when it changed."""
    try:
        info = os.stat(os.path.join(state_dir, STATE_FILE))
    except OSError:
        return None
    return (info.st_ino, info.st_mtime_ns, info.st_size)


def _running_blocked(job: Json, running: dict[str, Element]) -> bool:
    limit = (job.get("array") or {}).get("limit")
    return limit is not None and len(running) >= int(limit)


def _slots_in_use(state: Json) -> int:
    used = 0
    for other in state["jobs"].values():
        n = int(other.get("slots") or 1)
        used += n * sum(1 for e in other["elements"].values() if e["stat"] == "RUN")
    return used


def plan_start(
    state: Json,
    job_key: str,
    dependency: Dependency | None,
    running: dict[str, Element],
    settings: Json,
) -> tuple[bool, list[str]]:
    """What scheduling does now: (anything changed, keys of the elements to start, in
    order). Orphans are ended in ``state``; the elements to start are left PEND for
    `launch` to mark as they start."""
    now = time.time()
    starting: list[str] = []
    job: Json = state["jobs"][job_key]
    limit = (job.get("array") or {}).get("limit")
    slots = settings.get("slots")
    used = _slots_in_use(state) if slots is not None else 0
    changed = False
    job_dep = 1
    if dependency is not None and not dependency.per_element:
        job_dep = dependency.check(state, settings, now, None)
    for idx, element in sorted_elements(job):
        if element["stat"] != "PEND":
            continue
        dep = job_dep
        if dependency is not None and dependency.per_element:
            dep = dependency.check(state, settings, now, idx)
        if dep == -1 and job.get("ti"):
            finish_element(element, "EXIT", 130, "TERM_ORPHAN_SYSTEM", now)
            element["events"].append([now, "orphan"])
            changed = True
            continue
        if dep != 1:
            continue
        if limit and len(running) + len(starting) >= int(limit):
            break
        n = int(job.get("slots") or 1)
        if slots is not None and used + n > int(slots):
            break
        used += n
        starting.append(idx)
        changed = True
    return changed, starting


def _terminate(el: Element, request: Json, now: float, settings: Json) -> None:
    """Start carrying out a kill: every signal but the last now, the last one after
    ``job_terminate_interval`` (at once when there is only one)."""
    el.request = request
    for name in request.get("signals", KILL_SIGNALS)[:-1]:
        signal_group(el.pid, signal_number(name))
    last = signal_number(request.get("signals", ["KILL"])[-1])
    if len(request.get("signals", [])) <= 1:
        signal_group(el.pid, last)
    else:
        el.final_signal = last
        el.final_signal_at = now + float(settings["job_terminate_interval"])


def _enforce(
    job: Json, el: Element, element: Json, settings: Json, now: float, rss: int | None
) -> None:
    """Kill requests, the run limit and the memory limit of a running element;
    ``rss`` is its memory when sampled in this pass."""
    request = element.get("kill")
    if request and el.request is None:
        _terminate(el, request, now, settings)
    limit = job.get("run_limit_min")
    if (
        limit
        and el.request is None
        and now - el.start > float(limit) * float(settings["seconds_per_minute"])
    ):
        signals = settings.get("runlimit_signals", ["USR2", "KILL"])
        runlimit = {"reason": "TERM_RUNLIMIT", "exit_code": 140, "signals": signals}
        _terminate(el, runlimit, now, settings)
    if rss is not None:
        el.next_sample = now + float(settings["mem_sample_interval"])
        el.peak_kb = max(el.peak_kb, rss)
        mem_limit = job.get("mem_limit_kb")
        if mem_limit and rss > int(mem_limit) and el.request is None:
            memlimit = {"reason": "TERM_MEMLIMIT", "exit_code": 130, "signals": KILL_SIGNALS}
            _terminate(el, memlimit, now, settings)
    if el.final_signal_at is not None and now >= el.final_signal_at:
        signal_group(el.pid, el.final_signal)
        el.final_signal_at = None


def _reap(el: Element) -> Ending | None:
    """How a started element ended, once its main process has (None while it runs)."""
    try:
        pid, status, rusage = os.wait4(el.pid, os.WNOHANG)
    except ChildProcessError:
        pid, status, rusage = el.pid, 0, None
    if pid == 0:
        return None
    # The job's main process ended: nothing of the job may outlive it.
    signal_group(el.pid, signal.SIGKILL)
    code = os.waitstatus_to_exitcode(status)
    killed_by = -code if code < 0 else 0
    if code < 0:
        code = 128 - code
    # ru_maxrss is useless here: it counts the runner's own pages copied by fork().
    cpu = float(rusage.ru_utime + rusage.ru_stime) if rusage is not None else 0.0
    return Ending(el, code, killed_by, cpu)


def record_end(record: Json, ending: Ending, end: float) -> None:
    """Write into the element's record how it ended: as a kill asked for it, else from
    its exit code. The signal is kept as ``signal`` (PBS reports such an end as
    256+signal)."""
    el = ending.element
    request = record.get("kill") or el.request
    record["max_mem_kb"] = max(el.peak_kb, int(record.get("max_mem_kb") or 0))
    record["cpu_time"] = ending.cpu
    record["signal"] = ending.killed_by
    if record["stat"] in STAT_FINISHED:
        return
    if request and request.get("as_done"):
        finish_element(record, "DONE", 0, "", end)
    elif request:
        forced = request.get("exit_code")
        code = int(forced) if forced is not None else (ending.code or 1)
        finish_element(record, "EXIT", code, str(request.get("reason") or ""), end)
    elif ending.code == 0:
        finish_element(record, "DONE", 0, "", end)
    else:
        finish_element(record, "EXIT", ending.code, "", end)
