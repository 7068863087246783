"""A stand-alone simulator of the IBM Spectrum LSF 10.1 user commands.

It is executed by file path, not imported as part of a package::

    CLUSTER_API_LSFSIM_DIR=/some/dir python lsfsim.py bsub -J name < script.sh

and dispatches on its first argument: ``bsub``, ``bjobs``, ``bkill``, ``bhist``, or the
internal ``_runner`` (one detached process per submitted job or job array, which
starts the job's processes, enforces its limits and records how it ended).

All state lives in the folder named by ``CLUSTER_API_LSFSIM_DIR``:

``state.json``
    every job ever submitted (replaced atomically; writers hold ``.lock``)
``control.json``
    settings (knobs) and injected faults, written by ``LSFSimulator``
``calls.jsonl``
    one line when each command starts and one when it ends
``jobs/``
    job scripts and submission environments; ``spool/`` takes output without ``-o``

Only the standard library is used, so that the commands start fast and the file can
run under any Python 3.10+.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import json
import operator
import os
import re
import shlex
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from typing import IO, Any

Json = dict[str, Any]

ENV_STATE_DIR = "CLUSTER_API_LSFSIM_DIR"
STATE_FILE = "state.json"
CONTROL_FILE = "control.json"
CALLS_FILE = "calls.jsonl"
LOCK_FILE = ".lock"
JOBS_DIR = "jobs"
SPOOL_DIR = "spool"
COMMANDS = ("bsub", "bjobs", "bkill", "bhist")
JOB_TOKEN_VAR = "LSFSIM_JOB_TOKEN"

DEFAULT_SETTINGS: Json = {
    # lsb.params CLEAN_PERIOD: seconds a finished job stays visible to bjobs.
    "clean_period": 3600.0,
    # lsf.conf LSB_DISPLAY_YEAR (the environment variable of that name also works).
    "display_year": False,
    # lsf.conf LSB_BSUB_PARSE_SCRIPT: read #BSUB lines of `bsub script.sh`.
    "parse_script": False,
    # Job slots of the whole simulated cluster (None: unlimited).
    "slots": None,
    # lsf.conf LSF_UNIT_FOR_LIMITS: unit of a bare number given to -M.
    "unit_for_limits": "MB",
    # Real seconds in one LSF minute, to test -W run limits quickly.
    "seconds_per_minute": 60.0,
    # lsb.params JOB_TERMINATE_INTERVAL: seconds between SIGTERM and SIGKILL.
    "job_terminate_interval": 1.0,
    # Seconds between two samples of a running job's memory.
    "mem_sample_interval": 0.5,
    # lsb.params MAX_JOB_ARRAY_SIZE.
    "max_array_size": 1000,
}

STAT_PENDING = ("PEND", "PSUSP", "WAIT", "PROV")
STAT_FINISHED = ("DONE", "EXIT")

TERM_TEXT = {
    "TERM_OWNER": "job killed by owner",
    "TERM_ADMIN": "job killed by root or LSF administrator",
    "TERM_RUNLIMIT": "job killed after reaching LSF run time limit",
    "TERM_MEMLIMIT": "job killed after reaching LSF memory usage limit",
    "TERM_ORPHAN_SYSTEM": "orphan job was automatically terminated by LSF",
    "TERM_CWD_NOTEXIST": "current working directory is not accessible or does not exist",
}

MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


class UsageError(Exception):
    """A command line LSF would reject: message for stderr and the exit code."""

    def __init__(self, message: str, code: int = 255) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def answer_help_or_version(arg: str, usage: str) -> None:
    """``-h``/``-help`` and ``-V``, which every LSF command answers the same way."""
    if arg in ("-h", "-help"):
        raise UsageError(usage, 0)
    if arg == "-V":
        raise UsageError("IBM Spectrum LSF 10.1.0.0 (lsfsim), simulated", 0)


# --------------------------------------------------------------------------- storage


def state_dir_from_env() -> str:
    path = os.environ.get(ENV_STATE_DIR, "")
    if not path:
        raise UsageError(f"lsfsim: {ENV_STATE_DIR} is not set")
    return os.path.abspath(path)


def read_json(path: str, default: Json) -> Json:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (FileNotFoundError, ValueError):
        return default
    return data if isinstance(data, dict) else default


def write_json(path: str, data: Json) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, separators=(",", ":"))
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(state_dir: str) -> Iterator[None]:
    """Hold the simulator's exclusive lock (serialises read-modify-write of state)."""
    fd = os.open(os.path.join(state_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load_state(state_dir: str) -> Json:
    state = read_json(os.path.join(state_dir, STATE_FILE), {})
    state.setdefault("next_id", 1)
    state.setdefault("jobs", {})
    return state


def save_state(state_dir: str, state: Json) -> None:
    write_json(os.path.join(state_dir, STATE_FILE), state)


def load_control(state_dir: str) -> Json:
    control = read_json(os.path.join(state_dir, CONTROL_FILE), {})
    settings = dict(DEFAULT_SETTINGS)
    settings.update(control.get("settings") or {})
    control["settings"] = settings
    control.setdefault("faults", {})
    return control


def save_control(state_dir: str, control: Json) -> None:
    write_json(os.path.join(state_dir, CONTROL_FILE), control)


def ensure_layout(state_dir: str) -> None:
    for sub in ("", JOBS_DIR, SPOOL_DIR):
        os.makedirs(os.path.join(state_dir, sub), exist_ok=True)


def append_call(state_dir: str, record: Json) -> None:
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(os.path.join(state_dir, CALLS_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- formats


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


def display_year(settings: Json) -> bool:
    env = os.environ.get("LSB_DISPLAY_YEAR", "")
    if env:
        return env.strip().lower() in ("y", "yes")
    return bool(settings.get("display_year"))


def fmt_time(stamp: float | None, settings: Json, marker: str = "") -> str:
    """bjobs -o time: ``Nov  2 10:31`` or, with LSB_DISPLAY_YEAR, ``Nov  2 10:31:17 2026``."""
    if stamp is None:
        return ""
    tm = time.localtime(stamp)
    text = f"{MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} {tm.tm_hour:02d}:{tm.tm_min:02d}"
    if display_year(settings):
        text += f":{tm.tm_sec:02d} {tm.tm_year}"
    return f"{text} {marker}" if marker else text


def fmt_long_time(stamp: float, settings: Json) -> str:
    """bhist -l time: ``Mon Nov  2 10:31:17`` (plus the year with LSB_DISPLAY_YEAR)."""
    tm = time.localtime(stamp)
    text = (
        f"{DAYS[tm.tm_wday]} {MONTHS[tm.tm_mon - 1]} {tm.tm_mday:2d} "
        f"{tm.tm_hour:02d}:{tm.tm_min:02d}:{tm.tm_sec:02d}"
    )
    if display_year(settings):
        text += f" {tm.tm_year}"
    return text


def fmt_mem(kbytes: float | None, unit: str | None = None) -> str:
    if kbytes is None:
        return ""
    if unit:
        factor = {"KB": 1, "MB": 1024, "GB": 1024**2, "TB": 1024**3, "PB": 1024**4}[unit]
        return f"{kbytes / factor:.2f} {unit}".replace(".00 ", " ")
    if kbytes < 1024:
        return f"{int(kbytes)} Kbytes"
    if kbytes < 1024 * 1024:
        return f"{round(kbytes / 1024)} Mbytes"
    return f"{kbytes / (1024 * 1024):.1f} Gbytes"


UNIT_KB = {
    "K": 1.0,
    "KB": 1.0,
    "M": 1024.0,
    "MB": 1024.0,
    "G": 1024.0**2,
    "GB": 1024.0**2,
    "T": 1024.0**3,
    "TB": 1024.0**3,
    "P": 1024.0**4,
    "PB": 1024.0**4,
    "E": 1024.0**5,
    "EB": 1024.0**5,
}


def parse_mem(text: str, default_unit: str) -> int:
    """``-M 512`` (in LSF_UNIT_FOR_LIMITS) or ``-M 8GB`` to kilobytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", text)
    if not match:
        raise UsageError(f"{text}: Bad argument for option -M. Job not submitted.")
    unit = (match.group(2) or default_unit).upper()
    if unit not in UNIT_KB:
        raise UsageError(f"{text}: Bad argument for option -M. Job not submitted.")
    return max(1, int(float(match.group(1)) * UNIT_KB[unit]))


def parse_runlimit(text: str) -> float:
    """``-W [hour:]minute[/host_name | /host_model]`` to minutes."""
    value = text.split("/", 1)[0].strip()
    match = re.fullmatch(r"(?:(\d+):)?(\d+)", value)
    if not match or (match.group(1) is not None and int(match.group(2)) > 59):
        raise UsageError(f"{text}: Bad RUNLIMIT specification. Job not submitted.")
    minutes = int(match.group(2)) + 60 * int(match.group(1) or 0)
    if minutes <= 0:
        raise UsageError(f"{text}: Bad RUNLIMIT specification. Job not submitted.")
    return float(minutes)


def parse_index_list(spec: str, max_size: int) -> list[int]:
    """``1-10``, ``1,3,5-7``, ``1-20:2`` to sorted unique indices (raise ValueError)."""
    indices: set[int] = set()
    for part in spec.split(","):
        match = re.fullmatch(r"\s*(\d+)(?:\s*-\s*(\d+)(?:\s*:\s*(\d+))?)?\s*", part)
        if not match:
            raise ValueError(part)
        start = int(match.group(1))
        end = int(match.group(2)) if match.group(2) else start
        step = int(match.group(3)) if match.group(3) else 1
        if start < 1 or end < start or step < 1:
            raise ValueError(part)
        indices.update(range(start, end + 1, step))
        if len(indices) > max_size:
            raise ValueError(part)
    if not indices:
        raise ValueError(spec)
    return sorted(indices)


def parse_job_name(text: str, max_size: int) -> tuple[str, list[int] | None, int | None]:
    """``name``, ``name[1-10]``, ``name[1,3,5-7%2]`` to (name, indices, limit)."""
    match = re.fullmatch(r"(.*)\[([^\[\]]*)\]", text, flags=re.S)
    if not match:
        if "[" in text or "]" in text:
            raise UsageError(f"{text}: Bad job name. Job not submitted.")
        return text, None, None
    name, spec = match.group(1), match.group(2)
    limit: int | None = None
    if "%" in spec:
        spec, _, limit_text = spec.partition("%")
        if not limit_text.strip().isdigit() or int(limit_text) < 1:
            raise UsageError(f"{text}: Bad job name. Job not submitted.")
        limit = int(limit_text)
    try:
        indices = parse_index_list(spec, max_size)
    except ValueError:
        raise UsageError(f"{text}: Bad job name. Job not submitted.") from None
    return name, indices, limit


def substitute(pattern: str, job_id: int, index: int) -> str:
    return pattern.replace("%J", str(job_id)).replace("%I", str(index))


def element_label(job: Json, idx: str) -> str:
    return f"{job['id']}[{idx}]" if job.get("array") else str(job["id"])


def element_name(job: Json, idx: str) -> str:
    return f"{job['name']}[{idx}]" if job.get("array") else str(job["name"])


def sorted_elements(job: Json) -> list[tuple[str, Json]]:
    return sorted(job["elements"].items(), key=lambda kv: int(kv[0]))


def is_purged(element: Json, settings: Json, now: float) -> bool:
    finish = element.get("finish_time")
    return (
        element.get("stat") in STAT_FINISHED
        and finish is not None
        and now - float(finish) > float(settings["clean_period"])
    )


# --------------------------------------------------------------------------- processes


def process_table() -> list[tuple[int, int, int, int]]:
    """(pid, pgid, sid, rss_kb) of every process readable in /proc."""
    page_kb = os.sysconf("SC_PAGE_SIZE") // 1024
    table: list[tuple[int, int, int, int]] = []
    try:
        names = os.listdir("/proc")
    except OSError:
        return table
    for name in names:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as handle:
                raw = handle.read()
        except OSError:
            continue
        fields = raw[raw.rfind(b")") + 2 :].split()
        if len(fields) < 22 or fields[0] in (b"Z", b"X"):
            continue
        table.append((int(name), int(fields[2]), int(fields[3]), int(fields[21]) * page_kb))
    return table


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
        try:
            with open(f"/proc/{pid}/statm", "rb") as handle:
                total += int(handle.read().split()[1]) * page_kb
            tasks = os.listdir(f"/proc/{pid}/task")
        except (OSError, IndexError, ValueError):
            continue
        for tid in tasks:
            try:
                with open(f"/proc/{pid}/task/{tid}/children", "rb") as handle:
                    todo.extend(int(child) for child in handle.read().split())
            except (OSError, ValueError):
                continue
    return total


def process_has_token(pid: int, token: str) -> bool:
    try:
        with open(f"/proc/{pid}/environ", "rb") as handle:
            return f"{JOB_TOKEN_VAR}={token}".encode() in handle.read().split(b"\0")
    except OSError:
        return False


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


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


def runner_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            argv = handle.read().split(b"\0")
    except OSError:
        return False
    return any(arg.endswith(b"lsfsim.py") for arg in argv) and b"_runner" in argv


def signal_number(name: str) -> int:
    text = name.strip().upper()
    if text.isdigit():
        return int(text)
    if not text.startswith("SIG"):
        text = "SIG" + text
    try:
        return int(getattr(signal, text))
    except AttributeError:
        raise UsageError(f"{name}: Illegal signal value") from None


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name[3:]
    except ValueError:
        return str(sig)


# --------------------------------------------------------------------------- dependencies

DEP_TOKEN = re.compile(r"\s*(&&|\|\||!=|!|\(|\)|,|\"[^\"]*\"|'[^']*'|[^\s()&|!,\"']+)")


class DependencyError(Exception):
    pass


def tokenize_dependency(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = DEP_TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise DependencyError(text)
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


def parse_dependency(text: str) -> Json:
    """Parse an LSF ``-w`` expression into a small tree (raise DependencyError)."""
    tokens = tokenize_dependency(text)
    pos = 0

    def peek() -> str | None:
        return tokens[pos] if pos < len(tokens) else None

    def take() -> str:
        nonlocal pos
        if pos >= len(tokens):
            raise DependencyError(text)
        pos += 1
        return tokens[pos - 1]

    def ref(token: str) -> Json:
        if token[0] in "\"'":
            return {"kind": "name", "value": token[1:-1]}
        if re.fullmatch(r"\d+(\[\d+\])?", token):
            return {"kind": "id", "value": token}
        return {"kind": "name", "value": token}

    def cond() -> Json:
        token = take()
        if token in ("(", ")", "&&", "||", "!", ",", "!="):
            raise DependencyError(text)
        if peek() != "(":
            return {"op": "done", "ref": ref(token)}
        func = token.lower()
        if func not in ("done", "ended", "exit", "started", "post_done", "post_err"):
            raise DependencyError(text)
        take()
        node: Json = {"op": func, "ref": ref(take())}
        if peek() == ",":
            if func != "exit":
                raise DependencyError(text)
            take()
            operator = "=="
            if peek() == "!=":
                operator = take()
            code_text = take()
            match = re.fullmatch(r"(==|!=|>=|<=|>|<)?(\d+)", code_text)
            if not match:
                raise DependencyError(text)
            node["cmp"] = match.group(1) or operator
            node["code"] = int(match.group(2))
        if take() != ")":
            raise DependencyError(text)
        return node

    def factor() -> Json:
        if peek() == "!":
            take()
            return {"op": "not", "arg": factor()}
        if peek() == "(":
            take()
            node = expr()
            if take() != ")":
                raise DependencyError(text)
            return node
        return cond()

    def term() -> Json:
        node = factor()
        while peek() == "&&":
            take()
            node = {"op": "and", "args": [node, factor()]}
        return node

    def expr() -> Json:
        node = term()
        while peek() == "||":
            take()
            node = {"op": "or", "args": [node, term()]}
        return node

    if not tokens:
        raise DependencyError(text)
    tree = expr()
    if pos != len(tokens):
        raise DependencyError(text)
    return tree


def resolve_ref(
    ref: Json, state: Json, user: str, settings: Json, now: float, own_index: str | None
) -> list[Json]:
    """Elements (dicts) a dependency reference designates; [] when nothing matches."""
    jobs: dict[str, Json] = state["jobs"]
    value: str = ref["value"]
    out: list[Json] = []
    if ref["kind"] == "id":
        job_id, _, idx = value.partition("[")
        job = jobs.get(job_id)
        if job is None:
            return []
        if idx:
            element = job["elements"].get(idx.rstrip("]"))
            return [element] if element is not None else []
        return [element for _, element in sorted_elements(job)]
    name, _, idx = value.partition("[")
    idx = idx.rstrip("]")
    for job in jobs.values():
        if job.get("user") != user or not fnmatch.fnmatchcase(str(job["name"]), name):
            continue
        for key, element in sorted_elements(job):
            if is_purged(element, settings, now):
                continue
            if idx == "*" and own_index is not None and key != own_index:
                continue
            if idx and idx != "*" and key != idx:
                continue
            out.append(element)
    return out


def evaluate_dependency(
    node: Json, state: Json, user: str, settings: Json, now: float, own_index: str | None
) -> int:
    """1 satisfied, 0 not yet, -1 can never be satisfied."""
    op = node["op"]
    if op == "and":
        values = [
            evaluate_dependency(a, state, user, settings, now, own_index) for a in node["args"]
        ]
        return -1 if -1 in values else (1 if all(v == 1 for v in values) else 0)
    if op == "or":
        values = [
            evaluate_dependency(a, state, user, settings, now, own_index) for a in node["args"]
        ]
        return 1 if 1 in values else (-1 if all(v == -1 for v in values) else 0)
    if op == "not":
        return (
            0 if evaluate_dependency(node["arg"], state, user, settings, now, own_index) == 1 else 1
        )
    elements = resolve_ref(node["ref"], state, user, settings, now, own_index)
    if not elements:
        return 0
    stats = [e.get("stat") for e in elements]
    if op in ("done", "post_done"):
        if "EXIT" in stats:
            return -1
        return 1 if all(s == "DONE" for s in stats) else 0
    if op == "ended":
        return 1 if all(s in STAT_FINISHED for s in stats) else 0
    if op == "started":
        return 1 if all(s not in STAT_PENDING for s in stats) else 0
    if op in ("exit", "post_err"):
        if "DONE" in stats:
            return -1
        if not all(s == "EXIT" for s in stats):
            return 0
        if "code" not in node:
            return 1
        code = int(node["code"])
        check = COMPARISONS[str(node["cmp"])]
        return 1 if all(check(int(e.get("exit_code") or 0), code) for e in elements) else -1
    return 0


COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def dependency_refs(node: Json) -> list[tuple[str, Json]]:
    if node["op"] in ("and", "or"):
        return [r for a in node["args"] for r in dependency_refs(a)]
    if node["op"] == "not":
        return dependency_refs(node["arg"])
    return [(str(node["op"]), node["ref"])]


# --------------------------------------------------------------------------- bsub

BSUB_WITH_ARG = {
    "-J", "-o", "-oo", "-e", "-eo", "-cwd", "-q", "-n", "-M", "-W", "-R", "-gpu", "-P",
    "-w", "-env", "-L", "-u", "-G", "-app", "-g", "-m", "-Jd", "-We", "-sla", "-E",
    "-Ep", "-c", "-i", "-b", "-t", "-v", "-S", "-D", "-F", "-C", "-T", "-k", "-outdir",
}  # fmt: skip
BSUB_FLAGS = {"-ti", "-B", "-N", "-x", "-r", "-rn", "-K", "-hl"}
BSUB_REPEATABLE = {"-R"}
BSUB_USAGE = (
    "Usage: bsub [-h] [-V] [-B] [-N] [-K] [-r | -rn] [-ti] [-x]\n"
    '            [-cwd "dir"] [-e err_file | -eo err_file] [-o out_file | -oo out_file]\n'
    '            [-env "none" | "all [,var]..."] [-gpu "gpu_req"] [-J job_name]\n'
    "            [-L login_shell] [-M mem_limit] [-n num_tasks] [-P project_name]\n"
    "            [-q queue_name] [-R res_req] [-W [hour:]minute] [-w depend_cond]\n"
    "            [command [argument ...] | < script]"
)


def parse_bsub_options(args: list[str], allow_command: bool) -> tuple[Json, list[str]]:
    """Options (``{"-J": value, "-R": [..], "-ti": True}``) and the command words."""
    options: Json = {}
    pos = 0
    while pos < len(args):
        arg = args[pos]
        if arg == "--":
            pos += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        answer_help_or_version(arg, BSUB_USAGE)
        if arg in BSUB_FLAGS:
            options[arg] = True
            pos += 1
            continue
        if arg in BSUB_WITH_ARG:
            if pos + 1 >= len(args):
                raise UsageError(f"bsub: option requires an argument -- {arg[1:]}\n{BSUB_USAGE}")
            value = args[pos + 1]
            if arg in BSUB_REPEATABLE:
                options.setdefault(arg, []).append(value)
            else:
                options[arg] = value
            pos += 2
            continue
        raise UsageError(f"bsub: Illegal option -- {arg[1:]}\n{BSUB_USAGE}")
    command = args[pos:]
    if command and not allow_command:
        raise UsageError(f"bsub: Illegal option -- {command[0]}\n{BSUB_USAGE}")
    return options, command


def script_directives(script: str) -> list[str]:
    """Words of the ``#BSUB`` lines at the top of a job script."""
    words: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#BSUB"):
            rest = stripped[5:]
            if rest and not rest[0].isspace():
                continue
            try:
                words.extend(shlex.split(rest, comments=True))
            except ValueError:
                raise UsageError(f"{stripped}: Bad #BSUB line. Job not submitted.") from None
            continue
        if stripped.startswith("#"):
            continue
        break
    return words


def merge_options(directives: Json, command_line: Json) -> Json:
    merged = dict(directives)
    for key, value in command_line.items():
        if key in BSUB_REPEATABLE:
            merged[key] = list(directives.get(key, [])) + list(value)
        else:
            merged[key] = value
    return merged


def split_env_list(text: str) -> list[str]:
    items: list[str] = []
    current = ""
    quote = False
    for char in text:
        if char == "'":
            quote = not quote
            continue
        if char == "," and not quote:
            items.append(current.strip())
            current = ""
            continue
        current += char
    items.append(current.strip())
    return [item for item in items if item]


def job_environment(spec: str | None, submit_env: dict[str, str]) -> dict[str, str]:
    """Apply ``-env``: ``none``, ``all[, ~VAR][, VAR=value]``, or ``VAR[=value], ...``."""
    minimal: dict[str, str] = {
        key: submit_env[key] for key in ("HOME", "USER", "LOGNAME", "SHELL") if key in submit_env
    }
    minimal["PATH"] = "/usr/local/bin:/usr/bin:/bin"
    if spec is None:
        return dict(submit_env)
    items = split_env_list(spec)
    if not items:
        raise UsageError(f"{spec}: Bad argument for option -env. Job not submitted.")
    if len(items) == 1 and items[0].lower() == "none":
        return minimal
    if items[0].lower() == "all":
        env = dict(submit_env)
        items = items[1:]
    else:
        env = minimal
    for item in items:
        if item.lower() in ("all", "none"):
            raise UsageError(f"{spec}: Bad argument for option -env. Job not submitted.")
        if item.startswith("~"):
            env.pop(item[1:].strip(), None)
            continue
        name, eq, value = item.partition("=")
        name = name.strip()
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise UsageError(f"{spec}: Bad argument for option -env. Job not submitted.")
        if eq:
            env[name] = re.sub(
                r"\$(\w+)|\$\{(\w+)\}",
                lambda m: submit_env.get(m.group(1) or m.group(2), ""),
                value,
            )
        elif name in submit_env:
            env[name] = submit_env[name]
    return env


def validate_dependency(text: str, state: Json, user: str, settings: Json) -> None:
    try:
        tree = parse_dependency(text)
    except DependencyError:
        raise UsageError(
            f"{text}: Syntax error in dependency condition. Job not submitted."
        ) from None
    now = time.time()
    for func, ref in dependency_refs(tree):
        probe = dict(ref)
        if probe["kind"] == "name":
            probe["value"] = str(probe["value"]).replace("[*]", "")
        if not resolve_ref(probe, state, user, settings, now, None):
            raise UsageError(f"{func}({ref['value']}): No matching job found. Job not submitted.")


def command_bsub(args: list[str], state_dir: str, control: Json) -> int:
    settings: Json = control["settings"]
    cli, command = parse_bsub_options(args, allow_command=True)
    submit_cwd = os.getcwd()
    directives: Json = {}
    if command:
        # LSF joins the words and hands them to the Bourne shell as they are: a word
        # with a space in it splits, a $(...) in it runs.
        script_text = " ".join(command) + "\n"
        interpreter = "/bin/sh"
        display_command = " ".join(command)
        script_path = command[0] if os.path.sep in command[0] else os.path.join(".", command[0])
        if settings.get("parse_script") and os.path.isfile(script_path):
            try:
                with open(script_path, encoding="utf-8", errors="replace") as handle:
                    directives, _ = parse_bsub_options(script_directives(handle.read()), False)
            except OSError:
                directives = {}
    else:
        if sys.stdin is None or sys.stdin.isatty():
            raise UsageError(f"bsub: no command or job script given\n{BSUB_USAGE}")
        script_text = sys.stdin.read()
        interpreter = "/bin/bash"
        if not script_text.strip():
            raise UsageError("No command is specified. Job not submitted.")
        directives, _ = parse_bsub_options(script_directives(script_text), False)
        lines = [line for line in script_text.splitlines() if line.strip()]
        display_command = "; ".join(lines)
    opts = merge_options(directives, cli)

    max_size = int(settings.get("max_array_size") or 1000)
    if "-J" in opts:
        name, indices, limit = parse_job_name(str(opts["-J"]), max_size)
    else:
        name, indices, limit = display_command[:4094], None, None
    nslots = 1
    if "-n" in opts:
        match = re.fullmatch(r"\s*(\d+)\s*(?:,\s*(\d+)\s*)?", str(opts["-n"]))
        if not match or int(match.group(1)) < 1:
            raise UsageError(f"{opts['-n']}: Bad argument for option -n. Job not submitted.")
        nslots = int(match.group(1))
    mem_limit = (
        parse_mem(str(opts["-M"]), str(settings["unit_for_limits"])) if "-M" in opts else None
    )
    run_limit = parse_runlimit(str(opts["-W"])) if "-W" in opts else None
    env = job_environment(opts.get("-env"), dict(os.environ))
    out_pattern = opts.get("-oo") or opts.get("-o")
    err_pattern = opts.get("-eo") or opts.get("-e")
    user = username()

    with locked(state_dir):
        state = load_state(state_dir)
        if "-w" in opts:
            validate_dependency(str(opts["-w"]), state, user, settings)
        job_id = int(state["next_id"])
        state["next_id"] = job_id + 1
        job_file = os.path.join(state_dir, JOBS_DIR, f"{job_id}.sh")
        env_file = os.path.join(state_dir, JOBS_DIR, f"{job_id}.env.json")
        with open(job_file, "w", encoding="utf-8") as handle:
            handle.write(script_text)
        write_json(env_file, env)
        keys = [str(i) for i in indices] if indices else ["0"]
        now = time.time()
        job: Json = {
            "id": job_id,
            "name": name,
            "array": {"indices": indices, "limit": limit} if indices else None,
            "user": user,
            "queue": opts.get("-q") or "normal",
            "project": opts.get("-P") or "default",
            "description": opts.get("-Jd") or "",
            "command": display_command,
            "from_host": hostname(),
            "submit_cwd": submit_cwd,
            "cwd": opts.get("-cwd"),
            "out": out_pattern,
            "out_overwrite": "-oo" in opts,
            "err": err_pattern,
            "err_overwrite": "-eo" in opts,
            "slots": nslots,
            "mem_limit_kb": mem_limit,
            "run_limit_min": run_limit,
            "dependency": opts.get("-w"),
            "ti": bool(opts.get("-ti")),
            "login_shell": opts.get("-L"),
            "interpreter": interpreter,
            "res_req": opts.get("-R", []),
            "gpu": opts.get("-gpu"),
            "submit_time": now,
            "job_file": job_file,
            "env_file": env_file,
            "runner_pid": None,
            "elements": {
                key: {
                    "stat": "PEND",
                    "exit_code": None,
                    "start_time": None,
                    "finish_time": None,
                    "exit_reason": "",
                    "max_mem_kb": None,
                    "pgid": None,
                    "pid": None,
                    "exec_host": "",
                    "cpu_time": 0.0,
                    "kill": None,
                    "events": [],
                }
                for key in keys
            },
        }
        state["jobs"][str(job_id)] = job
        save_state(state_dir, state)

    pid = spawn_runner(state_dir, job_id)
    with locked(state_dir):
        state = load_state(state_dir)
        state["jobs"][str(job_id)]["runner_pid"] = pid
        save_state(state_dir, state)

    hang = float(control["faults"].get("bsub_hang") or 0)
    if hang > 0:
        consume_fault(state_dir, "bsub_hang")
        time.sleep(hang)
    time.sleep(float(control["faults"].get("bsub_answer_delay") or 0))
    sys.stdout.write(f"Job <{job_id}> is submitted to queue <{job['queue']}>.\n")
    sys.stdout.flush()
    if opts.get("-K"):
        return wait_for_job(state_dir, job_id)
    return 0


def spawn_runner(state_dir: str, job_id: int) -> int:
    import subprocess

    env = dict(os.environ)
    env[ENV_STATE_DIR] = state_dir
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", os.path.abspath(__file__), "_runner", str(job_id)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        close_fds=True,
        start_new_session=True,
        cwd="/",
        env=env,
    )
    proc.returncode = 0  # never waited for here: it outlives bsub by design
    return proc.pid


def wait_for_job(state_dir: str, job_id: int) -> int:
    sys.stderr.write("<<Waiting for dispatch ...>>\n")
    while True:
        job = load_state(state_dir)["jobs"][str(job_id)]
        elements = [e for _, e in sorted_elements(job)]
        if all(e["stat"] in STAT_FINISHED for e in elements):
            sys.stderr.write("<<Job is finished>>\n")
            codes = [int(e.get("exit_code") or 0) for e in elements if e["stat"] == "EXIT"]
            return codes[0] if codes else 0
        time.sleep(0.1)


def consume_fault(state_dir: str, key: str, command: str | None = None) -> bool:
    """Use up a one-shot fault; True if it was still there (so this call applies it)."""
    with locked(state_dir):
        control = load_control(state_dir)
        faults: Json = control["faults"]
        if command is None:
            if not faults.get(key):
                return False
            count = int(faults.get(f"{key}_count", 1)) - 1
            if count <= 0:
                faults.pop(key, None)
                faults.pop(f"{key}_count", None)
            else:
                faults[f"{key}_count"] = count
        else:
            pending: Json = faults.get(key) or {}
            if int(pending.get(command, 0)) <= 0:
                return False
            pending[command] = int(pending[command]) - 1
            if pending[command] <= 0:
                del pending[command]
            faults[key] = pending
        save_control(state_dir, control)
        return True


# --------------------------------------------------------------------------- runner


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


def command_runner(args: list[str], state_dir: str) -> int:
    job_key = args[0]
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    state = load_state(state_dir)
    job: Json = state["jobs"][job_key]
    submit_env: dict[str, str] = read_json(str(job["env_file"]), {})
    tree = parse_dependency(str(job["dependency"])) if job.get("dependency") else None
    per_element_dep = bool(job.get("dependency")) and "[*]" in str(job["dependency"])
    running: dict[str, Element] = {}
    last_key: tuple[int, int, int] | None = None
    last_load = 0.0
    while True:
        control = load_control(state_dir)
        settings: Json = control["settings"]
        now = time.time()
        try:
            info = os.stat(os.path.join(state_dir, STATE_FILE))
            key = (info.st_ino, info.st_mtime_ns, info.st_size)
        except OSError:
            key = None
        if key is None or key != last_key or now - last_load > 0.5:
            state = load_state(state_dir)
            job = state["jobs"][job_key]
            last_key, last_load = key, now
        pending = [k for k, e in sorted_elements(job) if e["stat"] == "PEND"]
        if pending and not running_blocked(job, running):
            starting = schedule(state_dir, job_key, tree, per_element_dep, running, settings)
            for idx in starting:
                running[idx] = launch(state_dir, job_key, idx, submit_env)
            if starting:
                last_key = None
                continue
        for idx in list(running):
            element_state = job["elements"][idx]
            if supervise(state_dir, job, running[idx], element_state, settings, now):
                del running[idx]
                last_key = None
        if not running and not any(e["stat"] == "PEND" for e in job["elements"].values()):
            return 0
        time.sleep(0.05)


def running_blocked(job: Json, running: dict[str, Element]) -> bool:
    limit = (job.get("array") or {}).get("limit")
    return limit is not None and len(running) >= int(limit)


def schedule(
    state_dir: str,
    job_key: str,
    tree: Json | None,
    per_element: bool,
    running: dict[str, Element],
    settings: Json,
) -> list[str]:
    """Mark the elements that may start now as RUN (under the lock); return them.

    A first pass without the lock decides whether anything would change, so a job
    that waits (on a dependency or for slots) does not keep taking the lock."""
    if not plan_start(load_state(state_dir), job_key, tree, per_element, running, settings)[0]:
        return []
    with locked(state_dir):
        state = load_state(state_dir)
        changed, starting = plan_start(state, job_key, tree, per_element, running, settings)
        if changed:
            save_state(state_dir, state)
    return starting


def plan_start(
    state: Json,
    job_key: str,
    tree: Json | None,
    per_element: bool,
    running: dict[str, Element],
    settings: Json,
) -> tuple[bool, list[str]]:
    """Apply to ``state`` what scheduling does now: (anything changed, started keys)."""
    now = time.time()
    starting: list[str] = []
    job: Json = state["jobs"][job_key]
    user = str(job["user"])
    limit = (job.get("array") or {}).get("limit")
    slots = settings.get("slots")
    used = 0
    if slots is not None:
        for other in state["jobs"].values():
            n = int(other.get("slots") or 1)
            used += n * sum(1 for e in other["elements"].values() if e["stat"] == "RUN")
    changed = False
    job_dep = 1
    if tree is not None and not per_element:
        job_dep = evaluate_dependency(tree, state, user, settings, now, None)
    for idx, element in sorted_elements(job):
        if element["stat"] != "PEND":
            continue
        dep = job_dep
        if tree is not None and per_element:
            dep = evaluate_dependency(tree, state, user, settings, now, idx)
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


def finish_element(element: Json, stat: str, code: int | None, reason: str, now: float) -> None:
    element["stat"] = stat
    element["exit_code"] = code
    element["exit_reason"] = reason
    element["finish_time"] = now


def open_output(path: str, overwrite: bool) -> IO[bytes] | None:
    try:
        return open(path, "wb" if overwrite else "ab")
    except OSError:
        return None


def output_path(pattern: str, job: Json, idx: str, cwd: str, suffix: str) -> str:
    path = substitute(pattern, int(job["id"]), int(idx))
    if not os.path.isabs(path):
        path = os.path.join(cwd, path)
    if path.endswith(os.sep) or os.path.isdir(path):
        base = f"{job['id']}_{idx}" if job.get("array") else str(job["id"])
        path = os.path.join(path, base + suffix)
    return path


def launch(state_dir: str, job_key: str, idx: str, submit_env: dict[str, str]) -> Element:
    import subprocess

    state = load_state(state_dir)
    job: Json = state["jobs"][job_key]
    element: Json = job["elements"][idx]
    job_id = int(job["id"])
    host = hostname()
    n = int(job.get("slots") or 1)
    cwd = str(job["submit_cwd"])
    reason = ""
    if job.get("cwd"):
        cwd = substitute(str(job["cwd"]), job_id, int(idx))
        if not os.path.isabs(cwd):
            cwd = os.path.join(str(job["submit_cwd"]), cwd)
        try:
            os.makedirs(cwd, exist_ok=True)
        except OSError:
            reason = "TERM_CWD_NOTEXIST"
    if not os.path.isdir(cwd):
        reason = "TERM_CWD_NOTEXIST"
    token = f"{state_dir}:{element_label(job, idx)}"
    env = dict(submit_env)
    env.update(
        {
            "LSB_JOBID": str(job_id),
            "LSB_JOBINDEX": idx if job.get("array") else "0",
            "LSB_JOBNAME": element_name(job, idx),
            "LSB_QUEUE": str(job["queue"]),
            "LSB_HOSTS": " ".join([host] * n),
            "LSB_MCPU_HOSTS": f"{host} {n}",
            "LSB_DJOB_NUMPROC": str(n),
            "LSB_SUB_HOST": str(job["from_host"]),
            "LSB_EXEC_CLUSTER": "lsfsim",
            "LSB_JOBFILENAME": str(job["job_file"]),
            "LS_SUBCWD": str(job["submit_cwd"]),
            "PWD": cwd,
            JOB_TOKEN_VAR: token,
        }
    )
    if job.get("array"):
        indices = job["array"]["indices"]
        env["LSB_JOBINDEX_END"] = str(max(indices))
        env["LSB_JOBINDEX_STEP"] = "1"
    if job.get("out"):
        env["LSB_OUTPUTFILE"] = output_path(str(job["out"]), job, idx, cwd, ".out")
    if job.get("err"):
        env["LSB_ERRORFILE"] = output_path(str(job["err"]), job, idx, cwd, ".err")
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
        out_file = None
        if job.get("out"):
            out_file = open_output(env["LSB_OUTPUTFILE"], bool(job.get("out_overwrite")))
        if out_file is None:
            out_file = open(spool + ".out", "ab")  # noqa: SIM115 - closed by the stack
        stack.callback(out_file.close)
        err_file = None
        if job.get("err"):
            err_file = open_output(env["LSB_ERRORFILE"], bool(job.get("err_overwrite")))
        elif job.get("out"):
            err_file = out_file
        if err_file is None:
            err_file = open(spool + ".err", "ab")  # noqa: SIM115 - closed by the stack
        stack.callback(err_file.close)
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
                proc.returncode = 0  # reaped with os.wait4 in supervise(), for its rusage
                pid = proc.pid
            except OSError as exc:
                err_file.write(f"lsfsim: cannot start job: {exc}\n".encode())
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
    el = Element(idx, pid, now, token)
    if not pid:
        el.pid = -1
    return el


def record_peak(state_dir: str, job_key: str, el: Element) -> None:
    """Publish a running element's memory peak so far (at most once a second)."""
    el.recorded_kb = el.peak_kb
    el.next_record = time.time() + 1.0
    with locked(state_dir):
        state = load_state(state_dir)
        record = state["jobs"][job_key]["elements"][el.idx]
        if record["stat"] == "RUN":
            record["max_mem_kb"] = max(el.peak_kb, int(record.get("max_mem_kb") or 0))
            save_state(state_dir, state)


def supervise(
    state_dir: str, job: Json, el: Element, element: Json, settings: Json, now: float
) -> bool:
    """Watch one started element; True once it has ended and been recorded."""
    if el.pid < 0:
        return True
    # A kill asked for by bkill (or the simulator API).
    request = element.get("kill")
    if request and el.request is None:
        el.request = request
        for name in request.get("signals", ["INT", "TERM", "KILL"])[:-1]:
            signal_group(el.pid, signal_number(name))
        last = signal_number(request.get("signals", ["KILL"])[-1])
        if len(request.get("signals", [])) <= 1:
            signal_group(el.pid, last)
        else:
            el.final_signal = last
            el.final_signal_at = now + float(settings["job_terminate_interval"])
    # Run limit (-W): SIGUSR2, then SIGKILL.
    limit = job.get("run_limit_min")
    if (
        limit
        and el.request is None
        and now - el.start > float(limit) * float(settings["seconds_per_minute"])
    ):
        el.request = {"reason": "TERM_RUNLIMIT", "exit_code": 140, "signals": ["USR2", "KILL"]}
        signal_group(el.pid, signal.SIGUSR2)
        el.final_signal = signal.SIGKILL
        el.final_signal_at = now + float(settings["job_terminate_interval"])
    # Memory: peak of the process group, and the -M limit.
    if now >= el.next_sample:
        el.next_sample = now + float(settings["mem_sample_interval"])
        rss = tree_rss_kb(el.pid)
        el.peak_kb = max(el.peak_kb, rss)
        if el.peak_kb > el.recorded_kb and now >= el.next_record:
            record_peak(state_dir, str(job["id"]), el)
        mem_limit = job.get("mem_limit_kb")
        if mem_limit and rss > int(mem_limit) and el.request is None:
            el.request = {
                "reason": "TERM_MEMLIMIT",
                "exit_code": 130,
                "signals": ["INT", "TERM", "KILL"],
            }
            signal_group(el.pid, signal.SIGINT)
            signal_group(el.pid, signal.SIGTERM)
            el.final_signal = signal.SIGKILL
            el.final_signal_at = now + float(settings["job_terminate_interval"])
    if el.final_signal_at is not None and now >= el.final_signal_at:
        signal_group(el.pid, el.final_signal)
        el.final_signal_at = None
    try:
        pid, status, rusage = os.wait4(el.pid, os.WNOHANG)
    except ChildProcessError:
        pid, status, rusage = el.pid, 0, None
    if pid == 0:
        return False
    # The job's main process ended: nothing of the job may outlive it.
    signal_group(el.pid, signal.SIGKILL)
    code = os.waitstatus_to_exitcode(status)
    if code < 0:
        code = 128 - code
    # ru_maxrss is useless here: it counts the runner's own pages copied by fork().
    cpu = float(rusage.ru_utime + rusage.ru_stime) if rusage is not None else 0.0
    end = time.time()
    with locked(state_dir):
        state = load_state(state_dir)
        record = state["jobs"][str(job["id"])]["elements"][el.idx]
        request = record.get("kill") or el.request
        record["max_mem_kb"] = max(el.peak_kb, int(record.get("max_mem_kb") or 0))
        record["cpu_time"] = cpu
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
    return True


# --------------------------------------------------------------------------- bjobs

BJOBS_FIELDS = {
    "jobid": "JOBID",
    "jobindex": "JOBINDEX",
    "job_name": "JOB_NAME",
    "stat": "STAT",
    "user": "USER",
    "queue": "QUEUE",
    "exit_code": "EXIT_CODE",
    "exec_host": "EXEC_HOST",
    "first_host": "FIRST_HOST",
    "nexec_host": "NEXEC_HOST",
    "from_host": "FROM_HOST",
    "max_mem": "MAX_MEM",
    "mem": "MEM",
    "memlimit": "MEMLIMIT",
    "runtimelimit": "RUNTIMELIMIT",
    "submit_time": "SUBMIT_TIME",
    "start_time": "START_TIME",
    "finish_time": "FINISH_TIME",
    "exit_reason": "EXIT_REASON",
    "proj_name": "PROJ_NAME",
    "command": "COMMAND",
    "slots": "SLOTS",
    "nreq_slot": "NREQ_SLOT",
    "cpu_used": "CPU_USED",
    "run_time": "RUN_TIME",
    "dependency": "DEPENDENCY",
    "sub_cwd": "SUB_CWD",
    "exec_cwd": "EXEC_CWD",
    "output_file": "OUTPUT_FILE",
    "error_file": "ERROR_FILE",
    "pend_reason": "PEND_REASON",
    "gpu_num": "GPU_NUM",
    "job_description": "JOB_DESCRIPTION",
}
BJOBS_ALIASES = {
    "id": "jobid",
    "name": "job_name",
    "cmd": "command",
    "proj": "proj_name",
    "project": "proj_name",
    "nthreads": "slots",
    "state": "stat",
    "description": "job_description",
}
MEM_FIELDS = ("max_mem", "mem", "memlimit")
DEFAULT_COLUMNS = [
    "jobid",
    "user",
    "stat",
    "queue",
    "from_host",
    "exec_host",
    "job_name",
    "submit_time",
]
BJOBS_USAGE = (
    "Usage: bjobs [-h] [-V] [-A] [-a] [-d] [-p] [-r] [-s] [-w | -l] [-json] [-noheader]\n"
    "             [-o \"field_name ... [delimiter='char']\"] [-J job_name] [-q queue_name]\n"
    '             [-u user_name | -u all] [job_ID | "job_ID[index]" ...]'
)


def parse_format(text: str) -> tuple[list[tuple[str, str | None]], str]:
    """``-o "jobid stat:6 max_mem::GB delimiter=','"`` to [(field, unit)], delimiter."""
    delimiter = " "
    match = re.search(r"delimiter=(['\"])(.*?)\1", text)
    if match:
        delimiter = match.group(2)
        text = text[: match.start()] + text[match.end() :]
    fields: list[tuple[str, str | None]] = []
    for word in text.split():
        parts = word.split(":")
        name = parts[0].lower()
        name = BJOBS_ALIASES.get(name, name)
        if name not in BJOBS_FIELDS:
            raise UsageError(f"{parts[0]}: Illegal field name in -o. Illegal output format.")
        unit = None
        if len(parts) > 2 and parts[2]:
            unit = {"K": "KB", "M": "MB", "G": "GB", "T": "TB", "P": "PB"}.get(
                parts[2].upper(), parts[2].upper()
            )
            if name not in MEM_FIELDS or unit not in ("KB", "MB", "GB", "TB", "PB"):
                raise UsageError(f"{word}: Illegal unit prefix in -o. Illegal output format.")
        fields.append((name, unit))
    if not fields:
        raise UsageError("Illegal output format.")
    return fields, delimiter


def field_value(
    field: str, unit: str | None, job: Json, idx: str, element: Json, settings: Json, now: float
) -> str:
    stat = str(element["stat"])
    finished = stat in STAT_FINISHED
    started = element.get("start_time") is not None
    if field == "jobid":
        return str(job["id"])
    if field == "jobindex":
        return idx if job.get("array") else "0"
    if field == "job_name":
        return element_name(job, idx)
    if field == "stat":
        return stat
    if field == "user":
        return str(job["user"])
    if field == "queue":
        return str(job["queue"])
    if field == "exit_code":
        code = element.get("exit_code")
        return str(code) if stat == "EXIT" and code is not None else ""
    if field == "exec_host":
        return str(element.get("exec_host") or "")
    if field == "first_host":
        return str(element.get("exec_host") or "").split("*")[-1]
    if field == "nexec_host":
        return "1" if element.get("exec_host") else ""
    if field == "from_host":
        return str(job["from_host"])
    if field in ("max_mem", "mem"):
        if not started or not element.get("max_mem_kb"):
            return ""
        return fmt_mem(element.get("max_mem_kb"), unit)
    if field == "memlimit":
        return fmt_mem(job.get("mem_limit_kb"), unit)
    if field == "runtimelimit":
        limit = job.get("run_limit_min")
        return f"{float(limit):.1f}" if limit else ""
    if field == "submit_time":
        return fmt_time(float(job["submit_time"]), settings)
    if field == "start_time":
        return fmt_time(element.get("start_time"), settings)
    if field == "finish_time":
        if finished:
            return fmt_time(element.get("finish_time"), settings, "L")
        limit = job.get("run_limit_min")
        if started and limit:
            end = float(element["start_time"]) + float(limit) * 60.0
            return fmt_time(end, settings, "L")
        return ""
    if field == "exit_reason":
        return str(element.get("exit_reason") or "")
    if field == "proj_name":
        return str(job.get("project") or "default")
    if field == "command":
        return str(job["command"])
    if field in ("slots", "nreq_slot"):
        return str(job.get("slots") or 1)
    if field == "cpu_used":
        return f"{float(element.get('cpu_time') or 0.0):.1f} second(s)"
    if field == "run_time":
        if not started:
            return "0 second(s)"
        end = float(element["finish_time"]) if finished else now
        return f"{int(end - float(element['start_time']))} second(s)"
    if field == "dependency":
        return str(job.get("dependency") or "")
    if field == "sub_cwd":
        return str(job["submit_cwd"])
    if field == "exec_cwd":
        return str(job.get("cwd") or job["submit_cwd"]) if started else ""
    if field == "output_file":
        return substitute(str(job["out"]), int(job["id"]), int(idx)) if job.get("out") else ""
    if field == "error_file":
        return substitute(str(job["err"]), int(job["id"]), int(idx)) if job.get("err") else ""
    if field == "pend_reason":
        if stat != "PEND":
            return ""
        return "Job dependency condition not satisfied" if job.get("dependency") else ""
    if field == "job_description":
        return str(job.get("description") or "")
    if field == "gpu_num":
        match = re.search(r"num=(\d+)", str(job.get("gpu") or ""))
        return match.group(1) if match else ""
    return ""


def parse_job_refs(words: list[str], max_size: int) -> list[tuple[str, int, list[str] | None]]:
    """``12``, ``12[3]``, ``12[1-5]`` to (text, id, index keys or None); ValueError if bad."""
    refs: list[tuple[str, int, list[str] | None]] = []
    for word in words:
        match = re.fullmatch(r"(\d+)(?:\[([^\]]+)\])?", word.strip())
        if not match:
            raise ValueError(word)
        keys = None
        if match.group(2):
            keys = [str(i) for i in parse_index_list(match.group(2), max(max_size, 10**6))]
        refs.append((word.strip(), int(match.group(1)), keys))
    return refs


def command_bjobs(args: list[str], state_dir: str, control: Json) -> int:
    settings: Json = control["settings"]
    show_all = False
    json_out = False
    noheader = False
    state_filter: str | None = None
    fmt_text: str | None = os.environ.get("LSB_BJOBS_FORMAT") or None
    name_pattern: str | None = None
    queue: str | None = None
    user: str | None = username()
    ids: list[str] = []
    pos = 0
    while pos < len(args):
        arg = args[pos]
        answer_help_or_version(arg, BJOBS_USAGE)
        if arg == "-a":
            show_all = True
        elif arg in ("-d", "-p", "-r", "-s"):
            state_filter = arg
        elif arg == "-json":
            json_out = True
        elif arg == "-noheader":
            noheader = True
        elif arg in ("-w", "-W", "-X", "-hms", "-A", "-l"):
            if arg in ("-l", "-A"):
                raise UsageError(f"bjobs: option {arg} is not simulated\n{BJOBS_USAGE}")
        elif arg in ("-o", "-J", "-q", "-u", "-P", "-m", "-G", "-g"):
            if pos + 1 >= len(args):
                raise UsageError(f"bjobs: option requires an argument -- {arg[1:]}\n{BJOBS_USAGE}")
            value = args[pos + 1]
            if arg == "-o":
                fmt_text = value
            elif arg == "-J":
                name_pattern = value
            elif arg == "-q":
                queue = value
            elif arg == "-u":
                user = None if value == "all" else value
            pos += 1
        elif arg.startswith("-"):
            raise UsageError(f"bjobs: Illegal option -- {arg[1:]}\n{BJOBS_USAGE}")
        else:
            ids.append(arg)
        pos += 1
    if json_out and not fmt_text:
        json_out = False  # LSF: -json has no effect without -o / LSB_BJOBS_FORMAT
    fields, delimiter = (
        parse_format(fmt_text) if fmt_text else ([(c, None) for c in DEFAULT_COLUMNS], "")
    )
    try:
        refs = parse_job_refs(ids, int(settings["max_array_size"]))
    except ValueError as exc:
        raise UsageError(f"{exc.args[0]}: Illegal job ID.") from None

    state = load_state(state_dir)
    now = time.time()
    rows: list[tuple[Json, str, Json]] = []
    errors: list[tuple[str, str]] = []

    def visible(element: Json) -> bool:
        stat = str(element["stat"])
        if state_filter == "-d":
            return stat in STAT_FINISHED
        if state_filter == "-p":
            return stat in STAT_PENDING
        if state_filter == "-r":
            return bool(stat == "RUN")
        if state_filter == "-s":
            return stat in ("USUSP", "SSUSP", "PSUSP")
        return show_all or stat not in STAT_FINISHED

    def name_ok(job: Json, idx: str) -> bool:
        if name_pattern is None:
            return True
        return fnmatch.fnmatchcase(str(job["name"]), name_pattern) or fnmatch.fnmatchcase(
            element_name(job, idx), name_pattern
        )

    if refs:
        for text, job_id, keys in refs:
            job = state["jobs"].get(str(job_id))
            found = False
            if job is not None:
                for idx, element in sorted_elements(job):
                    if keys is not None and idx not in keys:
                        continue
                    if is_purged(element, settings, now):
                        continue
                    found = True
                    if visible(element) and name_ok(job, idx):
                        rows.append((job, idx, element))
            if not found:
                errors.append((text, f"Job <{text}> is not found"))
    else:
        for key in sorted(state["jobs"], key=int):
            job = state["jobs"][key]
            if user is not None and job.get("user") != user:
                continue
            if queue is not None and job.get("queue") != queue:
                continue
            for idx, element in sorted_elements(job):
                if is_purged(element, settings, now) or not visible(element):
                    continue
                if name_ok(job, idx):
                    rows.append((job, idx, element))

    empty_message = (
        "No job found" if (show_all or state_filter == "-d") else "No unfinished job found"
    )
    if state_filter == "-p":
        empty_message = "No pending job found"
    elif state_filter == "-r":
        empty_message = "No running job found"
    exit_code = 255 if errors else 0
    if json_out:
        records: list[Json] = []
        for job, idx, element in rows:
            records.append(
                {
                    BJOBS_FIELDS[f]: field_value(f, u, job, idx, element, settings, now)
                    for f, u in fields
                }
            )
        for text, message in errors:
            records.append({"JOBID": text, "ERROR": message})
        envelope = {"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}
        sys.stdout.write(json.dumps(envelope, indent=2, separators=(",", ":")) + "\n")
        if not rows and not errors:
            sys.stderr.write(empty_message + "\n")
        return exit_code
    for _, message in errors:
        sys.stderr.write(message + "\n")
    if not rows:
        if not errors:
            sys.stderr.write(empty_message + "\n")
        return exit_code
    table = [
        [field_value(f, u, job, idx, element, settings, now) or "-" for f, u in fields]
        for job, idx, element in rows
    ]
    header = [BJOBS_FIELDS[f] for f, _ in fields]
    lines: list[str] = []
    if delimiter:
        if not noheader:
            lines.append(delimiter.join(header))
        lines.extend(delimiter.join(row) for row in table)
    else:
        widths = [max(len(header[i]), *(len(row[i]) for row in table)) for i in range(len(header))]
        all_rows = table if noheader else [header, *table]
        for row in all_rows:
            cells = [cell.ljust(widths[i]) for i, cell in enumerate(row)]
            lines.append(" ".join(cells).rstrip())
    sys.stdout.write("\n".join(lines) + "\n")
    return exit_code


# --------------------------------------------------------------------------- bkill

BKILL_USAGE = (
    "Usage: bkill [-h] [-V] [-l] [-b] [-d | -r | -s signal_value | signal_name]\n"
    "             [-J job_name] [-q queue_name] [-u user_name | -u all] [-C kill_reason]\n"
    '             [job_ID ... | 0 | "job_ID[index]" ...]'
)


def request_kill(
    state_dir: str,
    job_key: str,
    keys: list[str] | None,
    *,
    reason: str = "TERM_OWNER",
    as_done: bool = False,
    sig: int | None = None,
    who: str = "",
) -> list[tuple[str, str]]:
    """Kill (or signal) elements of one job; [(label, outcome)] with outcome in
    ``terminated``, ``signaled``, ``finished``, ``missing``."""
    results: list[tuple[str, str]] = []
    now = time.time()
    to_signal: list[tuple[int, int, str]] = []
    with locked(state_dir):
        state = load_state(state_dir)
        settings = load_control(state_dir)["settings"]
        job: Json | None = state["jobs"].get(job_key)
        if job is None:
            return [(job_key, "missing")]
        elements = sorted_elements(job)
        if keys is not None:
            wanted = [(k, e) for k, e in elements if k in keys]
            if not wanted:
                return [(f"{job_key}[{','.join(keys)}]", "missing")]
        else:
            wanted = elements
        live = [(k, e) for k, e in wanted if not is_purged(e, settings, now)]
        if not live:
            return [(element_label(job, wanted[0][0]) if keys else job_key, "missing")]
        whole = keys is None
        unfinished = [(k, e) for k, e in live if e["stat"] not in STAT_FINISHED]
        if whole and not unfinished:
            return [(job_key, "finished")]
        runner_ok = runner_alive(job.get("runner_pid"))
        terminating = sig is None or sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)
        for idx, element in live:
            label = element_label(job, idx)
            if element["stat"] in STAT_FINISHED:
                if not whole:
                    results.append((label, "finished"))
                continue
            if not whole:
                results.append((label, "signaled" if sig is not None else "terminated"))
            if sig is not None and not terminating:
                if element["stat"] == "RUN" and element.get("pgid"):
                    to_signal.append((int(element["pgid"]), sig, f"{state_dir}:{label}"))
                continue
            signals = ["INT", "TERM", "KILL"] if sig is None else [signal_name(sig)]
            code = 130 if sig is None else 128 + sig
            element["events"].append(
                [now, "signal", "KILL" if sig is None else signal_name(sig), who]
            )
            if element["stat"] == "PEND" or (element["stat"] == "RUN" and not runner_ok):
                if element["stat"] == "RUN" and element.get("pgid"):
                    to_signal.append((int(element["pgid"]), signal.SIGKILL, f"{state_dir}:{label}"))
                if as_done:
                    finish_element(element, "DONE", 0, "", now)
                else:
                    finish_element(element, "EXIT", code, reason, now)
                continue
            element["kill"] = {
                "reason": reason,
                "as_done": as_done,
                "exit_code": code,
                "signals": signals,
                "time": now,
            }
        if whole:
            results.append((job_key, "signaled" if sig is not None else "terminated"))
        save_state(state_dir, state)
    for pgid, number, token in to_signal:
        signal_group(pgid, number, token)
    return results


def command_bkill(args: list[str], state_dir: str, control: Json) -> int:
    settings: Json = control["settings"]
    as_done = False
    sig: int | None = None
    name_pattern: str | None = None
    queue: str | None = None
    user: str | None = username()
    words: list[str] = []
    pos = 0
    while pos < len(args):
        arg = args[pos]
        answer_help_or_version(arg, BKILL_USAGE)
        if arg == "-l":
            names = [signal_name(s) for s in sorted(set(signal.Signals)) if s < 32]
            sys.stdout.write(" ".join(names) + "\n")
            return 0
        if arg == "-d":
            as_done = True
        elif arg in ("-r", "-b"):
            pass
        elif arg in ("-s", "-J", "-q", "-u", "-C", "-m", "-g", "-app", "-sla", "-stat"):
            if pos + 1 >= len(args):
                raise UsageError(f"bkill: option requires an argument -- {arg[1:]}\n{BKILL_USAGE}")
            value = args[pos + 1]
            if arg == "-s":
                sig = signal_number(value)
            elif arg == "-J":
                name_pattern = value
            elif arg == "-q":
                queue = value
            elif arg == "-u":
                user = None if value == "all" else value
            pos += 1
        elif arg.startswith("-"):
            raise UsageError(f"bkill: Illegal option -- {arg[1:]}\n{BKILL_USAGE}")
        else:
            words.append(arg)
        pos += 1
    if as_done and sig is not None:
        raise UsageError(f"bkill: -d and -s cannot be used together\n{BKILL_USAGE}")
    if not words and name_pattern is None and queue is None:
        raise UsageError(BKILL_USAGE)
    try:
        refs = parse_job_refs([w for w in words if w != "0"], int(settings["max_array_size"]))
    except ValueError as exc:
        sys.stderr.write(f"{exc.args[0]}: Illegal job ID.\n")
        return 255

    targets: list[tuple[str, list[str] | None]] = []
    state = load_state(state_dir)
    now = time.time()
    if "0" in words or not words:
        matches = []
        for key in sorted(state["jobs"], key=int):
            job = state["jobs"][key]
            if user is not None and job.get("user") != user:
                continue
            if queue is not None and job.get("queue") != queue:
                continue
            if name_pattern is not None and not fnmatch.fnmatchcase(str(job["name"]), name_pattern):
                continue
            if any(e["stat"] not in STAT_FINISHED for e in job["elements"].values()):
                matches.append(key)
        if not matches:
            sys.stderr.write("No unfinished job found\n")
            return 255
        if "0" not in words:
            matches = matches[-1:]
        targets.extend((key, None) for key in matches)
    for text, job_id, keys in refs:
        job = state["jobs"].get(str(job_id))
        if (
            job is not None
            and name_pattern is not None
            and not fnmatch.fnmatchcase(str(job["name"]), name_pattern)
        ):
            sys.stderr.write(f"Job <{text}>: No matching job found\n")
            continue
        if job is not None and keys is not None and not job.get("array"):
            keys = None if keys == ["0"] else keys
        targets.append((str(job_id), keys))
    del now

    failed = False
    for key, keys in targets:
        for label, outcome in request_kill(
            state_dir, key, keys, as_done=as_done, sig=sig, who=username()
        ):
            if outcome == "terminated":
                sys.stdout.write(f"Job <{label}> is being terminated\n")
            elif outcome == "signaled":
                sys.stdout.write(f"Job <{label}> is being signaled\n")
            elif outcome == "finished":
                sys.stderr.write(f"Job <{label}>: Job has already finished\n")
                failed = True
            else:
                sys.stderr.write(f"Job <{label}>: No matching job found\n")
                failed = True
    return 255 if failed else 0


# --------------------------------------------------------------------------- bhist

BHIST_USAGE = (
    "Usage: bhist [-h] [-V] [-l] [-a] [-b] [-d] [-p] [-r] [-s] [-w]\n"
    "             [-J job_name] [-q queue_name] [-u user_name | -u all] [-n num_logfiles]\n"
    '             [job_ID | "job_ID[index]" ...]'
)


def bhist_long(job: Json, idx: str, element: Json, settings: Json, now: float) -> list[str]:

    def t(stamp: Any) -> str:
        return fmt_long_time(float(stamp), settings)

    label = element_label(job, idx)
    head = (
        f"Job <{label}>, Job Name <{element_name(job, idx)}>, User <{job['user']}>, "
        f"Project <{job.get('project') or 'default'}>, "
    )
    if job.get("description"):
        head += f"Job Description <{job['description']}>, "
    lines = [head + f"Command <{job['command']}>"]
    submitted = (
        f"{t(job['submit_time'])}: Submitted from host <{job['from_host']}>, to Queue "
        f"<{job['queue']}>, CWD <{job['submit_cwd']}>"
    )
    if job.get("out"):
        submitted += f", Output File <{substitute(str(job['out']), int(job['id']), int(idx))}>"
    if job.get("err"):
        submitted += f", Error File <{substitute(str(job['err']), int(job['id']), int(idx))}>"
    if job.get("run_limit_min"):
        submitted += f", Run Limit <{float(job['run_limit_min']):.1f} min>"
    if job.get("mem_limit_kb"):
        submitted += f", Memory Limit <{fmt_mem(job['mem_limit_kb'])}>"
    if job.get("dependency"):
        submitted += f", Dependency Condition <{job['dependency']}>"
    lines.append(submitted + ";")
    start = element.get("start_time")
    n = int(job.get("slots") or 1)
    host = str(element.get("exec_host") or "").split("*")[-1]
    for event in element.get("events") or []:
        if event[1] == "start" and start is not None:
            pid = event[2]
            lines.append(
                f"{t(start)}: Dispatched {n} Task(s) on Host(s) <{host}>, Allocated {n} "
                f"Slot(s) on Host(s) <{host}>, Effective RES_REQ <select[type == local] "
                f"order[r15s:pg] >;"
            )
            lines.append(f"{t(start)}: Starting (Pid {pid});")
            lines.append(
                f"{t(start)}: Running with execution home <{os.path.expanduser('~')}>, "
                f"Execution CWD <{event[3]}>, Execution Pid <{pid}>;"
            )
        elif event[1] == "signal":
            who = event[3] or job["user"]
            lines.append(
                f"{t(event[0])}: Signal <{event[2]}> requested by user or administrator <{who}>;"
            )
    stat = element["stat"]
    finish = element.get("finish_time")
    cpu = float(element.get("cpu_time") or 0.0)
    if stat == "DONE" and finish is not None:
        lines.append(f"{t(finish)}: Done successfully. The CPU time used is {cpu:.1f} seconds;")
    elif stat == "EXIT" and finish is not None:
        reason = str(element.get("exit_reason") or "")
        if start is None:
            lines.append(
                f"{t(finish)}: Exited; job has been forced to exit with exit code "
                f"{element.get('exit_code')}. The CPU time used is unknown;"
            )
        else:
            lines.append(
                f"{t(finish)}: Exited with exit code {element.get('exit_code')}. "
                f"The CPU time used is {cpu:.1f} seconds;"
            )
        if reason:
            text = TERM_TEXT.get(reason, reason.lower())
            lines.append(f"{t(finish)}: Completed <exit>; {reason}: {text}.")
        else:
            lines.append(f"{t(finish)}: Completed <exit>.")
    if element.get("max_mem_kb"):
        mem = fmt_mem(element["max_mem_kb"])
        lines += ["", "MEMORY USAGE:", f"MAX MEM: {mem};  AVG MEM: {mem}"]
    submit = float(job["submit_time"])
    end = float(finish) if finish is not None else now
    pend = (float(start) if start is not None else end) - submit
    run = end - float(start) if start is not None else 0.0
    lines += [
        "",
        f"Summary of time in seconds spent in various states by  {t(end)}",
        "  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL",
        f"  {int(pend):<9d}0        {int(run):<9d}0        0        0        {int(pend + run)}",
    ]
    return lines


def wrap_line(line: str, width: int = 80, indent: int = 21) -> list[str]:
    """Break a long line the way LSF's long formats do: at the column, mid-word, with
    continuation lines indented."""
    if len(line) <= width - 1:
        return [line]
    out = [line[: width - 1]]
    rest = line[width - 1 :]
    step = width - 1 - indent
    while rest:
        out.append(" " * indent + rest[:step])
        rest = rest[step:]
    return out


def command_bhist(args: list[str], state_dir: str, control: Json) -> int:
    settings: Json = control["settings"]
    unformatted = False
    long_format = False
    show_all = False
    name_pattern: str | None = None
    user: str | None = username()
    words: list[str] = []
    pos = 0
    while pos < len(args):
        arg = args[pos]
        answer_help_or_version(arg, BHIST_USAGE)
        if arg == "-l":
            long_format = True
        elif arg in ("-a", "-d", "-e"):
            show_all = True
        elif arg == "-UF":
            unformatted = True
        elif arg in ("-b", "-w", "-p", "-r", "-s"):
            pass
        elif arg in ("-n", "-J", "-q", "-u", "-f", "-S", "-C", "-D", "-P", "-m"):
            if pos + 1 >= len(args):
                raise UsageError(f"bhist: option requires an argument -- {arg[1:]}\n{BHIST_USAGE}")
            if arg == "-J":
                name_pattern = args[pos + 1]
            elif arg == "-u":
                user = None if args[pos + 1] == "all" else args[pos + 1]
            pos += 1
        elif arg.startswith("-"):
            raise UsageError(f"bhist: Illegal option -- {arg[1:]}\n{BHIST_USAGE}")
        else:
            words.append(arg)
        pos += 1
    try:
        refs = parse_job_refs(words, int(settings["max_array_size"]))
    except ValueError as exc:
        raise UsageError(f"{exc.args[0]}: Illegal job ID.") from None
    state = load_state(state_dir)
    now = time.time()
    rows: list[tuple[Json, str, Json]] = []
    if refs:
        for _, job_id, keys in refs:
            job = state["jobs"].get(str(job_id))
            if job is None:
                continue
            rows.extend(
                (job, idx, element)
                for idx, element in sorted_elements(job)
                if keys is None or idx in keys
            )
    else:
        for key in sorted(state["jobs"], key=int):
            job = state["jobs"][key]
            if user is not None and job.get("user") != user:
                continue
            if name_pattern is not None and not fnmatch.fnmatchcase(str(job["name"]), name_pattern):
                continue
            rows.extend(
                (job, idx, element)
                for idx, element in sorted_elements(job)
                if show_all or element["stat"] not in STAT_FINISHED
            )
    if not rows:
        sys.stderr.write("No matching job found\n")
        return 255
    if long_format:
        blocks = []
        for job, idx, element in rows:
            lines = bhist_long(job, idx, element, settings, now)
            if not unformatted:
                lines = [part for line in lines for part in wrap_line(line)]
            blocks.append("\n".join(lines))
        separator = "\n" + "-" * 78 + "\n\n"
        sys.stdout.write("\n" + separator.join(blocks) + "\n")
        return 0
    lines = [
        "Summary of time in seconds spent in various states:",
        f"{'JOBID':<8}{'USER':<8}{'JOB_NAME':<10}{'PEND':<8}{'PSUSP':<8}{'RUN':<8}"
        f"{'USUSP':<8}{'SSUSP':<8}{'UNKWN':<8}TOTAL",
    ]
    for job, idx, element in rows:
        submit = float(job["submit_time"])
        start = element.get("start_time")
        end = float(element["finish_time"]) if element.get("finish_time") is not None else now
        pend = (float(start) if start is not None else end) - submit
        run = end - float(start) if start is not None else 0.0
        name = element_name(job, idx)
        name = name if len(name) <= 9 else "*" + name[-8:]
        lines.append(
            f"{element_label(job, idx):<8}{str(job['user'])[:7]:<8}{name:<10}{int(pend):<8}"
            f"{0:<8}{int(run):<8}{0:<8}{0:<8}{0:<8}{int(pend + run)}"
        )
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


# --------------------------------------------------------------------------- entry


def is_token_lookup(command: str, args: list[str]) -> bool:
    """A ``bjobs`` asking for job descriptions: how a client finds a lost submission."""
    return command == "bjobs" and any("job_description" in arg for arg in args)


def take_lookup_fault(state_dir: str) -> str | None:
    """The next queued token-lookup fault (``down``, ``empty``, ``garbage``, or ``ok``
    for none), used up."""
    with locked(state_dir):
        control = load_control(state_dir)
        queued = control["faults"].get("lookup_faults") or []
        if not queued:
            return None
        kind = str(queued.pop(0))
        control["faults"]["lookup_faults"] = queued
        save_control(state_dir, control)
        return kind


def apply_faults(command: str, args: list[str], state_dir: str, control: Json) -> int | None:
    """Injected faults; an exit code when the command must stop here."""
    faults: Json = control["faults"]
    now = time.time()
    slow = faults.get("slow") or {}
    delay = float(slow.get(command, slow.get("*", 0)) or 0)
    if delay > 0:
        time.sleep(delay)
    lookup_fault = (
        take_lookup_fault(state_dir)
        if faults.get("lookup_faults") and is_token_lookup(command, args)
        else None
    )
    if lookup_fault == "empty":
        return 0
    if lookup_fault == "garbage":
        sys.stdout.write("<html><body>502 Bad Gateway</body></html>\n")
        return 0
    if float(faults.get("outage_until") or 0) > now or lookup_fault == "down":
        sys.stderr.write("LSF is down. Please wait ...\n")
        return 255
    if (faults.get("empty_once") or {}).get(command) and consume_fault(
        state_dir, "empty_once", command
    ):
        return 0
    if (faults.get("garbage_once") or {}).get(command) and consume_fault(
        state_dir, "garbage_once", command
    ):
        sys.stdout.flush()
        sys.stdout.buffer.write(b'\xff\xfe\x00garbage{"COMMAND":"bjobs",\x81\x82 not json\n')
        sys.stdout.buffer.flush()
        return 0
    return None


HANDLERS = {
    "bsub": command_bsub,
    "bjobs": command_bjobs,
    "bkill": command_bkill,
    "bhist": command_bhist,
}


def process_start_time() -> float:
    """When this process started (the wrapper's ``exec`` keeps it), as an epoch time:
    the call log then covers the interpreter's start-up too."""
    now = time.time()
    try:
        with open("/proc/self/stat", "rb") as handle:
            raw = handle.read()
        ticks = int(raw[raw.rfind(b")") + 2 :].split()[19])
        age = time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, AttributeError):
        return now
    return now - age if 0 <= age < 60 else now


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in (*COMMANDS, "_runner"):
        sys.stderr.write("usage: lsfsim.py {bsub|bjobs|bkill|bhist} [args...]\n")
        return 2
    command, args = argv[0], argv[1:]
    try:
        state_dir = state_dir_from_env()
    except UsageError as exc:
        sys.stderr.write(exc.message + "\n")
        return 255
    ensure_layout(state_dir)
    if command == "_runner":
        return command_runner(args, state_dir)
    call_id = f"{os.getpid()}-{time.time_ns()}"
    start = process_start_time()
    append_call(
        state_dir,
        {"event": "start", "id": call_id, "command": command, "argv": args, "start": start},
    )
    code = 255
    try:
        control = load_control(state_dir)
        stop = apply_faults(command, args, state_dir, control)
        code = stop if stop is not None else HANDLERS[command](args, state_dir, control)
    except UsageError as exc:
        sys.stderr.write(exc.message + "\n")
        code = exc.code
    except KeyboardInterrupt:
        code = 130
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
        append_call(
            state_dir,
            {
                "event": "end",
                "id": call_id,
                "command": command,
                "end": time.time(),
                "exit_code": code,
            },
        )
    return code


if __name__ == "__main__":
    sys.exit(main())
