"""MkDocs hook: pages generated from the code, so the docs cannot drift from it.

Markers in the Markdown sources are replaced at build time:

``<!-- config-reference -->``
    a table of every :class:`cluster_api.ClusterConfig` field with its type, default
    and one-line description, then the keys each registered plugin executor declares.
    Each key is described where it is declared (``cluster_api.options.option``: a
    ``ClusterConfig`` field, or a scheduler's ``options`` class). The build fails when
    a field has no description, and so does the test suite (``tests/test_cli.py``).
``<!-- directives:NAME -->``
    for executor ``NAME``, the directive lines each ``ResourceSpec`` field produces,
    computed by calling the executor's ``build_header``.
``<!-- cli-help:COMMAND -->``
    the ``--help`` text of ``cluster-api COMMAND`` (``-`` for the top level).
``<!-- lsfsim-settings -->``
    the LSF simulator's settings with their defaults (from ``lsfsim.DEFAULT_SETTINGS``).

The build also fails when ``api.md`` lacks a name of ``cluster_api.__all__`` or a
docstring it renders holds a Sphinx role (mkdocstrings shows ``:func:`x``` as raw text).
"""

from __future__ import annotations

import dataclasses
import inspect
import os
import re
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:  # build from a checkout without installing it
    sys.path.insert(0, str(ROOT))


def _fields() -> list[dataclasses.Field[Any]]:
    from cluster_api import ClusterConfig

    hidden = {"sources", "plugin_options"}
    return [f for f in dataclasses.fields(ClusterConfig) if f.name not in hidden]


def _description(f: dataclasses.Field[Any]) -> str:
    """The description the key was declared with (``cluster_api.options.option``)."""
    return str(f.metadata.get("doc", ""))


def description_problems() -> list[str]:
    """Fields declared without a description (empty when every key has one)."""
    return [
        f"ClusterConfig.{f.name} has no description"
        for f in _fields()
        if not _description(f).strip()
    ]


def _yaml_value(value: Any) -> str:
    text = yaml.safe_dump({"k": value}, default_flow_style=True, width=10**6).strip()
    return text[len("{k: ") : -1]


def _row(f: dataclasses.Field[Any], description: str) -> str:
    missing = f.default is dataclasses.MISSING
    default = f.default_factory() if missing else f.default  # type: ignore[misc]
    kind = f.type.__name__ if isinstance(f.type, type) else str(f.type)  # a plugin's may be real
    return f"| `{f.name}` | `{kind}` | `{_yaml_value(default)}` | {description} |"


def plugin_option_fields() -> list[tuple[str, dataclasses.Field[Any]]]:
    """(executor name, field) of each key a registered executor declares beyond the
    ClusterConfig fields; executors that cannot be loaded are left out."""
    import cluster_api
    from cluster_api.executors import get_executor_class

    names = {f.name for f in _fields()}
    found = []
    for name in cluster_api.available_executors():
        try:
            options = get_executor_class(name).options
        except ValueError:
            continue
        found += [(name, f) for f in dataclasses.fields(options) if f.name not in names]
    return found


def config_reference() -> str:
    """The Markdown table of every config field, then the plugin executors' keys."""
    problems = description_problems()
    if problems:
        raise ValueError("; ".join(problems))
    rows = ["| Key | Type | Default | Description |", "| --- | --- | --- | --- |"]
    rows += [_row(f, _description(f)) for f in _fields()]
    for executor, f in plugin_option_fields():
        doc = str(f.metadata.get("doc", "")).strip() or "*(not described by the plugin)*"
        rows.append(_row(f, f"Executor `{executor}` (a plugin): {doc}"))
    return "\n".join(rows)


#: Example values used to show what each ResourceSpec field becomes.
_EXAMPLES: dict[str, Any] = {
    "cpus": 4,
    "gpus": 1,
    "memory": "8 GB",
    "walltime": "01:30",
    "queue": "short",
    "account": "proj42",
    "work_dir": "/scratch/me/run2",
    "stdout_path": "/scratch/me/logs/out.log",
    "stderr_path": "/scratch/me/logs/err.log",
}
_EXTRA_DIRECTIVE = {
    "lsf": "-B",
    "slurm": "--exclusive",
    "sge": "-notify",
    "flux": "--exclusive",
    "pbs": "-r n",
    "torque": "-r n",
}
_BASE_DIR = "/scratch/me/run1"


def directive_table(executor_name: str) -> str:
    """What each ResourceSpec field adds to (or changes in) the header of a job ``demo``."""
    from cluster_api import ClusterConfig, ResourceSpec
    from cluster_api.executors import get_executor_class

    try:
        cls = get_executor_class(executor_name)
    except ValueError as exc:
        return (
            f'!!! note "Not generated"\n    The `{executor_name}` executor cannot be loaded in '
            f"this build ({exc}), so no example header is generated here."
        )
    executor = cls(ClusterConfig(executor=executor_name, job_name_prefix="capi"))

    def header(**fields: Any) -> list[str]:
        return executor.build_header("demo", ResourceSpec(**{"work_dir": _BASE_DIR, **fields}))

    base = header()
    if not base and not any(header(**{k: v}) for k, v in _EXAMPLES.items()):
        return f"`{cls.__name__}.build_header()` returns no lines, whatever the resources."
    examples = dict(_EXAMPLES)
    examples["extra_directives"] = [_EXTRA_DIRECTIVE.get(executor_name, "--example")]
    rows = ["| Field | Example | Header lines it adds or changes |", "| --- | --- | --- |"]
    always = "<br>".join(f"`{line}`" for line in base) if base else "*(none)*"
    rows.append(f'| (always) | `name="demo"`, `work_dir="{_BASE_DIR}"` | {always} |')
    for name, value in examples.items():
        try:
            lines = [line for line in header(**{name: value}) if line not in base]
        except ValueError as exc:  # a field this scheduler refuses (SGE: gpus, Flux: memory)
            rows.append(f"| `{name}` | `{value!r}` | refused: {exc} |")
            continue
        shown = "<br>".join(f"`{line}`" for line in lines) if lines else "*(none)*"
        rows.append(f"| `{name}` | `{value!r}` | {shown} |")
    return "\n".join(rows)


def cli_help(command: str) -> str:
    """The ``--help`` text of ``cluster-api COMMAND`` as a code block."""
    import argparse

    from cluster_api.cli import build_parser

    os.environ["COLUMNS"] = "88"  # argparse wraps to the terminal width
    parser = build_parser()
    for word in [] if command == "-" else command.split():
        action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
        parser = action.choices[word]
    return f"```text\n{parser.format_help().rstrip()}\n```"


#: What each setting of the LSF simulator means (``LSFSimulator.set(...)``).
LSFSIM_SETTINGS: dict[str, str] = {
    "clean_period": "seconds a finished job stays in `bjobs` (lsb.params `CLEAN_PERIOD`)",
    "display_year": "year and seconds in times (lsf.conf `LSB_DISPLAY_YEAR`; the variable wins)",
    "parse_script": "read the `#BSUB` lines of `bsub script.sh` (`LSB_BSUB_PARSE_SCRIPT`)",
    "slots": "job slots of the whole cluster (`null`: unlimited); `-n` counts",
    "unit_for_limits": "unit of a bare `-M` number (lsf.conf `LSF_UNIT_FOR_LIMITS`)",
    "seconds_per_minute": "real seconds in one `-W` minute, to test run limits quickly",
    "job_terminate_interval": "seconds from SIGINT/SIGTERM to SIGKILL when a job is killed",
    "mem_sample_interval": "seconds between two samples of a running job's memory",
    "max_array_size": "largest job array (lsb.params `MAX_JOB_ARRAY_SIZE`)",
}


def lsfsim_settings() -> str:
    """The Markdown table of the simulator's settings and their defaults."""
    from cluster_api.testing import lsfsim

    defaults: dict[str, Any] = lsfsim.DEFAULT_SETTINGS
    missing = sorted(set(defaults) - set(LSFSIM_SETTINGS))
    if missing:
        raise ValueError(f"LSF simulator settings without a description: {', '.join(missing)}")
    rows = ["| Setting | Default | Meaning |", "| --- | --- | --- |"]
    for name, default in defaults.items():
        rows.append(f"| `{name}` | `{_yaml_value(default)}` | {LSFSIM_SETTINGS[name]} |")
    return "\n".join(rows)


_MARKER = re.compile(
    r"<!--\s*(config-reference|lsfsim-settings|directives:(\w+)|cli-help:([\w -]+?))\s*-->"
)


def _replace(match: re.Match[str]) -> str:
    if match[1] == "config-reference":
        return config_reference()
    if match[1] == "lsfsim-settings":
        return lsfsim_settings()
    if match[2]:
        return directive_table(match[2])
    return cli_help(match[3].strip())


_SPHINX_ROLE = re.compile(r":(?:func|meth|class|attr|data|mod|exc|obj|ref):`")


def documented_objects(api_markdown: str) -> list[str]:
    """The dotted names of ``::: name`` blocks."""
    return re.findall(r"^::: (\S+)", api_markdown, re.M)


def _rendered_docstrings(obj: Any) -> list[tuple[str, str]]:
    """(name, docstring) of ``obj`` and of its public methods, properties and nested
    classes: what mkdocstrings renders for a ``:::`` block."""
    found = [(getattr(obj, "__qualname__", repr(obj)), inspect.getdoc(obj) or "")]
    if inspect.isclass(obj):
        for name, member in vars(obj).items():
            if name.startswith("_"):
                continue
            if isinstance(member, property):
                member = member.fget
            if isinstance(member, (staticmethod, classmethod)):
                member = member.__func__
            if inspect.isfunction(member) or inspect.isclass(member):
                found.append((f"{obj.__qualname__}.{name}", inspect.getdoc(member) or ""))
    return found


def api_page_problems(api_markdown: str) -> list[str]:
    """Exported names the API page lacks, and Sphinx roles in the docstrings it renders."""
    import importlib

    import cluster_api

    names = documented_objects(api_markdown)
    shown = {name.removeprefix("cluster_api.") for name in names}
    problems = [
        f"api.md has no '::: cluster_api.{name}'"
        for name in cluster_api.__all__
        if name not in shown
    ]
    for dotted in names:
        module_name, _, attr = dotted.rpartition(".")
        obj = getattr(importlib.import_module(module_name), attr, None)
        if obj is None:
            problems.append(f"api.md documents {dotted}, which does not exist")
            continue
        for where, doc in _rendered_docstrings(obj):
            role = _SPHINX_ROLE.search(doc)
            if role:
                problems.append(f"docstring of {where} has a raw Sphinx role {role[0]}...")
    return problems


# -- mkdocs hook events ------------------------------------------------------------------
def on_config(config: Any) -> Any:
    from mkdocs.exceptions import PluginError

    problems = description_problems()
    if problems:
        raise PluginError("config reference out of date: " + "; ".join(problems))
    api_page = Path(config["docs_dir"]) / "api.md"
    problems = api_page_problems(api_page.read_text(encoding="utf-8"))
    if problems:
        raise PluginError("API page out of date: " + "; ".join(problems))
    return config


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    return _MARKER.sub(_replace, markdown)
