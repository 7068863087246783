"""How Slurm's answers read: states, exit codes and times; ``squeue -o SQUEUE_FORMAT``
(one ``|``-separated line per job or array element) and ``sacct --parsable2``, and which
ids to ask sacct about so its lines map back onto tracked jobs.

Facts about Slurm's output come from recorded Slurm 22.05.8 answers
(``tests/data/slurm/FINDINGS.md``). Only the stable text formats are used: the JSON
layouts change between Slurm versions. Pure parsing, tested with recorded text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

from ..errors import ClusterAPIError
from ..history import lacks_exit_code
from ..models import JobRecord, JobStatus
from ..scheduler import Key
from ..status import Observation, QueryResult, is_number
from ..table import DEPENDENCY_FAILED_END
from ..units import expand_indices, parse_local_time, parse_walltime_minutes

# A job id we may put on a command line: 123, or 123_4 for one array element.
JOB_ID = re.compile(r"^\d+(?:_\d+)?$")
_ELEMENT_ID = re.compile(r"^(\d+)_(\d+)$")

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


# -- directive values ---------------------------------------------------------------
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


# -- states, exit codes, times -----------------------------------------------------------
def slurm_state(text: str) -> str:
    """The bare state word: ``CANCELLED by 0`` is CANCELLED, a truncated ``FAILED+`` FAILED."""
    words = text.split()
    return words[0].rstrip("+").upper() if words else ""


def status_of(state: str, reason: str = "") -> tuple[JobStatus, str | None]:
    """The library status of a Slurm state (and pending/cancel reason), with the reason
    to record for an end that was not the job's own exit."""
    if reason == NEVER_SATISFIED and state in ("PENDING", "CANCELLED"):
        return DEPENDENCY_FAILED_END, NEVER_SATISFIED
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
    """A Slurm time (ISO, the controller's local time) as an aware UTC datetime; None for
    ``N/A``, ``Unknown``, ``NONE`` and anything unreadable."""
    return None if value is None or value.strip() in _NO_VALUE else parse_local_time(value)


def _value(text: str) -> str | None:
    text = text.strip()
    return None if text in _NO_VALUE else text


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


def plan_history(
    records: Sequence[JobRecord], result: QueryResult, element_ids: Mapping[str, tuple[str, int]]
) -> _History:
    """What to ask sacct about these jobs, and how to read its answer back."""
    history = _History()
    own_id = {v: k for k, v in element_ids.items()}
    for record in records:
        job_id = record.job_id
        if not result.seen(job_id):
            _add_lost(history, record, element_ids)
        elif job_id in result.elements:
            elements = result.elements[job_id]
            for index, obs in elements.items():
                raw = own_id.get((job_id, index))
                if lacks_exit_code(obs) and raw is not None:
                    history.ask.add(raw)
                    history.arrays.add(job_id)
                    history.note(record)
            # Elements that already left squeue while the array is still listed.
            gone = [i for i in record.array_elements if i not in elements]
            _add_elements(history, record, gone, element_ids)
        elif lacks_exit_code(result.jobs[job_id]):
            history.ask.add(job_id)
            history.plain[job_id] = job_id
            history.note(record)
    return history


def _add_lost(
    history: _History, record: JobRecord, element_ids: Mapping[str, tuple[str, int]]
) -> None:
    """Ask about a job squeue no longer lists: its id, and for an array the own ids of
    the elements seen running (all ``sacct -c`` knows them by)."""
    if not JOB_ID.match(record.job_id):
        return
    history.ask.add(record.job_id)
    history.note(record)
    if record.is_array or record.array_elements:
        history.arrays.add(record.job_id)
        _add_elements(history, record, list(record.array_elements), element_ids)
    else:
        history.plain[record.job_id] = record.job_id


def _add_elements(
    history: _History,
    record: JobRecord,
    indices: list[int],
    element_ids: Mapping[str, tuple[str, int]],
) -> None:
    wanted = {i for i in indices if not record.array_elements[i].status.is_terminal}
    if not wanted:
        return
    for raw_id, (array_id, index) in element_ids.items():
        if array_id == record.job_id and index in wanted:
            history.ask.add(raw_id)
            history.arrays.add(record.job_id)
            history.note(record)


def history_keys(
    row: SacctRow, history: _History, element_ids: Mapping[str, tuple[str, int]]
) -> list[Key]:
    keys: list[Key] = []
    element = _ELEMENT_ID.match(row.job_id)
    if element and element.group(1) in history.arrays:  # slurmdbd: 13_2
        keys.append((element.group(1), int(element.group(2))))
    elif row.raw_id in element_ids:  # an element's own id
        array_id, index = element_ids[row.raw_id]
        if array_id in history.arrays:
            keys.append((array_id, index))
    for job_id in {row.job_id, row.raw_id}:
        if job_id in history.plain:
            keys.append((history.plain[job_id], None))
    return keys
