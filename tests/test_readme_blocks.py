"""Every code block of the README and the docs works as written.

A reader copies blocks, so each fenced block carries a marker on the line before it
(then a blank line), ``<!-- check: KIND[; OPTION: VALUE]... -->``, saying how it is used:

``run``
    a whole program, run with ``python`` in a scratch folder;
``run-async``
    lines of a coroutine, run in one where ``executor = create_executor()`` and a started
    ``monitor = JobMonitor(executor)`` exist (as the README's ``main()`` has them);
``pytest``
    a test file, run by pytest in a fresh project that has no configuration of ours;
``config`` / ``config-file``
    YAML that ``load_config`` loads, alone and with each profile, without a warning; a
    ``config-file`` is also the ``cluster_api.yaml`` of the page's later blocks;
``shell``
    commands for a shell (the README walk runs them): every ``cluster-api`` line parses;
``toml``
    TOML that parses; ``output``: sample output; ``skip: REASON``: not checked.

Options: ``fail: 7 13`` makes the stand-in programs fail for those chunks; ``prints:
TEXT`` asks that the block's standard output contain TEXT.

The programs the examples run (``python train.py``, ``./prepare.sh``...) are stand-ins:
a ``python`` first on ``PATH`` that only exits (1 for a ``--chunk`` listed in ``fail``),
so a 500-element array costs 500 ``sh`` starts. The LSF simulator's commands are on
``PATH`` too, for blocks that use an ``lsf`` profile.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import shlex
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from cluster_api import load_config
from cluster_api.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
KINDS = {
    "run": {"python"},
    "run-async": {"python"},
    "pytest": {"python"},
    "config": {"yaml"},
    "config-file": {"yaml"},
    "shell": {"bash", "sh"},
    "toml": {"toml"},
    "output": {"text"},
    "skip": None,  # any language
}
_MARKER = re.compile(r"^<!-- check: (.+?) -->$")
_FENCE = re.compile(r"^```(\w*)\s*$")
BLOCK_TIMEOUT = 300


@dataclasses.dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    kind: str | None
    options: dict[str, str]
    config: str | None  # the page's latest config-file block before this one

    @property
    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"


def parse_marker(text: str) -> tuple[str, dict[str, str]]:
    first, *rest = [part.strip() for part in text.split(";")]
    kind, _, reason = first.partition(":")
    options = {"reason": reason.strip()} if reason else {}
    for part in rest:
        key, _, value = part.partition(":")
        options[key.strip()] = value.strip()
    return kind.strip(), options


def read_blocks(page: Path) -> list[Block]:
    lines = page.read_text(encoding="utf-8").splitlines()
    blocks: list[Block] = []
    marker: str | None = None
    config: str | None = None
    i = 0
    while i < len(lines):
        line = lines[i]
        found = _MARKER.match(line.strip())
        fence = _FENCE.match(line)
        if found:
            marker = found[1]
        elif fence:
            end = next(j for j in range(i + 1, len(lines)) if lines[j].startswith("```"))
            code = "\n".join(lines[i + 1 : end]) + "\n"
            kind, options = parse_marker(marker) if marker else (None, {})
            blocks.append(Block(page, i + 1, fence[1], code, kind, options, config))
            if kind == "config-file":
                config = code
            marker, i = None, end
        elif line.strip():
            marker = None  # a marker belongs to the block right after it
        i += 1
    return blocks


ALL_BLOCKS = [block for page in PAGES for block in read_blocks(page)]


def blocks_of(*kinds: str) -> list[Any]:
    """The blocks of these kinds as pytest parameters, each named by its page and line."""
    return [pytest.param(b, id=b.where) for b in ALL_BLOCKS if b.kind in kinds]


# -- every block is marked, and the cheap checks ------------------------------------------
def test_every_block_says_how_it_is_checked() -> None:
    problems = []
    for block in ALL_BLOCKS:
        languages = KINDS.get(block.kind or "", set())
        if block.kind not in KINDS:
            problems.append(f"{block.where}: no or unknown <!-- check: KIND --> ({block.kind})")
        elif languages is not None and block.lang not in languages:
            problems.append(f"{block.where}: a {block.lang or 'plain'} block marked {block.kind}")
        elif block.kind == "skip" and not block.options.get("reason"):
            problems.append(f"{block.where}: skip without a reason")
    assert not problems, "\n".join(problems)
    assert len(blocks_of("run", "run-async", "pytest")) >= 10


@pytest.mark.parametrize("block", blocks_of("config", "config-file"))
def test_yaml_block_loads_with_every_profile(block: Block, tmp_path: Path) -> None:
    path = tmp_path / "cluster_api.yaml"
    path.write_text(block.code)
    import yaml

    profiles = list((yaml.safe_load(block.code) or {}).get("profiles") or {})
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an unknown key is a mistake in our own docs
        for profile in [None, *profiles]:
            load_config(path, profile)


@pytest.mark.parametrize("block", blocks_of("shell"))
def test_shell_block_cluster_api_lines_parse(block: Block) -> None:
    for line in block.code.splitlines():
        words = shlex.split(line, comments=True)
        if words[:1] != ["cluster-api"]:
            continue
        try:
            build_parser().parse_args(words[1:])
        except SystemExit as exc:  # pragma: no cover - the failure message is the point
            pytest.fail(f"{block.where}: `{line.strip()}` does not parse (exit {exc.code})")


@pytest.mark.parametrize("block", blocks_of("toml"))
def test_toml_block_parses(block: Block) -> None:
    tomllib = pytest.importorskip("tomllib")
    tomllib.loads(block.code)


@pytest.mark.parametrize("block", blocks_of("run", "run-async", "pytest"))
def test_python_block_compiles(block: Block) -> None:
    compile(program_text(block), block.where, "exec")


# -- the API page (docs/_hooks/reference.py fails the docs build on the same problems) ----
def _docs_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hook", ROOT / "docs/_hooks/reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_api_page_documents_every_export_without_raw_roles() -> None:
    assert _docs_hook().api_page_problems((ROOT / "docs" / "api.md").read_text()) == []


def test_api_page_check_finds_a_missing_export_and_a_raw_role() -> None:
    hook = _docs_hook()
    page = (ROOT / "docs" / "api.md").read_text().replace("::: cluster_api.SlurmExecutor", "")
    assert hook.api_page_problems(page) == ["api.md has no '::: cluster_api.SlurmExecutor'"]

    class Documented:
        def method(self) -> None:
            """Written by :meth:`to_dict`."""

    assert hook._rendered_docstrings(Documented)[1][1] == "Written by :meth:`to_dict`."
    assert hook._SPHINX_ROLE.search("Written by :meth:`to_dict`.")


HOME_PAGE_CODE_WIDTH = 72  # what the docs theme shows without a scroll bar on a laptop


def test_home_page_code_lines_fit() -> None:
    wide = [
        f"{b.where}+{n}: {len(line)} characters"
        for b in read_blocks(ROOT / "docs" / "index.md")
        for n, line in enumerate(b.code.splitlines(), 1)
        if len(line) > HOME_PAGE_CODE_WIDTH
    ]
    assert not wide, "\n".join(wide)


# -- running the Python blocks ------------------------------------------------------------
STAND_IN_PYTHON = """#!/bin/sh
# Stand-in for the programs the documentation's jobs run: exit 1 for a failing chunk.
for chunk in $FAIL_CHUNKS; do
    case " $* " in *" --chunk $chunk "*) exit 1;; esac
done
exit 0
"""
STAND_IN_SCRIPTS = ("prepare.sh", "analyse.sh")


def program_text(block: Block) -> str:
    if block.kind != "run-async":
        return block.code
    body = textwrap.indent(block.code, " " * 8)
    return (
        "import asyncio\n"
        "from cluster_api import *  # the names the page imported earlier\n\n"
        "async def fragment():\n"
        "    executor = create_executor()\n"
        "    first = executor\n"
        "    async with JobMonitor(executor) as monitor:\n"
        f"{body}"
        "        if first.jobs:\n"
        "            await monitor.wait_for(*first.jobs.values(), timeout=240)\n\n"
        "asyncio.run(fragment())\n"
    )


def _scratch(block: Block, tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A folder to run the block in, and the environment: stand-ins and the LSF simulator
    first on PATH, a private HOME, the page's config file if it has one."""
    from cluster_api.testing import install_simulator

    work, stubs, home = tmp_path / "work", tmp_path / "stubs", tmp_path / "home"
    for folder in (work, stubs, home):
        folder.mkdir()
    (stubs / "python").write_text(STAND_IN_PYTHON)
    (stubs / "python").chmod(0o755)
    for name in STAND_IN_SCRIPTS:
        (work / name).write_text("#!/bin/sh\nexit 0\n")
        (work / name).chmod(0o755)
    if block.config is not None:
        (work / "cluster_api.yaml").write_text(block.config)
    simulator = install_simulator(tmp_path / "lsfsim")
    env = {k: v for k, v in os.environ.items() if k != "CLUSTER_API_CONFIG"}
    env.update(simulator.env)
    env["PATH"] = f"{stubs}{os.pathsep}{env['PATH']}"
    env["HOME"] = str(home)
    env["FAIL_CHUNKS"] = block.options.get("fail", "")
    return work, env


def _kill_simulated_jobs(tmp_path: Path) -> None:
    from cluster_api.testing import LSFSimulator

    if (tmp_path / "lsfsim").exists():
        LSFSimulator(tmp_path / "lsfsim").kill_everything()


def _run(argv: list[str], cwd: Path, env: dict[str, str], where: str) -> str:
    try:
        result = subprocess.run(
            argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=BLOCK_TIMEOUT
        )
    except subprocess.TimeoutExpired as exc:
        pytest.fail(f"{where} still running after {BLOCK_TIMEOUT} s: {exc.output!r}")
    assert result.returncode == 0, (
        f"{where} exited {result.returncode}:\n{result.stdout}\n{result.stderr}"
    )
    assert "Traceback" not in result.stderr, f"{where}:\n{result.stderr}"
    return result.stdout


@pytest.mark.integration
@pytest.mark.parametrize("block", blocks_of("run", "run-async"))
def test_python_block_runs(block: Block, tmp_path: Path) -> None:
    work, env = _scratch(block, tmp_path)
    program = work / "block.py"
    program.write_text(program_text(block))
    try:
        out = _run([sys.executable, str(program)], work, env, block.where)
    finally:
        _kill_simulated_jobs(tmp_path)
    if "prints" in block.options:
        assert block.options["prints"] in out, f"{block.where} printed:\n{out}"


PLUGIN = ["-p", "cluster_api.testing.plugin"]  # opt-in, as the pages tell users


@pytest.mark.integration
@pytest.mark.parametrize("block", blocks_of("pytest"))
def test_pytest_block_passes_in_a_fresh_project(block: Block, tmp_path: Path) -> None:
    """In a user's own project: no pytest configuration of ours (no ``asyncio_mode``), the
    plugin loaded with ``-p`` as the pages say, whatever else is installed."""
    project = tmp_path / "my-pipeline"
    (project / "tests").mkdir(parents=True)
    (project / "pyproject.toml").write_text('[project]\nname = "my-pipeline"\nversion = "1"\n')
    (project / "tests" / "test_from_docs.py").write_text(block.code)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST_", "CLUSTER_API_"))}
    out = _run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *PLUGIN, "tests"],
        project,
        env,
        block.where,
    )
    assert re.search(r"\b1 passed\b", out), out
