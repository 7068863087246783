"""Starting one element of a job: its working directory, output files, environment and
process, recorded in the job's state (RUN with its pid, or failed to start)."""

from __future__ import annotations

import contextlib
import os
import time
from typing import IO, TYPE_CHECKING

from .jobs import element_label, finish_element
from .procs import JOB_TOKEN_VAR, hostname
from .store import SPOOL_DIR, Json

if TYPE_CHECKING:
    from .runner import JobStyle


class Element:
    """A started job (or array element) as the runner tracks it."""

    def __init__(self, idx: str, pid: int, start: float, token: str) -> None:
        self.idx = idx
        self.pid = pid
        self.start = start
        self.token = token
        self.peak_kb = 0
        self.recorded_kb = 0
        self.next_sample = 0.0
        self.request: Json | None = None
        self.final_signal_at: float | None = None
        self.final_signal = 0


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


def launch(
    style: JobStyle, state_dir: str, job: Json, idx: str, submit_env: dict[str, str]
) -> Element | None:
    """Start one element in its own session and mark its record RUN with its pid, or
    as failed to start (then None: there is nothing to supervise)."""
    import subprocess

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
                proc.returncode = 0  # reaped with os.wait4 in _reap(), for its rusage
                pid = proc.pid
            except OSError as exc:
                err_file.write(f"lsfsim: cannot start job: {exc}\n".encode())
    record = job["elements"][idx]
    n = int(job.get("slots") or 1)
    host = hostname()
    record["stat"] = "RUN"
    record["start_time"] = now
    record["exec_host"] = f"{n}*{host}" if n > 1 else host
    record["max_mem_kb"] = 0
    if not pid:
        finish_element(record, "EXIT", 127 if not reason else 1, reason, time.time())
        return None
    record["pid"] = pid
    record["pgid"] = pid
    record["events"].append([now, "start", pid, cwd])
    return Element(idx, pid, now, token)
