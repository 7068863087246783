"""cluster_api: submit jobs to HPC schedulers from asyncio, watch them, act when they end."""

from __future__ import annotations

import os
from typing import Any

from .config import ClusterConfig, executor_class, load_config
from .core import Executor
from .errors import (
    ClusterAPIError,
    CommandFailedError,
    CommandTimeoutError,
    SubmitError,
    WaitTimeoutError,
)
from .executors import available_executors, get_executor_class  # noqa: F401 (0.8.1 had it here)
from .executors.local import LocalExecutor
from .executors.lsf import LSFExecutor
from .executors.slurm import SlurmExecutor
from .models import ArrayElement, JobExitCondition, JobRecord, JobStatus, ResourceSpec
from .monitor import JobMonitor

__version__ = "0.9.0"

__all__ = [
    "ArrayElement",
    "ClusterAPIError",
    "ClusterConfig",
    "CommandFailedError",
    "CommandTimeoutError",
    "Executor",
    "JobExitCondition",
    "JobMonitor",
    "JobRecord",
    "JobStatus",
    "LSFExecutor",
    "LocalExecutor",
    "ResourceSpec",
    "SlurmExecutor",
    "SubmitError",
    "WaitTimeoutError",
    "available_executors",
    "create_executor",
    "load_config",
]


def create_executor(
    profile: str | None = None,
    config_path: str | os.PathLike[str] | None = None,
    **overrides: Any,
) -> Executor:
    """Load the config (file, then ``profile``, then ``overrides``) and build its executor."""
    config = load_config(config_path, profile, overrides)
    return executor_class(config)(config)
