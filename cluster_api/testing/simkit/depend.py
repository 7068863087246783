"""Dependency bookkeeping: when a parsed condition is met, not yet, or never.

A scheduler's submit command parses its own syntax (LSF ``-w "done(1) && ended(x*)"``,
PBS ``-W depend=afterok:1``) into the tree evaluated here: ``{"op": "and"|"or",
"args": [...]}``, ``{"op": "not", "arg": ...}`` or a condition on the elements a
reference designates, ``{"op": "done"|"ended"|"exit"|"started", "ref": ..., ["cmp",
"code"]}`` (``post_done`` and ``post_err`` count as ``done`` and ``exit``). What a
reference is (id, name pattern) is the scheduler's business: it passes a resolver.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

from .jobs import STAT_FINISHED, STAT_PENDING
from .store import Json

SATISFIED, WAITING, NEVER = 1, 0, -1

Resolver = Callable[[Json], list[Json]]
"""A reference of the tree -> the elements (records) it designates now."""

COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
}


def evaluate(node: Json, resolve: Resolver) -> int:
    """1 satisfied, 0 not yet, -1 can never be satisfied."""
    op = node["op"]
    if op == "and":
        values = [evaluate(arg, resolve) for arg in node["args"]]
        return NEVER if NEVER in values else (SATISFIED if all(v == 1 for v in values) else 0)
    if op == "or":
        values = [evaluate(arg, resolve) for arg in node["args"]]
        return SATISFIED if SATISFIED in values else (NEVER if all(v == -1 for v in values) else 0)
    if op == "not":
        return WAITING if evaluate(node["arg"], resolve) == SATISFIED else SATISFIED
    elements = resolve(node["ref"])
    if not elements:
        return WAITING
    return _condition(node, elements)


def _condition(node: Json, elements: list[Json]) -> int:
    op = node["op"]
    stats = [e.get("stat") for e in elements]
    if op in ("done", "post_done"):
        if "EXIT" in stats:
            return NEVER
        return SATISFIED if all(s == "DONE" for s in stats) else WAITING
    if op == "ended":
        return SATISFIED if all(s in STAT_FINISHED for s in stats) else WAITING
    if op == "started":
        return SATISFIED if all(s not in STAT_PENDING for s in stats) else WAITING
    if op in ("exit", "post_err"):
        if "DONE" in stats:
            return NEVER
        if not all(s == "EXIT" for s in stats):
            return WAITING
        if "code" not in node:
            return SATISFIED
        code = int(node["code"])
        check = COMPARISONS[str(node["cmp"])]
        met = all(check(int(e.get("exit_code") or 0), code) for e in elements)
        return SATISFIED if met else NEVER
    return WAITING


def references(node: Json) -> list[tuple[str, Json]]:
    """(condition, reference) of every leaf: the submit command checks each exists."""
    if node["op"] in ("and", "or"):
        return [r for a in node["args"] for r in references(a)]
    if node["op"] == "not":
        return references(node["arg"])
    return [(str(node["op"]), node["ref"])]
