"""Flux's formats in the simulator: f58 ids, the ``# flux:`` directive words and the
job objects ``flux jobs --json`` prints (field names as flux-core 0.88 prints them)."""

from __future__ import annotations

import shlex

from ..simkit.jobs import STAT_FINISHED
from ..simkit.store import Json

F58 = "123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"
DIRECTIVE = "# flux:"
ID_SHIFT = 24  # Flux ids are FLUIDs: big numbers, timestamp bits high


def f58(number: int) -> str:
    digits = ""
    while number:
        number, digit = divmod(number, 58)
        digits = F58[digit] + digits
    return "ƒ" + (digits or F58[0])


def parse_id(text: str) -> int | None:
    """The number of an id as Flux accepts it: f58 (``ƒ`` or ``f``) or decimal."""
    if text.isdigit():
        return int(text)
    if len(text) < 2 or text[0] not in "ƒf" or any(c not in F58 for c in text[1:]):
        return None
    number = 0
    for c in text[1:]:
        number = number * 58 + F58.index(c)
    return number


def directive_words(text: str) -> list[str]:
    lexer = shlex.shlex(text, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    lexer.escapedquotes = "\"'"
    return list(lexer)


def script_directives(script: str) -> list[str]:
    """The option words of a script's ``# flux:`` lines, in order."""
    words: list[str] = []
    for line in script.splitlines():
        if line.startswith(DIRECTIVE):
            words += directive_words(line[len(DIRECTIVE) :])
    return words


def _ending(job: Json, element: Json) -> Json:
    """result, returncode and exception of an inactive job, as Flux records them."""
    reason, ran = element.get("exit_reason") or "", element.get("pid") is not None
    code = element.get("exit_code")
    if element["stat"] == "DONE":
        return {"result": "COMPLETED", "returncode": 0, "exception": {"occurred": False}}
    if reason == "cancel":
        exc = {"occurred": True, "severity": 0, "type": "cancel", "note": ""}
        return {"result": "CANCELED", "returncode": 143 if ran else -128, "exception": exc}
    if reason == "TERM_RUNLIMIT":
        note = "resource allocation expired"
        exc = {"occurred": True, "severity": 0, "type": "timeout", "note": note}
        return {"result": "TIMEOUT", "returncode": 142, "exception": exc}
    if reason == "TERM_ORPHAN_SYSTEM":
        note = f"dependency {' '.join(job['dependencies'])} can never be satisfied"
        exc = {"occurred": True, "severity": 0, "type": "dependency", "note": note}
        return {"result": "FAILED", "returncode": 1, "exception": exc}
    if reason:
        exc = {"occurred": True, "severity": 0, "type": "exec", "note": reason}
        return {"result": "FAILED", "returncode": 1, "exception": exc}
    return {"result": "FAILED", "returncode": code, "exception": {"occurred": False}}


def job_object(job: Json) -> Json:
    """One job of ``flux jobs --json``."""
    element = job["elements"]["0"]
    stat = element["stat"]
    record: Json = {
        "id": int(job["number"]),
        "jobid": str(job["jobid"]),
        "name": job["name"],
        "cwd": job.get("cwd") or job["submit_cwd"],
        "ntasks": 1,
        "ncores": int(job.get("slots") or 1),
        "t_submit": job["submit_time"],
        "urgency": 16,
        "userid": job["uid"],
        "username": job["user"],
        "dependencies": job["dependencies"],
    }
    if stat == "PEND":
        depends = bool(job["dependencies"])
        record.update(state="DEPEND" if depends else "SCHED", exception={"occurred": False})
        return record
    if element.get("start_time") is not None:
        record.update(t_run=element["start_time"], nodelist=element.get("exec_host") or "")
    if stat not in STAT_FINISHED:
        record.update(state="RUN", exception={"occurred": False})
        return record
    ending = _ending(job, element)
    record.update(ending)
    record.update(
        state="INACTIVE",
        success=ending["result"] == "COMPLETED",
        t_cleanup=element["finish_time"],
        t_inactive=element["finish_time"],
    )
    return record
