"""``cluster-api config check``: every problem of a config file, each with its line.

Built on the structured errors of config loading (`ConfigError`, `ConfigWarning`: key,
origin, line), so the checker and the library can never disagree about what is wrong.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import (
    CONFIG_FIELDS,
    ClusterConfig,
    ConfigDocument,
    executor_class,
    load_config,
    profile_origin,
    read_config_file,
)
from ..errors import ConfigError, ConfigWarning


@dataclass
class CheckReport:
    """What ``config check`` found: messages as ``FILE:LINE: kind: text [profile P]``."""

    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    profiles: list[str] = field(default_factory=list)

    def add_error(self, message: str) -> None:
        if message not in self.errors:
            self.errors.append(message)

    def add_warning(self, message: str) -> None:
        if message not in self.warnings:
            self.warnings.append(message)


def check_config_file(path: Path) -> CheckReport:
    """Check ``path`` key by key, then load it alone and with each of its profiles.

    Checking each key on its own reports every bad value, not only the first one a
    load stops at; the loads add what only a whole config shows (unknown keys, keys
    of the chosen executor, an executor that cannot be loaded).
    """
    report = CheckReport()
    try:
        doc = read_config_file(path)
    except ConfigError as exc:
        report.add_error(_format(str(path), exc.line, "error", exc.problem, None, exc.column))
        return report
    profiles = doc.values.get("profiles")
    report.profiles = [str(name) for name in profiles] if isinstance(profiles, dict) else []
    _check_each_key(doc, report)
    for profile in [None, *report.profiles]:
        _check_load(doc, profile, report)
    return report


def _scopes(doc: ConfigDocument) -> list[tuple[dict[Any, Any], str | None]]:
    """The file's top level and each profile that is a mapping, with the profile name."""
    scopes: list[tuple[dict[Any, Any], str | None]] = [(doc.values, None)]
    profiles = doc.values.get("profiles")
    for name, settings in (profiles if isinstance(profiles, dict) else {}).items():
        if isinstance(settings, dict):
            scopes.append((settings, str(name)))
    return scopes


def _check_each_key(doc: ConfigDocument, report: CheckReport) -> None:
    for values, profile in _scopes(doc):
        for key, value in values.items():
            if key not in CONFIG_FIELDS:
                continue  # unknown keys and executors' own keys: the loads judge them
            problem = _value_problem(key, value)
            if problem is not None:
                line = doc.line_of(key, profile)
                report.add_error(_format(doc.where, line, "error", problem, profile))


def _value_problem(key: str, value: Any) -> str | None:
    """What is wrong with ``key: value`` alone (the other keys at their defaults)."""
    try:
        config = ClusterConfig(**{key: value})
        if key == "executor":
            executor_class(config)
    except ConfigError as exc:
        return _shown(exc.problem)
    return None


def _check_load(doc: ConfigDocument, profile: str | None, report: CheckReport) -> None:
    """Load the file with ``profile`` applied, reporting its warnings and first error."""
    where = doc.where
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            config: ClusterConfig | None = load_config(doc.path, profile)
        except ConfigError as exc:
            in_profile = _profile_of(exc.origin, doc, profile)
            report.add_error(_format(where, exc.line, "error", _shown(exc.problem), in_profile))
            config = None
    for item in caught:
        warning = item.message
        if isinstance(warning, ConfigWarning):
            in_profile = _profile_of(warning.origin, doc, profile)
            report.add_warning(_format(where, warning.line, "warning", warning.problem, in_profile))
        else:
            report.add_warning(_format(where, None, "warning", str(warning), None))
    if config is None:
        return
    try:
        executor_class(config)
    except ConfigError as exc:
        in_profile = _profile_of(exc.origin, doc, profile)
        line = doc.line_of("executor", in_profile)
        report.add_error(_format(where, line, "error", _shown(exc.problem), in_profile))


def _profile_of(origin: str | None, doc: ConfigDocument, profile: str | None) -> str | None:
    """``profile`` when ``origin`` says the value was written in it, else None."""
    if profile is not None and origin == profile_origin(profile, doc.where):
        return profile
    return None


def _shown(problem: str) -> str:
    """A problem as the checker shows it: keys as written in the file (``memory``, not
    ``config.memory``)."""
    return problem.removeprefix("config.")


def _format(
    where: str,
    line: int | None,
    kind: str,
    text: str,
    profile: str | None,
    column: int | None = None,
) -> str:
    location = where if line is None else f"{where}:{line}"
    if line is not None and column is not None:
        location += f":{column}"
    suffix = f" [profile {profile}]" if profile is not None else ""
    return f"{location}: {kind}: {text}{suffix}"
