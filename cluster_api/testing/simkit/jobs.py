"""The job table's records, in the kit's own vocabulary.

A job is ``{"id", "name", "array", "user", "slots", ..., "elements": {key: element}}``;
a plain job has the single element ``"0"``, an array one per index. Each element's
``stat`` is one of ``PEND RUN DONE EXIT`` whatever the simulated scheduler prints:
its formats translate (LSF prints these words as they are).
"""

from __future__ import annotations

from .store import Json

STAT_PENDING = ("PEND", "PSUSP", "WAIT", "PROV")
STAT_FINISHED = ("DONE", "EXIT")


def new_element() -> Json:
    """A freshly submitted element: pending, nothing known yet."""
    return {
        "stat": "PEND",
        "exit_code": None,
        "start_time": None,
        "finish_time": None,
        "exit_reason": "",
        "max_mem_kb": None,
        "pgid": None,
        "pid": None,
        "exec_host": "",
        "cpu_time": 0.0,
        "kill": None,
        "events": [],
    }


def element_label(job: Json, idx: str) -> str:
    """``12`` or ``12[3]``: how an element is named in tokens and answers."""
    return f"{job['id']}[{idx}]" if job.get("array") else str(job["id"])


def element_name(job: Json, idx: str) -> str:
    return f"{job['name']}[{idx}]" if job.get("array") else str(job["name"])


def sorted_elements(job: Json) -> list[tuple[str, Json]]:
    return sorted(job["elements"].items(), key=lambda kv: int(kv[0]))


def finish_element(element: Json, stat: str, code: int | None, reason: str, now: float) -> None:
    element["stat"] = stat
    element["exit_code"] = code
    element["exit_reason"] = reason
    element["finish_time"] = now


def is_purged(element: Json, settings: Json, now: float) -> bool:
    """Finished longer ago than ``clean_period``: gone from the status command."""
    finish = element.get("finish_time")
    return (
        element.get("stat") in STAT_FINISHED
        and finish is not None
        and now - float(finish) > float(settings["clean_period"])
    )
