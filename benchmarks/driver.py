"""The benchmark workloads, written against the public API only.

``run.py`` starts this script once per workload and per library: with this repository's
interpreter for our ``cluster_api`` and with ``benchmarks/.venv-0.8.1/bin/python`` for the
released ``py-cluster-api==0.8.1``. The two libraries therefore never share a process, and
both run exactly the same code on exactly the same input. Only names from the public API
contract are used (``LSFExecutor``, ``LocalExecutor``, ``ClusterConfig``, ``ResourceSpec``,
``JobMonitor``, ``track``/``submit``/``submit_array``/``poll``/``cancel_all`` and the
``Executor._call`` seam); where a release lacks something the result says so.

Usage: ``python driver.py TASK --side ours|0.8.1 --out result.json [--params JSON]``
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
import traceback
import tracemalloc
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)


def _import_library(side: str) -> Any:
    if side == "ours":
        sys.path.insert(0, REPO)
    else:  # never pick up this checkout by accident
        sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != REPO]
    import cluster_api

    location = os.path.abspath(cluster_api.__file__)
    inside_repo = location.startswith(os.path.join(REPO, "cluster_api"))
    if (side == "ours") != inside_repo:
        raise SystemExit(f"side {side!r} imported the wrong cluster_api: {location}")
    return cluster_api


def library_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("py-cluster-api")
    except metadata.PackageNotFoundError:
        return "unknown"


# -- the scheduler seam ----------------------------------------------------------------
def _fake_runner_class() -> Any:
    """The test suite's ``FakeRunner``, loaded from this checkout by path: it imports only
    the standard library, so it stands behind 0.8.1's ``Executor._call`` just as well."""
    import importlib.util

    path = os.path.join(REPO, "cluster_api", "testing", "fake.py")
    spec = importlib.util.spec_from_file_location("capi_bench_fake", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module.FakeRunner


def _call_summary(argv: list[str]) -> dict[str, Any]:
    return {
        "program": os.path.basename(argv[0]) if argv else "",
        "argc": len(argv),
        "argv_bytes": sum(len(a.encode()) + 1 for a in argv),
        "longest_arg": max((len(a.encode()) for a in argv), default=0),
        "head": argv[:8],
    }


class FakeScheduler:
    """bsub/bjobs/bkill as LSF answers them, scripted on the shared ``FakeRunner``.

    Every call may sleep ``delay`` seconds, as a real command takes time; the runner
    counts how many run at once.
    """

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.bjobs_text = '{"COMMAND": "bjobs", "JOBS": 0, "RECORDS": []}'
        self.next_job_id = 5_000_000
        self.fixed_job_id: int | None = None
        self.runner = _fake_runner_class()()
        self.runner.on("bsub", self._bsub).on("bjobs", self._bjobs).on("bkill", self._bkill)

    @property
    def calls(self) -> list[dict[str, Any]]:
        return [_call_summary(call.argv) for call in self.runner.calls]

    @property
    def peak(self) -> int:
        return int(self.runner.peak)

    def reset_counters(self) -> None:
        self.runner.calls.clear()
        self.runner.peak = 0

    async def _bsub(self, argv: list[str]) -> str:
        await self._take_time()
        if self.fixed_job_id is not None:
            job_id = self.fixed_job_id
        else:
            job_id = self.next_job_id
            self.next_job_id += 1
        return f"Job <{job_id}> is submitted to queue <normal>.\n"

    async def _bjobs(self, argv: list[str]) -> str:
        await self._take_time()
        return self.bjobs_text

    async def _bkill(self, argv: list[str]) -> str:
        await self._take_time()
        ids = [a for a in argv[1:] if not a.startswith("-")]
        return "".join(f"Job <{i}> is being terminated\n" for i in ids)

    async def _take_time(self) -> None:
        if self.delay:
            await asyncio.sleep(self.delay)

    def install(self, lib: Any) -> None:
        """Answer the seam for the rest of this process, on the base class the contract
        names and on the concrete class, whichever of the two the library looks up."""
        self._seam = self.runner.patch(lib.Executor, lib.LSFExecutor)  # kept: a collected
        self._seam.__enter__()  # context manager would put the real seam back

    def by_program(self, program: str) -> list[dict[str, Any]]:
        return [_call_summary(argv) for argv in self.runner.argvs(program)]


def lsf_executor(lib: Any, **config: Any) -> Any:
    return lib.LSFExecutor(lib.ClusterConfig(executor="lsf", **config))


def summarize_statuses(statuses: dict[Any, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in statuses.values():
        key = getattr(status, "value", str(status))
        counts[key] = counts.get(key, 0) + 1
    return counts


# -- 1 + 2: poll cost and commands per poll --------------------------------------------
async def task_poll(lib: Any, params: dict[str, Any]) -> dict[str, Any]:
    import bjobs_fixture as fx

    sizes: list[int] = params["sizes"]
    reps: dict[str, int] = params["reps"]
    array_size: int = params["array_size"]
    work_dir = tempfile.mkdtemp(prefix="capi-bench-poll-")
    fake = FakeScheduler()
    fake.install(lib)
    out: dict[str, Any] = {"plain": {}, "array": None}

    async def measure(make_executor: Any, text: str, n_reps: int) -> dict[str, Any]:
        """CPU time of the first poll of freshly tracked jobs (every record changes), then
        of a second poll on the same executor with the same answer (steady state: only
        the still-active jobs are asked about and nothing new is learnt)."""
        fake.bjobs_text = text
        cpu, wall, second, calls, statuses = [], [], [], [], {}
        for rep in range(n_reps):
            ex = await make_executor()
            fake.reset_counters()
            gc.collect()
            t0, w0 = time.process_time(), time.perf_counter()
            result = await ex.poll()
            cpu.append(time.process_time() - t0)
            wall.append(time.perf_counter() - w0)
            calls = list(fake.calls)
            statuses = summarize_statuses(result)
            del result
            if rep == 0:  # steady state once per process is enough
                gc.collect()
                t0 = time.process_time()
                await ex.poll()
                second.append(time.process_time() - t0)
            del ex
        gc.collect()
        t0 = time.process_time()
        json.loads(text)
        floor = time.process_time() - t0
        return {
            "cpu_s": cpu,
            "cpu_s_median": statistics.median(cpu),
            "cpu_s_min": min(cpu),
            "wall_s_median": statistics.median(wall),
            "second_poll_cpu_s": second,
            "json_loads_cpu_s": [floor],
            "commands_per_poll": len(calls),
            "command_programs": [c["program"] for c in calls],
            "argv_bytes": max((c["argv_bytes"] for c in calls), default=0),
            "longest_arg_bytes": max((c["longest_arg"] for c in calls), default=0),
            "argv_head": calls[0]["head"] if calls else [],
            "statuses": statuses,
        }

    for n in sizes:
        text = fx.cached("plain", n)
        ids = fx.job_ids(n)

        async def make_plain(ids: list[str] = ids) -> Any:
            ex = lsf_executor(lib)
            for job_id in ids:
                ex.track(job_id)
            return ex

        row = await measure(make_plain, text, reps.get(str(n), 1))
        row["n"] = n
        row["input_bytes"] = len(text)
        row["input"] = fx.describe(text)
        out["plain"][str(n)] = row
        del text

    if array_size:
        text = fx.cached("array", array_size)

        async def make_array() -> Any:
            ex = lsf_executor(lib)
            fake.fixed_job_id = fx.ARRAY_JOB_ID
            await ex.submit_array(
                "echo $LSB_JOBINDEX",
                "sweep",
                (1, array_size),
                resources=lib.ResourceSpec(work_dir=work_dir),
            )
            fake.fixed_job_id = None
            return ex

        row = await measure(make_array, text, reps.get("array", 1))
        row["n"] = array_size
        row["input_bytes"] = len(text)
        row["input"] = fx.describe(text)
        out["array"] = row
    return out


# -- 2: scheduler load -----------------------------------------------------------------
async def task_load(lib: Any, params: dict[str, Any]) -> dict[str, Any]:
    import bjobs_fixture as fx

    work_dir = tempfile.mkdtemp(prefix="capi-bench-load-")
    delay = params["delay_s"]
    fake = FakeScheduler(delay=delay)
    fake.install(lib)
    out: dict[str, Any] = {"delay_s": delay}

    ex = lsf_executor(lib)
    out["max_concurrent_commands"] = getattr(ex.config, "max_concurrent_commands", None)
    n_submit = params["submits"]
    resources = lib.ResourceSpec(work_dir=work_dir)
    fake.reset_counters()
    w0 = time.perf_counter()
    records = await asyncio.gather(
        *(ex.submit("true", f"load{i}", resources=resources) for i in range(n_submit))
    )
    out["submit"] = {
        "n": n_submit,
        "wall_s": time.perf_counter() - w0,
        "peak_concurrent_calls": fake.peak,
        "bsub_calls": len(fake.by_program("bsub")),
        "distinct_ids": len({r.job_id for r in records}),
    }

    n_cancel = params["cancels"]
    ex = lsf_executor(lib)
    for job_id in fx.job_ids(n_cancel):
        ex.track(job_id)
    fake.reset_counters()
    w0 = time.perf_counter()
    await ex.cancel_all()
    bkills = fake.by_program("bkill")
    out["cancel_all"] = {
        "n": n_cancel,
        "wall_s": time.perf_counter() - w0,
        "peak_concurrent_calls": fake.peak,
        "bkill_calls": len(bkills),
        "total_calls": len(fake.calls),
        "max_ids_per_bkill": max((c["argc"] - 1 for c in bkills), default=0),
        "max_argv_bytes": max((c["argv_bytes"] for c in bkills), default=0),
    }
    return out


# -- 3: local executor -----------------------------------------------------------------
async def task_local(lib: Any, params: dict[str, Any]) -> dict[str, Any]:
    interval = params["poll_interval"]
    n_batch = params["jobs"]
    n_seq = params["sequential_jobs"]
    timeout = params["timeout_s"]
    root = tempfile.mkdtemp(prefix="capi-bench-local-")
    work_dir = os.path.join(root, "work")
    stamps = os.path.join(root, "stamps")
    os.makedirs(work_dir)
    os.makedirs(stamps)
    config = lib.ClusterConfig(executor="local", poll_interval=interval)
    resources = lib.ResourceSpec(work_dir=work_dir)
    callback_at: dict[str, float] = {}

    def command(tag: str) -> str:
        # `true`, then the job's last act: the time it finished, for the latency figure.
        return f"true && date +%s.%N > {stamps}/{tag}"

    def on_exit_for(tag: str) -> Any:
        def record_time(record: Any) -> None:
            callback_at[tag] = time.time()

        return record_time

    def latencies(tags: list[str]) -> list[float]:
        values = []
        for tag in tags:
            try:
                with open(os.path.join(stamps, tag)) as handle:
                    exited = float(handle.read().strip())
            except (OSError, ValueError):
                continue
            if tag in callback_at:
                values.append(callback_at[tag] - exited)
        return values

    def summary(values: list[float]) -> dict[str, Any]:
        if not values:
            return {"n": 0}
        ordered = sorted(values)
        return {
            "n": len(values),
            "median_s": statistics.median(ordered),
            "p95_s": ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))],
            "max_s": ordered[-1],
        }

    out: dict[str, Any] = {"poll_interval_s": interval}

    # Many at once: submit them all, then wait for all.
    ex = lib.LocalExecutor(config)
    monitor = lib.JobMonitor(ex, poll_interval=interval)
    await monitor.start()
    tags = [f"b{i}" for i in range(n_batch)]
    cpu0, w0 = time.process_time(), time.perf_counter()
    records = []
    for tag in tags:
        record = await ex.submit(command(tag), f"bench-{tag}", resources=resources)
        record.on_exit(on_exit_for(tag))
        records.append(record)
    submitted = time.perf_counter() - w0
    try:
        await monitor.wait_for(*records, timeout=timeout)
        timed_out = False
    except (asyncio.TimeoutError, TimeoutError):
        timed_out = True
    wall = time.perf_counter() - w0
    cpu = time.process_time() - cpu0
    await monitor.stop()
    statuses = summarize_statuses({r.job_id: r.status for r in records})
    out["batch"] = {
        "n": n_batch,
        "wall_s": wall,
        "submit_s": submitted,
        "cpu_s": cpu,
        "timed_out": timed_out,
        "statuses": statuses,
        "latency": summary(latencies(tags)),
    }

    # One at a time: the latency of a single job on an otherwise idle executor.
    ex = lib.LocalExecutor(config)
    monitor = lib.JobMonitor(ex, poll_interval=interval)
    await monitor.start()
    tags = [f"s{i}" for i in range(n_seq)]
    w0 = time.perf_counter()
    for tag in tags:
        record = await ex.submit(command(tag), f"bench-{tag}", resources=resources)
        record.on_exit(on_exit_for(tag))
        await monitor.wait_for(record, timeout=timeout)
    out["sequential"] = {
        "n": n_seq,
        "wall_s": time.perf_counter() - w0,
        "latency": summary(latencies(tags)),
    }
    await monitor.stop()
    return out


# -- 4: memory -------------------------------------------------------------------------
def _proc_status_bytes(field: str) -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024  # kB
    raise KeyError(field)


def _reset_peak_rss() -> int | None:
    """Reset this process's peak RSS (Linux: 5 > clear_refs) and return the current RSS;
    None where that is not possible. ru_maxrss would not do: it keeps the peak of the
    process that forked us."""
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")
        return _proc_status_bytes("VmRSS")
    except (OSError, KeyError):
        return None


async def task_memory(lib: Any, params: dict[str, Any]) -> dict[str, Any]:
    """Traced bytes per tracked job: bare records from ``track()`` at ``n`` jobs, then
    records filled in by one poll at ``n_polled`` jobs (tracemalloc makes that poll
    slow, so quick mode uses fewer), with the peak reached during that poll."""
    import bjobs_fixture as fx

    n, n_polled = params["n"], params["n_polled"]
    ids = fx.job_ids(max(n, n_polled))
    text = fx.cached("plain", n_polled) if n_polled else None
    fake = FakeScheduler()
    fake.install(lib)
    out: dict[str, Any] = {"n": n}

    if text is not None:
        # Resident memory first, before tracemalloc runs: tracemalloc counts bytes asked
        # for (a decoder may reserve far more than it touches), RSS the pages used.
        fake.bjobs_text = text
        ex = lsf_executor(lib)
        for job_id in ids[:n_polled]:
            ex.track(job_id)
        gc.collect()
        before = _reset_peak_rss()
        result = await ex.poll()
        if before is not None:
            out["poll_rss_growth_bytes"] = _proc_status_bytes("VmHWM") - before
        del ex, result
        gc.collect()

    gc.collect()
    tracemalloc.start()
    ex = lsf_executor(lib)
    gc.collect()
    base = tracemalloc.get_traced_memory()[0]
    for job_id in ids[:n]:
        ex.track(job_id)
    gc.collect()
    tracked = tracemalloc.get_traced_memory()[0] - base
    out.update({"tracked_bytes": tracked, "bytes_per_job_tracked": tracked / n})
    del ex
    gc.collect()

    if text is not None:
        fake.bjobs_text = text
        ex = lsf_executor(lib)
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        for job_id in ids[:n_polled]:
            ex.track(job_id)
        tracemalloc.reset_peak()
        result = await ex.poll()
        peak = tracemalloc.get_traced_memory()[1] - base
        del result
        gc.collect()
        polled = tracemalloc.get_traced_memory()[0] - base
        out.update(
            {
                "n_polled": n_polled,
                "polled_bytes": polled,
                "bytes_per_job_after_poll": polled / n_polled,
                "poll_peak_bytes": peak,
                "input_bytes": len(text),
            }
        )
    tracemalloc.stop()
    return out


# -- 5: LSF simulator round trip -------------------------------------------------------
async def task_simulator(lib: Any, params: dict[str, Any]) -> dict[str, Any]:
    os.environ.update(params["env"])
    n = params["jobs"]
    interval = params["poll_interval"]
    work_dir = params["work_dir"]
    os.makedirs(work_dir, exist_ok=True)
    ex = lsf_executor(lib, poll_interval=interval)
    monitor = lib.JobMonitor(ex, poll_interval=interval)
    await monitor.start()  # 0.8.1's wait_for does not start the monitor itself
    resources = lib.ResourceSpec(work_dir=work_dir)
    w0 = time.perf_counter()
    records = await asyncio.gather(
        *(ex.submit("true", f"sim{i}", resources=resources) for i in range(n))
    )
    submitted = time.perf_counter() - w0
    try:
        await monitor.wait_for(*records, timeout=params["timeout_s"])
        timed_out = False
    except (asyncio.TimeoutError, TimeoutError):
        timed_out = True
    wall = time.perf_counter() - w0
    await monitor.stop()
    statuses = summarize_statuses({r.job_id: r.status for r in records})
    return {
        "n": n,
        "poll_interval_s": interval,
        "submit_s": submitted,
        "wall_s": wall,
        "jobs_per_s": n / wall,
        "timed_out": timed_out,
        "statuses": statuses,
    }


TASKS = {
    "poll": task_poll,
    "load": task_load,
    "local": task_local,
    "memory": task_memory,
    "simulator": task_simulator,
}
sys.path.insert(0, HERE)
from throughput import TASKS as THROUGHPUT_TASKS  # noqa: E402

TASKS.update(THROUGHPUT_TASKS)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("task", choices=sorted(TASKS))
    parser.add_argument("--side", required=True, choices=["ours", "0.8.1"])
    parser.add_argument("--out", required=True)
    parser.add_argument("--params", default="{}")
    args = parser.parse_args()
    lib = _import_library(args.side)
    # Every scratch folder of the workloads goes under one root, removed at the end.
    scratch = tempfile.mkdtemp(prefix=f"capi-bench-{args.task}-")
    tempfile.tempdir = scratch
    result: dict[str, Any] = {
        "side": args.side,
        "version": library_version(),
        "python": sys.version.split()[0],
    }
    try:
        result["result"] = asyncio.run(TASKS[args.task](lib, json.loads(args.params)))
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc()
    with open(args.out, "w") as handle:
        json.dump(result, handle, indent=1)
    tempfile.tempdir = None
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
