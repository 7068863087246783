"""The contract every scheduler keeps on the engine, for the batch schedulers.

The contract's tests are in ``contract.py``; here each batch scheduler is a row: its
executor class and how its commands answer, as the plain or recorded text the real
scheduler prints. A new scheduler (sge, pbs, torque, flux) joins by adding its answers.
The rows run through a scripted command runner: nothing starts a process. ``Toy`` is a
complete scheduler written here from the public interface alone
(docs/executors/add-a-scheduler.md), to show that interface is enough. The local
executor's row is in ``test_scheduler_contract_local.py``.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from contract import (  # noqa: F401 (its tests are collected here, over the batch rows)
    Row,
    script_of,
    test_a_job_the_scheduler_forgot_ends_as_its_history_says,
    test_cancel_kills_only_what_the_scheduler_accepted,
    test_garbage_status_output_changes_nothing,
    test_poll_follows_the_job_to_its_end,
    test_reconnect_adopts_our_unfinished_jobs,
    test_submit_writes_directives_and_reads_the_id,
)

from cluster_api import ClusterConfig, JobStatus, LSFExecutor, ResourceSpec, SlurmExecutor
from cluster_api.core import Executor
from cluster_api.engine import BatchExecutor
from cluster_api.errors import ClusterAPIError, SubmitError
from cluster_api.executors.flux import FluxExecutor
from cluster_api.executors.pbs import PBSExecutor
from cluster_api.executors.sge import SGEExecutor
from cluster_api.executors.slurm import Slurm
from cluster_api.executors.torque import TorqueExecutor
from cluster_api.history import HistoryQuery, Key
from cluster_api.jobspec import JobSpec
from cluster_api.models import JobRecord
from cluster_api.runner import CommandResult
from cluster_api.scheduler import Command, CommandAnswer, Listing, Scheduler
from cluster_api.script import directive_lines
from cluster_api.status import Observation, QueryResult

SLURM_DATA = Path(__file__).parent / "data" / "slurm"
SGE_DATA = Path(__file__).parent / "data" / "sge"
FLUX_DATA = Path(__file__).parent / "data" / "flux"


# -- a toy scheduler, from the interface alone -------------------------------------------
TOY_STATES = {"Q": JobStatus.PENDING, "R": JobStatus.RUNNING, "D": JobStatus.DONE}


class Toy(Scheduler):
    """``tsub`` prints ``Submitted N``; ``tstat`` prints ``id|state|exit|name|token``;
    ``thist`` prints ``id|state|exit``; ``tdel`` prints ``deleted N`` or ``gone N``."""

    name = "toy"
    directive_prefix = "#TOY"
    job_id_pattern = re.compile(r"^\d+$")
    job_id_example = "42"
    array_index_variable = "TOY_INDEX"
    transient = re.compile("busy")
    history_source = "thist"

    def header(self, spec: JobSpec) -> list[str]:
        options = [f"--name {spec.name}", f"--token {spec.token}"]
        if spec.resources.cpus:
            options.append(f"--cpus {spec.resources.cpus}")
        return directive_lines(self.directive_prefix, options, [], [])

    def submit_command(self, spec: JobSpec, script_path: str) -> Command:
        return Command(["tsub", script_path])

    def parse_submit(self, out: str) -> str:
        match = re.search(r"Submitted (\d+)", out)
        if match is None:
            raise SubmitError(f"tsub did not say: {out!r}")
        return match.group(1)

    def lookup_command(self, name: str, token: str) -> Command:
        return Command(["tstat", "-n", name])

    def parse_lookup(self, answer: CommandAnswer, token: str) -> str | None:
        if answer.failed:
            raise answer.unusable("tstat failed")
        found = [line.split("|")[0] for line in answer.stdout.splitlines() if line.endswith(token)]
        return found[0] if found else None

    def status_command(self, active: Mapping[str, JobRecord]) -> Command:
        return Command(["tstat", *active])

    def _read(self, text: str) -> tuple[QueryResult, dict[str, str]]:
        result, names = QueryResult(), {}
        for line in text.splitlines():
            parts = line.split("|")
            if len(parts) != 5 or parts[1] not in TOY_STATES:
                raise ClusterAPIError(f"tstat printed {line!r}")
            job_id, state, code, name, _ = parts
            status = TOY_STATES[state]
            result.jobs[job_id] = Observation(status, int(code) if code else None)
            names[job_id] = name
        return result, names

    def parse_status(self, answer: CommandAnswer, active: Mapping[str, JobRecord]) -> QueryResult:
        result, _ = self._read(answer.stdout)
        result.not_found.update(j for j in active if not result.seen(j))
        return result

    def history_command(self, query: HistoryQuery) -> Command:
        return Command(["thist", *query.job_ids])

    def parse_history(self, answer: CommandAnswer, query: HistoryQuery) -> dict[Key, Observation]:
        finals: dict[Key, Observation] = {}
        for line in answer.stdout.splitlines():
            job_id, state, code = line.split("|")
            status = JobStatus.FAILED if state == "F" else TOY_STATES[state]
            finals[(job_id, None)] = Observation(status, int(code))
        return finals

    def cancel_command(self, job_ids: Sequence[str], done: bool) -> Command:
        return Command(["tdel", *job_ids])

    def parse_cancel(self, answer: CommandAnswer) -> set[str]:
        return set(re.findall(r"deleted (\d+)", answer.text))

    def listing_command(self, prefix: str | None) -> Command:
        return Command(["tstat", "-a"])

    def parse_listing(self, answer: CommandAnswer) -> Listing:
        result, names = self._read(answer.stdout)
        return Listing(result, names)


class ToyExecutor(BatchExecutor):
    scheduler_class = Toy


# -- how each scheduler answers ----------------------------------------------------------
Answer = tuple[str, str, int]  # stdout, stderr, exit status
SUBMIT, STATUS, HISTORY, CANCEL = range(4)  # indexes into Answers.programs


@dataclass
class Answers:
    """One scheduler's answers, as text it prints."""

    executor: type[BatchExecutor]
    # submit, status, history ("" for none), cancel: a program, or a program and the
    # options that tell its command apart ("qstat -x")
    programs: tuple[str, str, str, str]
    submitted: Callable[[str], str]
    running: Callable[[str, str], Answer]  # (id, name): the status answer
    done: Callable[[str, str], Answer]
    gone: Callable[[str], Answer]  # the status answer for an id it no longer knows
    failed_in_history: Callable[[str, int], str]
    cancelled: Callable[[str, str], Answer]  # (accepted id, already ended id)
    # The history's answer for a job that ended DONE, for a scheduler whose status
    # command never shows an ended job (Grid Engine).
    done_in_history: Callable[[str], str] | None = None
    # The status answer is the history too (Flux): no separate history source to name.
    history_in_status: bool = False


def bjobs(*records: dict[str, str], rc: int = 0) -> Answer:
    return json.dumps({"JOBS": len(records), "RECORDS": list(records)}), "", rc


def bjob(job_id: str, stat: str, name: str, code: str = "") -> dict[str, str]:
    return {"JOBID": job_id, "JOBINDEX": "0", "STAT": stat, "JOB_NAME": name, "EXIT_CODE": code}


def squeue(job_id: str, state: str, name: str) -> Answer:
    end = "NONE" if state == "RUNNING" else "2026-11-23T12:06:17"
    row = f"{job_id}|{job_id}|{job_id}|N/A|{state}|None|node1|2026-11-23T12:06:14|"
    return f"{row}2026-11-23T12:06:16|{end}|{name}\n", "", 0


def scancel_v(accepted: str, ended: str) -> Answer:
    err = (
        f"scancel: Terminating job {accepted}\nscancel: Terminating job {ended}\n"
        f"scancel: error: Kill job error on job id {ended}: "
        "Job/step already completing or completed\n"
    )
    return "", err, 0


def qstat_xml(job_id: str, state: str, name: str) -> Answer:
    """The recorded ``qstat -xml`` of one running job, renumbered and renamed."""
    text = (SGE_DATA / "qstat_running.xml").read_text()
    text = text.replace("<JB_job_number>8<", f"<JB_job_number>{job_id}<")
    text = text.replace("<JB_name>running<", f"<JB_name>{name}<").replace(">r<", f">{state}<")
    return text, "", 0


def qacct(job_id: str, code: int) -> str:
    """The recorded ``qacct -j`` record of a job that exited 3, renumbered, exit ``code``."""
    text = (SGE_DATA / "qacct_exit3.txt").read_text()
    return text.replace("jobnumber    10", f"jobnumber    {job_id}").replace(
        "exit_status  3", f"exit_status  {code}"
    )


def flux_job(recording: str, job_id: str, name: str, **changes: object) -> str:
    """A recorded ``flux jobs --json ID`` answer, as job ``job_id`` named by its token."""
    job = json.loads((FLUX_DATA / recording).read_text())
    job.update(id=int(job_id), jobid=job_id, name=f"{name}.1", **changes)
    return json.dumps(job)


def qstat_json(job_id: str, state: str, name: str, code: int | None = None) -> Answer:
    attrs: dict[str, object] = {"Job_Name": name, "job_state": state}
    attrs.update({} if code is None else {"Exit_status": code})
    return json.dumps({"pbs_version": "2022.1.1", "Jobs": {job_id: attrs}}), "", 0


def torque_xml(job_id: str, state: str, name: str, code: int | None = None) -> Answer:
    status = "" if code is None else f"<exit_status>{code}</exit_status>"
    job = f"<Job_Id>{job_id}</Job_Id><Job_Name>{name}</Job_Name><job_state>{state}</job_state>"
    return f"<Data><Job>{job}{status}</Job></Data>\n", "", 0


def tstat(job_id: str, state: str, name: str, code: str = "") -> Answer:
    return f"{job_id}|{state}|{code}|{name}|tok\n", "", 0


ANSWERS = {
    "flux": Answers(
        FluxExecutor,
        programs=("flux batch", "flux jobs", "flux jobs", "flux cancel"),
        submitted=lambda i: f"{i}\n",
        running=lambda i, n: (flux_job("job_running.json", i, n), "", 0),
        done=lambda i, n: (flux_job("job_ok.json", i, n), "", 0),
        gone=lambda i: ("", f"JobID {i} unknown\n", 1),
        failed_in_history=lambda i, code: flux_job("job_fail.json", i, "x", returncode=code),
        cancelled=lambda a, e: ("", f"flux-cancel: ERROR: {e}: job is inactive\n", 1),
        history_in_status=True,
    ),
    "lsf": Answers(
        LSFExecutor,
        programs=("bsub", "bjobs", "bhist", "bkill"),
        submitted=lambda i: f"Job <{i}> is submitted to default queue <normal>.\n",
        running=lambda i, n: bjobs(bjob(i, "RUN", n)),
        done=lambda i, n: bjobs(bjob(i, "DONE", n)),
        gone=lambda i: bjobs({"JOBID": i, "ERROR": f"Job <{i}> is not found"}, rc=255),
        failed_in_history=lambda i, code: (
            f"Job <{i}>, Job Name <x>, User <me>;\n"
            f"Mon Nov 23 12:00:00: Exited with exit code {code}. The CPU time used is 0.1s.\n"
        ),
        cancelled=lambda a, e: (
            f"Job <{a}> is being terminated\n",
            f"Job <{e}>: Job has already finished\n",
            255,
        ),
    ),
    "slurm": Answers(
        SlurmExecutor,
        programs=("sbatch", "squeue", "sacct", "scancel"),
        submitted=lambda i: f"{i}\n",
        running=lambda i, n: squeue(i, "RUNNING", n),
        done=lambda i, n: squeue(i, "COMPLETED", n),
        gone=lambda i: ("", "", 0),
        failed_in_history=lambda i, code: (
            f"{i}|{i}|FAILED|{code}:0|node1|0|2026-11-23T12:06:16|2026-11-23T12:06:17\n"
        ),
        cancelled=scancel_v,
    ),
    "sge": Answers(
        SGEExecutor,
        programs=("qsub", "qstat", "qacct", "qdel"),
        submitted=lambda i: f"{i}\n",
        running=lambda i, n: qstat_xml(i, "r", n),
        done=lambda i, n: ((SGE_DATA / "qstat_empty.xml").read_text(), "", 0),
        gone=lambda i: ((SGE_DATA / "qstat_empty.xml").read_text(), "", 0),
        failed_in_history=qacct,
        cancelled=lambda a, e: (
            f'root has registered the job {a} for deletion\ndenied: job "{e}" does not exist\n',
            "",
            1,
        ),
        done_in_history=lambda i: qacct(i, 0),
    ),
    "pbs": Answers(
        PBSExecutor,
        programs=("qsub", "qstat", "qstat -x", "qdel"),
        submitted=lambda i: f"{i}\n",
        running=lambda i, n: qstat_json(i, "R", n),
        done=lambda i, n: qstat_json(i, "F", n, 0),
        gone=lambda i: ("", f"qstat: Unknown Job Id {i}\n", 153),
        failed_in_history=lambda i, code: qstat_json(i, "F", "job", code)[0],
        cancelled=lambda a, e: ("", f"qdel: Job has finished {e}\n", 35),
    ),
    "torque": Answers(
        TorqueExecutor,
        programs=("qsub", "qstat", "", "qdel"),
        submitted=lambda i: f"{i}\n",
        running=lambda i, n: torque_xml(i, "R", n),
        done=lambda i, n: torque_xml(i, "C", n, 0),
        gone=lambda i: ("", f"qstat: Unknown Job Id Error {i}\n", 153),
        failed_in_history=lambda i, code: "",
        cancelled=lambda a, e: ("", f"qdel: Unknown Job Id {e}\n", 153),
    ),
    "toy": Answers(
        ToyExecutor,
        programs=("tsub", "tstat", "thist", "tdel"),
        submitted=lambda i: f"Submitted {i}\n",
        running=lambda i, n: tstat(i, "R", n),
        done=lambda i, n: tstat(i, "D", n, "0"),
        gone=lambda i: ("", "", 0),
        failed_in_history=lambda i, code: f"{i}|F|{code}\n",
        cancelled=lambda a, e: (f"deleted {a}\ngone {e}\n", "", 0),
    ),
}


class ScriptedRunner:
    """Answers each command from what the test set, keyed by program and the options or
    subcommand that tell its commands apart (``qstat -x``, ``flux jobs``); records every
    argv."""

    def __init__(self) -> None:
        self.answers: dict[str, Answer | str] = {}
        self.argvs: list[list[str]] = []

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin_file: str | None = None,
    ) -> CommandResult:
        self.argvs.append(list(argv))
        keys = [k for k in self.answers if self.matches(k, argv)]
        answer = self.answers[max(keys, key=len)] if keys else ("", "", 0)
        out, err, rc = (answer, "", 0) if isinstance(answer, str) else answer
        return CommandResult(list(argv), out, err, rc)

    @staticmethod
    def matches(key: str, argv: Sequence[str]) -> bool:
        """``key`` is a program, or a program and options its argv holds."""
        program, *options = key.split()
        return argv[0] == program and all(o in argv for o in options)

    def count(self, key: str) -> int:
        """How many commands ran that ``key`` names (and no longer key does)."""
        keys = [k for k in self.answers if k != key and len(k) > len(key)]
        return sum(
            self.matches(key, a) and not any(self.matches(k, a) for k in keys) for a in self.argvs
        )


class BatchRow(Row):
    """A batch scheduler under the contract: each thing it must say is scripted as the
    text it prints."""

    def __init__(self, answers: Answers, tmp_path: Path) -> None:
        self.answers, self.tmp_path = answers, tmp_path
        self.runner = ScriptedRunner()

    def make(self) -> BatchExecutor:
        config = ClusterConfig(
            executor=self.answers.executor.name,
            log_directory=str(self.tmp_path / "logs"),
            journal=False,
        )
        return self.answers.executor(config, runner=self.runner)

    def answer(self, command: int, answer: Answer | str) -> None:
        """What command ``command`` (an index into ``Answers.programs``) prints from now."""
        self.runner.answers[self.answers.programs[command]] = answer

    async def submit(self, executor: Executor, label: str) -> JobRecord:
        self.answer(SUBMIT, self.answers.submitted(label))
        resources = ResourceSpec(work_dir=str(self.tmp_path))
        return await executor.submit("echo hi", "job", resources=resources)

    def check_submitted(self, executor: Executor, record: JobRecord, label: str) -> None:
        assert record.job_id == label
        assert executor.directive_prefix and executor.directive_prefix in script_of(record)

    def run(self, record: JobRecord) -> None:
        self.answer(STATUS, self.answers.running(record.job_id, record.name))

    def end(self, record: JobRecord) -> None:
        self.answer(STATUS, self.answers.done(record.job_id, record.name))
        if self.answers.done_in_history is not None:
            self.answer(HISTORY, self.answers.done_in_history(record.job_id))

    async def poll(self, executor: Executor, record: JobRecord) -> dict[str, JobStatus]:
        return await executor.poll()  # one answer, taken in at once

    async def forget(self, executor: Executor, record: JobRecord, code: int) -> None:
        self.answer(STATUS, self.answers.gone(record.job_id))
        if not self.answers.programs[HISTORY]:
            pytest.skip(f"{self.answers.executor.name} keeps no job history: its exit files tell")
        self.answer(HISTORY, self.answers.failed_in_history(record.job_id, code))

    def check_told_by_history(self, executor: Executor, record: JobRecord) -> None:
        assert isinstance(executor, BatchExecutor)
        if not self.answers.history_in_status:
            assert record.metadata["resolved_from"] == executor.scheduler.history_source
        assert self.runner.count(self.answers.programs[HISTORY]) == 1

    async def cancel_answer(
        self, executor: Executor, accepted: JobRecord, ended: JobRecord
    ) -> None:
        self.answer(CANCEL, self.answers.cancelled(accepted.job_id, ended.job_id))

    def check_not_relabelled(self, ended: JobRecord) -> None:
        assert ended.status is JobStatus.PENDING  # the next poll tells how it ended

    def check_cancel_sent_once(self, accepted: JobRecord) -> None:
        assert self.runner.count(self.answers.programs[CANCEL]) == 1  # one command for both

    async def left_running(self, name: str) -> str:
        self.answer(STATUS, self.answers.running("205", f"capi-{name}"))
        return "205"

    async def garble(self, executor: Executor, record: JobRecord) -> JobStatus:
        self.answer(STATUS, ("<html>proxy error</html>\n", "", 0))
        return JobStatus.PENDING

    async def poll_garbage(self, executor: Executor) -> None:
        with pytest.raises(ClusterAPIError):
            await executor.poll_strict()


@pytest.fixture(params=sorted(ANSWERS))
def row(request: pytest.FixtureRequest, tmp_path: Path) -> BatchRow:
    return BatchRow(ANSWERS[request.param], tmp_path)


def test_every_scheduler_is_pure_translation(row: BatchRow) -> None:
    """What makes a batch scheduler: a Scheduler subclass, and an executor naming it.

    Batch rows only: the local executor has no scheduler to translate for. Its
    supervisor processes are the scheduler and their events files its answers, read
    without a command (test_scheduler_contract_local.py checks that it runs none)."""
    executor = row.answers.executor
    assert issubclass(executor.scheduler_class, Scheduler)
    assert executor.name == executor.scheduler_class.name


# -- recorded answers --------------------------------------------------------------------
def test_slurm_cancel_parser_reads_the_recorded_scancel_v_answer() -> None:
    """Recorded on Slurm 22.05.8: per-job lines on stderr only, exit 0."""
    stderr = (SLURM_DATA / "scancel_v_mixed.stderr.txt").read_text()
    answer = CommandAnswer(["24", "25", "26", "27_1", "999999"], "", stderr)
    slurm = Slurm(ClusterConfig(executor="slurm"))
    assert slurm.parse_cancel(answer) == {"24", "26", "27_1"}


def test_slurm_cancel_parser_accepts_nothing_from_a_silent_answer() -> None:
    silent = (SLURM_DATA / "scancel_finished_and_unknown.stdout.txt").read_text()
    slurm = Slurm(ClusterConfig(executor="slurm"))
    assert slurm.parse_cancel(CommandAnswer(["25", "999999"], silent)) == set()


# -- the documented interface is the interface in the code -------------------------------
ROOT = Path(__file__).parent.parent
INTERFACE = [name for name in vars(Scheduler) if not name.startswith("_")]
METHODS = [name for name in INTERFACE if callable(getattr(Scheduler, name))]


def _unnamed(names: list[str], text: str) -> list[str]:
    return [n for n in names if not re.search(rf"`{n}[`(/]", text)]


def test_the_guide_names_every_part_of_the_scheduler_interface() -> None:
    assert "header" in METHODS and "directive_prefix" in INTERFACE
    guide = (ROOT / "docs/executors/add-a-scheduler.md").read_text()
    assert _unnamed(INTERFACE, guide) == []


def test_contributing_names_every_method_of_the_scheduler_interface() -> None:
    assert _unnamed(METHODS, (ROOT / "CONTRIBUTING.md").read_text()) == []
