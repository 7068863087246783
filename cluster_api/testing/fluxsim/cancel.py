"""``flux cancel ID...``: silent, exit 0, when every job was cancelled; an error line
for each it did not (inactive, unknown), exit 1. A pending job ends at once, a running
one gets SIGTERM then SIGKILL from its runner."""

from __future__ import annotations

import sys
import time

from ..simkit.cli import UsageError
from ..simkit.jobs import STAT_FINISHED, finish_element, is_purged
from ..simkit.store import Json, load_state, locked, save_state
from .formats import f58, parse_id

REQUEST = {"reason": "cancel", "exit_code": 143, "signals": ["TERM", "KILL"]}


def cancel(args: list[str], state_dir: str, control: Json) -> int:
    numbers = [parse_id(arg) for arg in args]
    if not args or None in numbers:  # one bad id: nothing is cancelled
        bad = next((a for a, n in zip(args, numbers, strict=True) if n is None), "")
        raise UsageError(
            f"flux-cancel: ERROR: invalid jobid: {bad}" if bad else "flux-cancel: error: no jobid",
            1,
        )
    errors = []
    now = time.time()
    with locked(state_dir):
        state = load_state(state_dir)
        by_number = {int(job["number"]): job for job in state["jobs"].values()}
        for number in numbers:
            job = by_number.get(int(number or 0))
            element = job["elements"]["0"] if job else None
            if element is None or is_purged(element, control["settings"], now):
                errors.append(f"flux-cancel: ERROR: {f58(int(number or 0))}: unknown job id")
            elif element["stat"] in STAT_FINISHED:
                errors.append(f"flux-cancel: ERROR: {f58(int(number or 0))}: job is inactive")
            elif element["stat"] == "PEND":
                finish_element(element, "EXIT", None, "cancel", now)
            elif not element.get("kill"):
                element["kill"] = dict(REQUEST)
        save_state(state_dir, state)
    sys.stderr.write("".join(line + "\n" for line in errors))
    return 1 if errors else 0
