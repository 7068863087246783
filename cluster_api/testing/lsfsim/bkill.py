"""``bkill``: parse the options, find the targets, leave kill requests for the runners
(or end what no runner will), answer per job."""

from __future__ import annotations

import fnmatch
import signal
import sys
import time
from typing import NamedTuple

from ..simkit.cli import UsageError, answer_help_or_version
from ..simkit.jobs import STAT_FINISHED, element_label, finish_element, is_purged, sorted_elements
from ..simkit.procs import runner_alive, signal_group, signal_name, username
from ..simkit.store import Json, load_control, load_state, locked, save_state
from .formats import parse_job_refs, signal_number
from .settings import DEFAULT_SETTINGS, VERSION

BKILL_USAGE = (
    "Usage: bkill [-h] [-V] [-l] [-b] [-d | -r | -s signal_value | signal_name]\n"
    "             [-J job_name] [-q queue_name] [-u user_name | -u all] [-C kill_reason]\n"
    '             [job_ID ... | 0 | "job_ID[index]" ...]'
)
WITH_ARG = ("-s", "-J", "-q", "-u", "-C", "-m", "-g", "-app", "-sla", "-stat")
TERMINATING = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)

Signal = tuple[int, int, str]
"""(process group, signal, token) to send once the lock is released."""


class BkillRequest:
    """What the command line asks for (a plain class: see ``simkit``)."""

    def __init__(self) -> None:
        self.as_done = False
        self.sig: int | None = None
        self.name_pattern: str | None = None
        self.queue: str | None = None
        self.user: str | None = username()
        self.words: list[str] = []
        self.list_signals = False


def parse_bkill_args(args: list[str]) -> BkillRequest:
    request = BkillRequest()
    pos = 0
    while pos < len(args):
        arg = args[pos]
        answer_help_or_version(arg, BKILL_USAGE, VERSION)
        if arg == "-l":
            request.list_signals = True
            return request
        if arg == "-d":
            request.as_done = True
        elif arg in ("-r", "-b"):
            pass
        elif arg in WITH_ARG:
            if pos + 1 >= len(args):
                raise UsageError(f"bkill: option requires an argument -- {arg[1:]}\n{BKILL_USAGE}")
            _set_option(request, arg, args[pos + 1])
            pos += 1
        elif arg.startswith("-"):
            raise UsageError(f"bkill: Illegal option -- {arg[1:]}\n{BKILL_USAGE}")
        else:
            request.words.append(arg)
        pos += 1
    if request.as_done and request.sig is not None:
        raise UsageError(f"bkill: -d and -s cannot be used together\n{BKILL_USAGE}")
    if not request.words and request.name_pattern is None and request.queue is None:
        raise UsageError(BKILL_USAGE)
    return request


def _set_option(request: BkillRequest, arg: str, value: str) -> None:
    if arg == "-s":
        request.sig = signal_number(value)
    elif arg == "-J":
        request.name_pattern = value
    elif arg == "-q":
        request.queue = value
    elif arg == "-u":
        request.user = None if value == "all" else value


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
    now = time.time()
    to_signal: list[Signal] = []
    with locked(state_dir):
        state = load_state(state_dir)
        settings = load_control(state_dir, DEFAULT_SETTINGS)["settings"]
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
        if whole and all(e["stat"] in STAT_FINISHED for _, e in live):
            return [(job_key, "finished")]
        kill = Kill(state_dir, reason, as_done, sig, who, now, runner_alive(job.get("runner_pid")))
        results = kill.apply(job, live, whole, to_signal)
        save_state(state_dir, state)
    for pgid, number, token in to_signal:
        signal_group(pgid, number, token)
    return results


class Kill(NamedTuple):
    """One bkill's effect on the elements of a job."""

    state_dir: str
    reason: str
    as_done: bool
    sig: int | None
    who: str
    now: float
    runner_ok: bool

    def apply(
        self, job: Json, live: list[tuple[str, Json]], whole: bool, to_signal: list[Signal]
    ) -> list[tuple[str, str]]:
        results: list[tuple[str, str]] = []
        outcome = "signaled" if self.sig is not None else "terminated"
        for idx, element in live:
            label = element_label(job, idx)
            if element["stat"] in STAT_FINISHED:
                if not whole:
                    results.append((label, "finished"))
                continue
            if not whole:
                results.append((label, outcome))
            self.element(element, label, to_signal)
        if whole:
            results.append((str(job["id"]), outcome))
        return results

    def element(self, element: Json, label: str, to_signal: list[Signal]) -> None:
        """Signal it, end it here (pending, or no runner left), or ask its runner to."""
        token = f"{self.state_dir}:{label}"
        sig = self.sig
        if sig is not None and sig not in TERMINATING:
            if element["stat"] == "RUN" and element.get("pgid"):
                to_signal.append((int(element["pgid"]), sig, token))
            return
        code = 130 if sig is None else 128 + sig
        element["events"].append(
            [self.now, "signal", "KILL" if sig is None else signal_name(sig), self.who]
        )
        if element["stat"] == "PEND" or (element["stat"] == "RUN" and not self.runner_ok):
            if element["stat"] == "RUN" and element.get("pgid"):
                to_signal.append((int(element["pgid"]), signal.SIGKILL, token))
            if self.as_done:
                finish_element(element, "DONE", 0, "", self.now)
            else:
                finish_element(element, "EXIT", code, self.reason, self.now)
            return
        element["kill"] = {
            "reason": self.reason,
            "as_done": self.as_done,
            "exit_code": code,
            "signals": ["INT", "TERM", "KILL"] if sig is None else [signal_name(sig)],
            "time": self.now,
        }


Target = tuple[str, list[str] | None]
"""(job key, element keys or None for all)."""


def select_targets(request: BkillRequest, state: Json, settings: Json) -> list[Target] | None:
    """The jobs to kill; None when ``0`` or a filter
    matches nothing (after saying so). Ids that fail ``-J`` are reported here."""
    refs = parse_job_refs([w for w in request.words if w != "0"], int(settings["max_array_size"]))
    targets: list[Target] = []
    if "0" in request.words or not request.words:
        matches = [
            key for key in sorted(state["jobs"], key=int) if _matches(request, state["jobs"][key])
        ]
        if not matches:
            sys.stderr.write("No unfinished job found\n")
            return None
        if "0" not in request.words:
            matches = matches[-1:]
        targets.extend((key, None) for key in matches)
    for text, job_id, keys in refs:
        job = state["jobs"].get(str(job_id))
        if (
            job is not None
            and request.name_pattern is not None
            and not fnmatch.fnmatchcase(str(job["name"]), request.name_pattern)
        ):
            sys.stderr.write(f"Job <{text}>: No matching job found\n")
            continue
        if job is not None and keys is not None and not job.get("array"):
            keys = None if keys == ["0"] else keys
        targets.append((str(job_id), keys))
    return targets


def _matches(request: BkillRequest, job: Json) -> bool:
    """A job ``bkill 0`` / ``-J`` / ``-q`` / ``-u`` designates: the user's, unfinished."""
    if request.user is not None and job.get("user") != request.user:
        return False
    if request.queue is not None and job.get("queue") != request.queue:
        return False
    if request.name_pattern is not None and not fnmatch.fnmatchcase(
        str(job["name"]), request.name_pattern
    ):
        return False
    return any(e["stat"] not in STAT_FINISHED for e in job["elements"].values())


def command_bkill(args: list[str], state_dir: str, control: Json) -> int:
    settings: Json = control["settings"]
    request = parse_bkill_args(args)
    if request.list_signals:
        names = [signal_name(s) for s in sorted(set(signal.Signals)) if s < 32]
        sys.stdout.write(" ".join(names) + "\n")
        return 0
    try:
        targets = select_targets(request, load_state(state_dir), settings)
    except ValueError as exc:
        sys.stderr.write(f"{exc.args[0]}: Illegal job ID.\n")
        return 255
    if targets is None:
        return 255
    failed = False
    for key, keys in targets:
        for label, outcome in request_kill(
            state_dir, key, keys, as_done=request.as_done, sig=request.sig, who=username()
        ):
            failed = answer(label, outcome) or failed
    return 255 if failed else 0


def answer(label: str, outcome: str) -> bool:
    """Print bkill's line for one job; True if it counts as a failure."""
    if outcome == "terminated":
        sys.stdout.write(f"Job <{label}> is being terminated\n")
    elif outcome == "signaled":
        sys.stdout.write(f"Job <{label}> is being signaled\n")
    elif outcome == "finished":
        sys.stderr.write(f"Job <{label}>: Job has already finished\n")
        return True
    else:
        sys.stderr.write(f"Job <{label}>: No matching job found\n")
        return True
    return False
