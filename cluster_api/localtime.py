"""Local wall-clock times with a month name, as LSF (``Nov 22 10:31:17 2026``), PBS and
Grid Engine (ctime's ``Fri Nov 22 10:31:17 2026``) print them, as aware UTC datetimes.

A poll meets thousands of distinct times but only a few distinct local hours, so each
hour's start is converted once (``"Nov 22 10 2026"`` -> epoch seconds, which also gets
daylight saving right) and the minutes and seconds are added to it.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from datetime import datetime, timezone

_MONTH_NAMES = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
# [weekday] month day hour:minute[:second] [year] [LSF's marker: Local, Estimated, eXpected]
_TIME = re.compile(
    r"(?:[A-Z][a-z]{2} +)?([A-Z][a-z]{2} +\d{1,2} +\d{1,2}):(\d{2})(?::(\d{2}))?"
    r"(?: +(\d{4}))?(?: +[LEX])?"
)
_SIXTY = {f"{n:02d}": n for n in range(60)}  # "00".."59": a minute or a second
_HOUR_STARTS: dict[str, float] = {}  # "Nov 22 10 2026" -> epoch seconds, in _ZONE
_ZONE: list[object] = [None]

MonthTimeReader = Callable[[object], datetime | None]


def parse_month_time(value: object, now: datetime | None = None) -> datetime | None:
    """A local time such as ``Nov 22 10:31[:17] [2026] [L]`` (ctime's weekday first is
    allowed) as an aware UTC datetime; None for anything else.

    Without a year (LSF without ``LSB_DISPLAY_YEAR=Y``) the most recent such date not
    more than a day after ``now`` is meant, which is right across New Year.
    """
    return month_time_reader(now)(value)


def month_time_reader(now: datetime | None = None) -> MonthTimeReader:
    """`parse_month_time` for the many times of one answer: the time zone is checked and
    ``now`` read once, here, not for every time."""
    zone = (time.timezone, time.altzone, time.tzname)
    if _ZONE[0] != zone:  # the cached hour starts were local times of another zone
        _HOUR_STARTS.clear()
        _ZONE[0] = zone
    moment = now or datetime.now(timezone.utc)
    return lambda value: _parse(value, moment)


def _parse(value: object, now: datetime) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    text = value
    if len(text) == 24 and text[3] == text[7] == " ":  # ctime's weekday: "Fri Nov 22 ..."
        text = text[4:]
    # The usual shape, "Nov 22 10:31:17 2026", once a time of its hour has been read.
    if len(text) == 20 and text[9] == ":" and text[12] == ":":
        start = _HOUR_STARTS.get(text[:9] + text[15:])
        minute, second = _SIXTY.get(text[10:12]), _SIXTY.get(text[13:15])
        if start is not None and minute is not None and second is not None:
            return datetime.fromtimestamp(start + 60 * minute + second, timezone.utc)
    match = _TIME.fullmatch(text.strip())
    if match is None:
        return None
    day_hour, minute_text, second_text, year = match.groups()
    minute, second = _SIXTY.get(minute_text), _SIXTY.get(second_text or "00")
    if minute is None or second is None:
        return None
    seconds = 60 * minute + second
    try:
        if year is not None:
            return datetime.fromtimestamp(_hour_start(day_hour, year) + seconds, timezone.utc)
        start = _hour_start(day_hour, str(now.year))
        moment = datetime.fromtimestamp(start + seconds, timezone.utc)
        if (moment - now).days >= 1:
            start = _hour_start(day_hour, str(now.year - 1))
            moment = datetime.fromtimestamp(start + seconds, timezone.utc)
        return moment
    except (KeyError, ValueError, OverflowError, OSError):
        return None


def _hour_start(day_hour: str, year: str) -> float:
    """Epoch seconds at the start of a local hour (``"Nov 22 10"`` of ``"2026"``)."""
    key = f"{day_hour} {year}"
    start = _HOUR_STARTS.get(key)
    if start is None:
        month, day, hour = day_hour.split()
        local = datetime(int(year), _MONTHS[month], int(day), int(hour))
        start = _HOUR_STARTS[key] = local.astimezone().timestamp()
    return start
