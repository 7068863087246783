"""PBS Pro and Torque on the engine: what the translation adds to the shared contract
(tests/test_scheduler_contract.py), through a scripted command runner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_scheduler_contract import ScriptedRunner

from cluster_api import ClusterConfig, JobStatus, ResourceSpec, create_executor
from cluster_api.engine import BatchExecutor
from cluster_api.errors import ClusterAPIError
from cluster_api.executors import available_executors
from cluster_api.executors.pbs import PBS, PBSExecutor
from cluster_api.executors.pbs_formats import HISTORY_OFF
from cluster_api.executors.torque import TorqueExecutor
from cluster_api.scheduler import CommandAnswer


def jobs_json(jobs: dict[str, dict[str, object]]) -> str:
    return json.dumps({"pbs_version": "2022.1.1", "Jobs": jobs})


def make(cls: type[BatchExecutor], runner: ScriptedRunner, tmp_path: Path) -> BatchExecutor:
    config = ClusterConfig(executor=cls.name, log_directory=str(tmp_path / "logs"), journal=False)
    return cls(config, runner=runner)


def test_both_are_registered_executors() -> None:
    assert {"pbs", "torque"} <= set(available_executors())
    assert isinstance(create_executor(executor="pbs"), PBSExecutor)
    assert isinstance(create_executor(executor="torque"), TorqueExecutor)


async def test_a_pbs_job_moves_to_its_work_dir_itself(tmp_path: Path) -> None:
    """PBS starts jobs in $HOME; Torque is told the folder with -d."""
    runner = ScriptedRunner()
    runner.answers["qsub"] = "7.srv\n"
    work = tmp_path / "my runs"
    work.mkdir()
    for cls in (PBSExecutor, TorqueExecutor):
        executor = make(cls, runner, tmp_path)
        record = await executor.submit("true", "job", resources=ResourceSpec(work_dir=str(work)))
        assert record.job_id == "7.srv"
        script = Path(str(record.script_path)).read_text()
        moves = f"cd '{work}' || exit 1" in script.splitlines()
        assert moves is (cls is PBSExecutor)
        assert (f"#PBS -d '{work}'" in script) is (cls is TorqueExecutor)


async def test_array_elements_get_array_index_from_the_scheduler_variable(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    runner.answers["qsub"] = "8[].srv\n"
    for cls, variable in ((PBSExecutor, "PBS_ARRAY_INDEX"), (TorqueExecutor, "PBS_ARRAYID")):
        executor = make(cls, runner, tmp_path)
        record = await executor.submit_array(
            "true", "arr", (1, 3), resources=ResourceSpec(work_dir=str(tmp_path))
        )
        script = Path(str(record.script_path)).read_text()
        assert f'export ARRAY_INDEX="${{{variable}}}"' in script


async def test_pbs_subjobs_are_elements_of_the_array(tmp_path: Path) -> None:
    subjobs = {
        "8[].srv": {"Job_Name": "arr", "job_state": "B"},
        "8[1].srv": {"Job_Name": "arr", "job_state": "F", "Exit_status": 0},
        "8[2].srv": {"Job_Name": "arr", "job_state": "F", "Exit_status": 3},
        "8[3].srv": {"Job_Name": "arr", "job_state": "R"},
    }
    runner = ScriptedRunner()
    runner.answers.update(qsub="8[].srv\n", qstat=jobs_json(subjobs))
    executor = make(PBSExecutor, runner, tmp_path)
    record = await executor.submit_array(
        "true", "arr", (1, 3), resources=ResourceSpec(work_dir=str(tmp_path))
    )
    await executor.poll()
    elements = {i: (e.status, e.exit_code) for i, e in record.array_elements.items()}
    assert elements[1] == (JobStatus.DONE, 0)
    assert elements[2] == (JobStatus.FAILED, 3)
    assert elements[3][0] is JobStatus.RUNNING
    assert runner.argvs[-1] == ["qstat", "-f", "-F", "json", "-t", "8[].srv"]


async def test_a_server_without_history_is_asked_with_x_only_once(tmp_path: Path) -> None:
    """Where job_history_enable is off, qstat -x says so (exit 0, no Jobs): from then on
    the exit files alone tell how a vanished job ended."""

    runner = ScriptedRunner()
    unknown = "qstat: Unknown Job Id 1.srv\nqstat: Unknown Job Id 2.srv\n"
    runner.answers.update({"qstat": ("", unknown, 153), "qstat -x": ("", HISTORY_OFF, 0)})
    executor = make(PBSExecutor, runner, tmp_path)
    work = ResourceSpec(work_dir=str(tmp_path))
    runner.answers["qsub"] = "1.srv\n"
    first = await executor.submit("true", "a", resources=work)
    await executor.poll()
    runner.answers["qsub"] = "2.srv\n"
    second = await executor.submit("true", "b", resources=work)
    await executor.poll()
    await executor.poll()
    assert sum("-x" in argv for argv in runner.argvs) == 1
    assert executor.scheduler.history_off  # type: ignore[attr-defined]
    assert first.status is second.status is JobStatus.PENDING  # no exit file: not guessed


async def test_an_outage_is_an_error_not_an_ending(tmp_path: Path) -> None:
    runner = ScriptedRunner()
    refused = "Connection refused\nqstat: cannot connect to server srv (errno=111)\n"
    runner.answers.update(qsub="9.srv\n", qstat=("", refused, 2))
    executor = make(PBSExecutor, runner, tmp_path)
    record = await executor.submit("true", "a", resources=ResourceSpec(work_dir=str(tmp_path)))
    with pytest.raises(ClusterAPIError, match="cannot connect"):
        await executor.poll_strict()
    assert await executor.poll() == {record.job_id: JobStatus.PENDING}  # logged, not raised
    assert record.status is JobStatus.PENDING


def test_lookup_finds_the_submission_by_its_token() -> None:
    jobs = {
        "5.srv": {"Job_Name": "job", "Variable_List": {"CLUSTER_API_TOKEN": "job.1"}},
        "6.srv": {"Job_Name": "job", "Variable_List": {"CLUSTER_API_TOKEN": "job.2"}},
    }
    pbs = PBS(ClusterConfig(executor="pbs"))
    assert pbs.lookup_command("job", "job.2").argv == ["qstat", "-f", "-F", "json", "-x"]
    assert pbs.parse_lookup(CommandAnswer([], jobs_json(jobs)), "job.2") == "6.srv"
    assert pbs.parse_lookup(CommandAnswer([], jobs_json(jobs)), "job.3") is None
    failed = CommandAnswer([], "", "qstat: cannot connect to server srv", True)
    with pytest.raises(ClusterAPIError):
        pbs.parse_lookup(failed, "job.2")
