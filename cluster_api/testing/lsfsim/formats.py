"""LSF's text formats: times, memory, run limits, job names, index lists, job ids,
and the wrapping of its long output."""

from __future__ import annotations

import os
import re
import time

from ..simkit.cli import UsageError
from ..simkit.procs import signal_number as _signal_number
from ..simkit.store import Json

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


JobRef = tuple[str, int, list[str] | None]
"""A job named on a command line: (as written, job id, array index keys or None)."""


def parse_job_refs(words: list[str], max_size: int) -> list[JobRef]:
    """``12``, ``12[3]``, ``12[1-5]`` to (text, id, index keys or None); ValueError if bad."""
    refs: list[JobRef] = []
    for word in words:
        match = re.fullmatch(r"(\d+)(?:\[([^\]]+)\])?", word.strip())
        if not match:
            raise ValueError(word)
        keys = None
        if match.group(2):
            keys = [str(i) for i in parse_index_list(match.group(2), max(max_size, 10**6))]
        refs.append((word.strip(), int(match.group(1)), keys))
    return refs


def substitute(pattern: str, job_id: int, index: int) -> str:
    """``%J`` and ``%I`` of a path pattern."""
    return pattern.replace("%J", str(job_id)).replace("%I", str(index))


def expand(pattern: str, job: Json, idx: str) -> str:
    return substitute(pattern, int(job["id"]), int(idx))


def signal_number(name: str) -> int:
    try:
        return _signal_number(name)
    except ValueError:
        raise UsageError(f"{name}: Illegal signal value") from None


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
