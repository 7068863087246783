"""Exceptions raised by cluster_api.

Everything the library raises on purpose derives from :class:`ClusterAPIError`, so a
pipeline can catch one type around any call and still tell a timeout from a rejection.
"""

from __future__ import annotations


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
    """The scheduler refused a job, or its answer to a submission could not be read."""


class UnknownJobError(ClusterAPIError):
    """An id names no job of this library (a local pid that runs something else, for
    instance: pids are reused), so nothing was done to it."""

    def __init__(self, message: str, job_ids: list[str]) -> None:
        super().__init__(message)
        self.job_ids = job_ids
