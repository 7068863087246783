"""``qstat -f -F json [-x] [-t] [id...]`` (PBS Pro) or ``qstat -f -x [-t] [id...]``
(Torque, where ``-x`` means XML). Ids it does not know are named on stderr (exit 153);
on PBS a finished job asked about without ``-x`` is "Job has finished" (exit 35), and
``-x`` on a server without history says so and lists nothing."""

from __future__ import annotations

import sys
import time

from ..simkit.cli import UsageError
from ..simkit.store import Json, load_state
from .depend import JOB_ID
from .formats import finished, job_entries, purged, render

HISTORY_OFF = "qstat: PBS is not configured to maintain job history"


def parse_args(args: list[str], flavour: str) -> tuple[set[str], list[str]]:
    flags, ids, words = set(), [], iter(args)
    for word in words:
        if word == "-F":
            flags.add(f"-F {next(words, '')}")
        elif word.startswith("-"):
            flags.update(f"-{c}" for c in word[1:])
        else:
            ids.append(word)
    full = {"-f", "-F json"} if flavour == "pbs" else {"-f", "-x"}
    if not full <= flags:
        shown = "qstat -f -F json [-x]" if flavour == "pbs" else "qstat -f -x"
        raise UsageError(f"usage: {shown} [-t] [job id...] (all this simulator answers)", 2)
    return flags, ids


def command_qstat(args: list[str], state_dir: str, control: Json) -> int:
    settings: Json = control["settings"]
    flavour, server = str(settings["flavour"]), str(settings["server"])
    flags, ids = parse_args(args, flavour)
    history = flavour == "pbs" and "-x" in flags
    if history and not settings["history"]:
        sys.stderr.write(HISTORY_OFF + "\n")
        return 0
    subjobs, now = "-t" in flags, time.time()
    jobs = {
        key: job
        for key, job in load_state(state_dir)["jobs"].items()
        if not purged(job, settings, now)
    }
    # Without -x PBS lists no finished job; Torque shows them as C until purged.
    listed = {k: j for k, j in jobs.items() if history or flavour == "torque" or not finished(j)}
    entries: Json = {}
    code = 0
    if not ids:
        for job in listed.values():
            entries.update(job_entries(job, subjobs, now))
    for asked in ids:
        match = JOB_ID.match(asked)
        key = match.group(1) if match else ""
        index = asked[asked.find("[") + 1 : asked.find("]")] if "[" in asked else ""
        if key in listed and (not index or index in listed[key]["elements"]):
            entries.update(job_entries(listed[key], subjobs, now, index or None))
        elif key in jobs and flavour == "pbs":
            sys.stderr.write(
                f"qstat: {asked} Job has finished, use -x or -H to obtain historical job "
                "information\n"
            )
            code = 35
        else:
            error = " Error" if flavour == "torque" else ""
            sys.stderr.write(f"qstat: Unknown Job Id{error} {asked}\n")
            code = 153
    sys.stdout.write(render(flavour, server, entries, now))
    return code
