"""Exceptions raised by cluster_api.

Everything the library raises on purpose derives from `ClusterAPIError`, so a
pipeline can catch one type around any call and still tell a timeout from a rejection.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .models import JobRecord


class ClusterAPIError(Exception):
    """Base class of every error raised by cluster_api."""


class CommandFailedError(ClusterAPIError):
    """A scheduler command exited non-zero (or could not be started).

    ``stdout`` is kept because schedulers such as LSF print valid records for the ids
    they know even when they exit non-zero for the ones they do not.
    """

    def __init__(
        self,
        message: str,
        stdout: str = "",
        returncode: int | None = None,
        stderr: str = "",
    ) -> None:
        super().__init__(message)
        self.stdout = stdout
        self.returncode = returncode
        self.stderr = stderr


class CommandTimeoutError(ClusterAPIError):
    """A scheduler command did not finish within its timeout and was killed."""


class SubmitError(ClusterAPIError):
    """The scheduler refused a job, or its answer to a submission could not be read.

    ``job_may_exist`` is False when the job certainly was not submitted (nothing of it is
    left behind), True when its answer was lost or unreadable and no lookup could settle
    it: then its script and journal entry stay, and ``reconnect()`` tracks the job if the
    scheduler turns out to have it.
    """

    def __init__(self, message: str, *, job_may_exist: bool = False) -> None:
        super().__init__(message)
        self.job_may_exist = job_may_exist


# asyncio.TimeoutError became the built-in TimeoutError in Python 3.11; before that a
# caller may catch either, so a timeout has to be both.
if sys.version_info >= (3, 11):
    _TimeoutBase = TimeoutError
else:

    class _TimeoutBase(TimeoutError, asyncio.TimeoutError):
        pass


class WaitTimeoutError(ClusterAPIError, _TimeoutBase):
    """``JobMonitor.wait_for`` ran out of time. ``unfinished`` holds the records it was
    still waiting for (not ended yet, or ended with callbacks still running); they keep
    running and stay tracked."""

    def __init__(self, message: str, unfinished: Sequence[JobRecord] = ()) -> None:
        super().__init__(message)
        self.unfinished = list(unfinished)


class UnknownJobError(ClusterAPIError):
    """An id names no job of this library (a local pid that runs something else, for
    instance: pids are reused), so nothing was done to it."""

    def __init__(self, message: str, job_ids: list[str]) -> None:
        super().__init__(message)
        self.job_ids = job_ids


class ConfigError(ClusterAPIError, ValueError):
    """A config value, file or profile is wrong. ``key`` is the config key at fault (None
    when the fault is not one key's, e.g. a YAML syntax error), ``origin`` where it was
    written (a file path, ``profile 'NAME' in PATH``, ``override``), ``line`` (and for a
    syntax error ``column``) its 1-based position in the file, when known; ``problem``
    says what is wrong without saying where. A checker reports them without reading the
    message; the message alone still names the key and the file."""

    def __init__(
        self,
        problem: str,
        *,
        key: str | None = None,
        origin: str | None = None,
        line: int | None = None,
        column: int | None = None,
        message: str | None = None,
    ) -> None:
        if message is None:
            message = f"{origin}: {problem}" if origin else problem
        super().__init__(message)
        self.problem = problem
        self.key = key
        self.origin = origin
        self.line = line
        self.column = column

    def located(self, origin: str, line: int | None) -> ConfigError:
        """The same error, said to come from ``origin`` (at ``line``)."""
        return ConfigError(self.problem, key=self.key, origin=origin, line=line)


class ConfigWarning(UserWarning):
    """A config key was ignored (unknown to this version and to the chosen executor);
    ``key``, ``origin``, ``line`` and ``problem`` as for `ConfigError`."""

    def __init__(self, problem: str, *, key: str, origin: str, line: int | None) -> None:
        super().__init__(f"{origin}: {problem}")
        self.problem = problem
        self.key = key
        self.origin = origin
        self.line = line
