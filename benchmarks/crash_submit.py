"""Stress of the submit path (issue #11 items 3 and 4): does any job get lost or doubled?

Two scenarios against the LSF simulator, each trial on a fresh simulated cluster:

* ``crash``: a child process submits N jobs (journal on) while every bsub answers late;
  it is SIGKILLed at a random moment mid-submit, its bsubs in flight finish anyway (as
  real ones do), the jobs run to their end, then a fresh process calls ``reconnect()``.
  Lost: jobs the simulator has that the reconnected process does not know.
* ``lookup``: a child submits jobs one by one while each bsub answers only after the
  client's timeout and the token lookups that follow fail first (``LSF is down``, empty,
  garbage). Lost: jobs the simulator has that no returned record holds.

Duplicated, in both: simulator jobs beyond one per submitted name. The simulator comes
from this checkout; the library under test is whatever ``cluster_api`` the children
import, so ``PYTHONPATH=/work/wt/base python benchmarks/crash_submit.py`` measures the
base code with the same faults. Bounded: about a minute with the defaults.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # the simulator (and its knobs) from this checkout

from cluster_api.testing import LSFSimulator, install_simulator  # noqa: E402

# Library side. The retry waits are shortened where the library has them, so a trial
# takes seconds; the fault sequence is the same either way.
PREAMBLE = """
import asyncio, json, sys
import cluster_api, cluster_api.core as core, cluster_api.executors.lsf as lsf
from cluster_api import ResourceSpec, SubmitError, create_executor
lsf.SUBMIT_RETRY_DELAY = 0.2
if hasattr(lsf, "LSF"):
    lsf.LSF.submit_retry_delay = 0.2
if hasattr(core, "LOOKUP_RETRY_DELAYS"):
    core.LOOKUP_RETRY_DELAYS = (0.2, 0.2, 0.2)
try:
    import cluster_api.reconnect as reconnect
    reconnect.LOOKUP_RETRY_DELAYS = (0.2, 0.2, 0.2)
except ImportError:
    pass
logs, work = sys.argv[1], sys.argv[2]
"""
SUBMIT_ALL = """
async def main():
    executor = create_executor(executor="lsf", log_directory=logs, journal=True)
    res = ResourceSpec(work_dir=work)
    await asyncio.gather(
        *(executor.submit("true", f"job{i}", resources=res) for i in range(int(sys.argv[3])))
    )
asyncio.run(main())
"""
RECONNECT = """
async def main():
    executor = create_executor(executor="lsf", log_directory=logs, journal=True)
    found = await executor.reconnect()
    print(json.dumps({"library": cluster_api.__file__, "ids": [r.job_id for r in found]}))
asyncio.run(main())
"""
SUBMIT_ONE_BY_ONE = """
async def main():
    executor = create_executor(
        executor="lsf", log_directory=logs, command_timeout=1.0, journal=True
    )
    res = ResourceSpec(work_dir=work)
    ids, errors = [], 0
    for i in range(int(sys.argv[3])):
        try:
            ids.append((await executor.submit("true", f"job{i}", resources=res)).job_id)
        except SubmitError:
            errors += 1
    print(json.dumps({"library": cluster_api.__file__, "ids": ids, "errors": errors}))
asyncio.run(main())
"""
LOOKUP_FAULTS = ("down", "empty", "garbage")


def child(sim: LSFSimulator, code: str, *args: str) -> subprocess.Popen[str]:
    """A library-side process; it runs in the simulator's folder, so its ``sys.path``
    starts with nothing of this checkout (only ``PYTHONPATH`` picks the library)."""
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(PREAMBLE + code), *args],
        env={**os.environ, **sim.env},
        cwd=sim.state_dir,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def answer(process: subprocess.Popen[str]) -> dict[str, Any]:
    out, err = process.communicate(timeout=120)
    lines = out.strip().splitlines()
    if not lines:
        raise RuntimeError(f"a library-side process printed nothing:\n{err[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def duplicates(sim: LSFSimulator) -> int:
    names = Counter(job["name"] for job in sim.jobs().values())
    return sum(count - 1 for count in names.values())


def crash_trial(root: Path, rng: random.Random, jobs: int) -> dict[str, Any]:
    sim = install_simulator(root / "lsfsim")
    logs, work = root / "logs", root / "work"
    work.mkdir()
    try:
        sim.bsub_answer_delay(rng.uniform(0.3, 1.2))
        submitter = child(sim, SUBMIT_ALL, str(logs), str(work), str(jobs))
        deadline = time.monotonic() + 60
        while not sim.calls("bsub") and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 1.5))  # somewhere mid-submit
        os.kill(submitter.pid, signal.SIGKILL)
        submitter.wait()
        while any(c.end is None for c in sim.calls("bsub")) and time.monotonic() < deadline:
            time.sleep(0.02)
        sim.bsub_answer_delay(0)
        sim.wait_idle(timeout=60)
        result = answer(child(sim, RECONNECT, str(logs), str(work)))
        on_scheduler = set(sim.jobs())
        known = Counter(result.get("ids", []))
        return {
            "library": result.get("library"),
            "jobs": len(on_scheduler),
            "lost": len(on_scheduler - set(known)),
            "duplicated": duplicates(sim) + sum(c - 1 for c in known.values()),
        }
    finally:
        sim.kill_everything()


def lookup_trial(root: Path, rng: random.Random, jobs: int) -> dict[str, Any]:
    sim = install_simulator(root / "lsfsim")
    logs, work = root / "logs", root / "work"
    work.mkdir()
    try:
        sim.bsub_hang_after_submit(2.0, times=jobs)
        for _ in range(jobs):  # each lost answer meets one to three failed lookups
            sim.lookup_faults(*rng.choices(LOOKUP_FAULTS, k=rng.randint(1, 3)), "ok")
        result = answer(child(sim, SUBMIT_ONE_BY_ONE, str(logs), str(work), str(jobs)))
        sim.wait_idle(timeout=60)
        # A job whose submit could not be settled must still be found by a reconnect.
        later = answer(child(sim, RECONNECT, str(logs), str(work)))
        on_scheduler = set(sim.jobs())
        known = {*result.get("ids", []), *later.get("ids", [])}
        return {
            "library": result.get("library"),
            "jobs": len(on_scheduler),
            "lost": len(on_scheduler - known),
            "duplicated": duplicates(sim),
            "submit_errors": result.get("errors", 0),
        }
    finally:
        sim.kill_everything()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--crash-trials", type=int, default=10)
    parser.add_argument("--crash-jobs", type=int, default=12)
    parser.add_argument("--lookup-trials", type=int, default=4)
    parser.add_argument("--lookup-jobs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args()
    rng = random.Random(args.seed)
    scenarios = (
        ("crash", crash_trial, args.crash_trials, args.crash_jobs),
        ("lookup", lookup_trial, args.lookup_trials, args.lookup_jobs),
    )
    library = None
    for name, trial, trials, jobs in scenarios:
        totals: Counter[str] = Counter()
        started = time.monotonic()
        for number in range(trials):
            with tempfile.TemporaryDirectory(prefix=f"crash_submit_{name}_") as tmp:
                outcome = trial(Path(tmp), rng, jobs)
            library = outcome.pop("library") or library
            totals.update(outcome)
            print(f"  {name} trial {number + 1}: {outcome}", file=sys.stderr)
        figures = ", ".join(f"{key} {value}" for key, value in sorted(totals.items()))
        took = time.monotonic() - started
        print(f"{name}: trials {trials}, {figures} ({took:.0f}s)")
    print(f"library: {library}")


if __name__ == "__main__":
    main()
