"""Scheduler-specific config keys: declared once by the executor (its ``options``
dataclass), validated and documented from there; structured config errors."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
import textwrap
import typing
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from cluster_api import ClusterAPIError, ClusterConfig, create_executor, load_config
from cluster_api.errors import ConfigError, ConfigWarning
from cluster_api.executors import ENTRY_POINT_GROUP, get_executor_class
from cluster_api.options import BatchOptions, LocalOptions, LSFOptions

ROOT = Path(__file__).resolve().parents[1]

TOY_PLUGIN = '''
"""A third-party executor with config keys of its own."""
from dataclasses import dataclass

from cluster_api import LocalExecutor
from cluster_api.options import LocalOptions, option


@dataclass(frozen=True)
class ToyOptions(LocalOptions):
    toy_greeting: str = option(
        "hello", "Toy: the word each job is greeted with.", choices=("hello", "bonjour")
    )
    toy_retries: int = option(1, "Toy: how often a refused submission is retried.", minimum=1)


class ToyExecutor(LocalExecutor):
    name = "toy"
    options = ToyOptions

    @property
    def greeting(self) -> str:
        return self.config.options_for(self.options).toy_greeting
'''


@pytest.fixture
def toy_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The toy plugin installed the way pip leaves it: a package and its dist-info."""
    site = tmp_path / "site"
    (site / "toy_plugin").mkdir(parents=True)
    (site / "toy_plugin" / "__init__.py").write_text(TOY_PLUGIN)
    dist_info = site / "toy_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-plugin\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(
        textwrap.dedent(f"[{ENTRY_POINT_GROUP}]\ntoy = toy_plugin:ToyExecutor\n")
    )
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.delenv("CLUSTER_API_CONFIG", raising=False)
    yield tmp_path
    sys.modules.pop("toy_plugin", None)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


# -- a plugin declares its own keys ---------------------------------------------------------
def test_plugin_key_is_kept_typed_and_reachable_from_the_executor(toy_plugin: Path) -> None:
    path = write(
        toy_plugin / "site.yaml",
        f"executor: toy\nlog_directory: {toy_plugin / 'logs'}\ntoy_greeting: bonjour\n",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a declared key is not "unknown"
        config = load_config(path)
    assert config.plugin_options == {"toy_greeting": "bonjour"}
    assert config.sources["toy_greeting"] == str(path)
    assert config.sources["toy_retries"] == "default"
    executor = create_executor(config_path=path, toy_retries=3)
    options = executor.config.options_for(type(executor).options)
    assert (options.toy_greeting, options.toy_retries) == ("bonjour", 3)
    assert executor.greeting == "bonjour"  # type: ignore[attr-defined]
    assert options.local_max_running is None  # inherited LocalOptions key, a field


def test_plugin_key_bad_value_is_a_config_error_with_key_file_and_line(toy_plugin: Path) -> None:
    path = write(toy_plugin / "site.yaml", "executor: toy\nqueue: q\ntoy_retries: 0\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    error = raised.value
    assert (error.key, error.origin, error.line) == ("toy_retries", str(path), 3)
    assert str(error) == f"{path}: config.toy_retries must be a whole number >= 1, got 0"
    path.write_text("executor: toy\ntoy_greeting: hola\n")
    with pytest.raises(ValueError, match=r"toy_greeting must be one of hello, bonjour, got 'hola'"):
        load_config(path)


def test_plugin_key_typo_gets_did_you_mean(toy_plugin: Path) -> None:
    path = write(toy_plugin / "site.yaml", "executor: toy\ntoy_greting: bonjour\n")
    with pytest.warns(ConfigWarning) as caught:
        config = load_config(path)
    assert str(caught[0].message) == (
        f"{path}: unknown config key 'toy_greting' ignored (did you mean 'toy_greeting'?)"
    )
    assert (caught[0].message.key, caught[0].message.line) == ("toy_greting", 2)  # type: ignore[union-attr]
    assert config.plugin_options == {}
    with pytest.raises(ConfigError, match=r"'toy_retrys' \(did you mean 'toy_retries'\?\)"):
        load_config(overrides={"executor": "toy", "toy_retrys": 2})


def test_plugin_key_is_unknown_to_other_executors(toy_plugin: Path) -> None:
    path = write(toy_plugin / "site.yaml", "executor: local\ntoy_greeting: bonjour\n")
    with pytest.warns(UserWarning, match="unknown config key 'toy_greeting' ignored"):
        assert load_config(path).plugin_options == {}
    with pytest.raises(ConfigError, match="not a key of the 'local' executor"):
        ClusterConfig(plugin_options={"toy_greeting": "bonjour"})


def test_plugin_key_in_a_profile_is_located_in_it(toy_plugin: Path) -> None:
    path = write(
        toy_plugin / "site.yaml",
        "executor: local\nprofiles:\n  toy:\n    executor: toy\n    toy_retries: many\n",
    )
    assert load_config(path).executor == "local"
    with pytest.raises(ConfigError) as raised:
        load_config(path, "toy")
    assert raised.value.origin == f"profile 'toy' in {path}"
    assert (raised.value.key, raised.value.line) == ("toy_retries", 5)


def _docs_hook() -> ModuleType:
    spec = importlib.util.spec_from_file_location("docs_hook", ROOT / "docs/_hooks/reference.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_plugin_keys_are_documented_by_the_docs_hook(toy_plugin: Path) -> None:
    table = _docs_hook().config_reference()
    assert (
        "| `toy_greeting` | `str` | `hello` | Executor `toy` (a plugin): "
        "Toy: the word each job is greeted with. |" in table
    )
    assert "| `toy_retries` | `int` | `1` |" in table
    assert table.count("| `local_max_running` |") == 1  # inherited: a field, shown once


def test_plugin_with_options_config_files_cannot_hold_is_refused_by_name(
    toy_plugin: Path,
) -> None:
    import toy_plugin as plugin  # type: ignore[import-not-found]

    @dataclasses.dataclass(frozen=True)
    class Odd:
        toy_callback: object = None

    monkey = pytest.MonkeyPatch()
    monkey.setattr(plugin.ToyExecutor, "options", Odd)
    try:
        with pytest.raises(ValueError, match=r"executor 'toy' .* has bad options: .*toy_callback"):
            get_executor_class("toy")
        with pytest.raises(ConfigError, match="toy_callback"):
            create_executor(executor="toy")
    finally:
        monkey.undo()


# -- the built-in keys: declared once, by the executors -------------------------------------
@pytest.mark.parametrize(
    ("executor", "options", "keys"),
    [
        (
            "lsf",
            LSFOptions,
            {"use_stdin", "poll_all_users", "array_chunk_size", "lsf_units", "suppress_job_email"},
        ),
        ("slurm", BatchOptions, {"use_stdin", "poll_all_users", "array_chunk_size"}),
        ("local", LocalOptions, {"local_max_running"}),
    ],
)
def test_builtin_executors_declare_their_keys(
    executor: str, options: type[object], keys: set[str]
) -> None:
    cls = get_executor_class(executor)
    assert cls.options is options
    assert {f.name for f in dataclasses.fields(cls.options)} == keys
    config_fields = {f.name: f for f in dataclasses.fields(ClusterConfig)}
    config_types = typing.get_type_hints(ClusterConfig)
    option_types = typing.get_type_hints(options)
    for f in dataclasses.fields(cls.options):
        field = config_fields[f.name]  # the released flat key stays a field
        assert (field.default, config_types[f.name]) == (f.default, option_types[f.name])
        assert field.metadata["doc"] == f.metadata["doc"]  # described once, by the option
        assert getattr(ClusterConfig().options_for(options), f.name) == f.default


def test_builtin_keys_are_validated_from_their_declaration() -> None:
    with pytest.raises(ConfigError, match=r"config\.lsf_units must be one of KB, MB, GB, TB"):
        ClusterConfig(lsf_units="PB")
    assert ClusterConfig(lsf_units="gb").lsf_units == "gb"  # choices are case-insensitive
    with pytest.raises(ConfigError, match=r"config\.local_max_running must be a whole number"):
        ClusterConfig(local_max_running=0)
    assert ClusterConfig(executor="lsf", lsf_units="GB").options_for(LSFOptions).lsf_units == "GB"


# -- structured errors ----------------------------------------------------------------------
def test_config_error_carries_key_origin_and_line(tmp_path: Path) -> None:
    path = write(tmp_path / "site.yaml", "queue: q\nprofiles:\n  fast:\n    poll_interval: -1\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path, "fast")
    error = raised.value
    assert isinstance(error, ValueError) and isinstance(error, ClusterAPIError)
    assert (error.key, error.origin, error.line) == (
        "poll_interval",
        f"profile 'fast' in {path}",
        4,
    )
    assert error.problem == "config.poll_interval must be more than 0, got -1"
    with pytest.raises(ConfigError) as override:
        load_config(path, overrides={"cpus": 0})
    assert (override.value.key, override.value.origin, override.value.line) == (
        "cpus",
        "override",
        None,
    )


def test_yaml_syntax_error_carries_line_and_column(tmp_path: Path) -> None:
    path = write(tmp_path / "site.yaml", "executor: lsf\nqueue: [normal\n")
    with pytest.raises(ConfigError) as raised:
        load_config(path)
    error = raised.value
    assert (error.key, error.line, error.column) == (None, 3, 1)
    assert str(error).startswith(f"{path}: invalid YAML at line 3, column 1: ")
    assert error.problem.startswith("invalid YAML: ")


def test_every_key_is_declared_once_with_its_description() -> None:
    from cluster_api.config import CONFIG_FIELDS

    hook = _docs_hook()
    assert not hasattr(hook, "CONFIG_DESCRIPTIONS")  # no second list of descriptions
    for f in dataclasses.fields(ClusterConfig):
        if f.name in CONFIG_FIELDS:
            assert f.metadata["doc"].strip(), f.name
            assert f"| `{f.name}` |" in hook.config_reference()
