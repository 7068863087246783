"""Injected faults, set through the Python handle and applied as a command starts.

``control.json``'s ``faults`` hold: ``slow`` (``{command or "*": seconds}``),
``outage_until`` (epoch), ``empty_once`` / ``garbage_once`` (``{command: count}``),
``lookup_faults`` (queued kinds for the scheduler's token lookup) and submit-side
entries that the submit command reads itself (e.g. ``bsub_hang`` and ``bsub_hang_count``).
"""

from __future__ import annotations

import os
import sys
import time

from .store import CONTROL_FILE, Json, locked, read_json, save_control

GARBAGE = b'\xff\xfe\x00garbage{"COMMAND":"bjobs",\x81\x82 not json\n'
LOOKUP_FAULTS = ("down", "empty", "garbage", "ok")


def _read_control(state_dir: str) -> Json:
    control = read_json(os.path.join(state_dir, CONTROL_FILE), {})
    control.setdefault("faults", {})
    return control


def consume_fault(state_dir: str, key: str, command: str | None = None) -> bool:
    """Use up a one-shot fault; True if it was still there (so this call applies it)."""
    with locked(state_dir):
        control = _read_control(state_dir)
        faults: Json = control["faults"]
        if command is None:
            if not faults.get(key):
                return False
            count = int(faults.get(f"{key}_count", 1)) - 1
            if count <= 0:
                faults.pop(key, None)
                faults.pop(f"{key}_count", None)
            else:
                faults[f"{key}_count"] = count
        else:
            pending: Json = faults.get(key) or {}
            if int(pending.get(command, 0)) <= 0:
                return False
            pending[command] = int(pending[command]) - 1
            if pending[command] <= 0:
                del pending[command]
            faults[key] = pending
        save_control(state_dir, control)
        return True


def take_lookup_fault(state_dir: str) -> str | None:
    """The next queued token-lookup fault (``down``, ``empty``, ``garbage``, or ``ok``
    for none), used up."""
    with locked(state_dir):
        control = _read_control(state_dir)
        queued = control["faults"].get("lookup_faults") or []
        if not queued:
            return None
        kind = str(queued.pop(0))
        control["faults"]["lookup_faults"] = queued
        save_control(state_dir, control)
        return kind


def apply_faults(
    command: str, state_dir: str, control: Json, *, token_lookup: bool, outage_message: str
) -> int | None:
    """Injected faults; an exit code when the command must stop here.

    ``token_lookup`` says whether this call is the scheduler's lookup of a lost
    submission (the only calls ``lookup_faults`` hit)."""
    faults: Json = control["faults"]
    now = time.time()
    slow = faults.get("slow") or {}
    delay = float(slow.get(command, slow.get("*", 0)) or 0)
    if delay > 0:
        time.sleep(delay)
    lookup_fault = (
        take_lookup_fault(state_dir) if faults.get("lookup_faults") and token_lookup else None
    )
    if lookup_fault == "empty":
        return 0
    if lookup_fault == "garbage":
        sys.stdout.write("<html><body>502 Bad Gateway</body></html>\n")
        return 0
    if float(faults.get("outage_until") or 0) > now or lookup_fault == "down":
        sys.stderr.write(outage_message + "\n")
        return 255
    if (faults.get("empty_once") or {}).get(command) and consume_fault(
        state_dir, "empty_once", command
    ):
        return 0
    if (faults.get("garbage_once") or {}).get(command) and consume_fault(
        state_dir, "garbage_once", command
    ):
        sys.stdout.flush()
        sys.stdout.buffer.write(GARBAGE)
        sys.stdout.buffer.flush()
        return 0
    return None


def hold_submit_answer(state_dir: str, control: Json, command: str) -> None:
    """After submitting, before printing the id: sleep for a one-shot ``<command>_hang``
    and for every ``<command>_answer_delay`` (a client timing out meanwhile never learns
    the id of a job that exists)."""
    faults: Json = control["faults"]
    hang = float(faults.get(f"{command}_hang") or 0)
    if hang > 0:
        consume_fault(state_dir, f"{command}_hang")
        time.sleep(hang)
    time.sleep(float(faults.get(f"{command}_answer_delay") or 0))
