"""Config keys, each declared once: its type, default, description and rules.

`option` declares a key as a dataclass field; config loading validates the key from
that declaration (`check_value`) and the docs' configuration reference describes it
from there. `ClusterConfig`'s fields are declared so, and so are a scheduler's own keys:
an executor class names them in a dataclass, its ``options`` class attribute. A plugin
declares its keys the same way, so a key a built-in executor does not know is kept and
checked when the executor that reads it is selected.

The built-in schedulers' keys below are also `ClusterConfig` fields (code written for
0.8.1 reads ``config.lsf_units``); those fields take their declaration from here.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar, Union

from .models import check_single_line
from .ssh_target import parse_host, parse_identity, parse_options, parse_port

__all__ = [
    "BatchOptions",
    "LSFOptions",
    "LocalOptions",
    "NoOptions",
    "SSHOptions",
    "check_option",
    "check_value",
    "declared_field",
    "described",
    "option",
    "option_fields",
]

T = TypeVar("T")

LSF_UNITS = ("KB", "MB", "GB", "TB")


#: A further rule for one key, after its type's: ``check(what, value)`` raises ValueError.
Check = Callable[[str, Any], None]


def option(
    default: T,
    doc: str,
    *,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    above: float | None = None,
    check: Check | None = None,
) -> T:
    """A config key: its default, the one-line description the reference shows, the
    allowed values of a string key (compared case-insensitively), the smallest allowed
    value of a number key (``minimum``) or the value it must exceed (``above``), and
    any further rule. (A list key: ``field(default_factory=list, metadata=described(doc))``.)"""
    metadata = described(doc, choices=choices, minimum=minimum, above=above, check=check)
    return dataclasses.field(default=default, metadata=metadata)


def described(
    doc: str,
    *,
    choices: tuple[str, ...] = (),
    minimum: float | None = None,
    above: float | None = None,
    check: Check | None = None,
) -> dict[str, Any]:
    """The field metadata `option` declares a key with."""
    return {"doc": doc, "choices": choices, "minimum": minimum, "above": above, "check": check}


@dataclass(frozen=True)
class NoOptions:
    """The options of an executor that has no keys of its own."""


@dataclass(frozen=True)
class BatchOptions:
    """Keys shared by the batch schedulers (LSF and Slurm)."""

    use_stdin: bool = option(
        False,
        "LSF, Slurm: submit the script on standard input (`bsub < script.sh`); "
        "directives are read from the script.",
    )
    poll_all_users: bool = option(
        False,
        "LSF, Slurm: query every user's jobs (`bjobs -u all`, `squeue` without `--me`), "
        "for jobs submitted under another user.",
    )
    array_chunk_size: int = option(
        1000,
        "Batch schedulers: most commands `submit_many` puts in one array (one submit "
        "command each); keep it within the site's array size limit (LSF "
        "`MAX_JOB_ARRAY_SIZE`, Slurm `MaxArraySize`, Grid Engine `max_aj_tasks`).",
        minimum=1,
    )


@dataclass(frozen=True)
class LSFOptions(BatchOptions):
    """Keys of the LSF executor."""

    lsf_units: str = option(
        "MB",
        "LSF: unit of memory limits, as the site's `LSF_UNIT_FOR_LIMITS` (KB, MB, GB, TB).",
        choices=LSF_UNITS,
    )
    suppress_job_email: bool = option(
        True, "LSF: set `LSB_JOB_REPORT_MAIL=N` so finished jobs send no mail."
    )


@dataclass(frozen=True)
class LocalOptions:
    """Keys of the local executor."""

    local_max_running: int | None = option(
        None,
        "Local executor: most job processes (jobs and array elements) running at once per "
        "`log_directory`, across processes; `null`: max(8, 4 x CPU cores).",
        minimum=1,
    )


def _ssh_rule(parse: Callable[[Any], Any]) -> Check:
    """The rule of one ssh key: its parser in `.ssh_target` (which names the key) accepts it."""

    def check(what: str, value: Any) -> None:
        try:
            parse(value)
        except ValueError as exc:
            raise ValueError(f"{what}: {str(exc).partition(': ')[2]}") from None

    return check


@dataclass(frozen=True)
class SSHOptions:
    """Keys of every executor: where its commands run, and where its jobs' files go."""

    ssh: str | None = option(
        None,
        "Run every scheduler command on this host over SSH (`host`, `user@host` or a Host "
        "alias of `~/.ssh/config`): job scripts and logs live there, the journal and the "
        "callbacks stay here. `null`: run them on this machine.",
        check=_ssh_rule(parse_host),
    )
    ssh_port: int | None = option(
        None,
        "Port of the `ssh` host; `null`: as `~/.ssh/config` says (22).",
        check=_ssh_rule(parse_port),
    )
    ssh_identity: str | None = option(
        None,
        "Private key offered to the `ssh` host, besides those `~/.ssh/config` names (with "
        "it set, a ControlMaster of your own for that host is not joined).",
        check=_ssh_rule(parse_identity),
    )
    ssh_options: list[str] = dataclasses.field(
        default_factory=list,
        metadata=described(
            "OpenSSH options (`Option=value`) for the `ssh` host, as `ssh -o` takes them.",
            check=_ssh_rule(parse_options),
        ),
    )
    work_dir: str | None = option(
        None,
        "Default `ResourceSpec.work_dir` (a folder on the `ssh` host when it is set, made "
        "if missing); `null`: the current folder, or `~/cluster-api-jobs` on the `ssh` host.",
    )


_FIELDS: dict[type[Any], dict[str, tuple[dataclasses.Field[Any], Any]]] = {}


def option_fields(options_type: type[Any]) -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    """Each key of an options dataclass with its field and resolved type; TypeError for
    a class that is not a dataclass or a key whose type a config file cannot hold."""
    if not (isinstance(options_type, type) and dataclasses.is_dataclass(options_type)):
        raise TypeError(f"options must be a dataclass type, got {options_type!r}")
    if options_type not in _FIELDS:
        _FIELDS[options_type] = _resolve_fields(options_type)
    return _FIELDS[options_type]


def _resolve_fields(options_type: type[Any]) -> dict[str, tuple[dataclasses.Field[Any], Any]]:
    hints = typing.get_type_hints(options_type)
    found = {}
    for f in dataclasses.fields(options_type):
        kind = hints[f.name]
        if _base_type(kind) not in (bool, int, float, str, list):
            raise TypeError(f"{options_type.__name__}.{f.name}: unsupported option type {kind}")
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise TypeError(f"{options_type.__name__}.{f.name} needs a default")
        found[f.name] = (f, kind)
    return found


def declared_field(options_type: type[Any], name: str) -> Any:
    """A `ClusterConfig` field for the option ``name`` of ``options_type``: the same
    default and metadata, so the key is still declared once."""
    f, _ = option_fields(options_type)[name]
    metadata = {**f.metadata, "declared_by": options_type}
    if f.default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=f.default_factory, metadata=metadata)
    return dataclasses.field(default=f.default, metadata=metadata)


def _optional(kind: Any) -> tuple[Any, bool]:
    """``(X, True)`` for ``X | None``, ``(kind, False)`` otherwise."""
    if typing.get_origin(kind) in (Union, types.UnionType):
        rest = [arg for arg in typing.get_args(kind) if arg is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return kind, False


def _base_type(kind: Any) -> Any:
    inner, _ = _optional(kind)
    return typing.get_origin(inner) or inner


def check_option(owner: str, name: str, value: Any, options_type: type[Any]) -> Any:
    """``value`` for the key ``name`` of ``options_type``; see `check_value`."""
    f, kind = option_fields(options_type)[name]
    return check_value(f"{owner}.{name}", f, kind, value)


def check_value(what: str, f: dataclasses.Field[Any], kind: Any, value: Any) -> Any:
    """``value`` for the key declared by field ``f`` of type ``kind``, normalised (an
    int given for a float becomes a float); ValueError naming ``what`` when its type or
    value is wrong. A key that may be null may also be an empty string."""
    inner, nullable = _optional(kind)
    if value is None and nullable:
        return None
    base = typing.get_origin(inner) or inner
    or_null = " or null" if nullable else ""
    if base is bool:
        if not isinstance(value, bool):
            raise ValueError(f"{what} must be true or false{or_null}, got {value!r}")
    elif base is int or base is float:
        value = _check_number(what, value, f.metadata, base is int, or_null)
    elif base is str:
        _check_string(what, value, f.metadata.get("choices", ()), nullable)
    else:
        if not isinstance(value, list):
            raise ValueError(f"{what} must be a list of strings, got {value!r}")
        for item in value:
            if not isinstance(item, str):
                raise ValueError(f"{what} must hold strings, got {item!r}")
            check_single_line(what, item)
    check: Check | None = f.metadata.get("check")
    if check is not None:
        check(what, value)
    return value


def _check_number(
    what: str, value: Any, metadata: Mapping[str, Any], whole: bool, or_null: str
) -> int | float:
    noun = "a whole number" if whole else "a number"
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        raise ValueError(f"{what} must be {noun}{or_null}, got {value!r}")
    minimum, above = metadata.get("minimum"), metadata.get("above")
    if minimum is not None and value < minimum:
        bound = f"{noun} >= {minimum:g}" if whole else f"at least {minimum:g}"
        raise ValueError(f"{what} must be {bound}{or_null}, got {value!r}")
    if above is not None and not value > above:
        raise ValueError(f"{what} must be more than {above:g}, got {value!r}")
    return value if whole else float(value)


def _check_string(what: str, value: Any, choices: tuple[str, ...], nullable: bool) -> None:
    if nullable:
        if not isinstance(value, str):
            raise ValueError(f"{what} must be a string or null, got {value!r}")
    elif not isinstance(value, str) or not value.strip():
        raise ValueError(f"{what} must be a non-empty string, got {value!r}")
    check_single_line(what, value)
    if choices and value.upper() not in {choice.upper() for choice in choices}:
        raise ValueError(f"{what} must be one of {', '.join(choices)}, got {value!r}")
