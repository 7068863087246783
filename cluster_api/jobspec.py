"""What a submission asks for, checked: `JobSpec` and the validation that builds it.

Every argument of ``submit``/``submit_array`` is checked here, before anything is written
or run, so bad input is refused quickly with a message naming the culprit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from .config import ClusterConfig
from .files import REMOTE_WORK_DIR
from .models import CurrentFolder, JobRecord, ResourceSpec, check_single_line, check_utf8
from .script import safe_job_name, validate_env


@dataclass
class JobSpec:
    """Everything needed to render and submit one job, after validation and defaults."""

    command: str
    name: str  # the scheduler-side name, prefix applied and sanitized
    resources: ResourceSpec  # config defaults already applied
    prologue: list[str]
    epilogue: list[str]
    env: dict[str, str]
    metadata: dict[str, Any]
    inherit_env: bool
    login_shell: bool
    depends_on: list[str]
    array_range: tuple[int, int] | None = None
    max_concurrent: int | None = None
    # Unique per script folder (the script's file name); lets a submission whose answer
    # was lost be found again on the scheduler.
    token: str = ""


def job_spec(
    config: ClusterConfig,
    directive_prefix: str,
    command: str,
    name: str,
    resources: ResourceSpec | None,
    prologue: Sequence[str] | None,
    epilogue: Sequence[str] | None,
    env: Mapping[str, str] | None,
    metadata: Mapping[str, Any] | None,
    inherit_env: bool,
    login_shell: bool,
    depends_on: Sequence[JobRecord | str] | JobRecord | str | None,
) -> JobSpec:
    if not isinstance(command, str) or not command.strip():
        raise ValueError(f"command must be a non-empty string, got {command!r}")
    check_utf8("command", command)
    if directive_prefix and any(
        line.lstrip().startswith(directive_prefix) for line in command.splitlines()
    ):
        raise ValueError(
            f"command contains a {directive_prefix} line; "
            "pass scheduler options as resources.extra_directives instead"
        )
    if isinstance(name, str):
        check_single_line("job name", name)
    full_name = safe_job_name(name, config.job_name_prefix)
    for line in (*(prologue or []), *(epilogue or [])):
        if not isinstance(line, str):
            raise ValueError(f"prologue/epilogue lines must be strings, got {line!r}")
    return JobSpec(
        command=command,
        name=full_name,
        resources=effective_resources(config, resources),
        prologue=list(prologue or []),
        epilogue=list(epilogue or []),
        env=validate_env(env),
        metadata=dict(metadata or {}),
        inherit_env=bool(inherit_env),
        login_shell=bool(login_shell),
        depends_on=dependency_ids(depends_on),
    )


def effective_resources(config: ClusterConfig, resources: ResourceSpec | None) -> ResourceSpec:
    """The job's resources with unset fields taken from the config (work_dir too, when the
    job left it at the current folder), and work_dir made absolute: the job starts inside
    it, so paths into it (the script, the default logs) written relative to it would
    point somewhere else. Over ``ssh`` a relative work_dir is under the remote home, which
    only the remote side knows: submission makes it absolute there."""
    base = resources if resources is not None else ResourceSpec()
    if not isinstance(base, ResourceSpec):
        raise TypeError(f"resources must be a ResourceSpec, got {type(base).__name__}")
    changes: dict[str, Any] = {
        name: getattr(config, name)
        for name in ("cpus", "gpus", "memory", "walltime", "queue", "account")
        if getattr(base, name) is None
    }
    work_dir = base.work_dir
    if isinstance(work_dir, CurrentFolder) and (config.work_dir or config.ssh):
        work_dir = config.work_dir or REMOTE_WORK_DIR
    if config.ssh is None and not os.path.isabs(work_dir):
        work_dir = os.path.abspath(work_dir)  # over ssh: made absolute there, on submission
    if work_dir != base.work_dir:
        changes["work_dir"] = work_dir
    return replace(base, **changes) if changes else base


def check_max_concurrent(max_concurrent: Any) -> int:
    """``max_concurrent`` when it is a whole number >= 1; ValueError otherwise."""
    if isinstance(max_concurrent, bool) or not isinstance(max_concurrent, int):
        raise ValueError(f"max_concurrent must be a whole number >= 1, got {max_concurrent!r}")
    if max_concurrent < 1:
        raise ValueError(f"max_concurrent must be a whole number >= 1, got {max_concurrent!r}")
    return max_concurrent


def set_array(spec: JobSpec, array_range: Any, max_concurrent: Any) -> None:
    """Make ``spec`` an array over the inclusive ``array_range``, checked."""
    spec.array_range = check_array_range(array_range)
    if max_concurrent is not None:
        spec.max_concurrent = check_max_concurrent(max_concurrent)
    spec.metadata["array_range"] = spec.array_range
    if spec.max_concurrent is not None:
        spec.metadata["max_concurrent"] = spec.max_concurrent


def check_array_range(array_range: Any) -> tuple[int, int]:
    try:
        start, end = array_range
    except (TypeError, ValueError):
        raise ValueError(f"array_range must be a (start, end) pair, got {array_range!r}") from None
    for value in (start, end):
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"array_range bounds must be whole numbers, got {array_range!r}")
    if start < 0 or start > end:
        raise ValueError(f"array_range start must be >= 0 and <= end, got {array_range!r}")
    return (start, end)


def dependency_ids(depends_on: Sequence[JobRecord | str] | JobRecord | str | None) -> list[str]:
    if depends_on is None:
        return []
    items = [depends_on] if isinstance(depends_on, (JobRecord, str)) else list(depends_on)
    ids = []
    for item in items:
        job_id = item.job_id if isinstance(item, JobRecord) else item
        if (
            not isinstance(job_id, (str, int))
            or isinstance(job_id, bool)
            or not str(job_id).strip()
        ):
            raise ValueError(f"depends_on takes job records or job ids, got {item!r}")
        check_single_line("depends_on", str(job_id))
        ids.append(str(job_id))
    return ids
