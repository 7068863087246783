"""Configuration: where the file is found, how it merges, and how bad values are reported."""

from __future__ import annotations

import dataclasses
import warnings
from pathlib import Path

import pytest

import cluster_api
from cluster_api import ClusterConfig, LocalExecutor, LSFExecutor, create_executor, load_config
from cluster_api.config import parse_memory_bytes
from cluster_api.units import parse_walltime_seconds


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Path]:
    """No real config can leak in: empty $HOME, empty cwd, no $CLUSTER_API_CONFIG."""
    home = tmp_path / "home"
    cwd = tmp_path / "cwd"
    home.mkdir()
    cwd.mkdir()
    monkeypatch.delenv("CLUSTER_API_CONFIG", raising=False)
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(cwd)
    return {"home": home, "cwd": cwd, "root": tmp_path}


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def home_config(isolated: dict[str, Path]) -> Path:
    return isolated["home"] / ".config" / "cluster_api" / "config.yaml"


# -- defaults ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "default"),
    [
        ("executor", "local"),
        ("cpus", None),
        ("gpus", None),
        ("memory", None),
        ("walltime", None),
        ("queue", None),
        ("account", None),
        ("poll_interval", 10.0),
        ("log_directory", "./logs"),
        ("job_name_prefix", "capi"),
        ("shebang", "#!/bin/bash"),
        ("script_prologue", []),
        ("script_epilogue", []),
        ("extra_directives", []),
        ("directives_skip", []),
        ("extra_args", []),
        ("use_stdin", False),
        ("lsf_units", "MB"),
        ("suppress_job_email", True),
        ("command_timeout", 100.0),
        ("zombie_timeout_minutes", 30.0),
        ("completed_retention_minutes", 10.0),
        ("poll_all_users", False),
    ],
)
def test_defaults_match_the_contract(name: str, default: object) -> None:
    assert getattr(ClusterConfig(), name) == default
    assert getattr(load_config(), name) == default


def test_no_file_anywhere_means_all_defaults() -> None:
    config = load_config()
    assert config == ClusterConfig()
    assert set(config.sources.values()) == {"default"}


def test_list_defaults_are_not_shared_between_instances() -> None:
    a, b = ClusterConfig(), ClusterConfig()
    a.script_prologue.append("module load x")
    assert b.script_prologue == []


# -- search order ------------------------------------------------------------------------
def test_env_var_wins_over_cwd_and_home(
    isolated: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = write(isolated["root"] / "elsewhere" / "site.yaml", "queue: from-env\n")
    write(isolated["cwd"] / "cluster_api.yaml", "queue: from-cwd\n")
    write(home_config(isolated), "queue: from-home\n")
    monkeypatch.setenv("CLUSTER_API_CONFIG", str(env_file))
    config = load_config()
    assert config.queue == "from-env"
    assert config.sources["queue"] == str(env_file)


def test_cwd_file_wins_over_home(isolated: dict[str, Path]) -> None:
    write(isolated["cwd"] / "cluster_api.yaml", "queue: from-cwd\n")
    write(home_config(isolated), "queue: from-home\n")
    assert load_config().queue == "from-cwd"


def test_home_file_used_when_nothing_else(isolated: dict[str, Path]) -> None:
    write(home_config(isolated), "queue: from-home\ncpus: 2\n")
    config = load_config()
    assert (config.queue, config.cpus) == ("from-home", 2)


def test_cwd_file_is_looked_up_in_the_current_directory(
    isolated: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    other = isolated["root"] / "other"
    write(other / "cluster_api.yaml", "queue: other-dir\n")
    assert load_config().queue is None
    monkeypatch.chdir(other)
    assert load_config().queue == "other-dir"


def test_explicit_path_wins_over_env_var(
    isolated: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    env_file = write(isolated["root"] / "env.yaml", "queue: from-env\n")
    explicit = write(isolated["root"] / "explicit.yaml", "queue: explicit\n")
    monkeypatch.setenv("CLUSTER_API_CONFIG", str(env_file))
    assert load_config(explicit).queue == "explicit"
    assert load_config(str(explicit)).queue == "explicit"


def test_explicit_missing_path_raises_file_not_found(isolated: dict[str, Path]) -> None:
    write(isolated["cwd"] / "cluster_api.yaml", "queue: from-cwd\n")
    with pytest.raises(FileNotFoundError):
        load_config(isolated["root"] / "nope.yaml")
    with pytest.raises(FileNotFoundError):
        create_executor(config_path=isolated["root"] / "nope.yaml")


def test_empty_file_means_defaults(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "empty.yaml", "")
    assert load_config(path) == ClusterConfig()


# -- merging -----------------------------------------------------------------------------
PROFILES_YAML = """\
executor: lsf
queue: normal
cpus: 1
memory: 4 GB
profiles:
  gpu:
    queue: gpu
    gpus: 2
  big:
    memory: 64 GB
    cpus: 16
"""


def test_merge_base_then_profile_then_overrides(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "site.yaml", PROFILES_YAML)
    base = load_config(path)
    assert (base.queue, base.gpus, base.cpus, base.memory) == ("normal", None, 1, "4 GB")

    gpu = load_config(path, profile="gpu")
    assert (gpu.executor, gpu.queue, gpu.gpus, gpu.cpus, gpu.memory) == (
        "lsf",
        "gpu",
        2,
        1,
        "4 GB",
    )

    overridden = load_config(path, profile="gpu", overrides={"queue": "short", "cpus": 8})
    assert (overridden.queue, overridden.gpus, overridden.cpus) == ("short", 2, 8)


def test_overrides_without_a_file(isolated: dict[str, Path]) -> None:
    config = load_config(overrides={"executor": "lsf", "memory": "8 GB"})
    assert (config.executor, config.memory) == ("lsf", "8 GB")


def test_unknown_profile_lists_the_available_ones(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "site.yaml", PROFILES_YAML)
    with pytest.raises(ValueError, match="nosuch") as info:
        load_config(path, profile="nosuch")
    assert "gpu" in str(info.value)
    assert "big" in str(info.value)


def test_unknown_profile_without_any_file_is_an_error() -> None:
    with pytest.raises(ValueError, match="nosuch"):
        load_config(profile="nosuch")


def test_sources_record_provenance(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "site.yaml", PROFILES_YAML)
    config = load_config(path, profile="gpu", overrides={"cpus": 4})
    assert config.sources["executor"] == str(path)
    assert config.sources["memory"] == str(path)
    assert "gpu" in config.sources["queue"]
    assert str(path) in config.sources["queue"]
    assert config.sources["cpus"] == "override"
    assert config.sources["poll_interval"] == "default"
    # every field is accounted for
    fields = {f.name for f in dataclasses.fields(ClusterConfig)} - {"sources", "plugin_options"}
    assert fields <= set(config.sources)


# -- unknown keys ------------------------------------------------------------------------
def test_unknown_file_key_warns_naming_the_key(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "site.yaml", "queue: normal\nqeueu_typo: long\n")
    with pytest.warns(UserWarning, match="qeueu_typo"):
        config = load_config(path)
    assert config.queue == "normal"


def test_unknown_key_in_a_profile_warns(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "site.yaml", "profiles:\n  p:\n    walltimee: '01:00'\n")
    with pytest.warns(UserWarning, match="walltimee"):
        load_config(path, profile="p")


def test_known_keys_do_not_warn(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "site.yaml", PROFILES_YAML)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_config(path, profile="big")


def test_unknown_override_is_an_error_naming_it() -> None:
    with pytest.raises(ValueError, match="qeueu"):
        load_config(overrides={"qeueu": "long"})
    with pytest.raises(ValueError, match="qeueu"):
        create_executor(qeueu="long")


# -- bad values --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("poll_interval: -1\n", "poll_interval"),
        ("poll_interval: 0\n", "poll_interval"),
        ("poll_interval: soon\n", "poll_interval"),
        ("command_timeout: -5\n", "command_timeout"),
        ("zombie_timeout_minutes: 0\n", "zombie_timeout_minutes"),
        ("memory: lots\n", "memory"),
        ("memory: '8'\n", "memory"),
        ("cpus: four\n", "cpus"),
        ('cpus: "four"\n', "cpus"),
        ("cpus: 0\n", "cpus"),
        ("cpus: 2.5\n", "cpus"),
        ("gpus: -1\n", "gpus"),
        ('use_stdin: "yes"\n', "use_stdin"),
        ("suppress_job_email: 1\n", "suppress_job_email"),
        ("lsf_units: PB\n", "lsf_units"),
        ("walltime: '1:75'\n", "walltime"),
        ("walltime: forever\n", "walltime"),
        ("walltime: '00:00'\n", "walltime"),
        ('queue: "normal\\nlong"\n', "queue"),
        ('account: "proj\\r"\n', "account"),
        ("extra_directives: '#BSUB -P proj'\n", "extra_directives"),
        ("script_prologue: [1, 2]\n", "script_prologue"),
        ('script_epilogue: ["echo a\\necho b"]\n', "script_epilogue"),
        ("shebang: bash\n", "shebang"),
        ("executor: ''\n", "executor"),
    ],
)
def test_bad_value_names_key_and_file(isolated: dict[str, Path], text: str, key: str) -> None:
    path = write(isolated["root"] / "bad-site.yaml", text)
    with pytest.raises(ValueError) as info:
        load_config(path)
    message = str(info.value)
    assert key in message
    assert str(path) in message


def test_bad_value_in_profile_names_key_profile_and_file(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "site.yaml", "profiles:\n  fast:\n    poll_interval: -1\n")
    load_config(path)  # the profile is only checked when used
    with pytest.raises(ValueError) as info:
        load_config(path, profile="fast")
    message = str(info.value)
    assert "poll_interval" in message
    assert str(path) in message
    assert "fast" in message


def test_bad_override_names_the_key() -> None:
    with pytest.raises(ValueError, match="memory"):
        load_config(overrides={"memory": "lots"})
    with pytest.raises(ValueError, match="cpus"):
        ClusterConfig(cpus=-2)


def test_numbers_are_normalised_to_float(isolated: dict[str, Path]) -> None:
    path = write(
        isolated["root"] / "site.yaml", "poll_interval: 5\ncompleted_retention_minutes: 0\n"
    )
    config = load_config(path)
    assert config.poll_interval == 5.0
    assert isinstance(config.poll_interval, float)
    assert config.completed_retention_minutes == 0.0


def test_prefix_may_be_null(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "site.yaml", "job_name_prefix: null\n")
    assert load_config(path).job_name_prefix is None


def test_unquoted_hh_mm_ss_walltime_keeps_its_meaning(isolated: dict[str, Path]) -> None:
    """YAML 1.1 reads an unquoted 1:30:00 as the base-60 integer 5400; the library treats an
    int walltime as minutes, so without care this becomes 90 hours instead of 1.5."""
    path = write(isolated["root"] / "site.yaml", "walltime: 1:30:00\n")
    try:
        config = load_config(path)
    except ValueError as exc:  # refusing the ambiguous value is acceptable too
        assert "walltime" in str(exc)
        return
    assert parse_walltime_seconds(config.walltime) == 90 * 60


def test_unquoted_hh_mm_walltime_means_hours_and_minutes(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "site.yaml", "walltime: 4:00\n")
    assert parse_walltime_seconds(load_config(path).walltime) == 4 * 3600


# -- YAML errors -------------------------------------------------------------------------
def test_invalid_yaml_reports_the_line(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "broken.yaml", "executor: lsf\nqueue: normal\n  cpus: 4\n")
    with pytest.raises(ValueError) as info:
        load_config(path)
    message = str(info.value)
    assert "line 3" in message
    assert str(path) in message


def test_top_level_must_be_a_mapping(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "list.yaml", "- executor\n- lsf\n")
    with pytest.raises(ValueError, match="mapping"):
        load_config(path)


def test_profiles_must_be_a_mapping(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "site.yaml", "profiles: [gpu, big]\n")
    with pytest.raises(ValueError, match="profiles"):
        load_config(path)


# -- memory and walltime parsing ---------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8 GB", 8589934592),
        ("8GB", 8 * 1024**3),
        ("8 gb", 8 * 1024**3),
        ("8 Gb", 8 * 1024**3),
        ("8 G", 8 * 1024**3),
        ("8 GiB", 8 * 1024**3),
        ("512 MB", 512 * 1024**2),
        ("512 mb", 512 * 1024**2),
        ("1.5 TB", int(1.5 * 1024**4)),
        ("100 KB", 102400),
        ("100 kb", 102400),
        ("64 B", 64),
        ("2 Mbytes", 2 * 1024**2),
        ("1.2 Gbytes", 1288490189),
        ("  16 GB  ", 16 * 1024**3),
    ],
)
def test_parse_memory_bytes(text: str, expected: int) -> None:
    assert parse_memory_bytes(text) == expected


@pytest.mark.parametrize(
    "text", ["lots", "", "   ", "8", "GB", "-1 GB", "0 GB", "8 XB", "8 GB 4", "1,5 GB", "eight GB"]
)
def test_parse_memory_bytes_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        parse_memory_bytes(text)


@pytest.mark.parametrize("value", [8, 8.0, None, True, ["8 GB"]])
def test_parse_memory_bytes_rejects_non_strings(value: object) -> None:
    with pytest.raises(ValueError):
        parse_memory_bytes(value)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("90", 90 * 60),
        ("5", 300),
        ("01:30", 90 * 60),
        ("1:30", 90 * 60),
        ("48:00", 48 * 3600),
        ("01:30:00", 90 * 60),
        ("00:00:30", 30),
        ("02:03:04", 2 * 3600 + 3 * 60 + 4),
        ("1-00:00", 86400),
        ("2-01:00:30", 2 * 86400 + 3600 + 30),
        (45, 45 * 60),
    ],
)
def test_parse_walltime_seconds(value: str | int, seconds: int) -> None:
    assert parse_walltime_seconds(value) == seconds


@pytest.mark.parametrize(
    "value", ["", "abc", "1:75", "01:00:60", "0", "00:00", "1-02", "-5", "1.5", 0, -3, True, 1.5]
)
def test_parse_walltime_seconds_rejects(value: object) -> None:
    with pytest.raises(ValueError):
        parse_walltime_seconds(value)  # type: ignore[arg-type]


# -- executors ---------------------------------------------------------------------------
def test_create_executor_defaults_to_local() -> None:
    executor = create_executor()
    assert isinstance(executor, LocalExecutor)
    assert executor.config.executor == "local"


def test_create_executor_lsf_from_file_profile_and_overrides(isolated: dict[str, Path]) -> None:
    path = write(isolated["root"] / "site.yaml", PROFILES_YAML)
    executor = create_executor("gpu", path, cpus=8)
    assert isinstance(executor, LSFExecutor)
    assert (executor.config.queue, executor.config.gpus, executor.config.cpus) == ("gpu", 2, 8)


def test_create_executor_uses_the_search_path(isolated: dict[str, Path]) -> None:
    write(isolated["cwd"] / "cluster_api.yaml", "executor: lsf\n")
    assert isinstance(create_executor(), LSFExecutor)
    assert isinstance(create_executor(executor="local"), LocalExecutor)


@pytest.mark.parametrize("source", ["override", "file"])
def test_unknown_executor_names_the_known_ones(isolated: dict[str, Path], source: str) -> None:
    with pytest.raises(ValueError) as info:
        if source == "override":
            create_executor(executor="pbs-nope")
        else:
            create_executor(config_path=write(isolated["root"] / "s.yaml", "executor: pbs-nope\n"))
    message = str(info.value)
    assert "pbs-nope" in message
    assert "local" in message
    assert "lsf" in message


def test_registry_knows_the_builtins() -> None:
    names = cluster_api.available_executors()
    assert {"local", "lsf"} <= set(names)
    from cluster_api.executors import get_executor_class

    assert get_executor_class("lsf") is LSFExecutor
    assert get_executor_class("local") is LocalExecutor
