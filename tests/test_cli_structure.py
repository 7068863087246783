"""The command line's parts: the config checker on structured errors, the library
logic it uses (finding jobs, the name matcher) and the size of its modules."""

from __future__ import annotations

import json
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from unittest.mock import AsyncMock

import pytest

from cluster_api import ClusterConfig, JobStatus, LSFExecutor
from cluster_api.cli.config_check import check_config_file
from cluster_api.executors import ENTRY_POINT_GROUP

ROOT = Path(__file__).resolve().parents[1]

TOY_PLUGIN = """
from dataclasses import dataclass

from cluster_api import LocalExecutor
from cluster_api.options import NoOptions, option


@dataclass(frozen=True)
class ToyOptions(NoOptions):
    toy_retries: int = option(1, "Toy: how often a refused submission is retried.", minimum=1)


class ToyExecutor(LocalExecutor):
    name = "toy"
    options = ToyOptions
"""


@pytest.fixture
def toy_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    site = tmp_path / "site"
    (site / "toy_check_plugin").mkdir(parents=True)
    (site / "toy_check_plugin" / "__init__.py").write_text(TOY_PLUGIN)
    dist_info = site / "toy_check_plugin-0.1.dist-info"
    dist_info.mkdir()
    (dist_info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-check\nVersion: 0.1\n")
    (dist_info / "entry_points.txt").write_text(
        textwrap.dedent(f"[{ENTRY_POINT_GROUP}]\ntoy = toy_check_plugin:ToyExecutor\n")
    )
    monkeypatch.syspath_prepend(str(site))
    yield tmp_path
    sys.modules.pop("toy_check_plugin", None)


# -- the config checker ---------------------------------------------------------------------
def test_check_reports_a_plugin_key_with_its_line_and_profile(toy_plugin: Path) -> None:
    path = toy_plugin / "site.yaml"
    path.write_text(
        "executor: local\n"  # 1
        "profiles:\n"  # 2
        "  toy:\n"  # 3
        "    executor: toy\n"  # 4
        "    toy_retries: 0\n"  # 5
        "  typo:\n"  # 6
        "    executor: toy\n"  # 7
        "    toy_retires: 2\n"  # 8
    )
    report = check_config_file(path)
    assert report.profiles == ["toy", "typo"]
    assert report.errors == [
        f"{path}:5: error: toy_retries must be a whole number >= 1, got 0 [profile toy]"
    ]
    assert report.warnings == [
        f"{path}:8: warning: unknown config key 'toy_retires' ignored "
        "(did you mean 'toy_retries'?) [profile typo]"
    ]


def test_check_reports_every_bad_value_and_writes_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "site.yaml"
    path.write_text("cpus: 0\nqueue: q\nlsf_units: PB\nprofiles:\n  p: [1]\n")
    import tempfile

    def no_scratch(*args: object, **kwargs: object) -> None:
        raise AssertionError("the checker writes no scratch file")

    for name in ("TemporaryDirectory", "NamedTemporaryFile", "mkstemp", "mkdtemp"):
        monkeypatch.setattr(tempfile, name, no_scratch)
    report = check_config_file(path)
    assert report.errors == [
        f"{path}:1: error: cpus must be at least 1, got 0",
        f"{path}:3: error: lsf_units must be one of KB, MB, GB, TB, got 'PB'",
        f"{path}:5: error: profile 'p' must be a mapping of settings",
    ]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["site.yaml"]


def test_config_show_lists_a_plugin_key(
    toy_plugin: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from cluster_api.cli import main

    monkeypatch.delenv("CLUSTER_API_CONFIG", raising=False)
    path = toy_plugin / "site.yaml"
    path.write_text("executor: toy\ntoy_retries: 4\n")
    assert main(["config", "show", "--config", str(path), "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["toy_retries"] == {"value": 4, "source": str(path)}
    assert main(["config", "show", "--config", str(path), "--executor", "local"]) == 0
    out, err = capsys.readouterr()
    assert "toy_retries" not in out  # not a key of the local executor: ignored, and said so
    assert "unknown config key 'toy_retries' ignored" in err


# -- library logic the command uses ---------------------------------------------------------
async def test_jobs_matching_is_what_cancel_by_name_cancels(
    tmp_path: Path, mock_call: AsyncMock
) -> None:
    executor = LSFExecutor(ClusterConfig(executor="lsf", log_directory=str(tmp_path)))
    names = {"1": "capi-sweep-1", "2": "capi-sweep_2", "3": "capi-other", "4": "sweep-4"}
    for job_id, name in names.items():
        executor.track(job_id).name = name
    ended = executor.track("5")
    ended.name, ended.status = "capi-sweep-5", JobStatus.DONE
    # the prefix is added and the pattern sanitised as submit sanitises a name
    assert [r.job_id for r in executor.jobs_matching("sweep*")] == ["1", "2"]
    assert [r.job_id for r in executor.jobs_matching("capi-sweep-*")] == ["1"]
    assert [r.job_id for r in executor.jobs_matching("sweep 1")] == ["1"]  # as "sweep-1"
    with pytest.raises(ValueError, match="name pattern"):
        executor.jobs_matching(" ")
    matching = executor.jobs_matching("sweep*")
    await executor.cancel_by_name("sweep*")
    killed = [r for r in executor.jobs.values() if r.status is JobStatus.KILLED]
    assert killed == matching


def test_find_jobs_lives_in_the_library() -> None:
    from cluster_api import cli, lookup

    assert cli.find_jobs is lookup.find_jobs
    source = (ROOT / "cluster_api" / "cli").rglob("*.py")
    assert not any("fnmatch" in p.read_text() for p in source)  # one name matcher: core's
