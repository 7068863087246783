"""Parsing of written quantities: memory sizes and wall-clock limits people write, and the
array index ranges and local times schedulers print.

Pure functions, so every executor converts the same string the same way and the
error for a bad value is raised once, at the edge, with the value in the message.
"""

from __future__ import annotations

import math
import re
from datetime import datetime, timezone

_MEMORY_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4, "P": 1024**5}
_MEMORY_RE = re.compile(r"^\s*(\d+(?:\.\d+)?|\.\d+)\s*([KMGTP]?)(?:I?B|BYTES?)?\s*$", re.IGNORECASE)


def parse_memory_bytes(value: str) -> int:
    """Return the number of bytes in a memory string such as ``"8 GB"`` or ``"1.5 TB"``.

    Units are binary (1 KB = 1024 B) and case-insensitive; ``GB``, ``G``, ``GiB`` and
    LSF's ``Gbytes`` all mean the same. A bare number is refused because its unit would be
    a guess (LSF alone has a site-wide default that differs between clusters).
    """
    if not isinstance(value, str) or isinstance(value, bool):
        raise ValueError(f"memory must be a string such as '8 GB', got {value!r}")
    match = _MEMORY_RE.match(value)
    if match is None:
        raise ValueError(
            f"invalid memory {value!r}: expected a number and a unit, e.g. '512 MB' or '8 GB'"
        )
    number, unit = match.groups()
    if not unit and not re.search(r"[A-Za-z]", value):
        raise ValueError(f"invalid memory {value!r}: add a unit, e.g. '{value.strip()} MB'")
    result = math.ceil(float(number) * _MEMORY_UNITS[unit.upper()])
    if result <= 0:
        raise ValueError(f"invalid memory {value!r}: must be more than zero")
    return result


def format_memory(n_bytes: int, unit: str) -> int:
    """Express ``n_bytes`` in ``unit`` (KB, MB, GB, TB), rounded up so a limit never shrinks."""
    key = unit.strip().upper().rstrip("B") if unit.strip().upper() != "B" else ""
    if key not in _MEMORY_UNITS:
        raise ValueError(f"unknown memory unit {unit!r}: use B, KB, MB, GB or TB")
    return max(1, math.ceil(n_bytes / _MEMORY_UNITS[key]))


_WALLTIME_RE = re.compile(r"^(?:(\d+)-)?(\d+)(?::(\d+))?(?::(\d+))?$")


def parse_walltime_seconds(value: str | int) -> int:
    """Return a wall-clock limit in seconds.

    Accepts ``"MM"`` (minutes, as LSF's ``-W``), ``"HH:MM"``, ``"HH:MM:SS"`` and Slurm's
    ``"D-HH:MM[:SS]"``; an int is minutes. Minutes and seconds after a colon must be below 60
    so that a typo such as ``"1:75"`` is reported instead of silently meaning 2:15.
    """
    if isinstance(value, bool):
        raise ValueError(f"invalid walltime {value!r}")
    if isinstance(value, int):
        if value <= 0:
            raise ValueError(f"invalid walltime {value!r}: must be more than zero minutes")
        return value * 60
    if not isinstance(value, str):
        raise ValueError(f"invalid walltime {value!r}: expected a string such as '04:00'")
    match = _WALLTIME_RE.match(value.strip())
    if match is None:
        raise ValueError(
            f"invalid walltime {value!r}: expected 'MM', 'HH:MM', 'HH:MM:SS' or 'D-HH:MM:SS'"
        )
    days, first, second, third = match.groups()
    if second is None:
        if days is not None:
            raise ValueError(f"invalid walltime {value!r}: a day count needs 'D-HH:MM'")
        seconds = int(first) * 60
    else:
        hours, minutes, secs = int(first), int(second), int(third or 0)
        if minutes >= 60 or secs >= 60:
            raise ValueError(f"invalid walltime {value!r}: minutes and seconds must be below 60")
        seconds = int(days or 0) * 86400 + hours * 3600 + minutes * 60 + secs
    if seconds <= 0:
        raise ValueError(f"invalid walltime {value!r}: must be more than zero")
    return seconds


def parse_walltime_minutes(value: str | int) -> int:
    """A wall-clock limit in whole minutes, rounded up: LSF and Slurm limits have minute
    granularity, and rounding down would kill a job before the time it asked for."""
    return -(-parse_walltime_seconds(value) // 60)


def expand_indices(expression: str) -> list[int]:
    """The indices of an array index expression (``3-10%2``, ``1,4,7-9:2``); [] when it
    cannot be read (a truncated one ends in ``...``)."""
    indices: list[int] = []
    for part in expression.split("%", 1)[0].split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip(), re.ASCII)
        if match is None:
            return []
        first = int(match.group(1))
        last = int(match.group(2) or first)
        step = int(match.group(3) or 1)
        indices.extend(range(first, last + 1, max(step, 1)))
    return indices


def parse_local_time(value: str) -> datetime | None:
    """An ISO time without a zone (the scheduler host's local time) as an aware UTC
    datetime; None when it is unreadable or no real moment (``0001-01-01``)."""
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            moment = moment.astimezone()  # naive -> local time zone
        return moment.astimezone(timezone.utc)
    except (ValueError, OverflowError, OSError):
        return None
