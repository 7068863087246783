"""``flux jobs --json [-a] [-A] [-c N] [--name=NAME] [ID...]``: named jobs in any state
(one object for one id, else ``{"jobs": [...]}``), or the user's active (``-a``: all)
jobs; a purged or unknown id is ``JobID X unknown`` on stderr, exit 1."""

from __future__ import annotations

import json
import sys
import time

from ..simkit.cli import UsageError
from ..simkit.jobs import STAT_FINISHED, is_purged
from ..simkit.store import Json, load_state
from .formats import job_object, parse_id

FLAGS = ("--json", "-a", "-A")


def jobs(args: list[str], state_dir: str, control: Json) -> int:
    flags, ids, name, i = set(), [], None, 0
    while i < len(args):
        arg = args[i]
        if arg in FLAGS:
            flags.add(arg)
        elif arg == "-c":
            i += 1  # no count limit is simulated
        elif arg.startswith("--name="):
            name = arg.partition("=")[2]
        elif arg.startswith("-"):
            raise UsageError(f"flux-jobs: error: unrecognized option '{arg}'", 1)
        else:
            ids.append(arg)
        i += 1
    if "--json" not in flags:
        raise UsageError("flux-jobs: only --json output is simulated", 1)
    settings, now = control["settings"], time.time()
    known = {
        int(job["number"]): job
        for job in load_state(state_dir)["jobs"].values()
        if not is_purged(job["elements"]["0"], settings, now)
    }
    if not ids:
        listed = [
            job_object(job)
            for job in known.values()
            if ("-a" in flags or job["elements"]["0"]["stat"] not in STAT_FINISHED)
            and (name is None or job["name"] == name)
        ]
        sys.stdout.write(json.dumps({"jobs": listed}) + "\n")
        return 0
    found, code = [], 0
    for text in ids:
        number = parse_id(text)
        if number is None:
            raise UsageError(f"flux-jobs: ERROR: invalid jobid: {text}", 1)
        if number in known:
            found.append(job_object(known[number]))
        else:
            sys.stderr.write(f"JobID {text} unknown\n")
            code = 1
    if len(ids) == 1 and found:
        sys.stdout.write(json.dumps(found[0]) + "\n")
    elif found or len(ids) > 1:
        sys.stdout.write(json.dumps({"jobs": found}) + "\n")
    return code
