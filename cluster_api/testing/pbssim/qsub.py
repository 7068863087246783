"""``qsub [options] [script]`` (the script on stdin without one): ``#PBS`` lines of the
script are read up to its first command, options on the command line win. Prints the
new id (``12.pbssim``, an array ``12[].pbssim``)."""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from pathlib import Path

from ..simkit.cli import UsageError
from ..simkit.faults import hold_submit_answer
from ..simkit.jobs import new_element
from ..simkit.procs import username
from ..simkit.runner import spawn_runner
from ..simkit.store import JOBS_DIR, Json, load_state, locked, save_state, write_json
from .depend import check_references, parse_depend
from .jobenv import job_id
from .settings import ENV_STATE_DIR

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py")
WITH_VALUE = set("NoevqlAWJtmdjSMaprck")
FLAGS = set("VfzhIn")
OWN = {"pbs": "J", "torque": "td"}  # options only one flavour knows
# What a job gets without -V: PBS passes these from the submitting environment.
BASIC = ("HOME", "PATH", "USER", "LOGNAME", "SHELL", "LANG", "TZ")
UNITS = {"b": 1 / 1024, "kb": 1, "mb": 1024, "gb": 1024**2, "tb": 1024**3}


def parse_options(words: list[str], flavour: str, opts: Json) -> list[str]:
    """Options into ``opts`` (``-l`` and ``-v`` add up); the words left (the script)."""
    rest = list(words)
    while rest and rest[0].startswith("-") and len(rest[0]) > 1:
        flag = rest.pop(0)[1]
        foreign = "".join(c for f, cs in OWN.items() if f != flavour for c in cs)
        if flag in foreign or flag not in WITH_VALUE | FLAGS:
            raise UsageError(f"qsub: invalid option -- '{flag}'", 2)
        if flag in FLAGS:
            opts[flag] = True
            continue
        if not rest:
            raise UsageError(f"qsub: option requires an argument -- '{flag}'", 2)
        value = rest.pop(0)
        opts[flag] = [*opts.get(flag, []), value] if flag in "lv" else value
    return rest


def directives(script: str) -> list[str]:
    """The words of the ``#PBS`` lines before the script's first command."""
    words: list[str] = []
    for line in script.splitlines()[1:]:
        stripped = line.strip()
        if stripped.startswith("#PBS"):
            words += shlex.split(stripped[4:])
        elif stripped and not stripped.startswith("#"):
            break
    return words


def _seconds(text: str) -> int:
    parts = [int(p) for p in text.split(":")]
    return sum(p * 60**i for i, p in enumerate(reversed(parts)))


def _kb(text: str) -> int:
    found = re.fullmatch(r"(\d+)([kmgt]?b)?", text.lower())
    if not found:
        raise UsageError(f"qsub: Illegal attribute or resource value Resource_List.mem {text}")
    return int(int(found.group(1)) * UNITS[found.group(2) or "b"])


def resources(values: list[str]) -> Json:
    """``-l walltime=1:00:00,select=1:ncpus=2:mem=100mb`` / ``nodes=1:ppn=2``, ``mem=``."""
    found: Json = {"walltime": 0, "ncpus": 1, "mem_kb": None}
    for item in (i for value in values for i in value.split(",")):
        if item.startswith("walltime="):
            found["walltime"] = _seconds(item.partition("=")[2])
            continue
        for part in item.split(":"):  # select=1:ncpus=2:mem=1gb, nodes=1:ppn=2
            key, _, amount = part.partition("=")
            if key in ("ncpus", "ppn"):
                found["ncpus"] = int(amount)
            elif key == "mem":
                found["mem_kb"] = _kb(amount)
    return found


def array(opts: Json, flavour: str, settings: Json) -> Json | None:
    """``-J 1-10%2`` (PBS: at least two indices) or ``-t 1-10%2`` / ``-t 1,3,5-7``."""
    text = opts.get("J" if flavour == "pbs" else "t")
    if not text:
        return None
    spec, _, limit = str(text).partition("%")
    indices: list[int] = []
    for part in spec.split(","):
        found = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part)
        if not found or (flavour == "pbs" and "," in spec):
            raise UsageError(f"qsub: illegal -{'J' if flavour == 'pbs' else 't'} value", 2)
        start, end = int(found.group(1)), int(found.group(2) or found.group(1))
        indices += range(start, end + 1, int(found.group(3) or 1))
    if flavour == "pbs" and len(indices) < 2:
        raise UsageError("qsub: illegal -J value", 2)
    if len(indices) > int(settings["max_array_size"]):
        raise UsageError("qsub: Array job exceeds server or queue size limit", 2)
    return {"indices": indices, "limit": int(limit) if limit else None, "text": spec}


def job_record(opts: Json, script: str, settings: Json) -> Json:
    flavour = str(settings["flavour"])
    limits = resources(opts.get("l", []))
    variables = dict(v.partition("=")[::2] for vs in opts.get("v", []) for v in vs.split(","))
    basic = {k: os.environ[k] for k in BASIC if k in os.environ}
    env = dict(os.environ) if opts.get("V") else basic
    home = os.environ.get("HOME", "/")
    name = str(opts.get("N") or "STDIN")
    listed = {"PBS_O_HOME": home, "PBS_O_WORKDIR": os.getcwd(), **variables}
    return {
        "flavour": flavour,
        "server": settings["server"],
        "name": name,
        "array": array(opts, flavour, settings),
        "user": username(),
        "home": home,
        "queue": opts.get("q") or "workq",
        "account": opts.get("A"),
        "submit_cwd": os.getcwd(),
        "cwd": opts.get("d") or home,  # jobs start in $HOME unless Torque's -d says
        "out": opts.get("o"),
        "err": opts.get("e"),
        "join": opts.get("j") == "oe",  # errors go with the output
        "out_overwrite": True,
        "err_overwrite": True,
        "slots": limits["ncpus"],
        "ncpus": limits["ncpus"],
        "walltime": limits["walltime"],
        "run_limit_min": limits["walltime"] / 60 if limits["walltime"] else None,
        "mem_limit_kb": limits["mem_kb"],
        "dependency": str(opts.get("W", "")).removeprefix("depend=") or None,
        "ti": True,  # a dependency that can never be met deletes the job
        "interpreter": "/bin/bash",
        "variables": variables,
        "variables_listed": listed,
        "environment": env,
        "submit_time": time.time(),
        "script": script,
    }


def store_job(state_dir: str, job: Json) -> Json:
    """Under the lock: check the dependency, take the next id, write script and
    environment, add the job with its elements pending."""
    with locked(state_dir):
        state = load_state(state_dir)
        if job["dependency"]:
            check_references(parse_depend(job["dependency"]), state, str(job["server"]))
        number = int(state["next_id"])
        state["next_id"] = number + 1
        job["id"] = number
        job["job_file"] = os.path.join(state_dir, JOBS_DIR, f"{number}.sh")
        job["env_file"] = os.path.join(state_dir, JOBS_DIR, f"{number}.env.json")
        with open(job["job_file"], "w", encoding="utf-8") as handle:
            handle.write(job.pop("script"))
        write_json(job["env_file"], job.pop("environment"))
        indices = job["array"]["indices"] if job["array"] else ["0"]
        job["elements"] = {str(i): new_element() for i in indices}
        default = os.path.join(str(job["submit_cwd"]), f"{job['name']}.%s{number}")
        suffix = ".^array_index^" if job["array"] else ""
        job["out"] = job["out"] or default % "o" + suffix
        if job["err"] is None and not job["join"]:
            job["err"] = default % "e" + suffix
        state["jobs"][str(number)] = job
        save_state(state_dir, state)
    return job


def command_qsub(args: list[str], state_dir: str, control: Json) -> int:
    settings: Json = control["settings"]
    flavour = str(settings["flavour"])
    cli: Json = {}
    rest = parse_options(args, flavour, cli)
    if len(rest) > 1:
        raise UsageError("usage: qsub [options] [script]", 2)
    try:
        script = Path(rest[0]).read_text(encoding="utf-8") if rest else sys.stdin.read()
    except OSError as exc:
        raise UsageError(f"qsub: could not open script file {rest[0]}: {exc.strerror}", 2) from None
    opts: Json = {}
    parse_options(directives(script), flavour, opts)
    for key, value in cli.items():
        opts[key] = [*opts.get(key, []), *value] if key in "lv" else value
    job = store_job(state_dir, job_record(opts, script, settings))
    pid = spawn_runner(state_dir, int(job["id"]), LAUNCHER, ENV_STATE_DIR)
    with locked(state_dir):
        state = load_state(state_dir)
        state["jobs"][str(job["id"])]["runner_pid"] = pid
        save_state(state_dir, state)
    hold_submit_answer(state_dir, control, "qsub")
    sys.stdout.write(job_id(job) + "\n")
    sys.stdout.flush()
    return 0
