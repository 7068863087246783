"""``flux batch SCRIPT`` (options from argv and the script's ``# flux:`` lines) and
``flux submit --cc=IDSET [options] COMMAND`` (one job per index, options on argv only),
and the job style the runner starts them with."""

from __future__ import annotations

import getpass
import os
import re
import sys
import time

from ..simkit.cli import UsageError
from ..simkit.depend import evaluate
from ..simkit.jobs import new_element
from ..simkit.runner import Dependency, JobStyle, spawn_runner
from ..simkit.store import JOBS_DIR, Json, load_state, locked, save_state, write_json
from .formats import ID_SHIFT, f58, parse_id, script_directives
from .settings import DEFAULT_SETTINGS, ENV_STATE_DIR

LAUNCHER = os.path.join(os.path.dirname(os.path.abspath(__file__)), "__main__.py")
VALUED = {
    "--job-name": "name",
    "--output": "out",
    "--error": "err",
    "--time-limit": "time",
    "--queue": "queue",
    "--bank": "bank",
    "--cwd": "cwd",
    "--dependency": "dependency",
    "--env": "env",
    "--cc": "cc",
    "-n": "ntasks",
    "-c": "cores",
    "-g": "gpus",
}
REPEATED = ("dependency", "env")


def parse_options(words: list[str], program: str) -> tuple[Json, list[str]]:
    """(options, the command and its arguments) of ``flux batch|submit`` words."""
    opts: Json = {key: [] for key in REPEATED}
    i = 0
    while i < len(words) and words[i].startswith("-"):
        word = words[i]
        flag, eq, value = word.partition("=") if word.startswith("--") else (word[:2], "", word[2:])
        if flag not in VALUED:
            raise UsageError(f"flux-{program}: error: unrecognized arguments: {word}", 2)
        if not (eq or value):
            i += 1
            if i >= len(words):
                raise UsageError(f"flux-{program}: error: option '{flag}' needs a value", 1)
            value = words[i]
        key = VALUED[flag]
        if key in REPEATED:
            opts[key].append(value)
        else:
            opts[key] = value
        i += 1
    return opts, words[i:]


def time_limit_minutes(text: str) -> float:
    """Flux's FSD: a number with an optional unit s, m (the default), h or d."""
    match = re.fullmatch(r"([0-9.]+)([smhd]?)", text)
    if match is None:
        raise UsageError(f"flux: error: invalid Flux standard duration '{text}'", 1)
    scale = {"s": 1 / 60, "": 1.0, "m": 1.0, "h": 60.0, "d": 1440.0}[match.group(2)]
    return float(match.group(1)) * scale


def job_environment(filters: list[str], submit_env: dict[str, str]) -> dict[str, str]:
    """``--env=-*`` empties the environment, ``--env=/regex/`` takes matching names back."""
    env = dict(submit_env)
    for rule in filters:
        if rule == "-*":
            env = {}
        elif rule.startswith("/") and rule.endswith("/") and len(rule) > 1:
            env.update({k: v for k, v in submit_env.items() if re.search(rule[1:-1], k)})
        elif "=" in rule:
            name, _, value = rule.partition("=")
            env[name] = value
        else:
            raise UsageError(f"flux: error: unsupported --env rule '{rule}'", 1)
    return env


def _dependencies(opts: Json, state: Json) -> list[str]:
    deps = []
    for text in opts["dependency"]:
        kind, _, target = text.partition(":")
        number = parse_id(target)
        if kind != "afterok" or number is None:
            raise UsageError(f"flux: ERROR: unsupported dependency '{text}'", 1)
        if not any(int(j["number"]) == number for j in state["jobs"].values()):
            raise UsageError(f"flux: ERROR: dependency: {target}: unknown job", 1)
        deps.append(f"after-success={f58(number)}")
    return deps


def _job(opts: Json, number: int, script: str, cc: str | None, deps: list[str]) -> Json:
    def value(key: str) -> str | None:
        text = opts.get(key)
        return None if text is None or cc is None else str(text).replace("{cc}", cc)

    values = {k: value(k) if cc is not None else opts.get(k) for k in ("name", "out", "err")}
    limit = opts.get("time")
    return {
        "number": number,
        "jobid": f58(number),
        "cc": cc,
        "name": values["name"] or os.path.basename(script),
        "array": None,
        "user": getpass.getuser(),
        "uid": os.getuid(),
        "submit_cwd": os.getcwd(),
        "cwd": opts.get("cwd"),
        "out": values["out"],
        "err": values["err"],
        "slots": int(opts.get("cores") or 1),
        "run_limit_min": time_limit_minutes(limit) if limit else None,
        "mem_limit_kb": None,
        "ti": True,  # a dependency that can never be met raises an exception at once
        "dependencies": deps,
        "submit_time": time.time(),
        "elements": {"0": new_element()},
    }


def store_jobs(
    state_dir: str, opts: Json, script: str, text: str, ccs: list[str | None]
) -> list[Json]:
    """Under the lock: check dependencies, take ids, write script and environment."""
    env = job_environment(opts["env"], dict(os.environ))
    jobs = []
    with locked(state_dir):
        state = load_state(state_dir)
        deps = _dependencies(opts, state)
        for cc in ccs:
            key = str(state["next_id"])
            state["next_id"] = int(key) + 1
            job = _job(opts, (int(key) << ID_SHIFT) + os.getpid() % 4096, script, cc, deps)
            job["id"] = key
            job["job_file"] = os.path.join(state_dir, JOBS_DIR, f"{key}.sh")
            job["env_file"] = os.path.join(state_dir, JOBS_DIR, f"{key}.env.json")
            with open(job["job_file"], "w", encoding="utf-8") as handle:
                handle.write(text)
            write_json(job["env_file"], env)
            state["jobs"][key] = job
            jobs.append(job)
        save_state(state_dir, state)
    return jobs


def _idset(text: str) -> list[str]:
    match = re.fullmatch(r"([0-9]+)(?:-([0-9]+))?", text)
    if match is None or int(match.group(2) or match.group(1)) < int(match.group(1)):
        raise UsageError(f"flux-submit: error: invalid idset '{text}'", 1)
    return [str(i) for i in range(int(match.group(1)), int(match.group(2) or match.group(1)) + 1)]


def batch(args: list[str], state_dir: str, control: Json) -> int:
    return _submit(args, state_dir, "batch")


def submit(args: list[str], state_dir: str, control: Json) -> int:
    return _submit(args, state_dir, "submit")


def _submit(args: list[str], state_dir: str, program: str) -> int:
    opts, rest = parse_options(args, program)
    if not rest and program == "batch":
        text, script = sys.stdin.read(), "stdin"
    elif not rest:
        raise UsageError(f"flux-{program}: error: no command given", 1)
    else:
        script = rest[0]
        try:
            with open(script, encoding="utf-8") as handle:
                text = handle.read()
        except OSError as exc:
            raise UsageError(f"flux-{program}: ERROR: {script}: {exc.strerror}", 1) from None
    if program == "batch":  # argv wins over the script's directives
        directed, _ = parse_options(script_directives(text), program)
        opts = {**directed, **{k: v for k, v in opts.items() if v}}
    ccs: list[str | None] = [*_idset(str(opts["cc"]))] if opts.get("cc") else [None]
    jobs = store_jobs(state_dir, opts, script, text, ccs)
    for job in jobs:
        pid = spawn_runner(state_dir, int(job["id"]), LAUNCHER, ENV_STATE_DIR)
        with locked(state_dir):
            state = load_state(state_dir)
            state["jobs"][job["id"]]["runner_pid"] = pid
            save_state(state_dir, state)
    sys.stdout.write("".join(f"{job['jobid']}\n" for job in jobs))
    return 0


def flux_variables(job: Json, idx: str, cwd: str) -> dict[str, str]:
    env = {"FLUX_JOB_ID": str(job["jobid"]), "FLUX_JOB_NNODES": "1", "FLUX_KVS_NAMESPACE": "job"}
    if job.get("cc") is not None:
        env["FLUX_JOB_CC"] = str(job["cc"])
    return env


def expand(pattern: str, job: Json, idx: str) -> str:
    """The mustache tags of an output path: ``{{id}}`` (and ``{{jobid}}``)."""
    return pattern.replace("{{id}}", str(job["jobid"])).replace("{{jobid}}", str(job["jobid"]))


def job_dependency(job: Json) -> Dependency | None:
    if not job["dependencies"]:
        return None
    targets = [parse_id(d.partition("=")[2]) for d in job["dependencies"]]

    def check(state: Json, settings: Json, now: float, idx: str | None) -> int:
        def resolve(ref: Json) -> list[Json]:
            return [j["elements"]["0"] for j in state["jobs"].values() if j["number"] == ref]

        tree = {"op": "and", "args": [{"op": "done", "ref": t} for t in targets]}
        return evaluate(tree, resolve)

    return Dependency(check, per_element=False)


JOB_STYLE = JobStyle(
    defaults=DEFAULT_SETTINGS,
    environment=flux_variables,
    expand=expand,
    dependency=job_dependency,
)
