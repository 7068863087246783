"""``bjobs``: parse the options, select the elements, format them (columns, ``-o`` with a
delimiter, or ``-json``)."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sys
import time
from collections.abc import Callable
from typing import NamedTuple

from ..simkit.cli import UsageError, answer_help_or_version
from ..simkit.jobs import STAT_FINISHED, STAT_PENDING, element_name, is_purged, sorted_elements
from ..simkit.procs import username
from ..simkit.store import Json, load_state
from .formats import fmt_mem, fmt_time, parse_job_refs, substitute
from .settings import VERSION

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
IGNORED = ("-w", "-W", "-X", "-hms")
NOT_SIMULATED = ("-l", "-A")
WITH_ARG = ("-o", "-J", "-q", "-u", "-P", "-m", "-G", "-g")

Fields = list[tuple[str, str | None]]


class BjobsRequest:
    """What the command line asks for (a plain class: see ``simkit``)."""

    def __init__(
        self,
        *,
        user: str | None = None,
        ids: list[str] | None = None,
        fmt_text: str | None = None,
    ) -> None:
        self.show_all = False
        self.json_out = False
        self.noheader = False
        self.state_filter: str | None = None
        self.fmt_text = fmt_text
        self.name_pattern: str | None = None
        self.queue: str | None = None
        self.user = user
        self.ids = ids if ids is not None else []

    def visible(self, element: Json) -> bool:
        stat = str(element["stat"])
        if self.state_filter == "-d":
            return stat in STAT_FINISHED
        if self.state_filter == "-p":
            return stat in STAT_PENDING
        if self.state_filter == "-r":
            return bool(stat == "RUN")
        if self.state_filter == "-s":
            return stat in ("USUSP", "SSUSP", "PSUSP")
        return self.show_all or stat not in STAT_FINISHED

    def name_ok(self, job: Json, idx: str) -> bool:
        if self.name_pattern is None:
            return True
        return fnmatch.fnmatchcase(str(job["name"]), self.name_pattern) or fnmatch.fnmatchcase(
            element_name(job, idx), self.name_pattern
        )

    def empty_message(self) -> str:
        if self.state_filter == "-p":
            return "No pending job found"
        if self.state_filter == "-r":
            return "No running job found"
        if self.show_all or self.state_filter == "-d":
            return "No job found"
        return "No unfinished job found"


def parse_bjobs_args(args: list[str]) -> BjobsRequest:
    request = BjobsRequest(user=username(), fmt_text=os.environ.get("LSB_BJOBS_FORMAT") or None)
    pos = 0
    while pos < len(args):
        arg = args[pos]
        answer_help_or_version(arg, BJOBS_USAGE, VERSION)
        if arg == "-a":
            request.show_all = True
        elif arg in ("-d", "-p", "-r", "-s"):
            request.state_filter = arg
        elif arg == "-json":
            request.json_out = True
        elif arg == "-noheader":
            request.noheader = True
        elif arg in NOT_SIMULATED:
            raise UsageError(f"bjobs: option {arg} is not simulated\n{BJOBS_USAGE}")
        elif arg in IGNORED:
            pass
        elif arg in WITH_ARG:
            if pos + 1 >= len(args):
                raise UsageError(f"bjobs: option requires an argument -- {arg[1:]}\n{BJOBS_USAGE}")
            _set_option(request, arg, args[pos + 1])
            pos += 1
        elif arg.startswith("-"):
            raise UsageError(f"bjobs: Illegal option -- {arg[1:]}\n{BJOBS_USAGE}")
        else:
            request.ids.append(arg)
        pos += 1
    if request.json_out and not request.fmt_text:
        request.json_out = False  # LSF: -json has no effect without -o / LSB_BJOBS_FORMAT
    return request


def _set_option(request: BjobsRequest, arg: str, value: str) -> None:
    if arg == "-o":
        request.fmt_text = value
    elif arg == "-J":
        request.name_pattern = value
    elif arg == "-q":
        request.queue = value
    elif arg == "-u":
        request.user = None if value == "all" else value


def parse_format(text: str) -> tuple[Fields, str]:
    """``-o "jobid stat:6 max_mem::GB delimiter=','"`` to [(field, unit)], delimiter."""
    delimiter = " "
    match = re.search(r"delimiter=(['\"])(.*?)\1", text)
    if match:
        delimiter = match.group(2)
        text = text[: match.start()] + text[match.end() :]
    fields: Fields = []
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


Row = tuple[Json, str, Json]
"""(job, element key, element) of one line of output."""


def select_rows(
    request: BjobsRequest, state: Json, settings: Json, now: float
) -> tuple[list[Row], list[tuple[str, str]]]:
    """The elements to show, and (as written, message) for each id that is not found."""
    try:
        refs = parse_job_refs(request.ids, int(settings["max_array_size"]))
    except ValueError as exc:
        raise UsageError(f"{exc.args[0]}: Illegal job ID.") from None
    rows: list[Row] = []
    errors: list[tuple[str, str]] = []
    for text, job_id, keys in refs:
        job = state["jobs"].get(str(job_id))
        found = False
        for idx, element in sorted_elements(job) if job is not None else []:
            if (keys is not None and idx not in keys) or is_purged(element, settings, now):
                continue
            found = True
            if request.visible(element) and request.name_ok(job, idx):
                rows.append((job, idx, element))
        if not found:
            errors.append((text, f"Job <{text}> is not found"))
    if refs:
        return rows, errors
    for key in sorted(state["jobs"], key=int):
        job = state["jobs"][key]
        if request.user is not None and job.get("user") != request.user:
            continue
        if request.queue is not None and job.get("queue") != request.queue:
            continue
        for idx, element in sorted_elements(job):
            if is_purged(element, settings, now) or not request.visible(element):
                continue
            if request.name_ok(job, idx):
                rows.append((job, idx, element))
    return rows, errors


def command_bjobs(args: list[str], state_dir: str, control: Json) -> int:
    settings: Json = control["settings"]
    request = parse_bjobs_args(args)
    fields: Fields = [(c, None) for c in DEFAULT_COLUMNS]
    delimiter = ""
    if request.fmt_text:
        fields, delimiter = parse_format(request.fmt_text)
    now = time.time()
    rows, errors = select_rows(request, load_state(state_dir), settings, now)
    exit_code = 255 if errors else 0
    if request.json_out:
        write_json_answer(rows, errors, fields, settings, now)
        if not rows and not errors:
            sys.stderr.write(request.empty_message() + "\n")
        return exit_code
    for _, message in errors:
        sys.stderr.write(message + "\n")
    if not rows:
        if not errors:
            sys.stderr.write(request.empty_message() + "\n")
        return exit_code
    write_table(rows, fields, delimiter, request.noheader, settings, now)
    return exit_code


def write_json_answer(
    rows: list[Row], errors: list[tuple[str, str]], fields: Fields, settings: Json, now: float
) -> None:
    records: list[Json] = [
        {BJOBS_FIELDS[f]: field_value(f, u, job, idx, element, settings, now) for f, u in fields}
        for job, idx, element in rows
    ]
    records.extend({"JOBID": text, "ERROR": message} for text, message in errors)
    envelope = {"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}
    sys.stdout.write(json.dumps(envelope, indent=2, separators=(",", ":")) + "\n")


def write_table(
    rows: list[Row], fields: Fields, delimiter: str, noheader: bool, settings: Json, now: float
) -> None:
    """Columns padded to their widest cell, or joined by ``-o``'s delimiter; ``-`` for
    an empty value."""
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


class Cell(NamedTuple):
    """Everything a field's value may depend on."""

    job: Json
    idx: str
    element: Json
    unit: str | None
    settings: Json
    now: float

    @property
    def stat(self) -> str:
        return str(self.element["stat"])

    @property
    def finished(self) -> bool:
        return self.stat in STAT_FINISHED

    @property
    def started(self) -> bool:
        return self.element.get("start_time") is not None


def _exit_code(c: Cell) -> str:
    code = c.element.get("exit_code")
    return str(code) if c.stat == "EXIT" and code is not None else ""


def _max_mem(c: Cell) -> str:
    if not c.started or not c.element.get("max_mem_kb"):
        return ""
    return fmt_mem(c.element.get("max_mem_kb"), c.unit)


def _finish_time(c: Cell) -> str:
    """The real finish, or (running with a run limit) when the limit will end it."""
    if c.finished:
        return fmt_time(c.element.get("finish_time"), c.settings, "L")
    limit = c.job.get("run_limit_min")
    if c.started and limit:
        end = float(c.element["start_time"]) + float(limit) * 60.0
        return fmt_time(end, c.settings, "L")
    return ""


def _run_time(c: Cell) -> str:
    if not c.started:
        return "0 second(s)"
    end = float(c.element["finish_time"]) if c.finished else c.now
    return f"{int(end - float(c.element['start_time']))} second(s)"


def _path(key: str) -> Callable[[Cell], str]:
    def value(c: Cell) -> str:
        pattern = c.job.get(key)
        return substitute(str(pattern), int(c.job["id"]), int(c.idx)) if pattern else ""

    return value


def _pend_reason(c: Cell) -> str:
    if c.stat != "PEND":
        return ""
    return "Job dependency condition not satisfied" if c.job.get("dependency") else ""


def _gpu_num(c: Cell) -> str:
    match = re.search(r"num=(\d+)", str(c.job.get("gpu") or ""))
    return match.group(1) if match else ""


def _runtimelimit(c: Cell) -> str:
    limit = c.job.get("run_limit_min")
    return f"{float(limit):.1f}" if limit else ""


FIELD_VALUES: dict[str, Callable[[Cell], str]] = {
    "jobid": lambda c: str(c.job["id"]),
    "jobindex": lambda c: c.idx if c.job.get("array") else "0",
    "job_name": lambda c: element_name(c.job, c.idx),
    "stat": lambda c: c.stat,
    "user": lambda c: str(c.job["user"]),
    "queue": lambda c: str(c.job["queue"]),
    "exit_code": _exit_code,
    "exec_host": lambda c: str(c.element.get("exec_host") or ""),
    "first_host": lambda c: str(c.element.get("exec_host") or "").split("*")[-1],
    "nexec_host": lambda c: "1" if c.element.get("exec_host") else "",
    "from_host": lambda c: str(c.job["from_host"]),
    "max_mem": _max_mem,
    "mem": _max_mem,
    "memlimit": lambda c: fmt_mem(c.job.get("mem_limit_kb"), c.unit),
    "runtimelimit": _runtimelimit,
    "submit_time": lambda c: fmt_time(float(c.job["submit_time"]), c.settings),
    "start_time": lambda c: fmt_time(c.element.get("start_time"), c.settings),
    "finish_time": _finish_time,
    "exit_reason": lambda c: str(c.element.get("exit_reason") or ""),
    "proj_name": lambda c: str(c.job.get("project") or "default"),
    "command": lambda c: str(c.job["command"]),
    "slots": lambda c: str(c.job.get("slots") or 1),
    "nreq_slot": lambda c: str(c.job.get("slots") or 1),
    "cpu_used": lambda c: f"{float(c.element.get('cpu_time') or 0.0):.1f} second(s)",
    "run_time": _run_time,
    "dependency": lambda c: str(c.job.get("dependency") or ""),
    "sub_cwd": lambda c: str(c.job["submit_cwd"]),
    "exec_cwd": lambda c: str(c.job.get("cwd") or c.job["submit_cwd"]) if c.started else "",
    "output_file": _path("out"),
    "error_file": _path("err"),
    "pend_reason": _pend_reason,
    "job_description": lambda c: str(c.job.get("description") or ""),
    "gpu_num": _gpu_num,
}


def field_value(
    name: str, unit: str | None, job: Json, idx: str, element: Json, settings: Json, now: float
) -> str:
    """One ``-o`` field of one element, as bjobs prints it (``""`` when empty)."""
    value = FIELD_VALUES.get(name)
    return value(Cell(job, idx, element, unit, settings, now)) if value else ""
