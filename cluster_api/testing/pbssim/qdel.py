"""``qdel id...``: a queued job (or subjob) ends at once, a running one is sent SIGTERM
then SIGKILL (its exit status 271). Each id refused is named on stderr."""

from __future__ import annotations

import sys
import time

from ..simkit.jobs import STAT_FINISHED, finish_element
from ..simkit.store import Json, load_state, locked, save_state
from .depend import JOB_ID
from .formats import purged

KILL = {"reason": "TERM_OWNER", "exit_code": None, "signals": ["TERM", "KILL"]}


def command_qdel(args: list[str], state_dir: str, control: Json) -> int:
    settings: Json = control["settings"]
    torque = settings["flavour"] == "torque"
    code, now = 0, time.time()
    with locked(state_dir):
        state = load_state(state_dir)
        for asked in args:
            match = JOB_ID.match(asked)
            job = state["jobs"].get(match.group(1)) if match else None
            if job is None or purged(job, settings, now):
                sys.stderr.write(f"qdel: Unknown Job Id {asked}\n")
                code = 153
                continue
            index = asked[asked.find("[") + 1 : asked.find("]")] if "[" in asked else ""
            keys = [index] if index else list(job["elements"])
            live = [k for k in keys if job["elements"].get(k, {}).get("stat") not in STAT_FINISHED]
            if not live:
                finished = "invalid state for job - COMPLETE" if torque else "Job has finished"
                sys.stderr.write(f"qdel: {finished} {asked}\n")
                code = 168 if torque else 35
            for key in live:
                element = job["elements"][key]
                if element["stat"] == "PEND":
                    finish_element(element, "EXIT", None, "TERM_OWNER", now)
                else:
                    element["kill"] = dict(KILL)
        save_state(state_dir, state)
    return code
