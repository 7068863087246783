"""``bsub``: read the options (command line over ``#BSUB`` lines), add the job to the
table, start its runner, answer ``Job <ID> is submitted to queue <normal>.``"""

from __future__ import annotations

import os
import re
import shlex
import sys
import time
from typing import NamedTuple

from ..simkit.cli import UsageError, answer_help_or_version
from ..simkit.faults import hold_submit_answer
from ..simkit.jobs import STAT_FINISHED, new_element, sorted_elements
from ..simkit.procs import hostname, username
from ..simkit.runner import spawn_runner
from ..simkit.store import JOBS_DIR, Json, load_state, locked, save_state, write_json
from .depend import validate_dependency
from .formats import parse_job_name, parse_mem, parse_runlimit
from .jobenv import job_environment
from .settings import ENV_STATE_DIR, VERSION

BSUB_WITH_ARG = {
    "-J", "-o", "-oo", "-e", "-eo", "-cwd", "-q", "-n", "-M", "-W", "-R", "-gpu", "-P",
    "-w", "-env", "-L", "-u", "-G", "-app", "-g", "-m", "-Jd", "-We", "-sla", "-E",
    "-Ep", "-c", "-i", "-b", "-t", "-v", "-S", "-D", "-F", "-C", "-T", "-k", "-outdir",
}  # fmt: skip
BSUB_FLAGS = {"-ti", "-B", "-N", "-x", "-r", "-rn", "-K", "-hl"}
BSUB_REPEATABLE = {"-R"}
BSUB_USAGE = (
    "Usage: bsub [-h] [-V] [-B] [-N] [-K] [-r | -rn] [-ti] [-x]\n"
    '            [-cwd "dir"] [-e err_file | -eo err_file] [-o out_file | -oo out_file]\n'
    '            [-env "none" | "all [,var]..."] [-gpu "gpu_req"] [-J job_name]\n'
    "            [-L login_shell] [-M mem_limit] [-n num_tasks] [-P project_name]\n"
    "            [-q queue_name] [-R res_req] [-W [hour:]minute] [-w depend_cond]\n"
    "            [command [argument ...] | < script]"
)
LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py")


class Submission(NamedTuple):
    """What is to run, before the options are applied."""

    script_text: str
    interpreter: str
    display_command: str
    directives: Json


class Limits(NamedTuple):
    """The options that need parsing, checked before anything is stored."""

    name: str
    indices: list[int] | None
    array_limit: int | None
    slots: int
    mem_limit_kb: int | None
    run_limit_min: float | None


def parse_bsub_options(args: list[str], allow_command: bool) -> tuple[Json, list[str]]:
    """Options (``{"-J": value, "-R": [..], "-ti": True}``) and the command words."""
    options: Json = {}
    pos = 0
    while pos < len(args):
        arg = args[pos]
        if arg == "--":
            pos += 1
            break
        if not arg.startswith("-") or arg == "-":
            break
        answer_help_or_version(arg, BSUB_USAGE, VERSION)
        if arg in BSUB_FLAGS:
            options[arg] = True
            pos += 1
            continue
        if arg in BSUB_WITH_ARG:
            if pos + 1 >= len(args):
                raise UsageError(f"bsub: option requires an argument -- {arg[1:]}\n{BSUB_USAGE}")
            value = args[pos + 1]
            if arg in BSUB_REPEATABLE:
                options.setdefault(arg, []).append(value)
            else:
                options[arg] = value
            pos += 2
            continue
        raise UsageError(f"bsub: Illegal option -- {arg[1:]}\n{BSUB_USAGE}")
    command = args[pos:]
    if command and not allow_command:
        raise UsageError(f"bsub: Illegal option -- {command[0]}\n{BSUB_USAGE}")
    return options, command


def script_directives(script: str) -> list[str]:
    """Words of the ``#BSUB`` lines at the top of a job script."""
    words: list[str] = []
    for line in script.splitlines():
        stripped = line.strip()
        if not stripped:
            continue
        if stripped.startswith("#BSUB"):
            rest = stripped[5:]
            if rest and not rest[0].isspace():
                continue
            try:
                words.extend(shlex.split(rest, comments=True))
            except ValueError:
                raise UsageError(f"{stripped}: Bad #BSUB line. Job not submitted.") from None
            continue
        if stripped.startswith("#"):
            continue
        break
    return words


def merge_options(directives: Json, command_line: Json) -> Json:
    merged = dict(directives)
    for key, value in command_line.items():
        if key in BSUB_REPEATABLE:
            merged[key] = list(directives.get(key, [])) + list(value)
        else:
            merged[key] = value
    return merged


def read_submission(command: list[str], settings: Json) -> Submission:
    """The command words (run by ``/bin/sh``) or the script on stdin (by ``/bin/bash``)."""
    if command:
        # LSF joins the words and hands them to the Bourne shell as they are: a word
        # with a space in it splits, a $(...) in it runs.
        directives: Json = {}
        script_path = command[0] if os.path.sep in command[0] else os.path.join(".", command[0])
        if settings.get("parse_script") and os.path.isfile(script_path):
            try:
                with open(script_path, encoding="utf-8", errors="replace") as handle:
                    directives, _ = parse_bsub_options(script_directives(handle.read()), False)
            except OSError:
                directives = {}
        text = " ".join(command)
        return Submission(text + "\n", "/bin/sh", text, directives)
    if sys.stdin is None or sys.stdin.isatty():
        raise UsageError(f"bsub: no command or job script given\n{BSUB_USAGE}")
    script_text = sys.stdin.read()
    if not script_text.strip():
        raise UsageError("No command is specified. Job not submitted.")
    directives, _ = parse_bsub_options(script_directives(script_text), False)
    lines = [line for line in script_text.splitlines() if line.strip()]
    return Submission(script_text, "/bin/bash", "; ".join(lines), directives)


def parse_limits(opts: Json, display_command: str, settings: Json) -> Limits:
    """``-J`` (with an array), ``-n``, ``-M`` and ``-W``, or the error LSF gives."""
    max_size = int(settings.get("max_array_size") or 1000)
    if "-J" in opts:
        name, indices, array_limit = parse_job_name(str(opts["-J"]), max_size)
    else:
        name, indices, array_limit = display_command[:4094], None, None
    nslots = 1
    if "-n" in opts:
        match = re.fullmatch(r"\s*(\d+)\s*(?:,\s*(\d+)\s*)?", str(opts["-n"]))
        if not match or int(match.group(1)) < 1:
            raise UsageError(f"{opts['-n']}: Bad argument for option -n. Job not submitted.")
        nslots = int(match.group(1))
    mem_limit = (
        parse_mem(str(opts["-M"]), str(settings["unit_for_limits"])) if "-M" in opts else None
    )
    run_limit = parse_runlimit(str(opts["-W"])) if "-W" in opts else None
    return Limits(name, indices, array_limit, nslots, mem_limit, run_limit)


def job_record(job_id: int, opts: Json, sub: Submission, limits: Limits, user: str) -> Json:
    """The new job's entry in the table (elements pending); files named, not written."""
    keys = [str(i) for i in limits.indices] if limits.indices else ["0"]
    array = {"indices": limits.indices, "limit": limits.array_limit} if limits.indices else None
    return {
        "id": job_id,
        "name": limits.name,
        "array": array,
        "user": user,
        "queue": opts.get("-q") or "normal",
        "project": opts.get("-P") or "default",
        "description": opts.get("-Jd") or "",
        "command": sub.display_command,
        "from_host": hostname(),
        "submit_cwd": os.getcwd(),
        "cwd": opts.get("-cwd"),
        "out": opts.get("-oo") or opts.get("-o"),
        "out_overwrite": "-oo" in opts,
        "err": opts.get("-eo") or opts.get("-e"),
        "err_overwrite": "-eo" in opts,
        "slots": limits.slots,
        "mem_limit_kb": limits.mem_limit_kb,
        "run_limit_min": limits.run_limit_min,
        "dependency": opts.get("-w"),
        "ti": bool(opts.get("-ti")),
        "login_shell": opts.get("-L"),
        "interpreter": sub.interpreter,
        "res_req": opts.get("-R", []),
        "gpu": opts.get("-gpu"),
        "submit_time": time.time(),
        "job_file": None,
        "env_file": None,
        "runner_pid": None,
        "elements": {key: new_element() for key in keys},
    }


def store_job(
    state_dir: str, opts: Json, sub: Submission, limits: Limits, env: dict[str, str], settings: Json
) -> Json:
    """Under the lock: check the dependency, take the next id, write script and
    environment, add the job."""
    user = username()
    with locked(state_dir):
        state = load_state(state_dir)
        if "-w" in opts:
            validate_dependency(str(opts["-w"]), state, user, settings)
        job_id = int(state["next_id"])
        state["next_id"] = job_id + 1
        job = job_record(job_id, opts, sub, limits, user)
        job["job_file"] = os.path.join(state_dir, JOBS_DIR, f"{job_id}.sh")
        job["env_file"] = os.path.join(state_dir, JOBS_DIR, f"{job_id}.env.json")
        with open(job["job_file"], "w", encoding="utf-8") as handle:
            handle.write(sub.script_text)
        write_json(job["env_file"], env)
        state["jobs"][str(job_id)] = job
        save_state(state_dir, state)
    return job


def command_bsub(args: list[str], state_dir: str, control: Json) -> int:
    settings: Json = control["settings"]
    cli, command = parse_bsub_options(args, allow_command=True)
    submission = read_submission(command, settings)
    opts = merge_options(submission.directives, cli)
    limits = parse_limits(opts, submission.display_command, settings)
    env = job_environment(opts.get("-env"), dict(os.environ))
    job = store_job(state_dir, opts, submission, limits, env, settings)
    job_id = int(job["id"])
    pid = spawn_runner(state_dir, job_id, LAUNCHER, ENV_STATE_DIR)
    with locked(state_dir):
        state = load_state(state_dir)
        state["jobs"][str(job_id)]["runner_pid"] = pid
        save_state(state_dir, state)
    hold_submit_answer(state_dir, control, "bsub")
    sys.stdout.write(f"Job <{job_id}> is submitted to queue <{job['queue']}>.\n")
    sys.stdout.flush()
    if opts.get("-K"):
        return wait_for_job(state_dir, job_id)
    return 0


def wait_for_job(state_dir: str, job_id: int) -> int:
    """``bsub -K``: wait for the job and exit with its code."""
    sys.stderr.write("<<Waiting for dispatch ...>>\n")
    while True:
        job = load_state(state_dir)["jobs"][str(job_id)]
        elements = [e for _, e in sorted_elements(job)]
        if all(e["stat"] in STAT_FINISHED for e in elements):
            sys.stderr.write("<<Job is finished>>\n")
            codes = [int(e.get("exit_code") or 0) for e in elements if e["stat"] == "EXIT"]
            return codes[0] if codes else 0
        time.sleep(0.1)
