"""cProfile of one ``LSFExecutor.poll()`` (this checkout) on realistic ``bjobs -json`` output.

    python benchmarks/profile_poll.py            # 10k and 100k plain jobs, 10k-element array
    python benchmarks/profile_poll.py 10000 --top 30 --sort cumulative

Prints the top functions and writes each full listing to
``benchmarks/results/profile_poll_<case>.txt``. Only our library is profiled here: the
0.8.1 side is measured, never profiled (it is a black box).
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import cProfile
import gc
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))
sys.path.insert(0, HERE)

import bjobs_fixture as fx  # noqa: E402
from driver import FakeScheduler  # noqa: E402

import cluster_api  # noqa: E402


async def _prepared(case: str, fake: FakeScheduler) -> tuple[object, int]:
    if case == "array":
        n = 10_000
        ex = cluster_api.LSFExecutor(cluster_api.ClusterConfig(executor="lsf"))
        fake.fixed_job_id = fx.ARRAY_JOB_ID
        await ex.submit_array(
            "echo $LSB_JOBINDEX",
            "sweep",
            (1, n),
            resources=cluster_api.ResourceSpec(work_dir=tempfile.mkdtemp(prefix="capi-prof-")),
        )
        fake.bjobs_text = fx.cached("array", n)
        return ex, n
    n = int(case)
    ex = cluster_api.LSFExecutor(cluster_api.ClusterConfig(executor="lsf"))
    for job_id in fx.job_ids(n):
        ex.track(job_id)
    fake.bjobs_text = fx.cached("plain", n)
    return ex, n


async def profile_case(case: str, top: int, sort: str) -> dict[str, float]:
    fake = FakeScheduler()
    fake.install(cluster_api)
    ex, n = await _prepared(case, fake)
    # The floor: what the standard library needs just to decode the same text.
    t0 = time.process_time()
    json.loads(fake.bjobs_text)
    floor = time.process_time() - t0
    gc.collect()
    profiler = cProfile.Profile()
    t0 = time.process_time()
    profiler.enable()
    await ex.poll()  # type: ignore[attr-defined]
    profiler.disable()
    profiled = time.process_time() - t0
    ex2, _ = await _prepared(case, fake)
    gc.collect()
    t0 = time.process_time()
    await ex2.poll()  # type: ignore[attr-defined]
    plain = time.process_time() - t0

    stream = io.StringIO()
    stats = pstats.Stats(profiler, stream=stream).strip_dirs().sort_stats(sort)
    stats.print_stats(top)
    text = stream.getvalue()
    head = (
        f"case {case}: n={n}; poll CPU {plain * 1e3:.1f} ms unprofiled "
        f"({profiled * 1e3:.1f} ms under cProfile); json.loads alone {floor * 1e3:.1f} ms\n"
    )
    print(head + text)
    full = io.StringIO()
    pstats.Stats(profiler, stream=full).sort_stats(sort).print_stats()
    os.makedirs(os.path.join(HERE, "results"), exist_ok=True)
    with open(os.path.join(HERE, "results", f"profile_poll_{case}.txt"), "w") as handle:
        handle.write(head + full.getvalue())
    return {"poll_s": plain, "json_loads_s": floor}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("cases", nargs="*", default=["10000", "100000", "array"])
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--sort", default="tottime", choices=["tottime", "cumulative"])
    args = parser.parse_args()
    scratch = tempfile.mkdtemp(prefix="capi-prof-")
    tempfile.tempdir = scratch
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    for case in args.cases:
        asyncio.run(profile_case(case, args.top, args.sort))


if __name__ == "__main__":
    main()
