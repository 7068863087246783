"""LSF's ``-w`` dependency expressions: parsed here, evaluated by ``simkit.depend``.

``done(1) && (ended("x*") || exit(2, > 1))``, a bare id or name meaning ``done``,
ids with an index (``12[3]``), names with ``*`` and ``name[*]`` (element by element).
"""

from __future__ import annotations

import fnmatch
import re
import time

from ..simkit import depend
from ..simkit.cli import UsageError
from ..simkit.jobs import is_purged, sorted_elements
from ..simkit.runner import Dependency
from ..simkit.store import Json

DEP_TOKEN = re.compile(r"\s*(&&|\|\||!=|!|\(|\)|,|\"[^\"]*\"|'[^']*'|[^\s()&|!,\"']+)")
FUNCTIONS = ("done", "ended", "exit", "started", "post_done", "post_err")


class DependencyError(Exception):
    pass


def tokenize_dependency(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.strip()
    while pos < len(text):
        match = DEP_TOKEN.match(text, pos)
        if not match or match.end() == pos:
            raise DependencyError(text)
        tokens.append(match.group(1))
        pos = match.end()
    return tokens


class _Parser:
    """Recursive descent over the tokens: ``||`` binds loosest, then ``&&``, then ``!``."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = tokenize_dependency(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self) -> str:
        if self.pos >= len(self.tokens):
            raise DependencyError(self.text)
        self.pos += 1
        return self.tokens[self.pos - 1]

    def expect(self, token: str) -> None:
        if self.take() != token:
            raise DependencyError(self.text)

    def tree(self) -> Json:
        if not self.tokens:
            raise DependencyError(self.text)
        node = self.expr()
        if self.pos != len(self.tokens):
            raise DependencyError(self.text)
        return node

    def expr(self) -> Json:
        node = self.term()
        while self.peek() == "||":
            self.take()
            node = {"op": "or", "args": [node, self.term()]}
        return node

    def term(self) -> Json:
        node = self.factor()
        while self.peek() == "&&":
            self.take()
            node = {"op": "and", "args": [node, self.factor()]}
        return node

    def factor(self) -> Json:
        if self.peek() == "!":
            self.take()
            return {"op": "not", "arg": self.factor()}
        if self.peek() == "(":
            self.take()
            node = self.expr()
            self.expect(")")
            return node
        return self.condition()

    def condition(self) -> Json:
        token = self.take()
        if token in ("(", ")", "&&", "||", "!", ",", "!="):
            raise DependencyError(self.text)
        if self.peek() != "(":
            return {"op": "done", "ref": _reference(token)}
        func = token.lower()
        if func not in FUNCTIONS:
            raise DependencyError(self.text)
        self.take()
        node: Json = {"op": func, "ref": _reference(self.take())}
        if self.peek() == ",":
            if func != "exit":
                raise DependencyError(self.text)
            self.take()
            self.exit_code(node)
        self.expect(")")
        return node

    def exit_code(self, node: Json) -> None:
        """``exit(id, 3)``, ``exit(id, != 0)``, ``exit(id, >=2)``."""
        comparison = "=="
        if self.peek() == "!=":
            comparison = self.take()
        match = re.fullmatch(r"(==|!=|>=|<=|>|<)?(\d+)", self.take())
        if not match:
            raise DependencyError(self.text)
        node["cmp"] = match.group(1) or comparison
        node["code"] = int(match.group(2))


def _reference(token: str) -> Json:
    if token[0] in "\"'":
        return {"kind": "name", "value": token[1:-1]}
    if re.fullmatch(r"\d+(\[\d+\])?", token):
        return {"kind": "id", "value": token}
    return {"kind": "name", "value": token}


def parse_dependency(text: str) -> Json:
    """Parse an LSF ``-w`` expression into a small tree (raise DependencyError)."""
    return _Parser(text).tree()


def resolve_ref(
    ref: Json, state: Json, user: str, settings: Json, now: float, own_index: str | None
) -> list[Json]:
    """Elements (dicts) a dependency reference designates; [] when nothing matches."""
    jobs: dict[str, Json] = state["jobs"]
    value: str = ref["value"]
    if ref["kind"] == "id":
        job_id, _, idx = value.partition("[")
        job = jobs.get(job_id)
        if job is None:
            return []
        if idx:
            element = job["elements"].get(idx.rstrip("]"))
            return [element] if element is not None else []
        return [element for _, element in sorted_elements(job)]
    name, _, idx = value.partition("[")
    idx = idx.rstrip("]")
    if idx == "*" and own_index is not None:
        idx = own_index
    elif idx == "*":
        idx = ""
    out: list[Json] = []
    for job in jobs.values():
        if job.get("user") != user or not fnmatch.fnmatchcase(str(job["name"]), name):
            continue
        if idx:
            # Looked up, not searched for: a runner checks ``name[*]`` for each of its
            # own elements, and both arrays may hold thousands.
            candidates = [job["elements"][idx]] if idx in job["elements"] else []
        else:
            candidates = [element for _, element in sorted_elements(job)]
        out.extend(e for e in candidates if not is_purged(e, settings, now))
    return out


def evaluate_dependency(
    node: Json, state: Json, user: str, settings: Json, now: float, own_index: str | None
) -> int:
    """1 satisfied, 0 not yet, -1 can never be satisfied."""
    return depend.evaluate(
        node, lambda ref: resolve_ref(ref, state, user, settings, now, own_index)
    )


def validate_dependency(text: str, state: Json, user: str, settings: Json) -> None:
    """Refuse at submit time what LSF refuses: bad syntax, a job that does not exist."""
    try:
        tree = parse_dependency(text)
    except DependencyError:
        raise UsageError(
            f"{text}: Syntax error in dependency condition. Job not submitted."
        ) from None
    now = time.time()
    for func, ref in depend.references(tree):
        probe = dict(ref)
        if probe["kind"] == "name":
            probe["value"] = str(probe["value"]).replace("[*]", "")
        if not resolve_ref(probe, state, user, settings, now, None):
            raise UsageError(f"{func}({ref['value']}): No matching job found. Job not submitted.")


def job_dependency(job: Json) -> Dependency | None:
    """The runner's view of a submitted job's ``-w`` condition."""
    text = job.get("dependency")
    if not text:
        return None
    tree = parse_dependency(str(text))
    user = str(job["user"])

    def check(state: Json, settings: Json, now: float, own_index: str | None) -> int:
        return evaluate_dependency(tree, state, user, settings, now, own_index)

    return Dependency(check=check, per_element="[*]" in str(text))
