"""Slurm: ``sbatch`` to submit, one ``squeue`` per poll, ``sacct`` for how jobs ended,
``scancel`` to cancel.

Read top to bottom: the directive table, the submit path, parsing of ``squeue -o`` (one
``|``-separated line per job or array element) and of ``sacct --parsable2``, then the
executor: polling, history, cancellation and reconnection.

Facts about Slurm's output come from recorded Slurm 22.05.8 answers
(``tests/data/slurm/FINDINGS.md``). Only the stable text formats are used: the JSON
layouts change between Slurm versions.
"""

from __future__ import annotations

import fnmatch
import logging
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from ..config import ClusterConfig
from ..core import (
    Executor,
    JobSpec,
    Observation,
    QueryResult,
    element_of,
    is_number,
    read_exit_file,
    roll_up_array,
    update_element,
    update_record,
)
from ..errors import ClusterAPIError, CommandFailedError, SubmitError
from ..models import JobRecord, JobStatus
from ..options import BatchOptions
from ..script import directive_lines, exit_file_path
from ..units import format_memory, parse_memory_bytes, parse_walltime_minutes

logger = logging.getLogger("cluster_api")

DIRECTIVE = "#SBATCH"
# %i shown id, %A the record's own job id, %F array job id (own id for plain jobs),
# %K array index ("N/A" for plain jobs), %T state, %r reason, %N nodes, %V submit,
# %S start, %e end, %j name. No widths (they truncate); the name, free text, goes last.
SQUEUE_FORMAT = "%i|%A|%F|%K|%T|%r|%N|%V|%S|%e|%j"
# Without it squeue cuts long array expressions short.
SQUEUE_ENV = {"SLURM_BITSTR_LEN": "0"}
SACCT_FIELDS = "JobIDRaw,JobID,State,ExitCode,NodeList,MaxRSS,Start,End"
# Above this many characters of ids, poll all of the user's jobs instead (argv stays small).
MAX_ID_CHARS = 32_000
# How many ids go into one scancel.
CANCEL_BATCH = 100
SUBMIT_RETRY_DELAY = 5.0
# Looking a submission up by its comment: array job id and comment, under this header.
LOOKUP_FORMAT = "%F|%k"
LOOKUP_HEADER = "ARRAY_JOB_ID|COMMENT"

# A job id we may put on a command line: 123, or 123_4 for one array element.
_JOB_ID = re.compile(r"^\d+(?:_\d+)?$")
_ELEMENT_ID = re.compile(r"^(\d+)_(\d+)$")
_SUBMITTED = re.compile(r"^(\d+)(?:;\S+)?$")
# Messages of a busy, restarting or unreachable slurmctld: worth one more try.
_TRANSIENT = re.compile(
    r"Socket timed out|Unable to contact slurm controller|temporarily unable|"
    r"Connection refused|Zero Bytes were transmitted|Resource temporarily unavailable",
    re.IGNORECASE,
)
_INVALID_JOB_ID = "Invalid job id specified"
_NO_ACCOUNTING = "accounting storage is disabled"

_STATUS = {
    "PENDING": JobStatus.PENDING,
    "CONFIGURING": JobStatus.PENDING,
    "REQUEUED": JobStatus.PENDING,
    "REQUEUE_HOLD": JobStatus.PENDING,
    "REQUEUE_FED": JobStatus.PENDING,
    "RESV_DEL_HOLD": JobStatus.PENDING,
    "POWER_UP_NODE": JobStatus.PENDING,
    "RUNNING": JobStatus.RUNNING,
    "COMPLETING": JobStatus.RUNNING,
    "SUSPENDED": JobStatus.RUNNING,
    "STOPPED": JobStatus.RUNNING,
    "SIGNALING": JobStatus.RUNNING,
    "STAGE_OUT": JobStatus.RUNNING,
    "RESIZING": JobStatus.RUNNING,
    "UPDATE_DB": JobStatus.RUNNING,
    "COMPLETED": JobStatus.DONE,
    "FAILED": JobStatus.FAILED,
    "SPECIAL_EXIT": JobStatus.FAILED,
    "LAUNCH_FAILED": JobStatus.FAILED,
    "CANCELLED": JobStatus.KILLED,
    "TIMEOUT": JobStatus.FAILED,
    "OUT_OF_MEMORY": JobStatus.FAILED,
    "NODE_FAIL": JobStatus.FAILED,
    "BOOT_FAIL": JobStatus.FAILED,
    "DEADLINE": JobStatus.FAILED,
    "PREEMPTED": JobStatus.FAILED,
}
# Ends imposed by Slurm rather than by the job's own exit: the state is the reason.
_REASON_STATES = frozenset(
    {"TIMEOUT", "OUT_OF_MEMORY", "NODE_FAIL", "BOOT_FAIL", "DEADLINE", "PREEMPTED"}
)
# A dependency that failed: with --kill-on-invalid-dep the dependant is CANCELLED, without
# it the dependant pends forever. Either way it did not run because its parent failed.
NEVER_SATISFIED = "DependencyNeverSatisfied"
_NO_VALUE = frozenset({"", "N/A", "NONE", "None", "Unknown", "(null)", "None assigned"})


# -- directives --------------------------------------------------------------------------
_BARE = re.compile(r"^[A-Za-z0-9_./:%@+,=-]+$")


def _quote(value: str) -> str:
    """A directive value as sbatch's script parser reads it: bare when safe, otherwise in
    double quotes with ``\\`` and ``"`` escaped (sbatch knows no single quotes)."""
    if _BARE.match(value):
        return value
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _log_pattern(given: str | None, work_dir: str, stream: str, suffix: str) -> str:
    """The ``--output``/``--error`` filename pattern: the one given, or one in work_dir.

    In a pattern ``%`` is special, so a literal one in the folder is written ``%%``. A
    backslash has no escape (sbatch gives it a meaning of its own in patterns) and a job
    whose log path holds one is accepted but never starts (JobLaunchFailure on Slurm
    22.05), so such a path is refused here, naming the field it came from.
    """
    pattern = given or f"{work_dir.replace('%', '%%')}/{stream}.{suffix}.log"
    if "\\" in pattern:
        field = f"{stream}_path" if given else "work_dir"
        raise ValueError(
            f"ResourceSpec.{field} {given or work_dir!r} contains a backslash, which "
            f"Slurm cannot take in the {stream} log path"
        )
    return pattern


def format_walltime(value: str | int) -> str:
    """A wall-clock limit as Slurm's ``D-HH:MM:SS``, rounded up to a whole minute (Slurm
    limits have minute granularity)."""
    minutes = parse_walltime_minutes(value)
    days, rest = divmod(minutes, 1440)
    return f"{days}-{rest // 60:02d}:{rest % 60:02d}:00"


def slurm_options(spec: JobSpec) -> list[str]:
    """The sbatch options for one job, one option per string (``--partition=normal``)."""
    res = spec.resources
    q = _quote
    is_array = spec.array_range is not None
    suffix = "%A_%a" if is_array else "%j"
    stdout = _log_pattern(res.stdout_path, res.work_dir, "stdout", suffix)
    stderr = _log_pattern(res.stderr_path, res.work_dir, "stderr", suffix)
    options = [f"--job-name={q(spec.name)}"]
    if spec.array_range is not None:
        start, end = spec.array_range
        limit = f"%{spec.max_concurrent}" if spec.max_concurrent else ""
        options.append(f"--array={start}-{end}{limit}")
    options += [f"--output={q(stdout)}", f"--error={q(stderr)}"]
    if spec.token:
        options.append(f"--comment={q(spec.token)}")
    if res.queue:
        options.append(f"--partition={q(res.queue)}")
    if res.cpus:
        options.append(f"--cpus-per-task={res.cpus}")
    if res.gpus:
        options.append(f"--gpus={res.gpus}")
    if res.memory:
        options.append(f"--mem={format_memory(parse_memory_bytes(res.memory), 'MB')}M")
    if res.walltime:
        options.append(f"--time={format_walltime(res.walltime)}")
    if res.account:
        options.append(f"--account={q(res.account)}")
    options.append(f"--chdir={q(res.work_dir)}")
    if spec.depends_on:
        options.append(f"--dependency=afterok:{':'.join(spec.depends_on)}")
        # Otherwise a dependant of a failed job pends forever (DependencyNeverSatisfied).
        options.append("--kill-on-invalid-dep=yes")
    if not spec.inherit_env:
        options.append("--export=NONE")
    options.extend(res.extra_directives or [])
    return options


def slurm_header(spec: JobSpec, config: Any) -> list[str]:
    """``#SBATCH`` lines: generated ones (minus ``directives_skip``), then the config's
    ``extra_directives`` verbatim."""
    return directive_lines(
        DIRECTIVE, slurm_options(spec), config.directives_skip, config.extra_directives
    )


def parse_submit_output(text: str) -> str:
    """The job id from ``sbatch --parsable`` (``jobid`` or ``jobid;cluster``)."""
    for line in reversed(text.strip().splitlines()):
        match = _SUBMITTED.match(line.strip())
        if match:
            return match.group(1)
    raise SubmitError(f"sbatch did not report a job id: {text.strip()[:500]!r}")


# -- states, exit codes, times -----------------------------------------------------------
def slurm_state(text: str) -> str:
    """The bare state word: ``CANCELLED by 0`` is CANCELLED, a truncated ``FAILED+`` FAILED."""
    words = text.split()
    return words[0].rstrip("+").upper() if words else ""


def status_of(state: str, reason: str = "") -> tuple[JobStatus, str | None]:
    """The library status of a Slurm state (and pending/cancel reason), with the reason
    to record for an end that was not the job's own exit."""
    if reason == NEVER_SATISFIED and state in ("PENDING", "CANCELLED"):
        return JobStatus.FAILED, NEVER_SATISFIED
    status = _STATUS.get(state, JobStatus.UNKNOWN)
    return status, state if state in _REASON_STATES else None


def parse_exit_code(text: str) -> int | None:
    """Slurm's ``exit:signal`` as one exit status: ``3:0`` is 3, ``0:9`` is 128+9."""
    code, _, sig = text.strip().partition(":")
    try:
        exit_code, signal = int(code), int(sig or 0)
    except ValueError:
        return None
    return 128 + signal if signal else exit_code


def exit_code_for(status: JobStatus, text: str) -> int | None:
    """The exit code worth recording: 0 for DONE; for other ends the reported one, unless
    it is 0 (sacct reports ``0:0`` for time limits and cancellations), which says nothing."""
    if status is JobStatus.DONE:
        return 0
    code = parse_exit_code(text)
    return code or None


def parse_slurm_time(value: str | None) -> datetime | None:
    """A Slurm time (ISO, the controller's local time, no zone) as an aware UTC datetime;
    None for ``N/A``, ``Unknown``, ``NONE`` and anything unreadable."""
    if value is None or value.strip() in _NO_VALUE:
        return None
    try:
        moment = datetime.fromisoformat(value.strip())
        if moment.tzinfo is None:
            moment = moment.astimezone()  # naive -> local time zone
        return moment.astimezone(timezone.utc)
    except (ValueError, OverflowError, OSError):  # unreadable, or no real moment (0001-01-01)
        return None


def _value(text: str) -> str | None:
    text = text.strip()
    return None if text in _NO_VALUE else text


def expand_indices(expression: str) -> list[int]:
    """The indices of a pending array expression (``3-10%2``, ``1,4,7-9:2``); [] when it
    cannot be read (a truncated one ends in ``...``)."""
    indices: list[int] = []
    for part in expression.split("%", 1)[0].split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+)(?::(\d+))?)?", part.strip(), re.ASCII)
        if match is None:
            return []
        first = int(match.group(1))
        last = int(match.group(2) or first)
        step = int(match.group(3) or 1)
        indices.extend(range(first, last + 1, max(step, 1)))
    return indices


# -- squeue ------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SqueueRow:
    """One line of ``squeue -o SQUEUE_FORMAT``."""

    shown_id: str  # %i: 5, 13_1, 13_[3-10%2]
    raw_id: str  # %A: the record's own job id
    array_id: str  # %F: the array's id; the job's own id for a plain job
    index: str  # %K: element index, pending expression, or N/A
    state: str
    reason: str
    nodes: str
    submit: str
    start: str
    end: str
    name: str

    @property
    def is_plain(self) -> bool:
        return self.index == "N/A"

    @property
    def element_index(self) -> int | None:
        """The element's index; None for a plain job or the pending rest of an array."""
        return int(self.index) if is_number(self.index) else None

    @property
    def started(self) -> bool:
        return bool(_value(self.nodes))


def parse_squeue(text: str) -> list[SqueueRow]:
    """The rows of a ``squeue -h -o SQUEUE_FORMAT`` answer. Lines that are not rows are
    skipped; an answer with text but no row at all raises ClusterAPIError."""
    rows = []
    junk = []
    for line in text.splitlines():
        if not line.strip():
            continue
        parts = line.split("|", 10)  # the name, last, may itself contain "|"
        if len(parts) != 11 or not is_number(parts[1].strip()) or not is_number(parts[2].strip()):
            junk.append(line)
            continue
        shown, raw, array, index, state, reason, nodes, submit, start, end = (
            p.strip() for p in parts[:10]
        )
        rows.append(
            SqueueRow(shown, raw, array, index, state, reason, nodes, submit, start, end, parts[10])
        )
    if junk and not rows:
        raise ClusterAPIError(f"squeue printed no job lines: {text.strip()[:200]!r}")
    return rows


def observation_from_row(row: SqueueRow) -> Observation:
    """One squeue row as an Observation. squeue knows no exit codes: DONE is 0, other ends
    are left None for sacct to fill in."""
    state = slurm_state(row.state)
    status, reason = status_of(state, row.reason)
    # A pending job's start is an estimate, a running job's end its limit; a job cancelled
    # while pending has a start time but never ran (no node).
    started = row.started and status is not JobStatus.PENDING
    return Observation(
        status=status,
        exit_code=0 if status is JobStatus.DONE else None,
        exec_host=_value(row.nodes),
        submit_time=parse_slurm_time(row.submit),
        start_time=parse_slurm_time(row.start) if started else None,
        finish_time=parse_slurm_time(row.end) if status.is_terminal else None,
        reason=reason,
    )


def query_result_from_rows(rows: Iterable[SqueueRow]) -> QueryResult:
    """Sort squeue rows into plain jobs and array elements, under every id a caller may
    track them by: the array id, ``13_2``, and an element's own job id."""
    result = QueryResult()
    for row in rows:
        obs = observation_from_row(row)
        index = row.element_index
        if row.is_plain:
            result.jobs[row.array_id] = obs
        elif index is not None:
            result.elements.setdefault(row.array_id, {})[index] = obs
            result.jobs[row.shown_id] = obs
            if row.raw_id != row.array_id:
                result.jobs[row.raw_id] = obs
        else:  # the pending rest of an array in one line (no -r): every index pending
            for index in expand_indices(row.index):
                result.elements.setdefault(row.array_id, {})[index] = obs
    return result


# -- sacct -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class SacctRow:
    """One line of ``sacct --parsable2 --format=SACCT_FIELDS``."""

    raw_id: str  # 17 (an element's own id), 17.batch for a step
    job_id: str  # 13_1 with slurmdbd; the raw id again with ``sacct -c``
    state: str
    exit_code: str
    nodes: str
    max_rss: str
    start: str
    end: str

    @property
    def is_step(self) -> bool:
        return "." in self.raw_id or "." in self.job_id


def parse_sacct(text: str) -> list[SacctRow]:
    rows = []
    for line in text.splitlines():
        parts = line.split("|")
        if len(parts) == 8 and parts[0].strip():
            rows.append(SacctRow(*(p.strip() for p in parts)))
    return rows


def observation_from_sacct(row: SacctRow) -> Observation | None:
    """A final state from sacct; None when the line has no state (``sacct -c`` loses it
    for job names with spaces)."""
    state = slurm_state(row.state)
    if not state:
        return None
    status, reason = status_of(state)
    ran = _value(row.nodes) is not None
    return Observation(
        status=status,
        exit_code=exit_code_for(status, row.exit_code) if status.is_terminal else None,
        exec_host=_value(row.nodes),
        max_mem=_value(row.max_rss),
        start_time=parse_slurm_time(row.start) if ran else None,
        finish_time=parse_slurm_time(row.end) if status.is_terminal else None,
        reason=reason,
    )


def _needs_exit_code(obs: Observation) -> bool:
    return (
        obs.status is JobStatus.FAILED and obs.exit_code is None and obs.reason != NEVER_SATISFIED
    )


def _fill(obs: Observation, final: Observation) -> None:
    """Complete a squeue observation of an ended job with what sacct knows."""
    for name in ("exit_code", "exec_host", "max_mem", "start_time", "finish_time"):
        if getattr(obs, name) is None:
            setattr(obs, name, getattr(final, name))


@dataclass
class _History:
    """What to ask sacct about, and how to read its answer back onto tracked jobs."""

    ask: set[str] = field(default_factory=set)
    plain: dict[str, str] = field(default_factory=dict)  # sacct id -> tracked plain job
    arrays: set[str] = field(default_factory=set)  # ids of tracked arrays
    # The oldest submission among them (None: some submission time is unknown), the
    # start of the time window when there are too many ids for one command line.
    since: datetime | None = field(default_factory=lambda: datetime.now(timezone.utc))

    def note(self, record: JobRecord) -> None:
        if self.since is not None:
            submitted = record.submit_time
            self.since = None if submitted is None else min(self.since, submitted)


Key = tuple[str, int | None]


class SlurmExecutor(Executor):
    """Runs jobs through Slurm."""

    name = "slurm"
    array_index_variable = "SLURM_ARRAY_TASK_ID"
    directive_prefix = DIRECTIVE
    options = BatchOptions
    job_id_pattern = _JOB_ID
    job_id_example = "123 or 123_4"

    def __init__(self, config: ClusterConfig | None = None) -> None:
        super().__init__(config)
        # An array element's own job id -> (array id, index), recorded while squeue shows
        # it: after MinJobAge, ``sacct -c`` knows elements by these ids alone.
        self._element_ids: dict[str, tuple[str, int]] = {}
        # "db" (slurmdbd answers plain sacct), "c" (only the jobcomp file: sacct -c), or
        # None until the first history query tells.
        self._sacct_mode: str | None = None
        # Jobs whose history the last status query already asked for.
        self._history_asked_now: set[str] = set()

    # -- submission --------------------------------------------------------------------
    def _header_for(self, spec: JobSpec) -> list[str]:
        return slurm_header(spec, self.config)

    def _preamble(self, spec: JobSpec, path: str) -> list[str]:
        lines = super()._preamble(spec, path)
        if not spec.inherit_env:
            # --export=NONE leaves SLURM_EXPORT_ENV=NONE in the job, so every srun in the
            # script would start its tasks with an empty environment (no PATH, none of
            # the job's env). The script exports what the job needs; let steps inherit it.
            lines.insert(0, "export SLURM_EXPORT_ENV=ALL")
        return lines

    async def _submit_script(self, spec: JobSpec, script_path: str) -> str:
        """Submit, surviving one lost answer: after a timeout or a transient error the job
        is looked up by its unique comment before sbatch is tried again, so it is submitted
        exactly once. sbatch reads the ``#SBATCH`` lines from the script either way."""
        extra = [*self.config.extra_args, *(spec.resources.extra_args or [])]
        if self.config.use_stdin:
            argv, stdin = ["sbatch", "--parsable", *extra], script_path
        else:
            argv, stdin = ["sbatch", "--parsable", *extra, script_path], None
        return await self._submit_exactly_once(
            spec,
            argv,
            stdin_file=stdin,
            env=None,
            transient=_TRANSIENT,
            parse=parse_submit_output,
            retry_delay=SUBMIT_RETRY_DELAY,
        )

    async def _find_submission(self, name: str, token: str) -> str | None:
        """The id of the job carrying this submission's token as its comment; None only
        when squeue answered and lists no such job. squeue prints its header line even
        when nothing matches, so an empty or garbled answer raises instead."""
        argv = ["squeue", "-t", "all", f"--name={name}", "-o", LOOKUP_FORMAT]
        out = await self._run(argv, env=SQUEUE_ENV)
        lines = out.strip().splitlines()
        if not lines or lines[0].strip() != LOOKUP_HEADER:
            raise ClusterAPIError(f"squeue printed no job table: {out.strip()[:200]!r}")
        found = []
        for line in lines[1:]:
            job_id, _, comment = line.strip().partition("|")
            if not is_number(job_id):
                raise ClusterAPIError(f"squeue printed an odd line: {line[:200]!r}")
            if comment == token:
                found.append(int(job_id))
        return str(max(found)) if found else None

    # -- status ------------------------------------------------------------------------
    def _squeue_argv(self, ids: list[str]) -> list[str]:
        argv = ["squeue", "-h", "-t", "all", "-r", "-o", SQUEUE_FORMAT]
        if sum(len(i) + 1 for i in ids) <= MAX_ID_CHARS:
            return [*argv, f"--jobs={','.join(ids)}"]
        # Too many ids for one argv: every job of the user (of everyone with
        # poll_all_users), filtered here; still one command.
        return argv if self.config.poll_all_users else [*argv, "--me"]

    async def _squeue(self, job_ids: Iterable[str]) -> list[SqueueRow]:
        ids = [i for i in job_ids if _JOB_ID.match(i)]
        if not ids:  # nothing squeue could be asked about (squeue refuses bad ids)
            return []
        try:
            out = await self._run(self._squeue_argv(ids), env=SQUEUE_ENV)
        except CommandFailedError as exc:
            # One unknown id (finished and purged) makes squeue exit 1; several are
            # silently left out. Either way: the controller no longer holds them.
            if _INVALID_JOB_ID not in f"{exc} {exc.stderr}":
                raise
            out = exc.stdout
        return parse_squeue(out)

    def _remember_element_ids(self, rows: Iterable[SqueueRow]) -> None:
        for row in rows:
            # Until an element starts it shows the array's id; once started, its own.
            index = row.element_index
            if index is not None and row.started:
                self._element_ids[row.raw_id] = (row.array_id, index)

    def _forget_element_ids(self) -> None:
        """Drop the element ids of arrays no longer tracked."""
        stale = [k for k, (array_id, _) in self._element_ids.items() if array_id not in self._jobs]
        for raw_id in stale:
            del self._element_ids[raw_id]

    async def _cancel_never_satisfied(
        self, rows: Iterable[SqueueRow], active: Mapping[str, JobRecord]
    ) -> None:
        """A job whose dependency failed and that was submitted without
        --kill-on-invalid-dep (say, dropped by directives_skip) pends forever: it is
        reported FAILED, so cancel it rather than leave it in the queue."""
        doomed = {
            row.array_id
            for row in rows
            if slurm_state(row.state) == "PENDING"
            and row.reason == NEVER_SATISFIED
            and (row.array_id in active or row.shown_id in active)
        }
        if doomed:
            logger.info("cancelling jobs whose dependency can never be met: %s", sorted(doomed))
            try:
                await self._cancel_ids(sorted(doomed, key=_numeric), done=False)
            except ClusterAPIError as exc:  # the next poll tries again
                logger.warning("could not cancel %s: %s", sorted(doomed), exc)

    async def _query(self, active: dict[str, JobRecord]) -> QueryResult:
        """One squeue for every active job; then one sacct for those that ended without an
        exit code in squeue's answer or that squeue no longer lists."""
        self._forget_element_ids()
        rows = await self._squeue(active)
        self._remember_element_ids(rows)
        result = query_result_from_rows(rows)
        await self._cancel_never_satisfied(rows, active)
        raw_of: dict[Key, str] = {(r.array_id, None): r.raw_id for r in rows if r.is_plain}
        raw_of.update(
            {(r.array_id, r.element_index): r.raw_id for r in rows if r.element_index is not None}
        )
        absent = [r for job_id, r in active.items() if not result.seen(job_id)]
        result.not_found.update(r.job_id for r in absent)
        self._history_asked_now = {r.job_id for r in absent}

        history = _History()
        for job_id, record in active.items():
            if not result.seen(job_id):
                self._add_lost(history, record)
            elif job_id in result.elements:
                elements = result.elements[job_id]
                for index, obs in elements.items():
                    raw = raw_of.get((job_id, index))
                    if _needs_exit_code(obs) and raw is not None:
                        history.ask.add(raw)
                        history.arrays.add(job_id)
                        history.note(record)
                # Elements that already left squeue while the array is still listed.
                gone = [i for i, e in record.array_elements.items() if i not in elements]
                self._add_elements(history, record, gone)
            elif _needs_exit_code(result.jobs[job_id]):
                raw = raw_of.get((job_id, None), job_id)
                history.ask.add(raw)
                history.plain[raw] = job_id
                history.note(record)
        if history.ask:
            self._merge_history(active, result, await self._history(history))
        # Failed in squeue's answer but unknown to sacct: the job's exit file, if any.
        for job_id, record in active.items():
            plain = result.jobs.get(job_id)
            if plain is not None and _needs_exit_code(plain):
                plain.exit_code = _exit_file_code(record, None)
            for index, obs in result.elements.get(job_id, {}).items():
                if _needs_exit_code(obs):
                    obs.exit_code = _exit_file_code(record, index)
        return result

    def _add_lost(self, history: _History, record: JobRecord) -> None:
        """Ask about a job squeue no longer lists: its id, and for an array the own ids of
        the elements seen running (all ``sacct -c`` knows them by)."""
        if not _JOB_ID.match(record.job_id):
            return
        history.ask.add(record.job_id)
        history.note(record)
        if record.is_array or record.array_elements:
            history.arrays.add(record.job_id)
            self._add_elements(history, record, list(record.array_elements))
        else:
            history.plain[record.job_id] = record.job_id

    def _add_elements(self, history: _History, record: JobRecord, indices: list[int]) -> None:
        wanted = {i for i in indices if not record.array_elements[i].status.is_terminal}
        if not wanted:
            return
        for raw_id, (array_id, index) in self._element_ids.items():
            if array_id == record.job_id and index in wanted:
                history.ask.add(raw_id)
                history.arrays.add(record.job_id)
                history.note(record)

    async def _history(self, history: _History) -> dict[Key, Observation]:
        """One sacct call for these jobs: final observations by
        (tracked job id, element index or None). A line that cannot be tied to one
        element for sure (``sacct -c -j 13`` is the element that took id 13) is left out."""
        rows = await self._sacct(sorted(history.ask, key=_numeric), history.since)
        # With slurmdbd the peak memory is on the job's .batch step line.
        batch_rss = {
            row.raw_id.split(".", 1)[0]: row.max_rss
            for row in rows
            if row.raw_id.endswith(".batch") and _value(row.max_rss)
        }
        finals: dict[Key, Observation] = {}
        for row in rows:
            obs = None if row.is_step else observation_from_sacct(row)
            if obs is None:
                continue
            obs.max_mem = obs.max_mem or batch_rss.get(row.raw_id)
            for key in self._keys_for(row, history):
                finals[key] = obs
        return finals

    def _keys_for(self, row: SacctRow, history: _History) -> list[Key]:
        keys: list[Key] = []
        element = _ELEMENT_ID.match(row.job_id)
        if element and element.group(1) in history.arrays:  # slurmdbd: 13_2
            keys.append((element.group(1), int(element.group(2))))
        elif row.raw_id in self._element_ids:  # an element's own id
            array_id, index = self._element_ids[row.raw_id]
            if array_id in history.arrays:
                keys.append((array_id, index))
        for job_id in {row.job_id, row.raw_id}:
            if job_id in history.plain:
                keys.append((history.plain[job_id], None))
        return keys

    async def _sacct(self, ids: list[str], since: datetime | None) -> list[SacctRow]:
        """sacct lines for these ids, in one command: by id, or when the ids would not fit
        on a command line, every job since the oldest submission (filtered by the caller).

        Without slurmdbd plain sacct exits 1 ("accounting storage is disabled"): then
        ``sacct -c`` (the jobcomp file; it ignores time windows), remembered. A failing
        history query never fails the poll: the exit files still tell."""
        argv = ["sacct", "--parsable2", "--noheader", f"--format={SACCT_FIELDS}"]
        if self.config.poll_all_users:
            argv.append("--allusers")
        if sum(len(i) + 1 for i in ids) <= MAX_ID_CHARS:
            argv.append(f"--jobs={','.join(ids)}")
        elif since is not None:
            argv.append(f"--starttime={since.astimezone().strftime('%Y-%m-%dT%H:%M:%S')}")
        else:
            argv.append("--starttime=now-30days")
        while True:
            mode = ["-c"] if self._sacct_mode == "c" else []
            try:
                out = await self._run([*argv, *mode])
            except CommandFailedError as exc:
                if self._sacct_mode != "c" and _NO_ACCOUNTING in f"{exc} {exc.stderr}":
                    logger.info("no Slurm accounting database: reading job history with sacct -c")
                    self._sacct_mode = "c"
                    continue
                logger.warning("sacct failed; job ends will come from exit files: %s", exc)
                return []
            except ClusterAPIError as exc:
                logger.warning("sacct failed; job ends will come from exit files: %s", exc)
                return []
            if self._sacct_mode is None:
                self._sacct_mode = "db"
            return parse_sacct(out)

    def _merge_history(
        self,
        active: dict[str, JobRecord],
        result: QueryResult,
        finals: dict[Key, Observation],
    ) -> None:
        """Put sacct's answers into the query result.

        A job squeue still lists gets its exit code (else the one its exit file holds). A
        plain job squeue dropped is reported when sacct knows its end. A dropped array is
        reported when sacct accounts for every unfinished element; otherwise what sacct
        knows is applied to the record directly and the array stays unseen, so the exit
        files, and in the end the zombie timeout, settle the elements nobody can name.
        """
        found: dict[str, dict[int, Observation]] = {}
        for (job_id, index), final in finals.items():
            if job_id not in active or not final.status.is_terminal:
                continue
            if index is None:
                seen = result.jobs.get(job_id)
                if seen is not None and seen.status.is_terminal:
                    _fill(seen, final)
                elif seen is None:
                    result.jobs[job_id] = final
                    result.not_found.discard(job_id)
                    active[job_id].metadata["resolved_from"] = "sacct"
            else:
                found.setdefault(job_id, {})[index] = final
        for job_id, elements in found.items():
            listed = result.elements.get(job_id)
            if listed is not None:
                for index, final in elements.items():
                    if index in listed and listed[index].status.is_terminal:
                        _fill(listed[index], final)
                    elif index not in listed:
                        listed[index] = final
                continue
            record = active[job_id]
            unfinished = {i for i, e in record.array_elements.items() if not e.is_terminal}
            if unfinished <= set(elements):
                result.elements[job_id] = elements
                result.not_found.discard(job_id)
                record.metadata["resolved_from"] = "sacct"
            else:
                self._apply_elements(record, elements, "sacct")

    def _apply_elements(
        self, record: JobRecord, elements: Mapping[int, Observation], source: str
    ) -> None:
        for index, obs in elements.items():
            element = element_of(record, index)
            if element is None:
                continue
            if not element.is_terminal:
                update_element(element, obs)
            if obs.reason and obs.status is JobStatus.FAILED:
                record.metadata.setdefault("exit_reason", obs.reason)
        roll_up_array(record)
        if record.status.is_terminal:
            record.metadata["resolved_from"] = source
        self.persist([record])

    async def recover_lost(self, records: list[JobRecord]) -> None:
        """Ask sacct (one call) how jobs that left squeue ended; jobs the last status query
        already asked about are skipped (it asks about every such job, every cycle)."""
        todo = [
            r
            for r in records
            if not r.status.is_terminal and r.job_id not in self._history_asked_now
        ]
        history = _History()
        for record in todo:
            self._add_lost(history, record)
        if not history.ask:
            return
        finals = await self._history(history)
        for record in todo:
            if record.is_array or record.array_elements:
                elements = {
                    i: obs
                    for (job_id, i), obs in finals.items()
                    if job_id == record.job_id and i is not None and obs.status.is_terminal
                }
                if elements:
                    self._apply_elements(record, elements, "sacct")
            else:
                final = finals.get((record.job_id, None))
                if final is not None and final.status.is_terminal:
                    update_record(record, final)
                    record.metadata["resolved_from"] = "sacct"
            if record.status.is_terminal:
                logger.info(
                    "job %s ended %s according to sacct", record.job_id, record.status.value
                )

    # -- cancellation ------------------------------------------------------------------
    async def _cancel_ids(self, job_ids: list[str], *, done: bool) -> set[str]:
        """scancel says nothing per job: it is silent and exits 0 both for a job it kills
        and for one that had already ended (its "already completing or completed" comes
        only with -v, on stderr, still exit 0; ``tests/data/slurm/scancel_*``). So no job
        counts as accepted here: the next squeue says CANCELLED for each one it killed,
        and FAILED or COMPLETED for one that ended by itself."""
        if done:
            logger.debug("Slurm cannot record a cancelled job as done; cancelling it")
        ids = [i for i in job_ids if _JOB_ID.match(i)]
        for bad in sorted(set(job_ids) - set(ids)):
            logger.warning("not a Slurm job id, not cancelled: %r", bad)
        await self._run_batches(["scancel"], ids, CANCEL_BATCH)
        return set()

    async def _cancel_name_pattern(self, pattern: str) -> set[str]:
        """scancel --name takes exact names only: list the user's unfinished jobs, match
        here, cancel the matches (many ids per scancel)."""
        out = await self._run(["squeue", "-h", "--me", "-o", "%F|%j"], env=SQUEUE_ENV)
        ids = set()
        for line in out.splitlines():
            job_id, _, name = line.strip().partition("|")
            if is_number(job_id) and fnmatch.fnmatchcase(name, pattern):
                ids.add(job_id)
        if not ids:
            return set()
        return await self._cancel_ids(sorted(ids, key=_numeric), done=False)

    # -- reconnection ------------------------------------------------------------------
    async def _discover(self, require: bool) -> list[JobRecord]:
        """Track the unfinished jobs whose names start with this config's prefix."""
        prefix = self.config.job_name_prefix
        if not prefix:
            if not require:
                return []
            raise ClusterAPIError("reconnect() needs job_name_prefix to tell our jobs from others")
        argv = ["squeue", "-h", "-t", "all", "-r", "-o", SQUEUE_FORMAT]
        if not self.config.poll_all_users:
            argv.append("--me")
        rows = [
            r
            for r in parse_squeue(await self._run(argv, env=SQUEUE_ENV))
            if r.name.startswith(f"{prefix}-")
        ]
        self._remember_element_ids(rows)
        result = query_result_from_rows(rows)
        names = {r.array_id: r.name for r in rows}
        adopted = []
        for job_id in sorted(names, key=_numeric):
            if job_id in self._jobs or _finished(result, job_id):
                continue
            record = JobRecord(job_id=job_id, name=names[job_id], command="")
            record.metadata["reconnected"] = True
            if job_id in result.elements:
                indices = sorted(result.elements[job_id])
                record.metadata["array_range"] = (indices[0], indices[-1])
            self._register(record)
            self._apply(record, result.jobs.get(job_id), result.elements.get(job_id))
            adopted.append(record)
        return adopted


def _exit_file_code(record: JobRecord, index: int | None) -> int | None:
    """The exit status the job script recorded, for an end squeue and sacct left without
    one; never 0 for a job Slurm says failed."""
    if record.script_path is None:
        return None
    code = read_exit_file(exit_file_path(record.script_path, index))
    return code or None


def _finished(result: QueryResult, job_id: str) -> bool:
    """True when the job (every element of an array) has ended: nothing to reconnect to."""
    if job_id in result.elements:
        return all(obs.status.is_terminal for obs in result.elements[job_id].values())
    plain = result.jobs.get(job_id)
    return plain is not None and plain.status.is_terminal


def _numeric(job_id: str) -> tuple[int, str]:
    return (int(job_id), "") if is_number(job_id) else (0, job_id)
