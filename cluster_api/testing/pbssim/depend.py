"""``-W depend=afterok:1.srv:2.srv,afterany:3.srv`` parsed into the tree of
``simkit.depend``: afterok -> done, afternotok -> exit, afterany -> ended, after ->
started; Torque's ``afterokarray`` (and friends) wait for every subjob of an array.
A dependency that can never be met deletes the job, as PBS and Torque do."""

from __future__ import annotations

import re

from ..simkit import depend
from ..simkit.cli import UsageError
from ..simkit.runner import Dependency
from ..simkit.store import Json

TYPES = {"afterok": "done", "afternotok": "exit", "afterany": "ended", "after": "started"}
JOB_ID = re.compile(r"^(\d+)(?:\[\d*\])?(?:\.[A-Za-z0-9][A-Za-z0-9._-]*)?$")


def parse_depend(text: str) -> Json:
    """The condition tree of a ``depend=`` value; UsageError naming a bad part."""
    args = []
    for part in text.split(","):
        kind, _, ids = part.partition(":")
        op = TYPES.get(kind.removesuffix("array"))
        numbers = [JOB_ID.match(i) for i in ids.split(":")] if ids else []
        if op is None or not numbers or not all(numbers):
            raise UsageError(f"qsub: illegal -W value: depend={text}", 2)
        args += [{"op": op, "ref": m.group(1)} for m in numbers if m]
    return {"op": "and", "args": args}


def check_references(tree: Json, state: Json, server: str) -> None:
    """PBS refuses a dependency on a job it does not know."""
    for _, ref in depend.references(tree):
        if str(ref) not in state["jobs"]:
            raise UsageError(f"qsub: Unknown Job Id {ref}.{server}", 153)


def job_dependency(job: Json) -> Dependency | None:
    """The runner's view of a submitted job's ``-W depend=``."""
    if not job.get("dependency"):
        return None
    tree = parse_depend(str(job["dependency"]))

    def check(state: Json, settings: Json, now: float, own_index: str | None) -> int:
        def resolve(ref: Json) -> list[Json]:
            other = state["jobs"].get(str(ref))
            return list(other["elements"].values()) if other else []

        return depend.evaluate(tree, resolve)

    return Dependency(check=check, per_element=False)
