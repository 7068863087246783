"""The data model: what a job asks for, what we know about it, and how it can end."""

from __future__ import annotations

import enum
import os
import re
import time
import warnings
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import InitVar, dataclass, field
from datetime import datetime
from typing import Any

from .units import parse_memory_bytes, parse_walltime_seconds


class JobStatus(str, enum.Enum):
    """Where a job is in its life. DONE, FAILED and KILLED are final."""

    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    KILLED = "killed"
    UNKNOWN = "unknown"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_STATUSES


TERMINAL_STATUSES = frozenset({JobStatus.DONE, JobStatus.FAILED, JobStatus.KILLED})
# A status may only move forward along this order, so a late or stale scheduler answer
# can never resurrect a finished job or send a running one back to the queue.
STATUS_RANK = {
    JobStatus.PENDING: 0,
    JobStatus.UNKNOWN: 1,
    JobStatus.RUNNING: 1,
    JobStatus.DONE: 2,
    JobStatus.FAILED: 2,
    JobStatus.KILLED: 2,
}


def can_advance(old: JobStatus, new: JobStatus) -> bool:
    """True when moving from ``old`` to ``new`` does not go backwards."""
    return old not in TERMINAL_STATUSES and STATUS_RANK[new] >= STATUS_RANK[old]


def steps_between(
    old: JobStatus, new: JobStatus, started: bool
) -> list[tuple[JobStatus, JobStatus]]:
    """The transitions a job went through from ``old`` to ``new``, in order.

    A job that ended having started ran, even if no poll saw it running (it started and
    ended between two polls), so it is told as going through RUNNING.
    """
    if old is new:
        return []
    if new.is_terminal and started and old is not JobStatus.RUNNING:
        return [(old, JobStatus.RUNNING), (JobStatus.RUNNING, new)]
    return [(old, new)]


class JobExitCondition(str, enum.Enum):
    """Which endings an ``on_exit`` callback wants to hear about."""

    SUCCESS = "success"
    FAILURE = "failure"
    KILLED = "killed"
    ANY = "any"

    def matches(self, status: JobStatus) -> bool:
        if not status.is_terminal:
            return False
        return self is JobExitCondition.ANY or _CONDITION_OF[status] is self


_CONDITION_OF = {
    JobStatus.DONE: JobExitCondition.SUCCESS,
    JobStatus.FAILED: JobExitCondition.FAILURE,
    JobStatus.KILLED: JobExitCondition.KILLED,
}

_UNSAFE_CHARS = re.compile(r"[\r\n\x00]")


def check_single_line(what: str, value: str) -> None:
    """Refuse a value that would add a line to a job script (newline, CR or NUL) or that
    the script, written as UTF-8, cannot hold."""
    if _UNSAFE_CHARS.search(value):
        raise ValueError(f"{what} must not contain a newline, carriage return or NUL: {value!r}")
    check_utf8(what, value)


def check_utf8(what: str, value: str) -> None:
    """Refuse text with no UTF-8 form. Python decodes a file name or environment value
    that is not UTF-8 into lone surrogates (``"\\udcff"``); a job script cannot hold
    them, and finding out while the script is being written would leave half a file."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} is not valid UTF-8 (undecodable byte at position {exc.start}): {value!r}"
        ) from None


class CurrentFolder(str):
    """The folder a `ResourceSpec` defaults its work_dir to, marked as a default: the
    config's ``work_dir`` (or, over ``ssh``, a folder on the remote side) replaces it,
    never one the job names."""


@dataclass
class ResourceSpec:
    """What one job asks of the scheduler. Unset fields fall back to the config's defaults."""

    cpus: int | None = None
    gpus: int | None = None
    memory: str | None = None
    walltime: str | None = None
    queue: str | None = None
    work_dir: str = field(default_factory=lambda: CurrentFolder(os.getcwd()))
    stdout_path: str | None = None
    stderr_path: str | None = None
    extra_directives: list[str] | None = None
    extra_args: list[str] | None = None
    # Fields added since 0.8.1 come after its fields, so positional calls keep working.
    account: str | None = None
    cluster_options: InitVar[list[str] | None] = None

    def __post_init__(self, cluster_options: list[str] | None) -> None:
        if cluster_options is not None:
            warnings.warn(
                "ResourceSpec(cluster_options=...) is deprecated; use extra_directives",
                DeprecationWarning,
                stacklevel=3,
            )
            self.extra_directives = [*(self.extra_directives or []), *cluster_options]
        if isinstance(self.work_dir, os.PathLike):
            self.work_dir = os.fspath(self.work_dir)
        validate_resources(self, "ResourceSpec")


def validate_resources(spec: Any, owner: str) -> None:
    """Check the resource fields shared by ResourceSpec and ClusterConfig.

    ``owner`` names the object in messages, so a bad value in a YAML file and a bad value
    in code are each reported where the user has to fix them.
    """
    for name in ("cpus", "gpus"):
        value = getattr(spec, name, None)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{owner}.{name} must be a whole number, got {value!r}")
        minimum = 1 if name == "cpus" else 0
        if value < minimum:
            raise ValueError(f"{owner}.{name} must be at least {minimum}, got {value}")
    memory = getattr(spec, "memory", None)
    if memory is not None:
        try:
            parse_memory_bytes(memory)
        except ValueError as exc:
            raise ValueError(f"{owner}.memory: {exc}") from None
    walltime = getattr(spec, "walltime", None)
    if walltime is not None:
        try:
            parse_walltime_seconds(walltime)
        except ValueError as exc:
            raise ValueError(f"{owner}.walltime: {exc}") from None
    for name in ("queue", "account", "work_dir", "stdout_path", "stderr_path", "memory"):
        value = getattr(spec, name, None)
        if value is None:
            continue
        if not isinstance(value, str):
            raise ValueError(f"{owner}.{name} must be a string, got {value!r}")
        check_single_line(f"{owner}.{name}", value)
    for name in ("extra_directives", "extra_args"):
        values = getattr(spec, name, None)
        if values is None:
            continue
        if isinstance(values, str) or not isinstance(values, Sequence):
            raise ValueError(f"{owner}.{name} must be a list of strings, got {values!r}")
        for item in values:
            if not isinstance(item, str):
                raise ValueError(f"{owner}.{name} must hold strings, got {item!r}")
            check_single_line(f"{owner}.{name}", item)


@dataclass(slots=True)
class ArrayElement:
    """One element of a job array, as the scheduler last reported it."""

    index: int
    status: JobStatus = JobStatus.PENDING
    exit_code: int | None = None
    exec_host: str | None = None
    max_mem: str | None = None
    submit_time: datetime | None = None
    start_time: datetime | None = None
    finish_time: datetime | None = None

    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal


Callback = Callable[["JobRecord"], Awaitable[None] | None]


@dataclass(slots=True, eq=False)
class JobRecord:
    """Everything known about one submitted job (or job array).

    Records compare by identity: two records are the same job only if they are the same
    object, which is what callbacks and waiters rely on.
    """

    job_id: str
    name: str
    command: str
    status: JobStatus = JobStatus.PENDING
    exit_code: int | None = None
    resources: ResourceSpec | None = None
    script_path: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    exec_host: str | None = None
    max_mem: str | None = None
    submit_time: datetime | None = None
    start_time: datetime | None = None
    finish_time: datetime | None = None
    array_elements: dict[int, ArrayElement] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)
    # (condition, callback); condition None marks an on_start callback
    _callbacks: list[tuple[JobExitCondition | None, Callback]] = field(
        default_factory=list, repr=False
    )
    _terminal_since: float | None = field(default=None, repr=False)
    # The journal row of this submission (see journal.py); None: keyed by job id.
    _journal_key: str | None = field(default=None, repr=False)
    # Set by the monitor when it stops tracking the ended record: a callback registered
    # later is handed to it at once, since no cycle will look at this record again.
    _on_late_callback: Callable[[JobRecord], None] | None = field(
        default=None, init=False, repr=False
    )

    # -- callbacks ---------------------------------------------------------------------
    def on_success(self, callback: Callback) -> JobRecord:
        """Call ``callback(record)`` once if the job ends DONE."""
        return self.on_exit(callback, JobExitCondition.SUCCESS)

    def on_failure(self, callback: Callback) -> JobRecord:
        """Call ``callback(record)`` once if the job ends FAILED."""
        return self.on_exit(callback, JobExitCondition.FAILURE)

    def on_exit(
        self, callback: Callback, condition: JobExitCondition = JobExitCondition.ANY
    ) -> JobRecord:
        """Call ``callback(record)`` once when the job ends in a way ``condition`` matches.

        Registered on a job that has already ended, it fires at once (or in the monitor's
        next cycle). An async callback runs as a task of its own; a sync one runs on the
        event loop, so while it runs nothing else does: keep it short, or make it async.
        """
        self._add_callback(JobExitCondition(condition), callback)
        return self

    def on_start(self, callback: Callback) -> JobRecord:
        """Call ``callback(record)`` once when the job is first seen running (or seen to
        have run, if it started and ended between two polls: then before its exit
        callbacks)."""
        self._add_callback(None, callback)
        return self

    def _add_callback(self, condition: JobExitCondition | None, callback: Callback) -> None:
        if not callable(callback):
            raise TypeError(f"callback must be callable, got {callback!r}")
        self._callbacks.append((condition, callback))
        if self._on_late_callback is not None:
            self._on_late_callback(self)

    @property
    def has_pending_callbacks(self) -> bool:
        return bool(self._callbacks)

    @property
    def has_started(self) -> bool:
        return (
            self.status is JobStatus.RUNNING
            or self.status is JobStatus.DONE
            or self.start_time is not None
        )

    def take_callbacks(self) -> tuple[list[Callback], list[Callback]]:
        """Remove and return the callbacks that are due now: the ``on_start`` ones, then
        the exit ones (each in registration order), since a job starts before it ends.

        ``on_start`` callbacks are due once the job has started; exit callbacks once it
        is terminal, and only those matching how it ended (the rest are dropped, since a
        job ends only once). A job that ended without starting drops its start callbacks.
        """
        started_due: list[Callback] = []
        ended_due: list[Callback] = []
        keep: list[tuple[JobExitCondition | None, Callback]] = []
        terminal, started = self.status.is_terminal, self.has_started
        for condition, cb in self._callbacks:
            if condition is None:
                if started:
                    started_due.append(cb)
                elif not terminal:
                    keep.append((condition, cb))
            elif terminal:
                if condition.matches(self.status):
                    ended_due.append(cb)
            else:
                keep.append((condition, cb))
        self._callbacks = keep
        return started_due, ended_due

    # -- status ------------------------------------------------------------------------
    @property
    def is_terminal(self) -> bool:
        return self.status.is_terminal

    @property
    def terminal_age(self) -> float | None:
        """Seconds since this record became terminal (monotonic clock), or None."""
        if self._terminal_since is None:
            return None
        return time.monotonic() - self._terminal_since

    def advance(self, status: JobStatus) -> bool:
        """Move to ``status`` unless that would go backwards; return whether it changed
        (the status rule of ``cluster_api.status.update_record``)."""
        from .status import Observation, update_record  # status builds on this module

        return update_record(self, Observation(status))

    # -- arrays ------------------------------------------------------------------------
    @property
    def is_array(self) -> bool:
        return "array_range" in self.metadata

    @property
    def element_count(self) -> int:
        """How many elements the array has (0 for a plain job)."""
        bounds = self.metadata.get("array_range")
        if not bounds:
            return 0
        return int(bounds[1]) - int(bounds[0]) + 1

    @property
    def completed_elements(self) -> int:
        return sum(1 for e in self.array_elements.values() if e.status.is_terminal)

    @property
    def failed_element_indices(self) -> list[int]:
        """Elements that ended FAILED or KILLED (as in 0.8.1): the ones to run again."""
        unsuccessful = (JobStatus.FAILED, JobStatus.KILLED)
        return sorted(i for i, e in self.array_elements.items() if e.status in unsuccessful)

    def compute_array_status(self) -> JobStatus:
        """The parent's status from its elements: terminal only when every element is.

        An element the scheduler has not reported yet counts as pending, so a partial
        answer can never end the array early.
        """
        elements = self.array_elements.values()
        expected = self.element_count or len(self.array_elements)
        terminal = [e for e in elements if e.status.is_terminal]
        if expected and len(terminal) >= expected:
            statuses = {e.status for e in terminal}
            if JobStatus.FAILED in statuses:
                return JobStatus.FAILED
            if JobStatus.KILLED in statuses:
                return JobStatus.KILLED
            return JobStatus.DONE
        if terminal or any(e.status is JobStatus.RUNNING for e in elements):
            return JobStatus.RUNNING
        if any(e.status is JobStatus.UNKNOWN for e in elements):
            return JobStatus.UNKNOWN
        return JobStatus.PENDING

    # -- serialization -----------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-safe dict of the record (callbacks are not data and are left out)."""
        resources = None
        if self.resources is not None:
            resources = {k: getattr(self.resources, k) for k in _RESOURCE_FIELDS}
        return {
            "job_id": self.job_id,
            "name": self.name,
            "command": self.command,
            "status": self.status.value,
            "exit_code": self.exit_code,
            "resources": resources,
            "script_path": self.script_path,
            "metadata": _json_safe(self.metadata),
            "exec_host": self.exec_host,
            "max_mem": self.max_mem,
            "submit_time": _iso(self.submit_time),
            "start_time": _iso(self.start_time),
            "finish_time": _iso(self.finish_time),
            "array_elements": {
                str(i): {
                    "index": e.index,
                    "status": e.status.value,
                    "exit_code": e.exit_code,
                    "exec_host": e.exec_host,
                    "max_mem": e.max_mem,
                    "submit_time": _iso(e.submit_time),
                    "start_time": _iso(e.start_time),
                    "finish_time": _iso(e.finish_time),
                }
                for i, e in self.array_elements.items()
            },
            "depends_on": list(self.depends_on),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> JobRecord:
        """Rebuild a record written by `to_dict()`."""
        resources = data.get("resources")
        metadata = dict(data.get("metadata") or {})
        if isinstance(metadata.get("array_range"), list):
            metadata["array_range"] = tuple(metadata["array_range"])
        record = cls(
            job_id=str(data["job_id"]),
            name=data.get("name", ""),
            command=data.get("command", ""),
            status=JobStatus(data.get("status", "pending")),
            exit_code=data.get("exit_code"),
            resources=ResourceSpec(**resources) if resources else None,
            script_path=data.get("script_path"),
            metadata=metadata,
            exec_host=data.get("exec_host"),
            max_mem=data.get("max_mem"),
            submit_time=_from_iso(data.get("submit_time")),
            start_time=_from_iso(data.get("start_time")),
            finish_time=_from_iso(data.get("finish_time")),
            depends_on=[str(d) for d in data.get("depends_on", [])],
        )
        for key, e in (data.get("array_elements") or {}).items():
            record.array_elements[int(key)] = ArrayElement(
                index=int(e.get("index", key)),
                status=JobStatus(e.get("status", "pending")),
                exit_code=e.get("exit_code"),
                exec_host=e.get("exec_host"),
                max_mem=e.get("max_mem"),
                submit_time=_from_iso(e.get("submit_time")),
                start_time=_from_iso(e.get("start_time")),
                finish_time=_from_iso(e.get("finish_time")),
            )
        if record.status.is_terminal:
            record._terminal_since = time.monotonic()
        return record


_RESOURCE_FIELDS = (
    "cpus",
    "gpus",
    "memory",
    "walltime",
    "queue",
    "account",
    "work_dir",
    "stdout_path",
    "stderr_path",
    "extra_directives",
    "extra_args",
)


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _from_iso(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _json_safe(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)
