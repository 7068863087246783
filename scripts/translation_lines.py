"""Lines of translation per scheduler: the code lines of ``cluster_api/executors/NAME.py``
and ``NAME_formats.py`` together, leaving out blank lines, comments and docstrings.

Run ``python scripts/translation_lines.py``; ``tests/test_layout.py`` holds each
scheduler to the budget printed here.
"""

from __future__ import annotations

import ast
import io
import sys
import tokenize
from pathlib import Path

EXECUTORS = Path(__file__).resolve().parent.parent / "cluster_api" / "executors"
BUDGET = 350
_SKIPPED = {
    tokenize.COMMENT,
    tokenize.NL,
    tokenize.NEWLINE,
    tokenize.INDENT,
    tokenize.DEDENT,
    tokenize.ENDMARKER,
}


def code_lines(source: str) -> int:
    """Lines holding code: not blank, not only a comment, not part of a docstring."""
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            first = node.body[0] if node.body else None
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines: set[int] = set()
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type not in _SKIPPED:
            lines.update(range(token.start[0], token.end[0] + 1))
    return len(lines - docstrings)


def schedulers() -> dict[str, list[Path]]:
    """Each batch scheduler's files: its module and, when it has one, its formats module."""
    found: dict[str, list[Path]] = {}
    for path in sorted(EXECUTORS.glob("*.py")):
        if path.stem == "__init__" or path.stem.startswith("local"):
            continue  # the local executor runs processes itself: it translates nothing
        found.setdefault(path.stem.removesuffix("_formats"), []).append(path)
    return found


def translation_lines() -> dict[str, int]:
    return {
        name: sum(code_lines(p.read_text()) for p in paths) for name, paths in schedulers().items()
    }


def main() -> int:
    counts = translation_lines()
    for name, count in counts.items():
        verdict = "ok" if count < BUDGET else f"over {BUDGET}"
        print(f"{name:8} {count:4}  {verdict}")
    return 0 if all(c < BUDGET for c in counts.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
