"""The state folder of one simulated cluster, shared by every command and runner.

Each command is a short-lived process, so all they know of each other is in files:
``state.json`` (the job table, replaced atomically; writers hold ``.lock``),
``control.json`` (knobs and injected faults, written by the Python handle),
``calls.jsonl`` (one line when each command starts and one when it ends), ``jobs/``
(scripts and submission environments) and ``spool/`` (output with nowhere else to go).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from collections.abc import Iterator, Mapping
from typing import Any

Json = dict[str, Any]

STATE_FILE = "state.json"
CONTROL_FILE = "control.json"
CALLS_FILE = "calls.jsonl"
LOCK_FILE = ".lock"
JOBS_DIR = "jobs"
SPOOL_DIR = "spool"


def read_json(path: str, default: Json) -> Json:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (FileNotFoundError, ValueError):
        return default
    return data if isinstance(data, dict) else default


def write_json(path: str, data: Json) -> None:
    tmp = f"{path}.{os.getpid()}.tmp"
    text = json.dumps(data, separators=(",", ":"))  # C encoder: json.dump's is Python's
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)


@contextlib.contextmanager
def locked(state_dir: str) -> Iterator[None]:
    """Hold the simulator's exclusive lock (serialises read-modify-write of state)."""
    fd = os.open(os.path.join(state_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def load_state(state_dir: str) -> Json:
    state = read_json(os.path.join(state_dir, STATE_FILE), {})
    state.setdefault("next_id", 1)
    state.setdefault("jobs", {})
    return state


def save_state(state_dir: str, state: Json) -> None:
    write_json(os.path.join(state_dir, STATE_FILE), state)


def load_control(state_dir: str, defaults: Mapping[str, Any]) -> Json:
    """Knobs (``defaults`` overlaid with what was set) and the injected faults."""
    control = read_json(os.path.join(state_dir, CONTROL_FILE), {})
    settings = dict(defaults)
    settings.update(control.get("settings") or {})
    control["settings"] = settings
    control.setdefault("faults", {})
    return control


def save_control(state_dir: str, control: Json) -> None:
    write_json(os.path.join(state_dir, CONTROL_FILE), control)


def ensure_layout(state_dir: str) -> None:
    for sub in ("", JOBS_DIR, SPOOL_DIR):
        os.makedirs(os.path.join(state_dir, sub), exist_ok=True)


def append_call(state_dir: str, record: Json) -> None:
    """One line of the call log, written with a single ``write`` so lines never mix."""
    line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
    fd = os.open(os.path.join(state_dir, CALLS_FILE), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
    finally:
        os.close(fd)
