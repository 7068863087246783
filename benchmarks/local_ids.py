"""Stress of issue #11.6: several processes submit local jobs at the same instant into one
work folder and one journal. Counts id collisions, log files written by more than one
job, output lines lost and journal rows missing.

    python benchmarks/local_ids.py --trials 3 --processes 2 --jobs 300
    PYTHONPATH=/work/wt/base python benchmarks/local_ids.py ...   # the code before the fix

Each worker waits for its own jobs to end before it exits (the code before the fix ran
local jobs from the submitting process).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path


async def worker(folder: str, name: str, jobs: int, barrier: str) -> None:
    from cluster_api import ClusterConfig, JobMonitor, LocalExecutor, ResourceSpec

    executor = LocalExecutor(ClusterConfig(log_directory=folder, journal=True, poll_interval=0.1))
    resources = ResourceSpec(work_dir=folder)
    while not os.path.exists(barrier):
        time.sleep(0.0005)
    records = [
        await executor.submit(f"echo {name}-{i}", f"{name}-{i}", resources=resources)
        for i in range(jobs)
    ]
    async with JobMonitor(executor) as monitor:
        await monitor.wait_for(*records, timeout=600)
    print(json.dumps({r.job_id: f"{name}-{i}" for i, r in enumerate(records)}))


def trial(processes: int, jobs: int) -> dict[str, int]:
    with tempfile.TemporaryDirectory(prefix="local-ids-") as folder:
        barrier = os.path.join(folder, "go")
        argv = [sys.executable, __file__, "--worker", folder, "--jobs", str(jobs), "--barrier"]
        procs = [
            subprocess.Popen([*argv, barrier, "--name", f"w{n}"], stdout=subprocess.PIPE, text=True)
            for n in range(processes)
        ]
        time.sleep(1.5)  # every worker has imported the library and waits at the barrier
        Path(barrier).touch()
        answers = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        owners = collections.Counter(job_id for answer in answers for job_id in answer)
        tokens = {token for answer in answers for token in answer.values()}
        shared = lost = 0
        seen: set[str] = set()
        for log in Path(folder).glob("stdout.*.log"):
            lines = set(log.read_text().split())
            seen |= lines
            shared += len(lines) > 1
        lost = len(tokens - seen)
        with sqlite3.connect(os.path.join(folder, "cluster_api_journal.sqlite3")) as db:
            rows = db.execute("SELECT COUNT(*) FROM jobs").fetchone()[0]
        return {
            "jobs": len(tokens),
            "id_collisions": sum(1 for n in owners.values() if n > 1),
            "shared_stdout_files": shared,
            "lost_output": lost,
            "journal_rows_missing": len(tokens) - rows,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--jobs", type=int, default=300, help="jobs per process")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--barrier", help=argparse.SUPPRESS)
    parser.add_argument("--name", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        asyncio.run(worker(args.worker, args.name, args.jobs, args.barrier))
        return
    totals: collections.Counter[str] = collections.Counter()
    for number in range(1, args.trials + 1):
        result = trial(args.processes, args.jobs)
        totals.update(result)
        print(f"trial {number}: " + ", ".join(f"{k}={v}" for k, v in result.items()))
    print(f"total over {args.trials} trials: " + ", ".join(f"{k}={v}" for k, v in totals.items()))


if __name__ == "__main__":
    main()
