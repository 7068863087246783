"""Performance at scale, measured side by side with the previous release (issue #6).

    python benchmarks/run.py            # full run
    python benchmarks/run.py --quick    # under two minutes, every figure
    python benchmarks/run.py --only poll,load --quick

Every workload runs in ``driver.py``, in a fresh process per library: this checkout's
``cluster_api`` with the interpreter running this script, and ``py-cluster-api==0.8.1``
from PyPI with ``benchmarks/.venv-0.8.1/bin/python`` (created on first use, then reused).
Prints a table, writes ``benchmarks/results/latest.json`` and draws
``benchmarks/results/poll_cost.png`` (matplotlib: ``pip install -e '.[bench]'``).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
RESULTS = os.path.join(HERE, "results")
DRIVER = os.path.join(HERE, "driver.py")
BASELINE_VERSION = "0.8.1"
BASELINE_VENV = os.path.join(HERE, f".venv-{BASELINE_VERSION}")
SIDES = ("ours", BASELINE_VERSION)
WORKLOADS = ("poll", "load", "local", "memory", "simulator", "throughput")

sys.path.insert(0, HERE)
import bjobs_fixture as fx  # noqa: E402
import throughput  # noqa: E402

# Repetitions and sizes. Quick mode keeps every figure but repeats less.
SETTINGS: dict[str, dict[str, Any]] = {
    "quick": {
        "poll": {
            "sizes": [1000, 10000, 100000],
            "rounds": 2,
            "reps": {"1000": 3, "10000": 2, "100000": 1, "array": 2},
            "array_size": 10000,
        },
        "load": {"delay_s": 0.005, "submits": 1000, "cancels": 10000},
        "local": {"poll_interval": 1.0, "jobs": 1000, "sequential_jobs": 5, "timeout_s": 120},
        "memory": {"n": 100000, "n_polled": 10000},
        "simulator": {"jobs": 20, "poll_interval": 0.5, "timeout_s": 120},
        "throughput": throughput.SETTINGS["quick"],
    },
    "full": {
        "poll": {
            "sizes": [1000, 3000, 10000, 30000, 100000],
            "rounds": 3,
            "reps": {"1000": 5, "3000": 3, "10000": 3, "30000": 2, "100000": 1, "array": 3},
            "array_size": 10000,
        },
        "load": {"delay_s": 0.005, "submits": 1000, "cancels": 10000},
        "local": {"poll_interval": 1.0, "jobs": 1000, "sequential_jobs": 20, "timeout_s": 300},
        "memory": {"n": 100000, "n_polled": 100000},
        "simulator": {"jobs": 100, "poll_interval": 0.5, "timeout_s": 600},
        "throughput": throughput.SETTINGS["full"],
    },
}
TASK_TIMEOUT_S = {"poll": 900, "load": 300, "local": 700, "memory": 900, "simulator": 900}
TASK_TIMEOUT_S.update(dict.fromkeys(throughput.TASKS, throughput.TIMEOUT_S))


# -- environment -------------------------------------------------------------------------
def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def machine_info() -> dict[str, Any]:
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as handle:
            for line in handle:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gib = None
    try:
        with open("/proc/meminfo") as handle:
            for line in handle:
                if line.startswith("MemTotal:"):
                    mem_gib = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    try:
        nproc = len(os.sched_getaffinity(0))
    except AttributeError:
        nproc = os.cpu_count()
    return {
        "nproc": nproc,
        "cpu_model": model,
        "memory_gib": mem_gib,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "json_decoder": json_decoder(),
        "load_avg_at_start": [round(x, 2) for x in os.getloadavg()],
    }


def git_state() -> dict[str, Any]:
    def git(*args: str) -> str:
        try:
            return subprocess.run(
                ["git", *args], cwd=REPO, capture_output=True, text=True, timeout=10
            ).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""

    return {"commit": git("rev-parse", "HEAD"), "dirty": bool(git("status", "--porcelain"))}


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env["PYTHONHASHSEED"] = "0"
    return env


def baseline_python() -> str:
    return os.path.join(BASELINE_VENV, "bin", "python")


def json_decoder() -> str:
    """What this checkout decodes ``bjobs -json`` with in this interpreter (the drivers
    run with the same one): orjson when installed, else the standard library."""
    try:
        from importlib import metadata

        return f"orjson {metadata.version('orjson')}"
    except metadata.PackageNotFoundError:
        return "the standard library's json (orjson is not installed)"


def installed_version(python: str) -> str | None:
    try:
        out = subprocess.run(
            [
                python,
                "-c",
                "import importlib.metadata as m; print(m.version('py-cluster-api'))",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            env=child_env(),
            cwd=HERE,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def ensure_baseline() -> dict[str, Any]:
    """Create ``benchmarks/.venv-0.8.1`` with the release from PyPI unless it is there."""
    t0 = time.perf_counter()
    if installed_version(baseline_python()) == BASELINE_VERSION:
        return {"venv": BASELINE_VENV, "created": False, "seconds": time.perf_counter() - t0}
    log(f"creating {BASELINE_VENV} with py-cluster-api=={BASELINE_VERSION} from PyPI ...")
    shutil.rmtree(BASELINE_VENV, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "venv", BASELINE_VENV], check=True)
    subprocess.run(
        [
            baseline_python(),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            f"py-cluster-api=={BASELINE_VERSION}",
        ],
        check=True,
        env=child_env(),
    )
    version = installed_version(baseline_python())
    if version != BASELINE_VERSION:
        raise RuntimeError(
            f"{BASELINE_VENV} holds py-cluster-api {version}, not {BASELINE_VERSION}"
        )
    return {"venv": BASELINE_VENV, "created": True, "seconds": time.perf_counter() - t0}


# -- running the workloads ---------------------------------------------------------------
def run_driver(task: str, side: str, params: dict[str, Any]) -> dict[str, Any]:
    python = sys.executable if side == "ours" else baseline_python()
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as handle:
        out_path = handle.name
    cmd = [python, DRIVER, task, "--side", side, "--out", out_path, "--params", json.dumps(params)]
    t0 = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=TASK_TIMEOUT_S[task],
            env=child_env(),
            cwd=HERE,
        )
        with open(out_path) as result_file:
            data = json.load(result_file)
        if proc.returncode != 0:
            data.setdefault("error", f"driver exited {proc.returncode}: {proc.stderr[-500:]}")
    except subprocess.TimeoutExpired:
        data = {"error": f"timed out after {TASK_TIMEOUT_S[task]} s"}
    except (OSError, ValueError) as exc:
        data = {"error": f"driver failed: {exc}"}
    finally:
        if os.path.exists(out_path):
            os.unlink(out_path)
    data["process_wall_s"] = time.perf_counter() - t0
    if "error" in data:
        log(f"  {task} [{side}] ERROR {data['error']}")
        if data.get("traceback"):
            log(data["traceback"])
    else:
        log(f"  {task} [{side}] {data['process_wall_s']:.1f} s")
    return data


def run_simulator(params: dict[str, Any], sides: tuple[str, ...]) -> dict[str, Any]:
    """Both libraries against the LSF simulator of this checkout (its own cluster each)."""
    try:
        sys.path.insert(0, REPO)
        from cluster_api.testing import install_simulator
    except Exception as exc:  # the simulator is being written alongside
        return {"skipped": f"simulator unavailable ({type(exc).__name__}: {exc})"}
    results: dict[str, Any] = {}
    root = tempfile.mkdtemp(prefix="capi-bench-sim-")
    for side in sides:
        sim = install_simulator(os.path.join(root, side, "state"))
        side_params = {
            **params,
            "env": sim.env,
            "work_dir": os.path.join(root, side, "work"),
        }
        data = run_driver("simulator", side, side_params)
        try:
            data["simulator_view"] = {
                command: {
                    "calls": len(sim.calls(command)),
                    "max_concurrency": sim.max_concurrency(command),
                }
                for command in ("bsub", "bjobs", "bkill")
            }
        except Exception as exc:
            data["simulator_view"] = {"error": str(exc)}
        try:
            sim.kill_everything()
        except Exception as exc:
            log(f"  simulator cleanup: {exc}")
        results[side] = data
    shutil.rmtree(root, ignore_errors=True)
    return results


def run_poll(params: dict[str, Any], sides: tuple[str, ...]) -> dict[str, Any]:
    """The poll workload in ``rounds`` processes per side, alternating sides, so a burst
    of load from elsewhere on the machine hits both libraries alike; then merged."""
    rounds: dict[str, list[dict[str, Any]]] = {side: [] for side in sides}
    for r in range(params["rounds"]):
        order = sides if r % 2 == 0 else tuple(reversed(sides))
        for side in order:
            rounds[side].append(run_driver("poll", side, params))
    return {side: merge_poll(results) for side, results in rounds.items()}


def merge_poll(results: list[dict[str, Any]]) -> dict[str, Any]:
    good = [r for r in results if "result" in r]
    if not good:
        return results[0]
    merged = json.loads(json.dumps(good[0]))
    merged["rounds"] = len(good)
    merged["process_wall_s"] = sum(r.get("process_wall_s", 0) for r in results)
    rows = list(merged["result"]["plain"].items())
    if merged["result"].get("array"):
        rows.append(("array", merged["result"]["array"]))
    for key, row in rows:
        parts = [
            r["result"]["array"] if key == "array" else r["result"]["plain"][key] for r in good
        ]
        for name in ("cpu_s", "second_poll_cpu_s", "json_loads_cpu_s"):
            row[name] = [v for part in parts for v in part[name]]
        cpu = sorted(row["cpu_s"])
        row["cpu_s_best"] = cpu[0]
        row["cpu_s_median"] = statistics.median(cpu)
        row["cpu_s_min"] = cpu[0]
        row["second_poll_cpu_s_best"] = min(row["second_poll_cpu_s"])
        row["json_loads_cpu_s_best"] = min(row["json_loads_cpu_s"])
        row["cpu_us_per_job"] = row["cpu_s_best"] / row["n"] * 1e6
    return merged


# -- the table ---------------------------------------------------------------------------
def get(data: dict[str, Any] | None, *path: Any) -> Any:
    for key in path:
        if not isinstance(data, dict) or key not in data:
            return None
        data = data[key]
    return data


class Table:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def section(self, title: str) -> None:
        self.rows.append({"section": title})

    def add(
        self,
        key: str,
        label: str,
        ours: Any,
        base: Any,
        unit: str = "",
        better: str = "lower",
        target: str = "",
        ok: bool | None = None,
        fmt: str = "{:.1f}",
        note: str = "",
    ) -> None:
        ratio = None
        if isinstance(ours, (int, float)) and isinstance(base, (int, float)):
            if better == "lower" and ours > 0:
                ratio = base / ours
            elif better == "higher" and base > 0:
                ratio = ours / base
        self.rows.append(
            {
                "key": key,
                "figure": label,
                "unit": unit,
                "ours": ours,
                "baseline": base,
                "ratio": ratio,
                "better": better,
                "target": target,
                "ok": ok,
                "fmt": fmt,
                "note": note,
            }
        )

    @staticmethod
    def cell(value: Any, fmt: str) -> str:
        if value is None:
            return "n/a"
        if isinstance(value, str):
            return value
        if isinstance(value, bool):
            return "yes" if value else "no"
        return fmt.format(value)

    def render(self) -> str:
        header = ("figure", "unit", "ours", BASELINE_VERSION, "ratio", "target", "")
        lines = []
        body = []
        for row in self.rows:
            if "section" in row:
                body.append(None)
                body.append(("## " + row["section"],))
                continue
            ratio = "" if row["ratio"] is None else f"{row['ratio']:.2f}x"
            verdict = {True: "PASS", False: "FAIL", None: ""}[row["ok"]]
            body.append(
                (
                    row["figure"],
                    row["unit"],
                    self.cell(row["ours"], row["fmt"]),
                    self.cell(row["baseline"], row["fmt"]),
                    ratio,
                    row["target"],
                    verdict,
                )
            )
        widths = [len(h) for h in header]
        for cells in body:
            if cells and len(cells) == len(header):
                widths = [max(w, len(c)) for w, c in zip(widths, cells, strict=True)]
        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))

        def fmt_row(cells: tuple[str, ...]) -> str:
            left = {0, 1, 5, 6}
            parts = [
                c.ljust(w) if i in left else c.rjust(w)
                for i, (c, w) in enumerate(zip(cells, widths, strict=True))
            ]
            return "  ".join(parts).rstrip()

        lines.append(fmt_row(header))
        lines.append(rule)
        for cells in body:
            if cells is None:
                continue
            lines.append(cells[0] if len(cells) == 1 else fmt_row(cells))
        lines.append(rule)
        lines.append(
            "ratio: how many times better ours is (0.8.1/ours for costs, ours/0.8.1 for rates)"
        )
        notes = [f"  - {r['figure']}: {r['note']}" for r in self.rows if r.get("note")]
        if notes:
            lines.append("notes:")
            lines.extend(notes)
        return "\n".join(lines)


def ms(value: Any) -> Any:
    return value * 1e3 if isinstance(value, (int, float)) else None


def exponent(per_n: dict[int, float]) -> float | None:
    """Least-squares slope of log(cost) against log(N): 1.0 is linear."""
    points = [(math.log(n), math.log(c)) for n, c in per_n.items() if c and c > 0]
    if len(points) < 2:
        return None
    mx = sum(x for x, _ in points) / len(points)
    my = sum(y for _, y in points) / len(points)
    sxx = sum((x - mx) ** 2 for x, _ in points)
    return sum((x - mx) * (y - my) for x, y in points) / sxx if sxx else None


def build_table(raw: dict[str, Any], settings: dict[str, Any]) -> Table:
    table = Table()
    ours = {task: get(raw, task, "ours", "result") for task in WORKLOADS}
    base = {task: get(raw, task, BASELINE_VERSION, "result") for task in WORKLOADS}

    def err(task: str, side: str) -> str | None:
        if task == "simulator" and get(raw, task, "skipped"):
            return None
        return get(raw, task, side, "error")

    if "poll" in raw:
        table.section(
            "1. Poll cost: CPU time of one poll() (time.process_time; best of the reps, "
            "sides interleaved)"
        )
        sizes = settings["poll"]["sizes"]
        o_rows, b_rows = get(ours["poll"], "plain") or {}, get(base["poll"], "plain") or {}
        for n in sizes:
            o, b = get(o_rows, str(n), "cpu_s_best"), get(b_rows, str(n), "cpu_s_best")
            target, ok = "", None
            if n == 10000 and o and b:
                target, ok = ">= 5x faster", b / o >= 5
            table.add(f"poll_ms_{n}", f"poll, {n:,} jobs", ms(o), ms(b), "ms", target=target, ok=ok)
        oa, ba = get(ours["poll"], "array", "cpu_s_best"), get(base["poll"], "array", "cpu_s_best")
        array_n = settings["poll"]["array_size"]
        table.add("poll_ms_array", f"poll, {array_n:,}-element array", ms(oa), ms(ba), "ms")
        for n in sizes:
            o = get(o_rows, str(n), "cpu_us_per_job")
            b = get(b_rows, str(n), "cpu_us_per_job")
            table.add(
                f"poll_us_per_job_{n}", f"per-job cost at {n:,}", o, b, "us/job", fmt="{:.2f}"
            )
        oe = exponent({n: get(o_rows, str(n), "cpu_s_best") for n in sizes})
        be = exponent({n: get(b_rows, str(n), "cpu_s_best") for n in sizes})
        table.add(
            "poll_scaling_exponent",
            f"scaling exponent {sizes[0]:,}..{sizes[-1]:,}",
            oe,
            be,
            "slope",
            better="none",
            target="<= 1.10 (linear)",
            ok=None if oe is None else oe <= 1.10,
            fmt="{:.3f}",
            note="slope of log(CPU) vs log(N); 1.0 = linear, above = superlinear",
        )
        for n in (10000, sizes[-1]):
            o = get(o_rows, str(n), "second_poll_cpu_s_best")
            b = get(b_rows, str(n), "second_poll_cpu_s_best")
            table.add(
                f"poll_second_ms_{n}",
                f"steady-state poll, {n:,} jobs",
                ms(o),
                ms(b),
                "ms",
                note="" if n != 10000 else "second poll of the same executor, same answer",
            )
        floor = get(o_rows, "10000", "json_loads_cpu_s_best")
        table.add(
            "json_loads_ms_10000",
            "json.loads of the 10k answer",
            ms(floor),
            ms(get(b_rows, "10000", "json_loads_cpu_s_best")),
            "ms",
            note="the floor (decoding alone) and a noise check: the same work in both "
            "processes, so a ratio far from 1.00x means the machine was busy; the 10k "
            f"answer is {(get(o_rows, '10000', 'input_bytes') or 0) / 1e6:.1f} MB",
        )

        table.section("2. Scheduler load")
        for n in sizes:
            o = get(o_rows, str(n), "commands_per_poll")
            b = get(b_rows, str(n), "commands_per_poll")
            table.add(
                f"commands_per_poll_{n}",
                f"commands per poll, {n:,} jobs",
                o,
                b,
                "calls",
                fmt="{:d}",
            )
        big = sizes[-1]
        o, b = get(o_rows, str(big), "argv_bytes"), get(b_rows, str(big), "argv_bytes")
        table.add(
            f"poll_argv_bytes_{big}",
            f"poll argv size at {big:,} jobs",
            o,
            b,
            "bytes",
            target="< 65,536",
            ok=None if o is None else o < 65536,
            fmt="{:,d}",
        )
    if "load" in raw:
        if "poll" not in raw:
            table.section("2. Scheduler load")
        lo, lb = ours["load"], base["load"]
        limit = get(lo, "max_concurrent_commands") or 8
        o, b = (
            get(lo, "submit", "peak_concurrent_calls"),
            get(lb, "submit", "peak_concurrent_calls"),
        )
        n_sub = settings["load"]["submits"]
        table.add(
            "submit_peak_concurrency",
            f"peak concurrent _call, {n_sub:,} gathered submits",
            o,
            b,
            "calls",
            target=f"<= {limit}",
            ok=None if o is None else o <= limit,
            fmt="{:d}",
            note=f"each fake command sleeps {settings['load']['delay_s'] * 1e3:.0f} ms; "
            "0.8.1 has no max_concurrent_commands",
        )
        o, b = get(lo, "submit", "wall_s"), get(lb, "submit", "wall_s")
        table.add(
            "submit_wall_s",
            f"{n_sub:,} gathered submits, wall",
            o,
            b,
            "s",
            fmt="{:.2f}",
            note="bounded concurrency costs wall time against an instant fake; "
            "a real bsub is slower and a real scheduler suffers from 1,000 at once",
        )
        n_c = settings["load"]["cancels"]
        o = get(lo, "cancel_all", "peak_concurrent_calls")
        b = get(lb, "cancel_all", "peak_concurrent_calls")
        table.add(
            "cancel_peak_concurrency",
            f"peak concurrent _call, cancel_all of {n_c:,}",
            o,
            b,
            "calls",
            target=f"<= {limit}",
            ok=None if o is None else o <= limit,
            fmt="{:d}",
        )
        o, b = get(lo, "cancel_all", "bkill_calls"), get(lb, "cancel_all", "bkill_calls")
        table.add(
            "bkill_calls",
            f"bkill invocations for {n_c:,} jobs",
            o,
            b,
            "calls",
            target="<= 100",
            ok=None if o is None else o <= 100,
            fmt="{:,d}",
        )
        o, b = (
            get(lo, "cancel_all", "max_ids_per_bkill"),
            get(lb, "cancel_all", "max_ids_per_bkill"),
        )
        table.add("bkill_ids_max", "most ids in one bkill", o, b, "ids", better="none", fmt="{:d}")
        o, b = get(lo, "cancel_all", "wall_s"), get(lb, "cancel_all", "wall_s")
        table.add("cancel_wall_s", f"cancel_all of {n_c:,}, wall", o, b, "s", fmt="{:.2f}")
    if "local" in raw:
        table.section(
            f"3. Local executor (poll_interval {settings['local']['poll_interval']:g} s, both)"
        )
        lo, lb = ours["local"], base["local"]
        n_b = settings["local"]["jobs"]
        o, b = get(lo, "batch", "wall_s"), get(lb, "batch", "wall_s")
        table.add(
            "local_batch_wall_s", f"{n_b:,} `true` jobs, submit + wait_for", o, b, "s", fmt="{:.2f}"
        )
        o, b = get(lo, "batch", "cpu_s"), get(lb, "batch", "cpu_s")
        table.add("local_batch_cpu_s", f"{n_b:,} jobs, CPU of the client", o, b, "s", fmt="{:.2f}")
        n_s = settings["local"]["sequential_jobs"]
        for phase, label in (
            ("batch", f"{n_b:,} at once"),
            ("sequential", f"one at a time ({n_s})"),
        ):
            for what, stat in (("median_s", "median"), ("p95_s", "p95")):
                o = get(lo, phase, "latency", what)
                b = get(lb, phase, "latency", what)
                is_median = stat == "median"
                note = ""
                if phase == "batch" and is_median:
                    note = (
                        "from the job's last act (`date +%s.%N`) to its on_exit callback; "
                        f"all {n_b:,} start at once on {os.cpu_count()} cores, "
                        "so it includes queueing"
                    )
                table.add(
                    f"local_{phase}_latency_{stat}_ms",
                    f"exit->callback, {label}, {stat}",
                    ms(o),
                    ms(b),
                    "ms",
                    target="< 50" if is_median else "",
                    ok=(o < 0.05) if is_median and o is not None else None,
                    note=note,
                )
    if "memory" in raw:
        mo, mb = ours["memory"], base["memory"]
        n_m = settings["memory"]["n"]
        n_p = settings["memory"]["n_polled"]
        table.section("4. Memory (tracemalloc, and resident memory where said)")
        o, b = get(mo, "bytes_per_job_tracked"), get(mb, "bytes_per_job_tracked")
        table.add(
            "bytes_per_record_tracked",
            f"bytes per tracked JobRecord, {n_m:,} jobs",
            o,
            b,
            "B",
            target="< 2,048",
            ok=None if o is None else o < 2048,
            fmt="{:,.0f}",
        )
        o, b = get(mo, "bytes_per_job_after_poll"), get(mb, "bytes_per_job_after_poll")
        table.add(
            "bytes_per_record_polled",
            f"bytes per JobRecord after a poll, {n_p:,}",
            o,
            b,
            "B",
            target="< 2,048",
            ok=None if o is None else o < 2048,
            fmt="{:,.0f}",
        )
        o, b = get(mo, "poll_peak_bytes"), get(mb, "poll_peak_bytes")
        table.add(
            "poll_peak_mib",
            f"peak traced memory during a poll, {n_p:,}",
            None if o is None else o / 2**20,
            None if b is None else b / 2**20,
            "MiB",
            note="bytes asked for, not bytes used: orjson reserves a worst-case buffer of about "
            "15x the answer and touches a fraction of it; the resident growth is the next row",
        )
        o, b = get(mo, "poll_rss_growth_bytes"), get(mb, "poll_rss_growth_bytes")
        table.add(
            "poll_rss_growth_mib",
            f"resident memory growth during a poll, {n_p:,}",
            None if o is None else o / 2**20,
            None if b is None else b / 2**20,
            "MiB",
            note="peak RSS during the poll (VmHWM, reset just before) minus RSS before it, "
            "measured before tracemalloc starts",
        )
    if "simulator" in raw:
        n_j = settings["simulator"]["jobs"]
        table.section(
            f"5. LSF simulator round trip ({n_j} jobs, monitor poll_interval "
            f"{settings['simulator']['poll_interval']:g} s)"
        )
        skipped = get(raw, "simulator", "skipped")
        if skipped:
            table.add(
                "sim_jobs_per_s",
                "end-to-end jobs per second",
                "skipped",
                "skipped",
                "jobs/s",
                better="higher",
                note=f"skipped: {skipped}",
            )
        else:
            so, sb = ours["simulator"], base["simulator"]
            table.add(
                "sim_jobs_per_s",
                "end-to-end jobs per second",
                get(so, "jobs_per_s"),
                get(sb, "jobs_per_s"),
                "jobs/s",
                better="higher",
                fmt="{:.2f}",
                note="submit, run and see every job DONE through real bsub/bjobs "
                "processes of the simulator",
            )
            table.add(
                "sim_wall_s",
                f"{n_j} jobs, wall",
                get(so, "wall_s"),
                get(sb, "wall_s"),
                "s",
                fmt="{:.2f}",
            )
            vo = get(raw, "simulator", "ours", "simulator_view")
            vb = get(raw, "simulator", BASELINE_VERSION, "simulator_view")
            table.add(
                "sim_bsub_concurrency",
                "most bsub at once (simulator's log)",
                get(vo, "bsub", "max_concurrency"),
                get(vb, "bsub", "max_concurrency"),
                "procs",
                fmt="{:d}",
            )
            table.add(
                "sim_bjobs_calls",
                "bjobs calls during the run",
                get(vo, "bjobs", "calls"),
                get(vb, "bjobs", "calls"),
                "calls",
                better="none",
                fmt="{:d}",
            )
    if "throughput" in raw:
        throughput.add_rows(table, raw["throughput"], BASELINE_VERSION)
    # Failures of a whole workload, so no figure silently reads n/a.
    for task in WORKLOADS:
        for side in SIDES:
            message = err(task, side) if task in raw else None
            if message:
                table.add(f"error_{task}_{side}", f"{task} [{side}] failed", message[:60], None)
    return table


# -- the plot ----------------------------------------------------------------------------
def plot(
    raw: dict[str, Any], settings: dict[str, Any], machine: dict[str, Any], path: str
) -> str | None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib not installed (pip install -e '.[bench]')"
    sizes = settings["poll"]["sizes"]
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.8))
    styles = {
        "ours": ("tab:blue", "o", "cluster_api (this checkout)"),
        BASELINE_VERSION: ("tab:orange", "s", f"py-cluster-api {BASELINE_VERSION}"),
    }
    for side in SIDES:
        rows = get(raw, "poll", side, "result", "plain") or {}
        ns = [n for n in sizes if get(rows, str(n), "cpu_s_best")]
        if not ns:
            continue
        color, marker, label = styles[side]
        cpu = [rows[str(n)]["cpu_s_best"] * 1e3 for n in ns]
        per = [rows[str(n)]["cpu_us_per_job"] for n in ns]
        left.plot(ns, cpu, marker=marker, color=color, label=label)
        right.plot(ns, per, marker=marker, color=color, label=label)
        array = get(raw, "poll", side, "result", "array")
        if array:
            left.scatter(
                [array["n"]],
                [array["cpu_s_best"] * 1e3],
                marker="*",
                s=140,
                color=color,
                edgecolor="black",
                zorder=5,
                label=f"{label}: {array['n']:,}-element array",
            )
        for n, c in zip(ns, cpu, strict=True):
            left.annotate(
                f"{c:.0f}",
                (n, c),
                textcoords="offset points",
                xytext=(4, -12 if side == "ours" else 6),
                fontsize=8,
                color=color,
            )
    floor = get(raw, "poll", "ours", "result", "plain")
    if floor:
        ns = [n for n in sizes if get(floor, str(n), "json_loads_cpu_s_best")]
        left.plot(
            ns,
            [floor[str(n)]["json_loads_cpu_s_best"] * 1e3 for n in ns],
            linestyle=":",
            color="gray",
            label="json.loads alone (floor)",
        )
    if 10000 in sizes:
        base10k = get(raw, "poll", BASELINE_VERSION, "result", "plain", "10000", "cpu_s_best")
        if base10k:
            left.scatter(
                [10000],
                [base10k * 1e3 / 5],
                marker="_",
                s=400,
                color="red",
                zorder=6,
                label="target at 10k: 0.8.1 / 5",
            )
    left.legend(fontsize=8, loc="upper left")
    right.legend(fontsize=8, loc="lower right")
    left.set(
        xscale="log",
        yscale="log",
        xlabel="tracked jobs (N)",
        ylabel="CPU ms per poll()",
        title="Poll cost (lower is better)",
    )
    right.set(
        xscale="log",
        xlabel="tracked jobs (N)",
        ylabel="CPU µs per job",
        title="Per-job cost (flat = linear)",
    )
    right.set_ylim(bottom=0)
    for ax in (left, right):
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        f"bjobs -json poll, realistic records; {machine['nproc']} cores, {machine['cpu_model']}, "
        f"Python {machine['python']}",
        fontsize=9,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return None


# -- main --------------------------------------------------------------------------------
def main() -> int:
    parser = argparse.ArgumentParser(description="cluster_api benchmarks (issue #6)")
    parser.add_argument("--quick", action="store_true", help="fewer repetitions (< 2 minutes)")
    parser.add_argument(
        "--only",
        default=",".join(WORKLOADS),
        help=f"comma-separated subset of {','.join(WORKLOADS)}",
    )
    parser.add_argument(
        "--no-baseline",
        action="store_true",
        help=f"measure this checkout only (no {BASELINE_VERSION} venv)",
    )
    parser.add_argument("--output", default=os.path.join(RESULTS, "latest.json"))
    parser.add_argument("--plot", default=os.path.join(RESULTS, "poll_cost.png"))
    args = parser.parse_args()
    workloads = [w.strip() for w in args.only.split(",") if w.strip()]
    unknown = set(workloads) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workload(s) {sorted(unknown)}; choose from {WORKLOADS}")
    mode = "quick" if args.quick else "full"
    settings = SETTINGS[mode]
    started = time.perf_counter()
    machine = machine_info()
    log(f"cluster_api benchmarks, {mode} mode; {machine['nproc']} cores, {machine['cpu_model']}")

    sides: tuple[str, ...] = ("ours",) if args.no_baseline else SIDES
    baseline: dict[str, Any] = {"skipped": True}
    if not args.no_baseline:
        try:
            baseline = ensure_baseline()
        except Exception as exc:
            log(f"cannot set up {BASELINE_VERSION}: {exc}; measuring this checkout only")
            baseline, sides = {"error": str(exc)}, ("ours",)

    # Build (or read) the bjobs answers once, outside any measured process.
    t0 = time.perf_counter()
    needed = set()
    if "poll" in workloads:
        needed |= {("plain", n) for n in settings["poll"]["sizes"]}
        needed.add(("array", settings["poll"]["array_size"]))
    if "memory" in workloads and settings["memory"]["n_polled"]:
        needed.add(("plain", settings["memory"]["n_polled"]))
    if os.path.isdir(fx.CACHE_DIR):  # answers of an older fixture version
        for name in os.listdir(fx.CACHE_DIR):
            if name.startswith("bjobs-v") and not name.startswith(f"bjobs-v{fx.FIXTURE_VERSION}-"):
                os.unlink(os.path.join(fx.CACHE_DIR, name))
    for kind, n in sorted(needed):
        fx.cached(kind, n)
    fixture_s = time.perf_counter() - t0

    raw: dict[str, Any] = {}
    for task in workloads:
        log(f"{task} ...")
        if task == "simulator":
            raw[task] = run_simulator(settings[task], sides)
        elif task == "throughput":
            raw[task] = throughput.run(settings[task], sides, run_driver)
        elif task == "poll":
            raw[task] = run_poll(settings[task], sides)
        else:
            raw[task] = {side: run_driver(task, side, settings[task]) for side in sides}

    table = build_table(raw, settings)
    wall = time.perf_counter() - started
    rendered = table.render()
    print()
    print(
        f"cluster_api benchmarks ({mode}); ours = this checkout, {BASELINE_VERSION} = PyPI release"
    )
    print(f"machine: {machine['nproc']} cores ({machine['cpu_model']}), Python {machine['python']}")
    print(f"ours decodes bjobs -json with {machine['json_decoder']}")
    print()
    print(rendered)
    print()
    load = [round(x, 2) for x in os.getloadavg()]
    print(
        f"wall time: {wall:.1f} s ({BASELINE_VERSION} venv "
        f"{'created' if baseline.get('created') else 'cached'} {baseline.get('seconds', 0):.1f} s;"
        f" fixtures {fixture_s:.1f} s); load average at start {machine['load_avg_at_start']}, "
        f"at end {load}"
    )
    machine["load_avg_at_end"] = load

    os.makedirs(RESULTS, exist_ok=True)
    rows = [{k: v for k, v in r.items() if k != "fmt"} for r in table.rows]
    document = {
        "issue": 6,
        "mode": mode,
        "generated_at": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_s": wall,
        "machine": machine,
        "checkout": git_state(),
        "baseline": {"version": BASELINE_VERSION, **baseline},
        "settings": settings,
        "rows": rows,
        "table": rendered,
        "raw": raw,
    }
    tmp = args.output + ".tmp"
    with open(tmp, "w") as handle:
        json.dump(document, handle, indent=1, default=str)
    os.replace(tmp, args.output)
    print(f"wrote {os.path.relpath(args.output)}")
    if "poll" in raw:
        problem = plot(raw, settings, machine, args.plot)
        print(f"plot: {problem}" if problem else f"wrote {os.path.relpath(args.plot)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
