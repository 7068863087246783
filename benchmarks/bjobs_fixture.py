"""Realistic ``bjobs -json`` answers for the benchmarks (standard library only).

Both libraries are fed exactly the same text, built here from a fixed seed, so the poll
cost they report is the cost of the same work. A record carries all eleven fields the
library asks for, every value a string as LSF prints it, with a mix of statuses close to
a busy pipeline: 40% RUN, 30% PEND, 20% DONE, 10% EXIT (a third of those killed by the
memory limit, a third by the run limit, a third plain non-zero exits).

Times follow how LSF produces them (second resolution, local time, with the year as
``LSB_DISPLAY_YEAR=Y`` prints it): a pipeline submits its plain jobs one after another at
``SUBMIT_RATE`` jobs a second, an array's elements share the one submit time of their
``bsub``, jobs start at the end of a scheduling session (every ``DISPATCH_CYCLE_S``
seconds) after a queue wait, and finish after a run time of 30 s to 3 h. So, as on a real
cluster, many jobs share a submit or start time while finish times are mostly distinct.
"""

from __future__ import annotations

import json
import math
import os
import random
import time

BJOBS_FIELDS = (
    "JOBID",
    "JOBINDEX",
    "JOB_NAME",
    "STAT",
    "EXIT_CODE",
    "EXEC_HOST",
    "MAX_MEM",
    "SUBMIT_TIME",
    "START_TIME",
    "FINISH_TIME",
    "EXIT_REASON",
)
#: Bump when the records change, so cached answers are rebuilt.
FIXTURE_VERSION = 2
CACHE_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), ".cache")
FIRST_JOB_ID = 3_104_217
ARRAY_JOB_ID = 3_900_001
SUBMIT_RATE = 25.0  # jobs per second from one submitting pipeline
DISPATCH_CYCLE_S = 10  # seconds between two scheduling sessions
FIRST_SUBMIT_AGO_S = 6 * 3600
STATUS_MIX = (("RUN", 0.40), ("PEND", 0.30), ("DONE", 0.20), ("EXIT", 0.10))
_EXIT_KINDS = (
    ("137", "TERM_MEMLIMIT: job killed after reaching LSF memory usage limit"),
    ("140", "TERM_RUNLIMIT: job killed after reaching LSF run time limit"),
    ("1", ""),
)


def job_ids(n: int) -> list[str]:
    return [str(FIRST_JOB_ID + i) for i in range(n)]


def lsf_time(stamp: float) -> str:
    """``Nov 22 10:31:17 2026``: LSF's format with ``LSB_DISPLAY_YEAR=Y``, local time."""
    return time.strftime("%b %d %H:%M:%S %Y", time.localtime(stamp))


def _status(rng: random.Random) -> str:
    x = rng.random()
    for stat, share in STATUS_MIX:
        if x < share:
            return stat
        x -= share
    return STATUS_MIX[-1][0]


def _host(rng: random.Random) -> str:
    node = rng.randrange(1, 480)
    if rng.random() < 0.1:  # a multi-host parallel job
        return f"4*node{node:03d}:4*node{node + 1:03d}"
    return f"node{node:03d}"


def _mem(rng: random.Random) -> str:
    mb = int(math.exp(rng.uniform(math.log(3), math.log(60_000))))  # log-uniform
    if mb >= 1024:
        return f"{mb / 1024:.1f} Gbytes"
    return f"{mb} Mbytes"


def make_record(
    job_id: str, index: int, name: str, rng: random.Random, now: float, submit: float
) -> dict:
    stat = _status(rng)
    queued = submit + rng.expovariate(1 / 600)  # mean queue wait: 10 minutes
    start = min(now - 1, math.ceil(queued / DISPATCH_CYCLE_S) * DISPATCH_CYCLE_S)
    finish = min(now, start + rng.uniform(30, 3 * 3600))
    record = {
        "JOBID": job_id,
        "JOBINDEX": str(index),
        "JOB_NAME": name,
        "STAT": stat,
        "EXIT_CODE": "",
        "EXEC_HOST": "",
        "MAX_MEM": "",
        "SUBMIT_TIME": lsf_time(submit),
        "START_TIME": "",
        "FINISH_TIME": "",
        "EXIT_REASON": "",
    }
    if stat == "PEND":
        return record
    record["EXEC_HOST"] = _host(rng)
    record["MAX_MEM"] = _mem(rng)
    record["START_TIME"] = lsf_time(start)
    if stat == "RUN":
        record["FINISH_TIME"] = "-"
        return record
    record["FINISH_TIME"] = lsf_time(finish)
    if stat == "DONE":
        record["EXIT_CODE"] = "0" if rng.random() < 0.5 else ""  # LSF prints both
    else:
        code, reason = _EXIT_KINDS[rng.randrange(len(_EXIT_KINDS))]
        record["EXIT_CODE"], record["EXIT_REASON"] = code, reason
    return record


def _wrap(records: list[dict]) -> str:
    # bjobs pretty-prints its JSON; keep that shape (and its size) here.
    return json.dumps({"COMMAND": "bjobs", "JOBS": len(records), "RECORDS": records}, indent=2)


def plain_jobs_json(n: int, seed: int = 6, now: float | None = None) -> str:
    """``bjobs -json`` for ``n`` plain jobs with the ids :func:`job_ids` gives."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    first = now - FIRST_SUBMIT_AGO_S
    records = [
        make_record(job_id, 0, f"capi-align-sample{i:06d}", rng, now, first + i / SUBMIT_RATE)
        for i, job_id in enumerate(job_ids(n))
    ]
    return _wrap(records)


def array_json(n: int, job_id: int = ARRAY_JOB_ID, seed: int = 7, now: float | None = None) -> str:
    """``bjobs -json`` for one array ``job_id[1-n]``: one record per element."""
    rng = random.Random(seed)
    now = time.time() if now is None else now
    submit = now - FIRST_SUBMIT_AGO_S  # one bsub for the whole array
    records = [
        make_record(str(job_id), i, f"capi-sweep[{i}]", rng, now, submit) for i in range(1, n + 1)
    ]
    return _wrap(records)


def cached(kind: str, n: int) -> str:
    """The answer for ``n`` plain jobs (``kind="plain"``) or one ``n``-element array
    (``kind="array"``), built once and kept in ``benchmarks/.cache`` (building 100k
    records takes seconds; reading them back, milliseconds)."""
    build = {"plain": plain_jobs_json, "array": array_json}[kind]
    path = os.path.join(CACHE_DIR, f"bjobs-v{FIXTURE_VERSION}-{kind}-{n}.json")
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read()
    except OSError:
        pass
    text = build(n)
    os.makedirs(CACHE_DIR, exist_ok=True)
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w", encoding="utf-8") as handle:
        handle.write(text)
    os.replace(tmp, path)
    return text


def status_counts(text: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for record in json.loads(text)["RECORDS"]:
        counts[record["STAT"]] = counts.get(record["STAT"], 0) + 1
    return counts


def describe(text: str) -> dict[str, int]:
    """Status counts and how many distinct time strings the answer holds."""
    records = json.loads(text)["RECORDS"]
    info: dict[str, int] = {"records": len(records), "bytes": len(text)}
    for record in records:
        info[record["STAT"]] = info.get(record["STAT"], 0) + 1
    for key in ("SUBMIT_TIME", "START_TIME", "FINISH_TIME"):
        values = {r[key] for r in records if r[key] not in ("", "-")}
        info[f"distinct_{key.lower()}"] = len(values)
    return info


if __name__ == "__main__":
    sample = json.loads(plain_jobs_json(8))["RECORDS"]
    print(json.dumps(sample, indent=2))
