"""Job supervision: one detached runner process per submitted job (or whole array).

The runner waits for the job's dependency and for free slots, starts each element in
its own session with the scheduler's variables, enforces the run and memory limits,
carries out kill requests that the kill command left in the state, and records how
each element ended. Everything a scheduler names differently comes in through a
:class:`JobStyle`; the exit reasons it records (``TERM_RUNLIMIT``, ``TERM_MEMLIMIT``,
``TERM_ORPHAN_SYSTEM``, ``TERM_CWD_NOTEXIST``) are the kit's vocabulary.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import IO, NamedTuple

from .jobs import STAT_FINISHED, element_label, finish_element, sorted_elements
from .procs import JOB_TOKEN_VAR, RUNNER_COMMAND, hostname, signal_group, signal_number, tree_rss_kb
from .store import (
    SPOOL_DIR,
    STATE_FILE,
    Json,
    load_control,
    load_state,
    locked,
    read_json,
    save_state,
)

KILL_SIGNALS = ["INT", "TERM", "KILL"]


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


class Element:
    """A started job (or array element) as the runner tracks it."""

    def __init__(self, idx: str, pid: int, start: float, token: str) -> None:
        self.idx = idx
        self.pid = pid
        self.start = start
        self.token = token
        self.peak_kb = 0
        self.recorded_kb = 0
        self.next_record = 0.0
        self.next_sample = 0.0
        self.request: Json | None = None
        self.final_signal_at: float | None = None
        self.final_signal = 0


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


def run_job(style: JobStyle, args: list[str], state_dir: str) -> int:
    """The ``_runner`` command: supervise job ``args[0]`` until every element ended."""
    job_key = args[0]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    state = load_state(state_dir)
    job: Json = state["jobs"][job_key]
    submit_env: dict[str, str] = read_json(str(job["env_file"]), {})
    dependency = style.dependency(job)
    running: dict[str, Element] = {}
    last_key: tuple[int, int, int] | None = None
    last_load = 0.0
    while True:
        settings: Json = load_control(state_dir, style.defaults)["settings"]
        now = time.time()
        key = _state_file_key(state_dir)
        if key is None or key != last_key or now - last_load > 0.5:
            job = load_state(state_dir)["jobs"][job_key]
            last_key, last_load = key, now
        pending = [k for k, e in sorted_elements(job) if e["stat"] == "PEND"]
        if pending and not _running_blocked(job, running):
            starting = _schedule(state_dir, job_key, dependency, running, settings)
            for idx in starting:
                running[idx] = _launch(style, state_dir, job_key, idx, submit_env)
            if starting:
                last_key = None
                continue
        for idx in list(running):
            if _supervise(state_dir, job, running[idx], job["elements"][idx], settings, now):
                del running[idx]
                last_key = None
        if not running and not any(e["stat"] == "PEND" for e in job["elements"].values()):
            return 0
        time.sleep(0.05)


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


def _schedule(
    state_dir: str,
    job_key: str,
    dependency: Dependency | None,
    running: dict[str, Element],
    settings: Json,
) -> list[str]:
    """Mark the elements that may start now as RUN (under the lock); return them.

    A first pass without the lock decides whether anything would change, so a job
    that waits (on a dependency or for slots) does not keep taking the lock."""
    if not plan_start(load_state(state_dir), job_key, dependency, running, settings)[0]:
        return []
    with locked(state_dir):
        state = load_state(state_dir)
        changed, starting = plan_start(state, job_key, dependency, running, settings)
        if changed:
            save_state(state_dir, state)
    return starting


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
    """Apply to ``state`` what scheduling does now: (anything changed, started keys)."""
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
        element["stat"] = "RUN"
        element["start_time"] = now
        host = hostname()
        element["exec_host"] = f"{n}*{host}" if n > 1 else host
        element["max_mem_kb"] = 0
        starting.append(idx)
        changed = True
    return changed, starting


def open_output(path: str, overwrite: bool) -> IO[bytes] | None:
    try:
        return open(path, "wb" if overwrite else "ab")
    except OSError:
        return None


def output_path(style: JobStyle, pattern: str, job: Json, idx: str, cwd: str, suffix: str) -> str:
    """Where an element's output goes; a directory gets ``ID.out`` (``ID_IDX.out``)."""
    path = style.expand(pattern, job, idx)
    if not os.path.isabs(path):
        path = os.path.join(cwd, path)
    if path.endswith(os.sep) or os.path.isdir(path):
        base = f"{job['id']}_{idx}" if job.get("array") else str(job["id"])
        path = os.path.join(path, base + suffix)
    return path


def _working_directory(style: JobStyle, job: Json, idx: str) -> tuple[str, str]:
    """(the element's working directory, the exit reason if it cannot be used)."""
    cwd = str(job["submit_cwd"])
    reason = ""
    if job.get("cwd"):
        cwd = style.expand(str(job["cwd"]), job, idx)
        if not os.path.isabs(cwd):
            cwd = os.path.join(str(job["submit_cwd"]), cwd)
        try:
            os.makedirs(cwd, exist_ok=True)
        except OSError:
            reason = "TERM_CWD_NOTEXIST"
    if not os.path.isdir(cwd):
        reason = "TERM_CWD_NOTEXIST"
    return cwd, reason


def _open_outputs(
    stack: contextlib.ExitStack, style: JobStyle, job: Json, idx: str, cwd: str, spool: str
) -> tuple[IO[bytes], IO[bytes]]:
    """Open stdout and stderr: the job's own files, else the spool; without an error
    file, errors go with the output."""
    out_file = None
    if job.get("out"):
        path = output_path(style, str(job["out"]), job, idx, cwd, ".out")
        out_file = open_output(path, bool(job.get("out_overwrite")))
    if out_file is None:
        out_file = open(spool + ".out", "ab")  # noqa: SIM115 - closed by the stack
    stack.callback(out_file.close)
    err_file = None
    if job.get("err"):
        path = output_path(style, str(job["err"]), job, idx, cwd, ".err")
        err_file = open_output(path, bool(job.get("err_overwrite")))
    elif job.get("out"):
        err_file = out_file
    if err_file is None:
        err_file = open(spool + ".err", "ab")  # noqa: SIM115 - closed by the stack
    stack.callback(err_file.close)
    return out_file, err_file


def _launch(
    style: JobStyle, state_dir: str, job_key: str, idx: str, submit_env: dict[str, str]
) -> Element:
    """Start one element in its own session; record its pid, or how it failed to start."""
    import subprocess

    job: Json = load_state(state_dir)["jobs"][job_key]
    cwd, reason = _working_directory(style, job, idx)
    token = f"{state_dir}:{element_label(job, idx)}"
    env = dict(submit_env)
    env.update(style.environment(job, idx, cwd))
    env["PWD"] = cwd
    env[JOB_TOKEN_VAR] = token
    spool = os.path.join(
        state_dir, SPOOL_DIR, element_label(job, idx).replace("[", "_").rstrip("]")
    )
    shell = job.get("login_shell")
    job_file = str(job["job_file"])
    interpreter = str(job.get("interpreter") or "/bin/bash")
    argv = [str(shell), "-l", job_file] if shell else [interpreter, job_file]
    now = time.time()
    pid = 0
    with contextlib.ExitStack() as stack:
        out_file, err_file = _open_outputs(stack, style, job, idx, cwd, spool)
        if not reason:
            try:
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out_file,
                    stderr=err_file,
                    close_fds=True,
                    start_new_session=True,
                )
                proc.returncode = 0  # reaped with os.wait4 in _supervise(), for its rusage
                pid = proc.pid
            except OSError as exc:
                err_file.write(f"lsfsim: cannot start job: {exc}\n".encode())
    _record_start(state_dir, job_key, idx, pid, cwd, reason, now)
    return Element(idx, pid if pid else -1, now, token)


def _record_start(
    state_dir: str, job_key: str, idx: str, pid: int, cwd: str, reason: str, now: float
) -> None:
    with locked(state_dir):
        state = load_state(state_dir)
        element = state["jobs"][job_key]["elements"][idx]
        if pid:
            element["pid"] = pid
            element["pgid"] = pid
            element["events"].append([now, "start", pid, cwd])
        else:
            finish_element(element, "EXIT", 127 if not reason else 1, reason, time.time())
        save_state(state_dir, state)


def _record_peak(state_dir: str, job_key: str, el: Element) -> None:
    """Publish a running element's memory peak so far (at most once a second)."""
    el.recorded_kb = el.peak_kb
    el.next_record = time.time() + 1.0
    with locked(state_dir):
        state = load_state(state_dir)
        record = state["jobs"][job_key]["elements"][el.idx]
        if record["stat"] == "RUN":
            record["max_mem_kb"] = max(el.peak_kb, int(record.get("max_mem_kb") or 0))
            save_state(state_dir, state)


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
    state_dir: str, job: Json, el: Element, element: Json, settings: Json, now: float
) -> None:
    """Kill requests, the run limit and the memory limit of a running element."""
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
    if now >= el.next_sample:
        el.next_sample = now + float(settings["mem_sample_interval"])
        rss = tree_rss_kb(el.pid)
        el.peak_kb = max(el.peak_kb, rss)
        if el.peak_kb > el.recorded_kb and now >= el.next_record:
            _record_peak(state_dir, str(job["id"]), el)
        mem_limit = job.get("mem_limit_kb")
        if mem_limit and rss > int(mem_limit) and el.request is None:
            memlimit = {"reason": "TERM_MEMLIMIT", "exit_code": 130, "signals": KILL_SIGNALS}
            _terminate(el, memlimit, now, settings)
    if el.final_signal_at is not None and now >= el.final_signal_at:
        signal_group(el.pid, el.final_signal)
        el.final_signal_at = None


def _supervise(
    state_dir: str, job: Json, el: Element, element: Json, settings: Json, now: float
) -> bool:
    """Watch one started element; True once it has ended and been recorded."""
    if el.pid < 0:
        return True
    _enforce(state_dir, job, el, element, settings, now)
    try:
        pid, status, rusage = os.wait4(el.pid, os.WNOHANG)
    except ChildProcessError:
        pid, status, rusage = el.pid, 0, None
    if pid == 0:
        return False
    # The job's main process ended: nothing of the job may outlive it.
    signal_group(el.pid, signal.SIGKILL)
    code = os.waitstatus_to_exitcode(status)
    killed_by = -code if code < 0 else 0
    if code < 0:
        code = 128 - code
    # ru_maxrss is useless here: it counts the runner's own pages copied by fork().
    cpu = float(rusage.ru_utime + rusage.ru_stime) if rusage is not None else 0.0
    _record_end(state_dir, str(job["id"]), el, (code, killed_by), cpu)
    return True


def _record_end(
    state_dir: str, job_key: str, el: Element, ending: tuple[int, int], cpu: float
) -> None:
    """How the element ended: as a kill asked for it, else from its exit code;
    ``ending`` is (exit code, 128+signal for a signal; the signal or 0). The signal is
    kept as ``signal`` (PBS reports such an end as 256+signal)."""
    code, killed_by = ending
    end = time.time()
    with locked(state_dir):
        state = load_state(state_dir)
        record = state["jobs"][job_key]["elements"][el.idx]
        request = record.get("kill") or el.request
        record["max_mem_kb"] = max(el.peak_kb, int(record.get("max_mem_kb") or 0))
        record["cpu_time"] = cpu
        record["signal"] = killed_by
        if record["stat"] not in STAT_FINISHED:
            if request and request.get("as_done"):
                finish_element(record, "DONE", 0, "", end)
            elif request:
                forced = request.get("exit_code")
                finish_element(
                    record,
                    "EXIT",
                    int(forced) if forced is not None else (code or 1),
                    str(request.get("reason") or ""),
                    end,
                )
            elif code == 0:
                finish_element(record, "DONE", 0, "", end)
            else:
                finish_element(record, "EXIT", code, "", end)
        save_state(state_dir, state)
