"""Stress run for issue #11 item 1: jobs whose folder names a shell would misread.

    python benchmarks/hostile_paths.py                      # this checkout
    PYTHONPATH=/path/to/other/checkout python benchmarks/hostile_paths.py   # another one

Each trial makes one folder per hostile name (spaces, both quotes, ``$()``, backquotes,
``;``, ``||``, ``&``, ``|``, ``>``, ``%``, a backslash, unicode, bytes that are not
UTF-8...) for each backend and submits ``pwd -P > where.txt; echo logged`` there. Then
every submission is one of:

- ``ran``: ended DONE, ran in exactly that folder and logged there;
- ``refused``: submit raised ValueError (and wrote nothing);
- ``lost``: accepted, but failed, ran elsewhere, logged elsewhere or never ended;
- ``crashed``: submit raised something else (a UnicodeError included).

``injections`` counts files the payloads made (an injected command that ran), and
``stray`` the files a refused or crashed submit left in its folder.

Backends: ``lsf`` (the LSF simulator, script path as bsub's command: the words go
through /bin/sh), ``lsf-stdin`` (``use_stdin: true``), ``local``, and ``slurm`` when a
Slurm controller answers here. Only the public API is used, so the same script measures
any version of the library.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import cluster_api
from cluster_api import JobMonitor, JobStatus, ResourceSpec, create_executor

MARK = "PWNED"
HOSTILE_NAMES = [
    "my data",
    "it's",
    'say "hi"',
    "semi;touch PWNED_semi;",
    "or||touch PWNED_or||",
    "amp&touch PWNED_amp&",
    "pipe|touch PWNED_pipe|",
    "redirect>PWNED_redirect;",
    "dollar$(touch PWNED_dollar)",
    "tick`touch PWNED_tick`",
    "var$HOME",
    "percent%J%%",
    "back\\slash",
    "tab\there",
    "unicode é✓ü",
    "hash #1",
    "glob*?[x]",
    "paren(x)",
    "~tilde",
    "-dash",
    os.fsdecode(b"latin1 caf\xe9"),  # not UTF-8: a lone surrogate in Python
]
COMMAND = "pwd -P > where.txt; echo logged"
WAIT_SECONDS = 120.0


def slurm_answers() -> bool:
    if shutil.which("sbatch") is None:
        return False
    try:
        out = subprocess.run(["scontrol", "ping"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return "UP" in out.stdout


def files_in(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


def ran_there(job: Any, folder: Path) -> bool:
    if job.status is not JobStatus.DONE:
        return False
    where = folder / "where.txt"
    logs = [p for p in folder.iterdir() if p.name.startswith("stdout.")]
    return (
        where.is_file()
        and where.read_text(errors="replace").strip() == os.path.realpath(folder)
        and any(p.read_text(errors="replace") == "logged\n" for p in logs)
    )


async def one_trial(backend: str, root: Path, prefix: str) -> Counter[str]:
    config: dict[str, Any] = {
        "executor": "lsf" if backend.startswith("lsf") else backend,
        "poll_interval": 0.3,
        "log_directory": str(root / "logs"),
        "job_name_prefix": prefix,
        "command_timeout": 60.0,
    }
    if backend == "lsf-stdin":
        config["use_stdin"] = True
    executor = create_executor(**config)
    counts: Counter[str] = Counter()
    jobs = []
    for index, name in enumerate(HOSTILE_NAMES):
        folder = root / name
        folder.mkdir(parents=True)
        counts["jobs"] += 1
        try:
            job = await executor.submit(
                COMMAND, f"hostile{index}", resources=ResourceSpec(work_dir=str(folder))
            )
        except UnicodeError as exc:  # a ValueError too, but not a refusal: a crash
            counts["crashed"] += 1
            counts["stray"] += len(files_in(folder))
            print(f"  {backend}: {name!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        except ValueError:
            counts["refused"] += 1
            counts["stray"] += len(files_in(folder))
            continue
        except Exception as exc:
            counts["crashed"] += 1
            counts["stray"] += len(files_in(folder))
            print(f"  {backend}: {name!r}: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        jobs.append((job, folder))
    if jobs:
        async with JobMonitor(executor, poll_interval=0.3) as monitor:
            # Jobs still unfinished at the deadline count as lost below.
            with contextlib.suppress(asyncio.TimeoutError, TimeoutError):
                await monitor.wait_for(*(job for job, _ in jobs), timeout=WAIT_SECONDS)
    for job, folder in jobs:
        if ran_there(job, folder):
            counts["ran"] += 1
        else:
            counts["lost"] += 1
            print(
                f"  {backend}: lost {folder.name!r}: {job.status.value} exit {job.exit_code}",
                file=sys.stderr,
            )
    counts["injections"] += sum(1 for p in root.rglob(f"*{MARK}*") if p.is_file())
    if backend.startswith("lsf"):
        await executor.cancel_all()
    return counts


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--backends", default="lsf,lsf-stdin,local,slurm")
    parser.add_argument("--json", help="also write the figures to this file")
    args = parser.parse_args()
    json_path = os.path.abspath(args.json) if args.json else None
    backends = args.backends.split(",")
    if "slurm" in backends and not slurm_answers():
        print("slurm: no controller answers here, skipped", file=sys.stderr)
        backends.remove("slurm")
    print(f"library: {os.path.dirname(cluster_api.__file__)}", file=sys.stderr)

    scratch = Path(tempfile.mkdtemp(prefix="hostile-paths-"))
    os.chdir(scratch)  # a relative payload that escapes its folder lands here
    simulator = None
    if any(b.startswith("lsf") for b in backends):
        from cluster_api.testing import install_simulator

        simulator = install_simulator(scratch / "lsfsim")
        os.environ.update(simulator.env)
    totals: dict[str, Counter[str]] = {b: Counter() for b in backends}
    try:
        for trial in range(args.trials):
            for backend in backends:
                root = scratch / f"trial{trial}" / backend
                prefix = f"hp{uuid.uuid4().hex[:6]}"
                totals[backend] += await one_trial(backend, root, prefix)
                totals[backend]["trials"] += 1
        escaped = sum(1 for p in scratch.glob(f"*{MARK}*"))
        escaped += sum(1 for name in os.listdir("/") if MARK in name)
    finally:
        if simulator is not None:
            simulator.kill_everything()
    columns = ("trials", "jobs", "ran", "refused", "lost", "crashed", "stray", "injections")
    print("| backend | " + " | ".join(columns) + " |")
    print("|" + "---|" * (len(columns) + 1))
    for backend, counts in totals.items():
        print(f"| {backend} | " + " | ".join(str(counts[c]) for c in columns) + " |")
    print(f"injections outside the job folders: {escaped}")
    if json_path:
        figures = {b: {c: counts[c] for c in columns} for b, counts in totals.items()}
        figures["escaped_injections"] = {"count": escaped}
        Path(json_path).write_text(json.dumps(figures, indent=2) + "\n")
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
