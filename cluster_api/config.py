"""Configuration: one YAML file, optional named profiles, and keyword overrides.

Moving a pipeline from a laptop to a cluster should be one line of YAML, so everything
site-specific lives here and every value is checked when it is loaded, with the file and
key in the message, rather than when the thousandth job is submitted.
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import re
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from .models import check_single_line, validate_resources
from .units import parse_memory_bytes

if TYPE_CHECKING:
    from .core import Executor

__all__ = ["ClusterConfig", "find_config_file", "load_config", "parse_memory_bytes"]

CONFIG_ENV_VAR = "CLUSTER_API_CONFIG"
LSF_UNITS = ("KB", "MB", "GB", "TB")


@dataclass
class ClusterConfig:
    """Site and pipeline settings; every key is described in the
    [configuration reference](configuration.md#reference)."""

    executor: str = "local"
    cpus: int | None = None
    gpus: int | None = None
    memory: str | None = None
    walltime: str | None = None
    queue: str | None = None
    account: str | None = None
    poll_interval: float = 10.0
    log_directory: str = "./logs"
    job_name_prefix: str | None = "capi"
    shebang: str = "#!/bin/bash"
    script_prologue: list[str] = field(default_factory=list)
    script_epilogue: list[str] = field(default_factory=list)
    extra_directives: list[str] = field(default_factory=list)
    directives_skip: list[str] = field(default_factory=list)
    extra_args: list[str] = field(default_factory=list)
    use_stdin: bool = False
    lsf_units: str = "MB"
    suppress_job_email: bool = True
    command_timeout: float = 100.0
    zombie_timeout_minutes: float = 30.0
    completed_retention_minutes: float = 10.0
    poll_all_users: bool = False
    max_concurrent_commands: int = 8
    journal: bool = False
    local_max_running: int | None = None
    # Where each value came from ("default", a file path, "profile NAME in PATH",
    # "override"); filled by load_config, for people reading a merged config.
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        validate_config(self)


_STRING_FIELDS = ("executor", "log_directory", "shebang", "lsf_units")
_OPTIONAL_STRING_FIELDS = ("job_name_prefix",)
_LIST_FIELDS = (
    "script_prologue",
    "script_epilogue",
    "extra_directives",
    "directives_skip",
    "extra_args",
)
_BOOL_FIELDS = ("use_stdin", "suppress_job_email", "poll_all_users", "journal")
# field -> smallest allowed value and whether that value itself is allowed
_NUMBER_FIELDS = {
    "poll_interval": (0.0, False),
    "command_timeout": (0.0, False),
    "zombie_timeout_minutes": (0.0, False),
    "completed_retention_minutes": (0.0, True),
}


def validate_config(config: ClusterConfig) -> None:
    """Raise ValueError naming the first field whose type or value is wrong."""
    owner = "config"
    for name in _STRING_FIELDS:
        value = getattr(config, name)
        if not isinstance(value, str) or not value.strip():
            raise ValueError(f"{owner}.{name} must be a non-empty string, got {value!r}")
        check_single_line(f"{owner}.{name}", value)
    for name in _OPTIONAL_STRING_FIELDS:
        value = getattr(config, name)
        if value is not None:
            if not isinstance(value, str):
                raise ValueError(f"{owner}.{name} must be a string or null, got {value!r}")
            check_single_line(f"{owner}.{name}", value)
    for name in _LIST_FIELDS:
        values = getattr(config, name)
        if not isinstance(values, list):
            raise ValueError(f"{owner}.{name} must be a list of strings, got {values!r}")
        for item in values:
            if not isinstance(item, str):
                raise ValueError(f"{owner}.{name} must hold strings, got {item!r}")
            check_single_line(f"{owner}.{name}", item)
    for name in _BOOL_FIELDS:
        value = getattr(config, name)
        if not isinstance(value, bool):
            raise ValueError(f"{owner}.{name} must be true or false, got {value!r}")
    for name, (minimum, inclusive) in _NUMBER_FIELDS.items():
        value = getattr(config, name)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError(f"{owner}.{name} must be a number, got {value!r}")
        if value < minimum or (value == minimum and not inclusive):
            relation = "at least" if inclusive else "more than"
            raise ValueError(f"{owner}.{name} must be {relation} {minimum:g}, got {value!r}")
        setattr(config, name, float(value))
    limit = config.max_concurrent_commands
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise ValueError(
            f"{owner}.max_concurrent_commands must be a whole number >= 1, got {limit!r}"
        )
    running = config.local_max_running
    if running is not None and (
        isinstance(running, bool) or not isinstance(running, int) or running < 1
    ):
        raise ValueError(
            f"{owner}.local_max_running must be a whole number >= 1 or null, got {running!r}"
        )
    if not config.shebang.startswith("#!"):
        raise ValueError(f"{owner}.shebang must start with '#!', got {config.shebang!r}")
    if config.lsf_units.upper() not in LSF_UNITS:
        raise ValueError(
            f"{owner}.lsf_units must be one of {', '.join(LSF_UNITS)}, got {config.lsf_units!r}"
        )
    validate_resources(config, owner)


CONFIG_FIELDS = frozenset(f.name for f in dataclasses.fields(ClusterConfig)) - {"sources"}


def find_config_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read: ``path``, else ``$CLUSTER_API_CONFIG``, else the first
    of ``./cluster_api.yaml`` and ``~/.config/cluster_api/config.yaml`` that exists."""
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise FileNotFoundError(f"config file not found: {explicit}")
        return explicit
    from_env = os.environ.get(CONFIG_ENV_VAR)
    if from_env:
        candidate = Path(from_env).expanduser()
        if not candidate.is_file():
            raise FileNotFoundError(
                f"config file named by ${CONFIG_ENV_VAR} not found: {candidate}"
            )
        return candidate
    for candidate in (
        Path("cluster_api.yaml"),
        Path("~/.config/cluster_api/config.yaml").expanduser(),
    ):
        if candidate.is_file():
            return candidate
    return None


class _Loader(yaml.SafeLoader):
    """YAML as people mean it: ``walltime: 1:30:00`` is a string, not YAML 1.1's base-60
    integer 5400 (which would read as 5400 minutes)."""


_INT, _FLOAT = "tag:yaml.org,2002:int", "tag:yaml.org,2002:float"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in (_INT, _FLOAT)]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Loader.add_implicit_resolver(
    _INT,
    re.compile(r"^(?:[-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(?:0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+)$"),
    list("-+0123456789"),
)
_Loader.add_implicit_resolver(
    _FLOAT,
    re.compile(
        r"^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?|\.[0-9_]+(?:[eE][-+]?[0-9]+)?"
        r"|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN))$"
    ),
    list("-+0123456789."),
)


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path}: not UTF-8 text ({exc.reason})") from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown line"
        raise ValueError(f"{path}: invalid YAML at {where}: {exc.problem}") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: invalid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError(
            f"{path}: the top level must be a mapping of keys, got {type(data).__name__}"
        )
    return data


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'poll_interval'?)`` for the closest of ``choices``; empty if none
    is close: a typo should cost one glance at the message, not a trip to the docs."""
    close = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _known_keys(values: dict[str, Any], where: str) -> dict[str, Any]:
    known = {}
    for key, value in values.items():
        if key in CONFIG_FIELDS:
            known[key] = value
        else:
            hint = did_you_mean(key, CONFIG_FIELDS)
            warnings.warn(
                f"{where}: unknown config key {key!r} ignored{hint}", UserWarning, stacklevel=4
            )
    return known


def executor_class(config: ClusterConfig) -> type[Executor]:
    """The class of ``config.executor``; a ValueError that also names where the name was
    written (the file, the profile or an override), since the registry alone cannot."""
    from .executors import get_executor_class

    try:
        return get_executor_class(config.executor)
    except ValueError as exc:
        origin = config.sources.get("executor", "default")
        raise ValueError(f"{origin}: config.executor: {exc}") from None


def load_config(
    path: str | os.PathLike[str] | None = None,
    profile: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> ClusterConfig:
    """Load the config file (see `find_config_file`), apply a profile, then
    overrides.

    Unknown keys in the file are warned about (a newer file may carry keys this version
    does not know); unknown override keys are an error, since they are a typo in code.
    """
    config_path = find_config_file(path)
    data = _read_yaml(config_path) if config_path is not None else {}
    where = str(config_path) if config_path is not None else "<defaults>"

    profiles = data.pop("profiles", None) or {}
    if not isinstance(profiles, dict):
        raise ValueError(f"{where}: 'profiles' must be a mapping of profile names to settings")

    merged: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for key, value in _known_keys(data, where).items():
        merged[key], sources[key] = value, where
    if profile is not None:
        if profile not in profiles:
            available = ", ".join(sorted(map(str, profiles))) or "none"
            raise ValueError(
                f"unknown profile {profile!r} in {where}; available profiles: {available}"
            )
        settings = profiles[profile] or {}
        if not isinstance(settings, dict):
            raise ValueError(f"{where}: profile {profile!r} must be a mapping of settings")
        profile_where = f"profile {profile!r} in {where}"
        for key, value in _known_keys(settings, profile_where).items():
            merged[key], sources[key] = value, profile_where
    for key, value in (overrides or {}).items():
        if key not in CONFIG_FIELDS:
            raise ValueError(
                f"unknown config override {key!r}{did_you_mean(key, CONFIG_FIELDS)}; "
                f"known keys: {', '.join(sorted(CONFIG_FIELDS))}"
            )
        merged[key], sources[key] = value, "override"

    try:
        config = ClusterConfig(**merged)
    except ValueError as exc:
        key = str(exc).split(" ", 1)[0].removeprefix("config.").rstrip(":")
        origin = sources.get(key, where)
        raise ValueError(f"{origin}: {exc}") from None
    config.sources = {name: sources.get(name, "default") for name in sorted(CONFIG_FIELDS)}
    return config
