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
import types
import typing
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from .errors import ConfigError, ConfigWarning
from .models import validate_resources
from .options import (
    BatchOptions,
    Check,
    LocalOptions,
    LSFOptions,
    SSHOptions,
    check_option,
    check_value,
    declared_field,
    described,
    option,
    option_fields,
)
from .units import parse_memory_bytes

if TYPE_CHECKING:
    from .core import Executor

__all__ = ["ClusterConfig", "find_config_file", "load_config", "parse_memory_bytes"]

CONFIG_ENV_VAR = "CLUSTER_API_CONFIG"
OptionsT = TypeVar("OptionsT")


def _resource_rule(name: str) -> Check:
    """The rule `ResourceSpec` applies to its field ``name``, for the config's default."""

    def check(what: str, value: Any) -> None:
        validate_resources(types.SimpleNamespace(**{name: value}), "config")

    return check


def _shebang_rule(what: str, value: str) -> None:
    if not value.startswith("#!"):
        raise ValueError(f"{what} must start with '#!', got {value!r}")


@dataclass
class ClusterConfig:
    """Site and pipeline settings; every key is described in the
    [configuration reference](configuration.md#reference)."""

    executor: str = option(
        "local", "Which scheduler runs the jobs: `local`, `lsf`, `slurm` or a plugin's name."
    )
    cpus: int | None = option(
        None,
        "Default CPU cores per job (a `ResourceSpec` value wins).",
        check=_resource_rule("cpus"),
    )
    gpus: int | None = option(None, "Default GPUs per job.", check=_resource_rule("gpus"))
    memory: str | None = option(
        None,
        'Default memory per job, e.g. `"8 GB"`, `"512 MB"` (binary units).',
        check=_resource_rule("memory"),
    )
    walltime: str | None = option(
        None,
        "Default run-time limit, `[D-]HH:MM[:SS]`; the local executor enforces it too.",
        check=_resource_rule("walltime"),
    )
    queue: str | None = option(None, "Default queue (LSF) or partition (Slurm).")
    poll_interval: float = option(
        10.0, "Seconds between two status queries of the monitor (> 0).", above=0
    )
    shebang: str = option(
        "#!/bin/bash",
        "First line of every job script (must start with `#!`).",
        check=_shebang_rule,
    )
    script_prologue: list[str] = field(
        default_factory=list,
        metadata=described("Lines run before every job's command (e.g. `module load ...`)."),
    )
    script_epilogue: list[str] = field(
        default_factory=list,
        metadata=described(
            "Lines run after every job's command; the job keeps the command's exit status."
        ),
    )
    extra_directives: list[str] = field(
        default_factory=list,
        metadata=described(
            "Directive lines appended verbatim to every script "
            '(write the whole line: `"#BSUB -P proj"`).'
        ),
    )
    directives_skip: list[str] = field(
        default_factory=list,
        metadata=described("Drop generated directive lines containing any of these substrings."),
    )
    extra_args: list[str] = field(
        default_factory=list,
        metadata=described("Arguments appended to every submit command (`bsub`, `sbatch`)."),
    )
    # Keys set with declared_field belong to schedulers: declared by the executors'
    # options classes (cluster_api.options), fields here too, as in 0.8.1.
    lsf_units: str = declared_field(LSFOptions, "lsf_units")
    job_name_prefix: str | None = option(
        "capi",
        "Prefix of every job name (`capi-NAME`); how `reconnect()` finds your jobs. "
        "`null` for none.",
    )
    zombie_timeout_minutes: float = option(
        30.0,
        "Minutes a job may go unseen by the scheduler before it is marked FAILED (zombie).",
        above=0,
    )
    completed_retention_minutes: float = option(
        10.0,
        "Minutes a finished job stays tracked (after its callbacks ran) before it is forgotten.",
        minimum=0,
    )
    command_timeout: float = option(
        100.0, "Seconds before a scheduler command is killed and counts as failed.", above=0
    )
    suppress_job_email: bool = declared_field(LSFOptions, "suppress_job_email")
    poll_all_users: bool = declared_field(BatchOptions, "poll_all_users")
    # Keys added since 0.8.1 come after its keys, so positional calls keep working.
    account: str | None = option(
        None, "Default project/account charged for the jobs (`-P` on LSF, `--account` on Slurm)."
    )
    log_directory: str = option(
        "./logs", "Folder for the library's own files, including the job journal."
    )
    use_stdin: bool = declared_field(BatchOptions, "use_stdin")
    max_concurrent_commands: int = option(
        8, "Most scheduler commands one executor runs at once.", minimum=1
    )
    ssh: str | None = declared_field(SSHOptions, "ssh")
    ssh_port: int | None = declared_field(SSHOptions, "ssh_port")
    ssh_identity: str | None = declared_field(SSHOptions, "ssh_identity")
    ssh_options: list[str] = declared_field(SSHOptions, "ssh_options")  # noqa: RUF009 (a factory)
    work_dir: str | None = declared_field(SSHOptions, "work_dir")
    journal: bool = option(
        False,
        "Record every job in `{log_directory}/cluster_api_journal.sqlite3` so a later "
        "process can `reconnect()` to it (the CLI always turns it on).",
    )
    local_max_running: int | None = declared_field(LocalOptions, "local_max_running")
    array_chunk_size: int = declared_field(BatchOptions, "array_chunk_size")
    adaptive_polling: bool = option(
        True,
        "After a submit or a change of some job's state the monitor polls sooner "
        "(`poll_floor` apart three times, then twice as long each time, up to `poll_interval`).",
    )
    poll_floor: float = option(
        1.0, "Seconds the monitor's polls are at least apart with adaptive polling (> 0).", above=0
    )
    # Values of the keys a plugin executor declares in its options class (the built-in
    # executors' keys are the fields above); read them with `options_for`.
    plugin_options: dict[str, Any] = field(default_factory=dict)
    # Where each value came from ("default", a file path, "profile NAME in PATH",
    # "override"); filled by load_config, for people reading a merged config.
    sources: dict[str, str] = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        validate_config(self)

    def options_for(self, options_type: type[OptionsT]) -> OptionsT:
        """The values of the keys ``options_type`` declares (an executor's ``options``),
        as an instance of it: a field's value, else a plugin option, else the default."""
        values = {}
        for name in option_fields(options_type):
            if name in CONFIG_FIELDS:
                values[name] = getattr(self, name)
            elif name in self.plugin_options:
                values[name] = self.plugin_options[name]
        return options_type(**values)


def validate_config(config: ClusterConfig) -> None:
    """Raise a `ConfigError` naming the first key whose type or value is wrong, each
    judged by its declaration (type, bounds, choices, rule)."""
    for name in CONFIG_FIELDS_IN_ORDER:
        f, kind = _KEYS[name]
        try:
            value = check_value(f"config.{name}", f, kind, getattr(config, name))
        except ValueError as exc:
            raise ConfigError(str(exc), key=name) from None
        setattr(config, name, value)
    if not isinstance(config.plugin_options, dict):
        raise ConfigError(
            f"config.plugin_options must be a mapping, got {config.plugin_options!r}",
            key="plugin_options",
        )
    if config.plugin_options:
        _check_plugin_options(config)


def _check_plugin_options(config: ClusterConfig) -> None:
    """Each plugin option must be a key the configured executor declares, of its type."""
    from .executors import get_executor_class

    try:
        options_type = get_executor_class(config.executor).options
    except ValueError as exc:
        raise ConfigError(f"config.executor: {exc}", key="executor") from None
    declared = option_fields(options_type)
    for key, value in config.plugin_options.items():
        if key not in declared or key in CONFIG_FIELDS:
            raise ConfigError(
                f"config.{key}: not a key of the {config.executor!r} executor"
                f"{did_you_mean(key, declared)}",
                key=key,
            )
        try:
            config.plugin_options[key] = check_option("config", key, value, options_type)
        except ValueError as exc:
            raise ConfigError(str(exc), key=key) from None


#: Every key of the YAML file that is a field, in the released order.
CONFIG_FIELDS_IN_ORDER = tuple(
    f.name for f in dataclasses.fields(ClusterConfig) if f.name not in ("sources", "plugin_options")
)
CONFIG_FIELDS = frozenset(CONFIG_FIELDS_IN_ORDER)
_HINTS = typing.get_type_hints(ClusterConfig)
_KEYS = {f.name: (f, _HINTS[f.name]) for f in dataclasses.fields(ClusterConfig)}


def find_config_file(path: str | os.PathLike[str] | None = None) -> Path | None:
    """The config file to read: ``path``, else ``$CLUSTER_API_CONFIG``, else the first
    of ``./cluster_api.yaml`` and ``~/.config/cluster_api/config.yaml`` that exists."""
    if path is not None:
        explicit = Path(path).expanduser()
        if not explicit.is_file():
            raise FileNotFoundError(f"Config file not found: {explicit}")
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


@dataclass
class ConfigDocument:
    """A config file as read: its top-level mapping and its YAML tree, which says on
    which line each key is written."""

    path: Path | None
    values: dict[str, Any]
    root: yaml.Node | None = None

    @property
    def where(self) -> str:
        return str(self.path) if self.path is not None else "<defaults>"

    def line_of(self, key: str | None, profile: str | None = None) -> int | None:
        """The 1-based line of ``key`` at the top level or in ``profiles: {profile:}``
        (of the profile itself when ``key`` is None)."""
        node, line = self.root, None
        for part in ["profiles", profile, key] if profile is not None else [key]:
            if part is None:
                break
            if not isinstance(node, yaml.MappingNode):
                return None
            for key_node, value_node in node.value:
                if isinstance(key_node, yaml.ScalarNode) and key_node.value == part:
                    line, node = int(key_node.start_mark.line) + 1, value_node
                    break
            else:
                return None
        return line


def read_config_file(path: Path) -> ConfigDocument:
    """Parse ``path``; `ConfigError` (with the line) when it is not a YAML mapping."""
    where = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"not UTF-8 text ({exc.reason})", origin=where) from None
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        data = loader.construct_document(root) if root is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (None, None)
        at = f"line {line}, column {column}" if mark else "unknown line"
        raise ConfigError(
            f"invalid YAML: {exc.problem}",
            origin=where,
            line=line,
            column=column,
            message=f"{where}: invalid YAML at {at}: {exc.problem}",
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}", origin=where) from None
    finally:
        loader.dispose()
    if data is None:
        return ConfigDocument(path, {}, root)
    if not isinstance(data, dict):
        raise ConfigError(
            f"the top level must be a mapping of keys, got {type(data).__name__}",
            origin=where,
            line=1,
        )
    return ConfigDocument(path, data, root)


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """`` (did you mean 'poll_interval'?)`` for the closest of ``choices``; empty if none
    is close: a typo should cost one glance at the message, not a trip to the docs."""
    close = difflib.get_close_matches(str(word), sorted(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def executor_class(config: ClusterConfig) -> type[Executor]:
    """The class of ``config.executor``; a `ConfigError` that also names where the name
    was written (the file, the profile or an override), since the registry alone cannot."""
    from .executors import get_executor_class

    try:
        return get_executor_class(config.executor)
    except ValueError as exc:
        origin = config.sources.get("executor", "default")
        raise ConfigError(f"config.executor: {exc}", key="executor", origin=origin) from None


def plugin_keys(executor: str) -> frozenset[str]:
    """The keys the executor named ``executor`` declares beyond the `ClusterConfig`
    fields; none when it cannot be loaded (creating it will say why)."""
    from .executors import get_executor_class

    try:
        options_type = get_executor_class(executor).options
    except ValueError:
        return frozenset()
    return frozenset(option_fields(options_type)) - CONFIG_FIELDS


def profile_origin(profile: str, where: str) -> str:
    """How a value written in a profile is said to come from it."""
    return f"profile {profile!r} in {where}"


@dataclass
class _Scope:
    """One mapping of settings: the file's top level or one of its profiles."""

    origin: str
    profile: str | None
    values: dict[str, Any]


def _scopes(doc: ConfigDocument, profile: str | None) -> list[_Scope]:
    data = dict(doc.values)
    where = doc.where
    profiles = data.pop("profiles", None) or {}
    if not isinstance(profiles, dict):
        raise ConfigError(
            "'profiles' must be a mapping of profile names to settings",
            key="profiles",
            origin=where,
            line=doc.line_of("profiles"),
        )
    scopes = [_Scope(where, None, data)]
    if profile is not None:
        if profile not in profiles:
            available = ", ".join(sorted(map(str, profiles))) or "none"
            raise ConfigError(
                f"unknown profile {profile!r} in {where}; available profiles: {available}",
                key="profiles",
            )
        settings = profiles[profile] or {}
        if not isinstance(settings, dict):
            raise ConfigError(
                f"profile {profile!r} must be a mapping of settings",
                origin=where,
                line=doc.line_of(None, profile),
            )
        scopes.append(_Scope(profile_origin(profile, where), profile, settings))
    return scopes


def load_config(
    path: str | os.PathLike[str] | None = None,
    profile: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> ClusterConfig:
    """Load the config file (see `find_config_file`), apply a profile, then
    overrides.

    Unknown keys in the file are warned about (a newer file may carry keys this version
    does not know); unknown override keys are an error, since they are a typo in code.
    A key is known when it is a `ClusterConfig` field or the chosen executor declares it.
    """
    config_path = find_config_file(path)
    doc = read_config_file(config_path) if config_path is not None else ConfigDocument(None, {})
    scopes = _scopes(doc, profile)
    overrides = overrides or {}
    chosen = overrides.get("executor", "local")
    for scope in scopes:
        chosen = overrides.get("executor", scope.values.get("executor", chosen))
    known = CONFIG_FIELDS | plugin_keys(chosen) if isinstance(chosen, str) else CONFIG_FIELDS

    merged: dict[str, Any] = {}
    written: dict[str, _Scope] = {}
    for scope in scopes:
        for key, value in scope.values.items():
            if key in known:
                merged[key], written[key] = value, scope
            else:
                line = doc.line_of(key, scope.profile)
                problem = f"unknown config key {key!r} ignored{did_you_mean(key, known)}"
                warning = ConfigWarning(problem, key=key, origin=scope.origin, line=line)
                warnings.warn(warning, stacklevel=3)  # the caller of create_executor
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(
                f"unknown config override {key!r}{did_you_mean(key, known)}; "
                f"known keys: {', '.join(sorted(known))}",
                key=key,
            )
        merged[key] = value
        written[key] = _Scope("override", None, {})

    fields = {key: value for key, value in merged.items() if key in CONFIG_FIELDS}
    plugin = {key: value for key, value in merged.items() if key not in CONFIG_FIELDS}
    try:
        config = ClusterConfig(**fields, plugin_options=plugin)
    except ConfigError as exc:
        scope = written.get(exc.key or "", _Scope(doc.where, None, {}))
        line = doc.line_of(exc.key, scope.profile) if scope.origin != "override" else None
        raise exc.located(scope.origin, line) from None
    config.sources = {
        name: written[name].origin if name in written else "default" for name in sorted(known)
    }
    return config
