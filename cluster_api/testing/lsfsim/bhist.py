"""``bhist``: the history of jobs, also those purged from ``bjobs``, in LSF's summary
table or its long format (``-l``, wrapped at 80 columns unless ``-UF``)."""

from __future__ import annotations

import fnmatch
import os
import sys
import time
from typing import Any

from ..simkit.cli import UsageError, answer_help_or_version
from ..simkit.jobs import STAT_FINISHED, element_label, element_name, sorted_elements
from ..simkit.procs import username
from ..simkit.store import Json, load_state
from .formats import TERM_TEXT, fmt_long_time, fmt_mem, parse_job_refs, substitute, wrap_line
from .settings import VERSION

BHIST_USAGE = (
    "Usage: bhist [-h] [-V] [-l] [-a] [-b] [-d] [-p] [-r] [-s] [-w]\n"
    "             [-J job_name] [-q queue_name] [-u user_name | -u all] [-n num_logfiles]\n"
    '             [job_ID | "job_ID[index]" ...]'
)
IGNORED = ("-b", "-w", "-p", "-r", "-s")
WITH_ARG = ("-n", "-J", "-q", "-u", "-f", "-S", "-C", "-D", "-P", "-m")
SEPARATOR = "\n" + "-" * 78 + "\n\n"

Row = tuple[Json, str, Json]


class BhistRequest:
    """What the command line asks for (a plain class: see ``simkit``)."""

    def __init__(self) -> None:
        self.unformatted = False
        self.long_format = False
        self.show_all = False
        self.name_pattern: str | None = None
        self.user: str | None = username()
        self.words: list[str] = []


def parse_bhist_args(args: list[str]) -> BhistRequest:
    request = BhistRequest()
    pos = 0
    while pos < len(args):
        arg = args[pos]
        answer_help_or_version(arg, BHIST_USAGE, VERSION)
        if arg == "-l":
            request.long_format = True
        elif arg in ("-a", "-d", "-e"):
            request.show_all = True
        elif arg == "-UF":
            request.unformatted = True
        elif arg in IGNORED:
            pass
        elif arg in WITH_ARG:
            if pos + 1 >= len(args):
                raise UsageError(f"bhist: option requires an argument -- {arg[1:]}\n{BHIST_USAGE}")
            if arg == "-J":
                request.name_pattern = args[pos + 1]
            elif arg == "-u":
                request.user = None if args[pos + 1] == "all" else args[pos + 1]
            pos += 1
        elif arg.startswith("-"):
            raise UsageError(f"bhist: Illegal option -- {arg[1:]}\n{BHIST_USAGE}")
        else:
            request.words.append(arg)
        pos += 1
    return request


def select_rows(request: BhistRequest, state: Json, settings: Json) -> list[Row]:
    """Named ids (known ones; unknown skipped), else the user's unfinished jobs (all
    with ``-a``)."""
    try:
        refs = parse_job_refs(request.words, int(settings["max_array_size"]))
    except ValueError as exc:
        raise UsageError(f"{exc.args[0]}: Illegal job ID.") from None
    rows: list[Row] = []
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
        return rows
    for key in sorted(state["jobs"], key=int):
        job = state["jobs"][key]
        if request.user is not None and job.get("user") != request.user:
            continue
        if request.name_pattern is not None and not fnmatch.fnmatchcase(
            str(job["name"]), request.name_pattern
        ):
            continue
        rows.extend(
            (job, idx, element)
            for idx, element in sorted_elements(job)
            if request.show_all or element["stat"] not in STAT_FINISHED
        )
    return rows


def command_bhist(args: list[str], state_dir: str, control: Json) -> int:
    settings: Json = control["settings"]
    request = parse_bhist_args(args)
    rows = select_rows(request, load_state(state_dir), settings)
    now = time.time()
    if not rows:
        sys.stderr.write("No matching job found\n")
        return 255
    if request.long_format:
        blocks = []
        for job, idx, element in rows:
            lines = bhist_long(job, idx, element, settings, now)
            if not request.unformatted:
                lines = [part for line in lines for part in wrap_line(line)]
            blocks.append("\n".join(lines))
        sys.stdout.write("\n" + SEPARATOR.join(blocks) + "\n")
        return 0
    sys.stdout.write("\n".join(summary_table(rows, now)) + "\n")
    return 0


def _times(job: Json, element: Json, now: float) -> tuple[float, float, float]:
    """(end or now, seconds pending, seconds running) of an element."""
    submit = float(job["submit_time"])
    start = element.get("start_time")
    finish = element.get("finish_time")
    end = float(finish) if finish is not None else now
    pend = (float(start) if start is not None else end) - submit
    run = end - float(start) if start is not None else 0.0
    return end, pend, run


def summary_table(rows: list[Row], now: float) -> list[str]:
    lines = [
        "Summary of time in seconds spent in various states:",
        f"{'JOBID':<8}{'USER':<8}{'JOB_NAME':<10}{'PEND':<8}{'PSUSP':<8}{'RUN':<8}"
        f"{'USUSP':<8}{'SSUSP':<8}{'UNKWN':<8}TOTAL",
    ]
    for job, idx, element in rows:
        _, pend, run = _times(job, element, now)
        name = element_name(job, idx)
        name = name if len(name) <= 9 else "*" + name[-8:]
        lines.append(
            f"{element_label(job, idx):<8}{str(job['user'])[:7]:<8}{name:<10}{int(pend):<8}"
            f"{0:<8}{int(run):<8}{0:<8}{0:<8}{0:<8}{int(pend + run)}"
        )
    return lines


def bhist_long(job: Json, idx: str, element: Json, settings: Json, now: float) -> list[str]:
    """One job's (or element's) ``bhist -l`` block, before wrapping."""

    def t(stamp: Any) -> str:
        return fmt_long_time(float(stamp), settings)

    lines = [_heading(job, idx), _submitted(job, idx, t) + ";"]
    lines += _events(job, element, t)
    lines += _ending(element, t)
    if element.get("max_mem_kb"):
        mem = fmt_mem(element["max_mem_kb"])
        lines += ["", "MEMORY USAGE:", f"MAX MEM: {mem};  AVG MEM: {mem}"]
    end, pend, run = _times(job, element, now)
    lines += [
        "",
        f"Summary of time in seconds spent in various states by  {t(end)}",
        "  PEND     PSUSP    RUN      USUSP    SSUSP    UNKWN    TOTAL",
        f"  {int(pend):<9d}0        {int(run):<9d}0        0        0        {int(pend + run)}",
    ]
    return lines


def _heading(job: Json, idx: str) -> str:
    head = (
        f"Job <{element_label(job, idx)}>, Job Name <{element_name(job, idx)}>, "
        f"User <{job['user']}>, Project <{job.get('project') or 'default'}>, "
    )
    if job.get("description"):
        head += f"Job Description <{job['description']}>, "
    return head + f"Command <{job['command']}>"


def _submitted(job: Json, idx: str, t: Any) -> str:
    text = (
        f"{t(job['submit_time'])}: Submitted from host <{job['from_host']}>, to Queue "
        f"<{job['queue']}>, CWD <{job['submit_cwd']}>"
    )
    if job.get("out"):
        text += f", Output File <{substitute(str(job['out']), int(job['id']), int(idx))}>"
    if job.get("err"):
        text += f", Error File <{substitute(str(job['err']), int(job['id']), int(idx))}>"
    if job.get("run_limit_min"):
        text += f", Run Limit <{float(job['run_limit_min']):.1f} min>"
    if job.get("mem_limit_kb"):
        text += f", Memory Limit <{fmt_mem(job['mem_limit_kb'])}>"
    if job.get("dependency"):
        text += f", Dependency Condition <{job['dependency']}>"
    return text


def _events(job: Json, element: Json, t: Any) -> list[str]:
    """Dispatch and start, and each signal request, in the order they happened."""
    lines: list[str] = []
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
    return lines


def _ending(element: Json, t: Any) -> list[str]:
    stat = element["stat"]
    finish = element.get("finish_time")
    cpu = float(element.get("cpu_time") or 0.0)
    if finish is None:
        return []
    if stat == "DONE":
        return [f"{t(finish)}: Done successfully. The CPU time used is {cpu:.1f} seconds;"]
    if stat != "EXIT":
        return []
    if element.get("start_time") is None:
        exited = (
            f"{t(finish)}: Exited; job has been forced to exit with exit code "
            f"{element.get('exit_code')}. The CPU time used is unknown;"
        )
    else:
        exited = (
            f"{t(finish)}: Exited with exit code {element.get('exit_code')}. "
            f"The CPU time used is {cpu:.1f} seconds;"
        )
    reason = str(element.get("exit_reason") or "")
    if reason:
        text = TERM_TEXT.get(reason, reason.lower())
        return [exited, f"{t(finish)}: Completed <exit>; {reason}: {text}."]
    return [exited, f"{t(finish)}: Completed <exit>."]
