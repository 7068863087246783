"""The executor registry: scheduler names (as written in YAML) to executor classes.

Built-in executors and third-party ones register the same way, through the entry-point
group ``cluster_api.executors``; the built-ins are also known without installation
metadata so a source checkout works.
"""

from __future__ import annotations

import importlib
import logging
from importlib.metadata import entry_points

from ..core import Executor
from ..options import option_fields

logger = logging.getLogger("cluster_api")

ENTRY_POINT_GROUP = "cluster_api.executors"
_BUILTIN = {
    "flux": "cluster_api.executors.flux:FluxExecutor",
    "local": "cluster_api.executors.local:LocalExecutor",
    "lsf": "cluster_api.executors.lsf:LSFExecutor",
    "pbs": "cluster_api.executors.pbs:PBSExecutor",
    "slurm": "cluster_api.executors.slurm:SlurmExecutor",
    "sge": "cluster_api.executors.sge:SGEExecutor",
    "torque": "cluster_api.executors.torque:TorqueExecutor",
}


def _targets() -> dict[str, str]:
    targets: dict[str, str] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        builtin = _BUILTIN.get(ep.name)
        if builtin is not None and ep.value != builtin:
            logger.warning(
                "ignoring entry point %r=%s: %r is a built-in executor", ep.name, ep.value, ep.name
            )
            continue
        targets[ep.name] = ep.value
    targets.update(_BUILTIN)
    return targets


# Executors registered at run time (`register_executor`), by name.
_REGISTERED: dict[str, type[Executor]] = {}


def register_executor(name: str, cls: type[Executor]) -> None:
    """Make ``cls`` the executor that ``executor: NAME`` selects, without installing an
    entry point (for an executor defined in the pipeline's own code). A built-in name
    cannot be taken."""
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise TypeError(f"executor {name!r} must be an Executor subclass, got {cls!r}")
    if name in _BUILTIN:
        raise ValueError(f"{name!r} is a built-in executor; register yours under another name")
    option_fields(cls.options)  # TypeError for options a config file cannot hold
    _REGISTERED[name] = cls


def available_executors() -> list[str]:
    """Names that ``executor:`` in a config may take."""
    return sorted({*_targets(), *_REGISTERED})


def get_executor_class(name: str) -> type[Executor]:
    """The executor class registered under ``name``; ValueError naming the known ones."""
    if name in _REGISTERED:
        return _REGISTERED[name]
    targets = _targets()
    if name not in targets:
        from ..config import did_you_mean

        raise ValueError(
            f"unknown executor {name!r}{did_you_mean(name, targets)}; "
            f"known executors: {', '.join(available_executors())}"
        )
    module_name, _, attr = targets[name].partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"executor {name!r} ({targets[name]}) cannot be loaded: {exc}") from exc
    if not (isinstance(cls, type) and issubclass(cls, Executor)):
        raise ValueError(f"executor {name!r} ({targets[name]}) is not an Executor subclass")
    try:
        option_fields(cls.options)
    except TypeError as exc:
        raise ValueError(f"executor {name!r} ({targets[name]}) has bad options: {exc}") from None
    return cls
