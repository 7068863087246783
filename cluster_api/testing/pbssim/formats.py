"""How the simulated server prints a job: ``qstat -f -F json`` attributes (PBS Pro) or
``qstat -f -x`` XML (Torque), from the kit's records (``PEND RUN DONE EXIT``).

Endings as the schedulers report them (SCHEDULERS.md §1-2): the script's exit status;
256+signal for a job killed by a signal; a walltime kill -29 on PBS
(``JOB_EXEC_KILL_WALLTIME``) and -11 on Torque; a memory kill -27 and -10; a job
``qdel`` stopped 271 (256+SIGTERM), on PBS with substate 91 and a comment saying it
was terminated; a job deleted because its dependency can never be met likewise (on
PBS, never started, without an exit status; its comment says why). A job deleted
before it started has no exit status on PBS and 271 on Torque.
"""

from __future__ import annotations

import json
import time

from ..simkit.jobs import STAT_FINISHED, is_purged, sorted_elements
from ..simkit.store import Json
from .jobenv import job_id

PBS_STATES = {"PEND": "Q", "RUN": "R", "DONE": "F", "EXIT": "F"}
TORQUE_STATES = {"PEND": "Q", "RUN": "R", "DONE": "C", "EXIT": "C"}
KILL_CODES = {
    "pbs": {"TERM_RUNLIMIT": -29, "TERM_MEMLIMIT": -27},
    "torque": {"TERM_RUNLIMIT": -11, "TERM_MEMLIMIT": -10},
}
CANCELLED = 271  # 256 + SIGTERM
DELETED = ("TERM_OWNER", "TERM_ORPHAN_SYSTEM")  # qdel; a dependency never to be met


def finished(job: Json) -> bool:
    return all(e["stat"] in STAT_FINISHED for e in job["elements"].values())


def purged(job: Json, settings: Json, now: float) -> bool:
    """Forgotten: finished longer ago than ``clean_period`` (PBS without history: at
    once, every element finished)."""
    elements = list(job["elements"].values())
    if job["flavour"] == "pbs" and not settings["history"]:
        return finished(job)
    return all(is_purged(e, settings, now) for e in elements)


def exit_status(job: Json, element: Json) -> int | None:
    """The scheduler's exit status of a finished element (None: it has none)."""
    reason = element.get("exit_reason") or ""
    if reason in DELETED:  # Torque reports every deleted job as cancelled
        return CANCELLED if element.get("start_time") or job["flavour"] == "torque" else None
    if reason in KILL_CODES[job["flavour"]]:
        return KILL_CODES[job["flavour"]][reason]
    if element.get("signal"):
        return 256 + int(element["signal"])
    return int(element.get("exit_code") or 0)


def _hms(seconds: float) -> str:
    whole = int(seconds)
    return f"{whole // 3600:02d}:{whole // 60 % 60:02d}:{whole % 60:02d}"


def _comment(job: Json, element: Json, subjob: bool) -> str:
    reason = element.get("exit_reason") or ""
    if reason == "TERM_ORPHAN_SYSTEM":
        return f"Job deleted as result of dependency on job {job['dependency']}"
    if subjob:
        return "Subjob terminated" if reason == "TERM_OWNER" else "Subjob finished"
    started = time.ctime(float(element["start_time"] or job["submit_time"]))
    ending = "terminated" if reason == "TERM_OWNER" else "finished"
    return f"Job run at {started} on (pbssim:ncpus={job['ncpus']}) and {ending}"


def attributes(job: Json, idx: str | None, element: Json, now: float) -> Json:
    """One job's (or subjob's) attributes, as ``qstat -f`` names them."""
    torque = job["flavour"] == "torque"
    stat = element["stat"]
    states = TORQUE_STATES if torque else PBS_STATES
    state = "X" if stat in STAT_FINISHED and idx is not None and not torque else states[stat]
    when = (lambda t: int(t)) if torque else (lambda t: time.ctime(float(t)))
    name = job["name"] if idx is None or not torque else f"{job['name']}-{idx}"
    limits = {
        "ncpus": job["ncpus"],
        **({"walltime": _hms(job["walltime"])} if job["walltime"] else {}),
    }
    attrs: Json = {
        "Job_Name": name,
        "Job_Owner": f"{job['user']}@{job['server']}",
        "job_state": state,
        "queue": job["queue"],
        "ctime": when(job["submit_time"]),
        "qtime": when(job["submit_time"]),
        "Resource_List": limits,
        "Variable_List": job["variables_listed"],
    }
    start, end = element.get("start_time"), element.get("finish_time")
    if start:
        attrs["exec_host"] = f"{element['exec_host'] or 'pbssim'}/0*{job['ncpus']}"
        attrs["start_time" if torque else "stime"] = when(start)
        used = float(end or now) - float(start)
        attrs["resources_used"] = {
            "mem": f"{int(element.get('max_mem_kb') or 0)}kb",
            "walltime": _hms(used),
        }
    if stat in STAT_FINISHED:
        code = exit_status(job, element)
        if code is not None:
            attrs["exit_status" if torque else "Exit_status"] = code
        if torque:
            attrs["comp_time"] = when(end or now)
        else:
            attrs["obittime"] = when(end or now)
            attrs["comment"] = _comment(job, element, idx is not None)
            if element.get("exit_reason") in DELETED:
                attrs["substate"] = 91
    return attrs


def array_attributes(job: Json, now: float) -> Json:
    """The array job itself: queued, begun (``B``) or finished."""
    stats = [e["stat"] for e in job["elements"].values()]
    first = dict(sorted_elements(job)[0][1])
    if all(s in STAT_FINISHED for s in stats):
        ended = [e for e in job["elements"].values() if e["stat"] == "EXIT"]
        first.update(ended[0] if ended else {})
    elif any(s != "PEND" for s in stats):
        first.update(stat="RUN")
    attrs = attributes(job, None, first, now)
    if job["flavour"] == "pbs" and any(s != "PEND" for s in stats) and not finished(job):
        attrs["job_state"] = "B"
    attrs["array_indices_submitted"] = job["array"]["text"]
    return attrs


def job_entries(job: Json, subjobs: bool, now: float, only: str | None = None) -> Json:
    """The entries qstat prints for one job: itself, and with ``-t`` each subjob."""
    if not job.get("array"):
        return {job_id(job): attributes(job, None, job["elements"]["0"], now)}
    entries: Json = {}
    if only is None:
        entries[job_id(job)] = array_attributes(job, now)
    for idx, element in sorted_elements(job):
        if (subjobs and only is None) or idx == only:
            entries[job_id(job, idx)] = attributes(job, idx, element, now)
    return entries


def render(flavour: str, server: str, entries: Json, now: float) -> str:
    if flavour == "pbs":
        envelope: Json = {"timestamp": int(now), "pbs_version": "2022.1.1", "pbs_server": server}
        envelope.update({"Jobs": entries} if entries else {})
        return json.dumps(envelope, indent=4) + "\n"
    if not entries:
        return ""
    return "<Data>" + "".join(_xml_job(k, v) for k, v in entries.items()) + "</Data>\n"


def _xml_job(key: str, attrs: Json) -> str:
    """Torque's shape: plain ``<Tag>value</Tag>`` with values written raw."""
    attrs = dict(attrs)
    variables = attrs.pop("Variable_List")
    attrs["Variable_List"] = ",".join(f"{k}={v}" for k, v in variables.items())
    return f"<Job><Job_Id>{key}</Job_Id>{_xml_fields(attrs)}</Job>"


def _xml_fields(attrs: Json) -> str:
    return "".join(
        f"<{k}>{_xml_fields(v) if isinstance(v, dict) else v}</{k}>" for k, v in attrs.items()
    )
