"""How long the simulators take to run many tiny jobs (issue #17): the job runner, not
the library, must not be what a throughput benchmark measures.

Two shapes, each N jobs of ``true`` through a fresh simulated cluster:

- ``array``: ONE submission of an N-element array (``bsub -J "a[1-N]"`` / ``qsub -J 1-N``),
  one runner supervising every element;
- ``separate``: N submissions of one job each, one runner per job.

Printed per round: the seconds the submissions took, and from the first submission until
the state shows every element DONE; then the median of the rounds and the load average.
It uses only the simulators' public handles, so it runs against an older checkout too::

    .venv/bin/python benchmarks/sim_array.py --shape array -n 1000
    PYTHONPATH=/work/wt/base .venv/bin/python benchmarks/sim_array.py --shape array -n 1000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Any

from cluster_api.testing import install_pbs_simulator, install_simulator

SIMULATORS = ("lsf", "pbs")


def install(simulator: str, state_dir: str) -> Any:
    return install_simulator(state_dir) if simulator == "lsf" else install_pbs_simulator(state_dir)


def submit_array(sim: Any, simulator: str, n: int) -> None:
    # From the state folder: a PBS job's output goes to the folder it was submitted from.
    if simulator == "lsf":
        result = sim.run("bsub", "-J", f"a[1-{n}]", input="true\n", cwd=sim.state_dir)
    else:
        result = sim.run("qsub", "-J", f"1-{n}", input="true\n", cwd=sim.state_dir)
    if result.returncode != 0:
        raise SystemExit(f"submit failed: {result.stderr.strip()}")


def submit_one(sim: Any, simulator: str) -> None:
    command = "bsub" if simulator == "lsf" else "qsub"
    result = sim.run(command, input="true\n", cwd=sim.state_dir)
    if result.returncode != 0:
        raise SystemExit(f"submit failed: {result.stderr.strip()}")


def elements_done(sim: Any) -> tuple[int, int]:
    """(elements DONE, elements in all) as the state file holds them now."""
    done = total = 0
    for job in sim.jobs().values():
        for element in job["elements"].values():
            total += 1
            done += element["stat"] == "DONE"
    return done, total


def one_round(simulator: str, shape: str, n: int, timeout: float) -> tuple[float, float]:
    """(seconds submitting, seconds from the first submission to all DONE)."""
    with tempfile.TemporaryDirectory(prefix="sim_array_") as state_dir:
        sim = install(simulator, state_dir)
        try:
            began = time.perf_counter()
            if shape == "array":
                submit_array(sim, simulator, n)
            else:
                for _ in range(n):
                    submit_one(sim, simulator)
            submitted = time.perf_counter() - began
            while True:
                done, total = elements_done(sim)
                if total == n and done == n:
                    break
                if time.perf_counter() - began > timeout:
                    raise SystemExit(f"timeout: {done}/{n} DONE after {timeout} s")
                time.sleep(0.05)
            return submitted, time.perf_counter() - began
        finally:
            sim.kill_everything()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000, help="jobs or array elements (1000)")
    parser.add_argument("--shape", choices=("array", "separate"), default="array")
    parser.add_argument("--simulator", choices=SIMULATORS, default="lsf")
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per round")
    args = parser.parse_args()
    import cluster_api

    checkout = os.path.dirname(os.path.dirname(os.path.abspath(cluster_api.__file__)))
    print(f"# {args.simulator} {args.shape} N={args.n} code={checkout}", flush=True)
    totals = []
    for number in range(1, args.rounds + 1):
        submitted, total = one_round(args.simulator, args.shape, args.n, args.timeout)
        totals.append(total)
        print(f"round {number}: submit {submitted:.2f} s, all DONE {total:.2f} s", flush=True)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"median all DONE {statistics.median(totals):.2f} s (load average {load})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
