"""How Slurm's answers read: states, exit codes and times; ``squeue -o SQUEUE_FORMAT``
(one ``|``-separated line per job or array element) and ``sacct --parsable2``, and which
sacct ids the ends the engine asks the history for have, so its lines map back onto them.

Facts about Slurm's output come from recorded Slurm 22.05.8 answers
(``tests/data/slurm/FINDINGS.md``). Only the stable text formats are used: the JSON
layouts change between Slurm versions. Pure parsing, tested with recorded text.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from ..errors import ClusterAPIError
from ..history import HistoryQuery, Key
from ..models import JobStatus
from ..status import Observation, QueryResult, is_number, job_id_order
from ..table import DEPENDENCY_FAILED_END
from ..units import expand_indices, parse_local_time, parse_walltime_minutes

# A job id we may put on a command line: 123, or 123_4 for one array element.
JOB_ID = re.compile(r"^\d+(?:_\d+)?$")
_ELEMENT_ID = re.compile(r"^(\d+)_(\d+)$")
#: An array element's own job id -> (array id, index), learnt from squeue.
ElementIds = dict[str, tuple[str, int]]

_PENDING = "PENDING CONFIGURING REQUEUED REQUEUE_HOLD REQUEUE_FED RESV_DEL_HOLD POWER_UP_NODE"
_RUNNING = "RUNNING COMPLETING SUSPENDED STOPPED SIGNALING STAGE_OUT RESIZING UPDATE_DB"
_FAILED = "FAILED SPECIAL_EXIT LAUNCH_FAILED"
# Ends imposed by Slurm rather than by the job's own exit: the state is the reason.
_IMPOSED = "TIMEOUT OUT_OF_MEMORY NODE_FAIL BOOT_FAIL DEADLINE PREEMPTED"
_REASON_STATES = frozenset(_IMPOSED.split())
_STATUS = {
    **dict.fromkeys(_PENDING.split(), JobStatus.PENDING),
    **dict.fromkeys(_RUNNING.split(), JobStatus.RUNNING),
    **dict.fromkeys(f"{_FAILED} {_IMPOSED}".split(), JobStatus.FAILED),
    "COMPLETED": JobStatus.DONE,
    "CANCELLED": JobStatus.KILLED,
}
# A dependency that failed: with --kill-on-invalid-dep the dependant is CANCELLED, without
# it the dependant pends forever. Either way it did not run because its parent failed.
NEVER_SATISFIED = "DependencyNeverSatisfied"
_NO_VALUE = frozenset({"", "N/A", "NONE", "None", "Unknown", "(null)", "None assigned"})


# -- directive values ---------------------------------------------------------------
def log_pattern(given: str | None, work_dir: str, stream: str, suffix: str) -> str:
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
    def started(self) -> bool:
        return bool(_value(self.nodes))


def parse_squeue(text: str) -> list[SqueueRow]:
    """The rows of a ``squeue -h -o SQUEUE_FORMAT`` answer. Lines that are not rows are
    skipped; an answer with text but no row at all raises ClusterAPIError."""
    rows = []
    junk = []
    for line in text.splitlines():
        parts = line.split("|", 10)  # the name, last, may itself contain "|"
        fields = [part.strip() for part in parts[:10]] + parts[10:]  # the name as printed
        if len(parts) == 11 and is_number(fields[1]) and is_number(fields[2]):
            rows.append(SqueueRow(*fields))
        elif line.strip():
            junk.append(line)
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


def query_result_from_rows(rows: Iterable[SqueueRow], element_ids: ElementIds) -> QueryResult:
    """Sort squeue rows into plain jobs and array elements, under every id a caller may
    track them by: the array id, ``13_2``, and an element's own job id, which is added
    to ``element_ids`` (until an element starts it shows the array's id)."""
    result = QueryResult()
    for row in rows:
        obs = observation_from_row(row)
        if row.index == "N/A":  # a plain job
            result.jobs[row.array_id] = obs
        elif is_number(row.index):
            index = int(row.index)
            result.elements.setdefault(row.array_id, {})[index] = obs
            result.jobs[row.shown_id] = obs
            if row.raw_id != row.array_id:
                result.jobs[row.raw_id] = obs
            if row.started:
                element_ids[row.raw_id] = (row.array_id, index)
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


def sacct_ids(query: HistoryQuery, element_ids: ElementIds) -> list[str]:
    """The ids to give sacct for the ends in ``query``: a plain job's id; an element's
    own id, once squeue showed it (``element_ids``: all ``sacct -c`` knows elements by
    after MinJobAge); and a lost array's id (with slurmdbd, a line per element). Ids
    sacct would refuse are left out."""
    ids = {job_id for job_id, index in query.keys if index is None or job_id in query.lost}
    own_id = {element: raw_id for raw_id, element in element_ids.items()}
    wanted = [i for i in ids if JOB_ID.match(i)] + [own_id[k] for k in query.keys if k in own_id]
    return sorted(set(wanted), key=job_id_order)


def finals_from_sacct(
    text: str, query: HistoryQuery, element_ids: ElementIds
) -> dict[Key, Observation]:
    """Final observations of the jobs in ``query`` from a sacct answer, by the keys its
    lines answer. A line that cannot be tied to one element for sure (``sacct -c -j 13``
    is the element that took id 13) is left out."""
    rows = parse_sacct(text)
    plain = {job_id for job_id, index in query.keys if index is None}
    arrays = {job_id for job_id, index in query.keys if index is not None}
    # With slurmdbd the peak memory is on the job's .batch step line.
    step_rss = {row.raw_id: row.max_rss for row in rows if row.is_step}
    finals: dict[Key, Observation] = {}
    for row in rows:
        obs = None if row.is_step else observation_from_sacct(row)
        if obs is None:
            continue
        obs.max_mem = obs.max_mem or _value(step_rss.get(f"{row.raw_id}.batch", ""))
        element = _element_of(row, element_ids)
        if element is not None and element[0] in arrays:
            finals[element] = obs
        finals.update(((job_id, None), obs) for job_id in {row.job_id, row.raw_id} & plain)
    return finals


def _element_of(row: SacctRow, element_ids: ElementIds) -> Key | None:
    """The array element a sacct line is about: ``13_2`` with slurmdbd, otherwise the
    element whose own id the line has."""
    element = _ELEMENT_ID.match(row.job_id)
    if element:
        return element.group(1), int(element.group(2))
    return element_ids.get(row.raw_id)
