"""Processes of simulated jobs, read from ``/proc`` and signalled by process group."""

from __future__ import annotations

import os
import signal
import socket
from collections.abc import Iterator

JOB_TOKEN_VAR = "LSFSIM_JOB_TOKEN"
"""Set in every job's environment to ``<state dir>:<label>``: a process group is only
signalled while one of its members still carries the token (pids get reused)."""


def hostname() -> str:
    return socket.gethostname().split(".")[0] or "localhost"


def username() -> str:
    for var in ("LOGNAME", "USER", "LNAME", "USERNAME"):
        value = os.environ.get(var)
        if value:
            return value
    try:
        import pwd

        return pwd.getpwuid(os.getuid()).pw_name
    except (ImportError, KeyError):
        return str(os.getuid())


def _pid_names() -> list[str]:
    try:
        return [name for name in os.listdir("/proc") if name.isdigit()]
    except OSError:
        return []


def _live_stats(names: list[str]) -> Iterator[tuple[int, list[bytes]]]:
    """(pid, the fields of ``/proc/PID/stat`` after the command name) of every process
    in ``names`` still there and not a zombie."""
    for name in names:
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                raw = handle.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if len(fields) < 22 or fields[0] in (b"Z", b"X"):
            continue
        yield int(name), fields


def process_table() -> list[tuple[int, int, int, int]]:
    """(pid, pgid, sid, rss_kb) of every process readable in /proc."""
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    return [
        (pid, int(fields[2]), int(fields[3]), int(fields[21]) * page_kb)
        for pid, fields in _live_stats(_pid_names())
    ]


def _resident_kb(pid: int, page_kb: int) -> int:
    """The process's resident memory (``statm``: ``stat``'s own figure is only
    approximate on recent kernels, off by a few hundred KB)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as handle:
            return int(handle.read().split()[1]) * page_kb
    except (OSError, IndexError, ValueError):
        return 0


def tree_rss_kb(root: int) -> int:
    """Resident memory (KB) of a process and all its descendants."""
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    total = 0
    seen: set[int] = set()
    todo = [root]
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _resident_kb(pid, page_kb)
        try:
            tasks = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                    todo.extend(int(child) for child in handle.read().split())
            except (OSError, ValueError):
                continue
    return total


WALK_MAX_ROOTS = 8
"""Up to this many trees are always walked: a scan would not be cheaper on any machine."""
WALK_COST = 4
"""Walking a job's tree (a shell and its command) reads six files; a scan reads one per
process of the machine, then the memory of the trees' two: a scan is cheaper while the
machine has fewer than four processes per tree (500 trees: 28 ms against 48, here)."""


def trees_rss_kb(roots: list[int]) -> dict[int, int]:
    """Resident memory (KB) of each root with all its descendants: walked from each
    root, or, when that costs more, found from one scan of ``/proc`` for all of them."""
    if len(roots) <= WALK_MAX_ROOTS:
        return {root: tree_rss_kb(root) for root in roots}
    names = _pid_names()
    if len(roots) * WALK_COST < len(names):
        return {root: tree_rss_kb(root) for root in roots}
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    children: dict[int, list[int]] = {}
    for pid, fields in _live_stats(names):
        children.setdefault(int(fields[1]), []).append(pid)
    totals: dict[int, int] = {}
    for root in roots:
        total = 0
        todo = [root]
        while todo:
            pid = todo.pop()
            total += _resident_kb(pid, page_kb)
            todo.extend(children.get(pid, ()))
        totals[root] = total
    return totals


def process_has_token(pid: int, token: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return f"{JOB_TOKEN_VAR}={token}".encode() in handle.read().split(b"\0")
    except OSError:
        return False


def signal_group(pgid: int | None, sig: int, token: str | None = None) -> bool:
    """Send ``sig`` to a job's process group; with ``token``, only if it is still ours."""
    if not pgid or pgid <= 1:
        return False
    if token is not None:
        members = [pid for pid, group, sid, _ in process_table() if pgid in (group, sid)]
        if not any(process_has_token(pid, token) for pid in members):
            return False
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


RUNNER_COMMAND = "_runner"
"""The internal command word a runner is started with: ``<launcher> _runner <job id>``,
the launcher being a simulator package's ``__main__.py``."""


def runner_alive(pid: int | None) -> bool:
    """A job's runner is still there (and the pid was not reused by something else)."""
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    launched = any(arg.endswith(b"sim/__main__.py") for arg in argv)
    return launched and RUNNER_COMMAND.encode() in argv


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name[3:]
    except ValueError:
        return str(sig)


def signal_number(name: str) -> int:
    """``KILL``, ``SIGKILL`` or ``9`` to 9 (ValueError if there is no such signal)."""
    text = name.strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(getattr(signal, text))
    except AttributeError:
        raise ValueError(name) from None
