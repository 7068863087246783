"""The size limits of issue #12, held for every module of the package: a module is at most
500 lines, a function at most 80, and a batch scheduler at most 350 lines of translation
(its module and formats module, as ``scripts/translation_lines.py`` counts them)."""

from __future__ import annotations

import ast
import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted((ROOT / "cluster_api").rglob("*.py"))


def _translation_lines() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "translation_lines", ROOT / "scripts" / "translation_lines.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


COUNTER = _translation_lines()


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_and_functions_stay_short(path: Path) -> None:
    text = path.read_text()
    assert len(text.splitlines()) <= 500
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            assert length <= 80, f"{node.name} is {length} lines"


@pytest.mark.parametrize("name", sorted(COUNTER.schedulers()))
def test_each_scheduler_is_under_its_translation_budget(name: str) -> None:
    count = COUNTER.translation_lines()[name]
    assert count < COUNTER.BUDGET, f"{name}: {count} lines of translation"


def test_the_counter_leaves_out_docstrings_comments_and_blank_lines() -> None:
    source = '"""Module."""\n\n# a comment\ndef f():\n    """Doc\n    string."""\n    return 1\n'
    assert COUNTER.code_lines(source) == 2


def test_every_batch_scheduler_is_counted() -> None:
    assert {"lsf", "slurm", "sge", "pbs", "torque", "flux"} <= set(COUNTER.schedulers())
