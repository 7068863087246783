"""The Flux executor on the engine: arrays of separate ``--cc`` jobs, refusals, the
registry. A scripted runner answers with recorded flux-core 0.88.0 text
(tests/data/flux/README.md); nothing starts a process."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from cluster_api import ClusterConfig, JobStatus, ResourceSpec, available_executors
from cluster_api.errors import CommandTimeoutError, SubmitError
from cluster_api.executors import get_executor_class
from cluster_api.executors.flux import FluxExecutor
from cluster_api.runner import CommandResult
from cluster_api.scheduler import ELEMENT_IDS

DATA = Path(__file__).parent / "data" / "flux"
CC_IDS = (DATA / "submit_cc.stdout").read_text().split()  # ƒJtnLGP ƒJtnLGQ ƒJvGKYj


class Flux:
    """Answers ``flux SUBCOMMAND`` from a queue the test fills; records every argv."""

    def __init__(self) -> None:
        self.answers: dict[str, list[tuple[str, str, int] | Exception]] = {}
        self.argvs: list[list[str]] = []

    def on(self, sub: str, out: str = "", err: str = "", rc: int = 0) -> None:
        self.answers.setdefault(sub, []).append((out, err, rc))

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin_file: str | None = None,
    ) -> CommandResult:
        self.argvs.append(list(argv))
        queue = self.answers.get(argv[1], [])
        answer = queue.pop(0) if queue else ("", "", 0)
        if isinstance(answer, Exception):
            raise answer
        return CommandResult(list(argv), *answer)

    def calls(self, sub: str) -> list[list[str]]:
        return [argv for argv in self.argvs if argv[1] == sub]


def element(job_id: str, name: str, **changes: object) -> dict[str, object]:
    """The recorded ``--cc`` element, as job ``job_id`` named ``name``."""
    job = json.loads((DATA / "job_cc1.json").read_text())
    number = json.loads(f'"{job_id}"')  # the id as flux prints it
    job.update(jobid=number, name=name, **changes)
    del job["id"]  # read from the f58 jobid
    return dict(job)


@pytest.fixture
def flux() -> Flux:
    return Flux()


@pytest.fixture
def executor(flux: Flux, tmp_path: Path) -> FluxExecutor:
    config = ClusterConfig(executor="flux", log_directory=str(tmp_path / "logs"), journal=False)
    return FluxExecutor(config, runner=flux)


async def submit_array(executor: FluxExecutor, tmp_path: Path, **kwargs: object):  # type: ignore[no-untyped-def]
    resources = ResourceSpec(work_dir=str(tmp_path))
    return await executor.submit_array("work", "arr", (1, 3), resources=resources, **kwargs)  # type: ignore[arg-type]


def test_flux_is_a_registered_executor() -> None:
    assert "flux" in available_executors()
    assert get_executor_class("flux") is FluxExecutor


async def test_max_concurrent_is_refused_before_anything_is_written(executor, tmp_path) -> None:
    with pytest.raises(ValueError, match="flux cannot cap how many array elements"):
        await submit_array(executor, tmp_path, max_concurrent=2)
    assert list(tmp_path.glob("*.sh")) == []


async def test_memory_is_refused_with_a_clear_error(executor, flux, tmp_path) -> None:
    with pytest.raises(ValueError, match=r"ResourceSpec\.memory '4 GB': Flux has no memory"):
        await executor.submit(
            "true", "j", resources=ResourceSpec(work_dir=str(tmp_path), memory="4 GB")
        )
    assert flux.argvs == [] and list(tmp_path.glob("*.sh")) == []


async def test_an_array_tracks_every_element_and_reads_each_by_its_index(
    executor, flux, tmp_path
) -> None:
    flux.on("submit", "\n".join(CC_IDS) + "\n")
    record = await submit_array(executor, tmp_path)
    assert flux.calls("submit")[0][:3] == ["flux", "submit", "--cc=1-3"]
    assert (record.job_id, record.metadata[ELEMENT_IDS]) == (CC_IDS[0], CC_IDS)
    token = record.script_path.rsplit("/", 1)[1].removesuffix(".sh")  # type: ignore[union-attr]
    # The elements come back in any order; each name carries its index.
    jobs = [
        element(CC_IDS[2], f"{token}[3]", state="RUN", result=None),
        element(CC_IDS[0], f"{token}[1]"),
        element(CC_IDS[1], f"{token}[2]", result="FAILED", success=False, returncode=3),
    ]
    flux.on("jobs", json.dumps({"jobs": jobs}))
    await executor.poll()
    assert flux.calls("jobs")[0][3:] == CC_IDS  # one command for every element
    states = {i: (e.status, e.exit_code) for i, e in record.array_elements.items()}
    assert states == {
        1: (JobStatus.DONE, 0),
        2: (JobStatus.FAILED, 3),
        3: (JobStatus.RUNNING, None),
    }


async def test_cancelling_an_array_cancels_every_element(executor, flux, tmp_path) -> None:
    flux.on("submit", "\n".join(CC_IDS) + "\n")
    record = await submit_array(executor, tmp_path)
    flux.on("cancel", "", f"flux-cancel: ERROR: {CC_IDS[0]}: job is inactive\n", 1)
    await executor.cancel(record.job_id)
    assert [argv[2:] for argv in flux.calls("cancel")] == [CC_IDS]
    assert record.status is JobStatus.KILLED  # two of its elements were cancelled


async def test_an_array_flux_took_in_part_is_cancelled_and_refused(
    executor, flux, tmp_path
) -> None:
    flux.on("submit", "\n".join(CC_IDS[:2]) + "\n")
    with pytest.raises(SubmitError, match="took 2 of the 3 elements of capi-arr; cancelled 2"):
        await submit_array(executor, tmp_path)
    assert [argv[2:] for argv in flux.calls("cancel")] == [CC_IDS[:2]]
    assert executor.jobs == {} and list(tmp_path.glob("*.sh")) == []  # nothing left


async def test_a_dependency_on_an_array_waits_for_every_element(executor, flux, tmp_path) -> None:
    flux.on("submit", "\n".join(CC_IDS) + "\n")
    array = await submit_array(executor, tmp_path)
    flux.on("batch", "ƒQ4FqC3\n")
    after = await executor.submit(
        "true", "after", resources=ResourceSpec(work_dir=str(tmp_path)), depends_on=array
    )
    script = Path(after.script_path).read_text()  # type: ignore[arg-type]
    assert [f'--dependency="afterok:{i}"' in script for i in CC_IDS] == [True] * 3
    assert after.depends_on == [array.job_id]  # the dependency rule follows the array


async def test_a_lost_array_answer_is_found_by_its_token(executor, flux, tmp_path) -> None:
    executor.scheduler.submit_retry_delay = 0
    flux.answers["submit"] = [CommandTimeoutError("flux submit timed out")]
    record_name = "capi-arr.1"  # the first script of this executor
    jobs = [element(i, f"{record_name}[{n}]") for n, i in zip((2, 1, 3), CC_IDS, strict=True)]
    flux.on("jobs", json.dumps({"jobs": jobs}))
    record = await submit_array(executor, tmp_path)
    assert len(flux.calls("submit")) == 1  # found, not submitted again
    assert record.metadata[ELEMENT_IDS] == [CC_IDS[1], CC_IDS[0], CC_IDS[2]]  # by index


async def test_an_array_left_unresolved_is_found_whole_on_reconnect(flux, tmp_path) -> None:
    """A process that never heard the answer of ``flux submit --cc`` (and could not look
    it up) leaves an intent; a later reconnect finds every element by the token."""
    config = ClusterConfig(
        executor="flux", log_directory=str(tmp_path / "logs"), job_name_prefix="capi"
    )

    async def no_sleep(seconds: float) -> None:
        return None

    first = FluxExecutor(config, runner=flux)
    first.scheduler.submit_retry_delay = 0
    first._sleep = no_sleep  # type: ignore[method-assign]
    flux.answers["submit"] = [CommandTimeoutError("flux submit timed out")]
    for _ in range(4):  # every lookup fails: whether it was submitted is unknown
        flux.on("jobs", "", "flux-jobs: ERROR: Unable to connect to Flux: Connection refused", 1)
    with pytest.raises(SubmitError, match="cannot tell whether"):
        await submit_array(first, tmp_path)
    jobs = [element(i, f"capi-arr.1[{n}]", state="RUN") for n, i in enumerate(CC_IDS, 1)]
    for _ in range(3):  # the lookup, the listing, the poll
        flux.on("jobs", json.dumps({"jobs": jobs}))
    second = FluxExecutor(config, runner=flux)
    found = await second.reconnect()
    assert [(r.job_id, r.metadata[ELEMENT_IDS]) for r in found] == [(CC_IDS[0], CC_IDS)]
