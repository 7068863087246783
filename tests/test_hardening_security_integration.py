"""Issue #11 item 1 with real shells: a job whose folder has a hostile name runs in that
exact folder, logs there, and nothing in the name executes; a name a scheduler cannot
take is refused before anything is written.

- ``lsf``: the LSF simulator, which like LSF hands ``bsub``'s command words to /bin/sh;
  both submission modes (script path as the command, script on stdin).
- ``local``: real processes.
- ``slurm``: the real Slurm on this machine (skipped when it is not running), whose
  sbatch parses the ``#SBATCH --chdir=``/``--output=`` lines itself.
"""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from test_integration import require_slurm

from cluster_api import Executor, JobMonitor, JobStatus, ResourceSpec, create_executor
from cluster_api.script import exit_file_path

pytestmark = pytest.mark.integration

TIMEOUT = 60.0
MARK = "PWNED"
# Folder names a shell would split, run or expand if they reached it unquoted (each
# payload ends the word, so the injected command runs in the job's folder).
EVERYWHERE = [
    "my data",
    "it's",
    "semi;touch PWNED_semi;",
    "or||touch PWNED_or||",
    "amp&touch PWNED_amp&",
    "pipe|touch PWNED_pipe|",
    "redirect>PWNED_redirect;",
    "unicode é✓ü",
    "hash #1",
    "glob*?[x]",
    "paren(x)",
    "~tilde",
    "-dash",
]
# Names LSF cannot take in its double-quoted path directives ('"', '$', '`', '\\') or
# reads as placeholders ('%'); the other executors run them.
NOT_FOR_LSF = [
    'say "hi"',
    "dollar$(touch PWNED_dollar)",
    "tick`touch PWNED_tick`",
    "var$HOME",
    "percent%J%%",
    "back\\slash",
]
NOT_FOR_SLURM = ["back\\slash"]  # a log path with a backslash never launches


def executor_for(name: str, tmp_path: Path, **config: Any) -> Executor:
    return create_executor(
        executor=name,
        poll_interval=0.2,
        log_directory=str(tmp_path / "logs"),
        job_name_prefix=f"sec{uuid.uuid4().hex[:8]}",
        command_timeout=30.0,
        **config,
    )


def markers(tmp_path: Path) -> list[str]:
    """Files an injected command made, anywhere it could have run."""
    found = [str(p) for p in tmp_path.rglob(f"*{MARK}*") if p.is_file()]
    return found + [n for n in os.listdir("/") if MARK in n]


async def run_in_hostile_folders(
    executor: Executor, tmp_path: Path, runs: list[str], refused: list[str]
) -> None:
    """Each job in ``runs`` ends DONE, ran in its folder, logged there and wrote its exit
    file; each name in ``refused`` is a ValueError naming work_dir with nothing written;
    nothing executes."""
    root = tmp_path / "folders"
    root.mkdir()
    command = "pwd -P > where.txt; echo logged"
    jobs = {}
    for name in runs:
        folder = root / name
        folder.mkdir()
        resources = ResourceSpec(work_dir=str(folder))
        jobs[name] = await executor.submit(command, "hostile", resources=resources)
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(*jobs.values(), timeout=TIMEOUT)
    assert markers(tmp_path) == []
    for name, job in jobs.items():
        folder = root / name
        assert (job.status, job.exit_code) == (JobStatus.DONE, 0), name
        assert (folder / "where.txt").read_text().strip() == os.path.realpath(folder), name
        logs = [p for p in folder.iterdir() if p.name.startswith("stdout.")]
        assert [p.read_text() for p in logs] == ["logged\n"], name
        # The script's EXIT trap found its way to the exit file beside it.
        assert job.script_path is not None
        assert Path(exit_file_path(job.script_path)).read_text() == "0\n", name
    for name in refused:
        folder = root / name
        folder.mkdir()
        with pytest.raises(ValueError, match=r"ResourceSpec\.work_dir"):
            await executor.submit(command, "hostile", resources=ResourceSpec(work_dir=str(folder)))
        assert list(folder.iterdir()) == [], name  # nothing written
    assert markers(tmp_path) == []


@pytest.mark.parametrize("use_stdin", [False, True], ids=["command", "stdin"])
async def test_lsf_hostile_folders(
    lsf_simulator: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, use_stdin: bool
) -> None:
    monkeypatch.chdir(tmp_path)
    executor = executor_for("lsf", tmp_path, use_stdin=use_stdin)
    await run_in_hostile_folders(executor, tmp_path, EVERYWHERE, NOT_FOR_LSF)


async def test_local_hostile_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    executor = executor_for("local", tmp_path)
    await run_in_hostile_folders(executor, tmp_path, EVERYWHERE + NOT_FOR_LSF, [])


async def test_slurm_hostile_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    require_slurm()
    monkeypatch.chdir(tmp_path)
    executor = executor_for("slurm", tmp_path)
    runs = [n for n in EVERYWHERE + NOT_FOR_LSF if n not in NOT_FOR_SLURM]
    await run_in_hostile_folders(executor, tmp_path, runs, NOT_FOR_SLURM)


@pytest.mark.parametrize("backend", ["local", "lsf", "slurm"])
async def test_relative_work_dir_runs_in_that_folder(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    if backend == "lsf":
        request.getfixturevalue("lsf_simulator")
    if backend == "slurm":
        require_slurm()
    monkeypatch.chdir(tmp_path)
    (tmp_path / "rel dir").mkdir()
    executor = executor_for(backend, tmp_path)
    job = await executor.submit(
        "pwd -P > where.txt", "rel", resources=ResourceSpec(work_dir="rel dir")
    )
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(job, timeout=TIMEOUT)
    assert (job.status, job.exit_code) == (JobStatus.DONE, 0)
    folder = tmp_path / "rel dir"
    assert (folder / "where.txt").read_text().strip() == str(folder)
    assert any(p.name.startswith("stdout.") for p in folder.iterdir())  # logs there too


@pytest.mark.parametrize("backend", ["local", "lsf", "slurm"])
async def test_env_values_reach_the_job_literally(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """The ``export`` lines of the script: quotes, $(), backticks, ';', '%', unicode and
    control characters come out as written, and nothing runs."""
    if backend == "lsf":
        request.getfixturevalue("lsf_simulator")
    if backend == "slurm":
        require_slurm()
    monkeypatch.chdir(tmp_path)
    values = {
        "QUOTES": 'it\'s "quoted"',
        "SUBST": "$(touch PWNED_env) `touch PWNED_env2` ${HOME}",
        "SEPARATORS": "a;b&c|d>PWNED_env3 % é✓",
        "CONTROL": "line1\nline2\ttab\rcr\x01",
        "BACKSLASH": "a\\nb\\",
    }
    executor = executor_for(backend, tmp_path)
    command = "; ".join(f'printf %s "${key}" > {key}.txt' for key in values)
    job = await executor.submit(
        command, "env", resources=ResourceSpec(work_dir=str(tmp_path)), env=values
    )
    async with JobMonitor(executor, poll_interval=0.2) as monitor:
        await monitor.wait_for(job, timeout=TIMEOUT)
    assert job.status is JobStatus.DONE
    for key, value in values.items():
        assert (tmp_path / f"{key}.txt").read_bytes().decode() == value, key
    assert markers(tmp_path) == []
