"""Throughput and latency (issue #17): many tasks in one submission, short jobs noticed
at once, and what a long job costs the scheduler in status queries.

Three workloads, each run by ``driver.py`` once per library (``run.py --only
throughput``):

- ``many``: N tasks through the LSF simulator, submit to all-DONE. Ours hands them to
  ``submit_many`` (one array per chunk); 0.8.1, which has no such call, gathers N
  ``submit()`` calls. The simulator counts the bsub calls and the commands in flight.
- ``latency``: J jobs of ``sleep 2`` at once through the simulator with the default
  ``poll_interval`` (10 s); for each, the seconds from the job's end (the time its last
  command wrote) to its ``on_exit`` callback; the median.
- ``long_job``: the status commands a 10-minute job costs with default settings. Time
  is compressed (every duration divided by ``scale``: the interval, the floor, the job),
  the scheduler is the driver's fake ``bjobs``, and its calls are counted.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from typing import Any

SETTINGS = {
    "quick": {"tasks": 1000, "latency_jobs": 20, "scale": 100.0, "timeout_s": 360},
    "full": {"tasks": 1000, "latency_jobs": 20, "scale": 100.0, "timeout_s": 360},
}
#: A driver process still running after this is stopped (0.8.1's 1,000 gathered
#: submits can leave it waiting for ever on this 2-core machine).
TIMEOUT_S = 420
TARGETS = {"speedup": 20.0, "bsub_calls": 2, "in_flight": 8, "latency_s": 1.5, "queries": 70}


# -- the workloads (in driver.py's process, one library each) ----------------------------
async def task_many(lib: Any, params: dict[str, Any]) -> dict[str, Any]:
    os.environ.update(params["env"])
    n, work_dir = params["tasks"], params["work_dir"]
    os.makedirs(work_dir, exist_ok=True)
    ex = lib.LSFExecutor(lib.ClusterConfig(executor="lsf", poll_interval=1.0))
    monitor = lib.JobMonitor(ex, poll_interval=1.0)
    await monitor.start()
    resources = lib.ResourceSpec(work_dir=work_dir)
    began = time.perf_counter()
    if hasattr(ex, "submit_many"):
        records = await ex.submit_many(["true"] * n, "many", resources=resources)
    else:
        records = await asyncio.gather(
            *(ex.submit("true", f"many{i}", resources=resources) for i in range(n))
        )
    submitted = time.perf_counter() - began
    try:
        await monitor.wait_for(*records, timeout=params["timeout_s"])
        timed_out = False
    except (asyncio.TimeoutError, TimeoutError):
        timed_out = True
    wall = time.perf_counter() - began
    await monitor.stop()
    done = sum(1 for r in records if str(getattr(r.status, "value", "")).upper() == "DONE")
    return {"n": n, "submit_s": submitted, "wall_s": wall, "done": done, "timed_out": timed_out}


async def task_latency(lib: Any, params: dict[str, Any]) -> dict[str, Any]:
    os.environ.update(params["env"])
    n, work_dir = params["latency_jobs"], params["work_dir"]
    os.makedirs(work_dir, exist_ok=True)
    ex = lib.LSFExecutor(lib.ClusterConfig(executor="lsf"))  # default poll_interval
    monitor = lib.JobMonitor(ex)
    await monitor.start()
    resources = lib.ResourceSpec(work_dir=work_dir)
    seen: dict[int, float] = {}

    def noted(index: int) -> Any:
        return lambda record: seen.setdefault(index, time.time())

    records = await asyncio.gather(
        *(
            ex.submit(f"sleep 2; date +%s.%N > {work_dir}/end.{i}", f"lat{i}", resources=resources)
            for i in range(n)
        )
    )
    for i, record in enumerate(records):
        record.on_exit(noted(i))
    await monitor.wait_for(*records, timeout=params["timeout_s"])
    await monitor.stop()
    latencies = []
    for i in range(n):
        with open(f"{work_dir}/end.{i}") as handle:
            latencies.append(seen[i] - float(handle.read()))
    return {
        "n": n,
        "poll_interval_s": ex.config.poll_interval,
        "median_s": statistics.median(latencies),
        "max_s": max(latencies),
    }


async def task_long_job(lib: Any, params: dict[str, Any]) -> dict[str, Any]:
    from driver import FakeScheduler

    scale = params["scale"]
    fake = FakeScheduler()
    fake.install(lib)
    defaults = lib.ClusterConfig(executor="lsf")
    config: dict[str, Any] = {"poll_interval": defaults.poll_interval / scale}
    if hasattr(defaults, "poll_floor"):
        config["poll_floor"] = defaults.poll_floor / scale
    ex = lib.LSFExecutor(lib.ClusterConfig(executor="lsf", **config))
    work_dir = tempfile.mkdtemp()
    record = await ex.submit("sleep 600", "long", resources=lib.ResourceSpec(work_dir=work_dir))
    ends = 600.0 / scale
    began = time.perf_counter()

    def answer(stat: str) -> str:
        row = {"JOBID": record.job_id, "JOBINDEX": "0", "JOB_NAME": record.name, "STAT": stat}
        for key in ("EXIT_CODE", "EXEC_HOST", "MAX_MEM", "SUBMIT_TIME", "START_TIME"):
            row[key] = ""
        row.update({"FINISH_TIME": "", "EXIT_REASON": ""})
        return json.dumps({"COMMAND": "bjobs", "JOBS": 1, "RECORDS": [row]})

    fake.bjobs_text = answer("RUN")
    monitor = lib.JobMonitor(ex, poll_interval=config["poll_interval"])
    await monitor.start()
    while time.perf_counter() - began < ends:
        await asyncio.sleep(0.005)
    fake.bjobs_text = answer("DONE")
    await monitor.wait_for(record, timeout=30)
    await monitor.stop()
    return {
        "scale": scale,
        "job_s": 600.0,
        "status_commands": len(fake.by_program("bjobs")),
        "settings": config,
    }


TASKS = {
    "throughput_many": task_many,
    "throughput_latency": task_latency,
    "throughput_long_job": task_long_job,
}


# -- the runner side (run.py) ------------------------------------------------------------
WORKLOADS = ("many", "latency", "long_job")


def run(
    params: dict[str, Any],
    sides: tuple[str, ...],
    run_driver: Any,
    workloads: tuple[str, ...] = WORKLOADS,
) -> dict[str, Any]:
    """The workloads on every side, each simulated one with a cluster of its own."""
    from cluster_api.testing import install_simulator

    results: dict[str, Any] = {}
    root = tempfile.mkdtemp(prefix="capi-bench-throughput-")
    for workload in workloads:
        for side in sides:
            side_params = dict(params)
            sim = None
            if workload != "long_job":
                sim = install_simulator(os.path.join(root, workload, side, "state"))
                side_params.update(env=sim.env, work_dir=os.path.join(root, workload, side, "w"))
            data = run_driver(f"throughput_{workload}", side, side_params)
            if sim is not None:
                data["simulator_view"] = {
                    "bsub_calls": len(sim.calls("bsub")),
                    "in_flight": sim.max_concurrency(None),
                }
                sim.kill_everything()
            results.setdefault(workload, {})[side] = data
    shutil.rmtree(root, ignore_errors=True)
    return results


def add_rows(table: Any, raw: dict[str, Any], baseline: str) -> None:
    """The rows of issue #17, with their targets."""

    def get(workload: str, side: str, *path: str) -> Any:
        data: Any = raw.get(workload, {}).get(side, {})
        for key in path:
            data = data.get(key) if isinstance(data, dict) else None
        return data

    n = get("many", "ours", "result", "n") or "N"
    table.section(f"6. Throughput and latency (issue #17): {n} tasks, short jobs, a long job")
    wall_ours, wall_base = (get("many", s, "result", "wall_s") for s in ("ours", baseline))
    note = "ours: submit_many; 0.8.1: asyncio.gather of submit() (it has no submit_many)"
    base_shown: Any = wall_base
    failed_after = get("many", baseline, "process_wall_s")
    if wall_base is None and get("many", baseline, "error") and failed_after:
        # it gave up: its time is at least what it spent before failing
        wall_base, base_shown = failed_after, f"failed after {failed_after:.0f}"
        note += f"; 0.8.1 failed after {failed_after:.0f} s, so the ratio is a lower bound"
    speedup = wall_base / wall_ours if wall_ours and wall_base else None
    done = get("many", "ours", "result", "done")
    table.add(
        "many_wall",
        f"{n} tasks through the LSF simulator, submit to all DONE",
        wall_ours,
        base_shown,
        "s",
        target=f">= {TARGETS['speedup']:g}x faster",
        ok=None if speedup is None else speedup >= TARGETS["speedup"] and done == n,
        note=note,
    )
    if speedup is not None:
        table.add("many_speedup", "  how many times faster", speedup, None, "x", fmt="{:.1f}")
    table.add(
        "many_submit",
        "  of which submitting",
        *(get("many", s, "result", "submit_s") for s in ("ours", baseline)),
        "s",
        fmt="{:.2f}",
        note="the rest is the simulator running the jobs, the same for both",
    )
    bsubs = [get("many", s, "simulator_view", "bsub_calls") for s in ("ours", baseline)]
    table.add(
        "many_bsub",
        "  bsub calls",
        *bsubs,
        target=f"<= {TARGETS['bsub_calls']}",
        ok=None if bsubs[0] is None else bsubs[0] <= TARGETS["bsub_calls"],
        fmt="{:.0f}",
    )
    flight = [get("many", s, "simulator_view", "in_flight") for s in ("ours", baseline)]
    table.add(
        "many_in_flight",
        "  scheduler commands in flight at most (simulator's log)",
        *flight,
        target=f"<= {TARGETS['in_flight']}",
        ok=None if flight[0] is None else flight[0] <= TARGETS["in_flight"],
        fmt="{:.0f}",
    )
    jobs = get("latency", "ours", "result", "n")
    latency = [get("latency", s, "result", "median_s") for s in ("ours", baseline)]
    table.add(
        "latency",
        f"end of a 2 s job to its callback, poll_interval 10 s, median of {jobs}",
        *latency,
        "s",
        target=f"< {TARGETS['latency_s']:g} s",
        ok=None if latency[0] is None else latency[0] < TARGETS["latency_s"],
        fmt="{:.2f}",
        note="the jobs run at once; end = the time the job's last command wrote",
    )
    scale = get("long_job", "ours", "result", "scale")
    queries = [get("long_job", s, "result", "status_commands") for s in ("ours", baseline)]
    table.add(
        "long_job_queries",
        "status commands during a 10-minute job, default settings",
        *queries,
        target=f"<= {TARGETS['queries']}",
        ok=None if queries[0] is None else queries[0] <= TARGETS["queries"],
        fmt="{:.0f}",
        note=f"time compressed {scale:g}x (interval, floor and job alike), fake bjobs",
    )
    for workload, sides in raw.items():
        for side, data in sides.items():
            if data.get("error"):
                table.add(
                    f"error_{workload}_{side}",
                    f"{workload} [{side}] failed",
                    data["error"][:60],
                    None,
                )


if __name__ == "__main__":  # run.py --only throughput is the way in
    sys.exit("run: python benchmarks/run.py --only throughput [--quick]")
