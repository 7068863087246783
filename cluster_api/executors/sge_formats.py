"""Grid Engine's formats (Son of Grid Engine 8.1.9), read by `.sge`: pure functions, facts
from the answers recorded in ``tests/data/sge/`` (FINDINGS.md). Ids are job numbers, arrays
too (``qsub -terse`` prints ``3.1-3:1``); an ``Eqw`` job never ends by itself: it is reported
FAILED while queued; ``-hold_jid`` is "after any exit", so dependants are held (``-h``)
until the engine releases (``qrls``) or cancels them."""

from __future__ import annotations

import logging
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from datetime import datetime

from ..errors import ClusterAPIError, SubmitError
from ..jobspec import JobSpec
from ..localtime import parse_month_time
from ..models import JobStatus
from ..status import Observation, QueryResult, is_number
from ..units import (
    expand_indices,
    format_memory,
    parse_local_time,
    parse_memory_bytes,
    parse_walltime_seconds,
)

logger = logging.getLogger("cluster_api")

DIRECTIVE = "#$"
ARRAY_INDEX_VARIABLE = "SGE_TASK_ID"  # "undefined" outside arrays
JOB_ID_PATTERN = re.compile(r"^\d+$")
JOB_ID_EXAMPLE = "123"
ACCOUNTING_LAG_SECONDS = 15.0  # flush_time: qacct lags qstat by up to this (3.8-12.2 s seen)
HISTORY_IDS_PER_CALL = 1  # qacct -j takes one job: "-j 1,2" reads as 1, a second -j wins
TOKEN_DIRECTIVE = "-A"  # free text shown by qstat -j and qacct; account becomes -P (project)
ERROR_STATE_REASON = "Grid Engine error state"

# The #$ parser groups words with double quotes, drops every quote character inside (a -wd
# of "/x/it's" runs in /x/its), keeps \ and %, and expands $HOME, $JOB_ID... in paths at run
# time; object names (-N, -A, -P) refuse \ and :, spaces and a leading digit.
_BARE = re.compile(r"^[A-Za-z0-9_./%@+,=-]+$")
_NAME = re.compile(r"^[A-Za-z_.-][A-Za-z0-9_.-]*$")
_QUEUE = re.compile(r"^[A-Za-z_.*-][A-Za-z0-9_.@*,-]*$")


def _refuse(field: str, value: str, why: str) -> ValueError:
    return ValueError(f"{field} {value!r} cannot be given to Grid Engine: {why}")


def _path(field: str, value: str, placeholders: bool = False) -> str:
    """Bare or double-quoted; refuses quotes (dropped) and, unless ``placeholders``, ``$``."""
    if re.search(r"[\"']" if placeholders else r"[\"'$]", value):
        raise _refuse(field, value, "its #$ parser drops quotes and expands $ in paths")
    return value if _BARE.match(value) else f'"{value}"'


def _name(field: str, value: str, pattern: re.Pattern[str] = _NAME) -> str:
    if not pattern.match(value):
        raise _refuse(field, value, "use letters, digits, _ . - and no leading digit")
    return value


def directives(spec: JobSpec, pe: str = "smp", shell: str = "/bin/bash") -> list[str]:
    """The qsub options of one job, one per string, for ``#$`` lines. cpus > 1 need a
    parallel environment ``pe`` (sites name their own). ``memory``, the job's total, becomes
    ``h_vmem`` per slot (Grid Engine multiplies it by the slots): a hard limit like LSF's
    ``-M`` and Slurm's ``--mem`` (``mem_free`` only steers scheduling). ``-S``: the default
    ``posix_compliant`` start mode ignores the shebang. No ``-V``: only SGE's own variables."""
    res = spec.resources
    if res.gpus:
        raise _refuse("ResourceSpec.gpus", str(res.gpus), "use the site's complex (-l gpu=N)")
    suffix = "$JOB_ID.$TASK_ID" if spec.array_range else "$JOB_ID"
    work_dir = _path("ResourceSpec.work_dir", res.work_dir)  # first: the default logs use it
    stdout = res.stdout_path or f"{res.work_dir}/stdout.{suffix}.log"
    stderr = res.stderr_path or f"{res.work_dir}/stderr.{suffix}.log"
    options = [
        f"-N {_name('job name', spec.name)}",
        f"-o {_path('ResourceSpec.stdout_path', stdout, placeholders=True)}",
        f"-e {_path('ResourceSpec.stderr_path', stderr, placeholders=True)}",
        f"-wd {work_dir}",
        f"-S {_path('shell', shell)}",
    ]
    if spec.array_range is not None:
        start, end = spec.array_range
        if start < 1:
            raise _refuse("array range", f"{start}-{end}", "task ids start at 1")
        options.append(f"-t {start}-{end}")
        if spec.max_concurrent:
            options.append(f"-tc {spec.max_concurrent}")
    if spec.token:
        options.append(f"{TOKEN_DIRECTIVE} {_name('job token', spec.token)}")
    if res.queue:
        options.append(f"-q {_name('ResourceSpec.queue', res.queue, _QUEUE)}")
    slots = res.cpus or 1
    if slots > 1:
        options.append(f"-pe {_name('parallel environment', pe)} {slots}")
    if res.walltime:
        seconds = parse_walltime_seconds(res.walltime)
        options.append(f"-l h_rt={seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}")
    if res.memory:
        per_slot = -(-parse_memory_bytes(res.memory) // slots)
        options.append(f"-l h_vmem={format_memory(per_slot, 'MB')}M")
    if res.account:
        options.append(f"-P {_name('ResourceSpec.account', res.account)}")
    if spec.depends_on:
        for job_id in spec.depends_on:
            if not JOB_ID_PATTERN.match(job_id):
                raise _refuse("depends_on", job_id, "not a job number")
        options += [f"-hold_jid {','.join(spec.depends_on)}", "-h"]
    if spec.inherit_env:
        options.append("-V")
    options.extend(res.extra_directives or [])
    return options


_SUBMITTED = re.compile(r"^(?:Your job(?:-array)? )?(\d+)(?:\.\d+-\d+:\d+)?(?: \(.*)?$")


def submit_argv(script_path: str | None, extra_args: Sequence[str] = ()) -> list[str]:
    """``-terse`` on the command line (not always read as a directive); no script: stdin."""
    return ["qsub", "-terse", *extra_args, *([script_path] if script_path else [])]


def parse_submit(stdout: str) -> str:
    """``7``, or ``2`` of an array's ``2.1-3:1``; a rejection prints only on stderr."""
    for match in map(_SUBMITTED.match, reversed(stdout.strip().splitlines())):
        if match:
            return match.group(1)
    raise SubmitError(f"qsub did not report a job id: {stdout.strip()[:500]!r}")


def _xml(text: str, command: str, *roots: str) -> ET.Element:
    """The document, when its root is one of ``roots``; ClusterAPIError otherwise."""
    try:
        root = ET.fromstring(text)
    except ET.ParseError as exc:
        raise ClusterAPIError(f"{command} printed unreadable XML ({exc}): {text[:300]!r}") from None
    if root.tag not in roots:
        raise ClusterAPIError(f"{command} printed <{root.tag}>, not <{roots[0]}>: {text[:300]!r}")
    return root


def _child(element: ET.Element, tag: str) -> str:
    return (element.findtext(tag) or "").strip()


def status_of(state: str) -> JobStatus | None:
    """``qw hqw Rq r t dr s Eqw``...; ``E`` first: an error state is queued but ended."""
    if not state.isascii() or not state.isalpha():
        return None
    if "E" in state:
        return JobStatus.FAILED
    if any(letter in state for letter in "rtsST"):
        return JobStatus.RUNNING
    return JobStatus.PENDING if any(letter in state for letter in "qwh") else None


def task_indices(expression: str) -> list[int]:
    """``3``, ``1-3:1``, ``3,4``; [] when unreadable or too large to be real."""
    if any(len(number) > 7 for number in re.findall(r"\d+", expression)):
        return []
    return expand_indices(expression)


def _observation(entry: ET.Element, status: JobStatus) -> Observation:
    obs = Observation(
        status=status,
        exec_host=_child(entry, "queue_name").partition("@")[2] or None,
        submit_time=parse_local_time(_child(entry, "JB_submission_time")),
        start_time=parse_local_time(_child(entry, "JAT_start_time")),
    )
    if status is JobStatus.FAILED:
        obs.reason = f"{ERROR_STATE_REASON} {_child(entry, 'state')}: it never ends by itself"
    return obs


def parse_status(text: str, wanted: Iterable[str] | None) -> QueryResult:
    """The wanted jobs of ``qstat -xml`` (running under ``queue_info``, the rest under the
    inner ``job_info``; an array as started tasks plus a range); odd entries are logged and
    skipped, unreadable XML is a ClusterAPIError; ended jobs are absent. ``wanted`` None:
    every job listed."""
    root, result = _xml(text, "qstat -xml", "job_info"), QueryResult()
    wanted = None if wanted is None else set(wanted)
    for entry in root.iter("job_list"):
        job_id, tasks = _child(entry, "JB_job_number"), _child(entry, "tasks")
        if not is_number(job_id) or (wanted is not None and job_id not in wanted):
            continue
        status = status_of(_child(entry, "state"))
        indices = task_indices(tasks) if tasks else []
        if status is None or (tasks and not indices):
            logger.warning("skipping an unreadable qstat entry: %r", ET.tostring(entry)[:300])
        elif not tasks:
            result.jobs[job_id] = _observation(entry, status)
        else:
            result.elements.setdefault(job_id, {}).update(
                (index, _observation(entry, status)) for index in indices
            )
    return result


_RECORD_SEPARATOR = re.compile(r"^={20,}\s*$", re.MULTILINE)
_NOT_FOUND = re.compile(r"error: job (?:id|name) (\S+) not found")
_FAILED = re.compile(r"^(\d+)\s*(?::\s*(.*))?$")
_RESCHEDULED, _ERROR_STATE, _LIMIT, _SIGNALLED = 25, 30, 37, 100  # failed codes


def parse_qacct_time(value: str) -> datetime | None:
    """``Tue Dec  1 22:03:30 2026`` (local) as UTC; None for ``-/-``, the epoch, odd text."""
    moment = parse_month_time(value)
    return moment if moment is not None and moment.year > 1970 else None


def parse_qacct(text: str) -> list[dict[str, str]]:
    """The ``====``-separated records of ``qacct -j``, each run of a job or task a dict."""
    records = []
    for chunk in _RECORD_SEPARATOR.split(text):
        pairs = [line.split(None, 1) for line in chunk.splitlines() if line.strip()]
        if pairs:
            records.append({p[0]: p[1].strip() if len(p) > 1 else "" for p in pairs})
    return records


def observation_from_qacct(record: dict[str, str]) -> Observation | None:
    """How one run ended, ``failed`` first (``exit_status`` is 0 for a job that never ran
    and 137 for qdel and walltime kills alike); None for a re-queue (exit 99) or odd text.
    failed 100 is FAILED with the signal: qdel's SIGKILL looks like the kernel's."""
    failed = _FAILED.match(record.get("failed", ""))
    exit_words = record.get("exit_status", "").split()
    if failed is None or not exit_words or not is_number(exit_words[0]):
        return None
    code, text, exit_status = int(failed.group(1)), failed.group(2) or "", int(exit_words[0])
    if code == _RESCHEDULED:
        return None
    started = parse_qacct_time(record.get("start_time", ""))
    obs = Observation(
        status=JobStatus.DONE if code == 0 and exit_status == 0 else JobStatus.FAILED,
        exit_code=exit_status if started else None,
        exec_host=record.get("hostname") or None,
        max_mem=record.get("maxvmem") or None,
        submit_time=parse_qacct_time(record.get("qsub_time", "")),
        start_time=started,
        finish_time=parse_qacct_time(record.get("end_time", "")),
    )
    if code == _LIMIT:
        obs.reason = f"limit exceeded (walltime h_rt or memory h_vmem): {text}"
    elif code == _SIGNALLED and exit_status > 128:
        obs.reason = f"killed by signal {exit_status - 128} (Grid Engine: {text})"
    elif code == _ERROR_STATE:
        obs.reason = f"exit {exit_status}: Grid Engine put the job in its error state (Eqw)"
    elif code:
        obs.reason = f"Grid Engine failed {code}: {text}" + ("" if started else " (never ran)")
    return obs


def parse_history(stdout: str, stderr: str = "") -> QueryResult:
    """Each job's or task's last record (earlier ones are reruns) unless a re-queue; ``not
    found`` ("deleted before it ran" only past :data:`ACCOUNTING_LAG_SECONDS`) in ``not_found``.
    A record can exist while the job is still in qstat (``Eqw``): qstat's presence wins."""
    result, last = QueryResult(not_found=set(_NOT_FOUND.findall(stderr))), {}
    for record in parse_qacct(stdout):
        job_id, task = record.get("jobnumber", ""), record.get("taskid", "")
        if is_number(job_id) and (task == "undefined" or is_number(task)):
            last[job_id, task] = record
        else:
            logger.warning("skipping an unreadable qacct record: %s", record)
    for (job_id, task), record in last.items():
        if (obs := observation_from_qacct(record)) is None:
            continue
        if task == "undefined":
            result.jobs[job_id] = obs
        else:
            result.elements.setdefault(job_id, {})[int(task)] = obs
    return result


_ACCEPTED = re.compile(  # registered the job 1 / job-array task 3.2, deleted job 7, qrls
    r"(?:registered the job|job-array task|deleted job|^job|modified hold of job) (\d+)"
    r"(\.\d+)?(?: for deletion| is already in deletion|$)",
    re.MULTILINE,
)
Split = tuple[set[str], set[str]]
_DOES_NOT_EXIST = re.compile(r'denied: job "(\d+(?:\.\d+)?)" does not exist')


def parse_cancel(stdout: str, stderr: str, returncode: int, ids: Iterable[str]) -> Split:
    """(accepted, already ended) among ``ids`` from qdel's or qrls's lines (on stdout, refusals
    too): accepted is being killed, deleted or released, already ended ``does not exist``;
    ids in neither got an odd answer. The exit code is 1 when any id was unknown."""
    asked, text = set(ids), f"{stdout}\n{stderr}"
    accepted = {i for job, task in _ACCEPTED.findall(text) for i in (job, job + task)} & asked
    return accepted, set(_DOES_NOT_EXIST.findall(text)) & asked - accepted


def parse_lookup(text: str, token: str) -> str | None:
    """The queued job carrying ``token`` in ``qstat -j NAME -xml``'s answer, else None (then
    ask ``qacct -j NAME``: :func:`parse_lookup_history`); odd text: ClusterAPIError."""
    for element in _xml(text, "qstat -j", "detailed_job_info", "unknown_jobs").iter("element"):
        if _child(element, "JB_account") == token and is_number(_child(element, "JB_job_number")):
            return _child(element, "JB_job_number")
    return None


def parse_parents(text: str) -> dict[str, list[str]]:
    """Each job's parents from ``qstat -j a,b -xml``'s answer: its ``-hold_jid`` request,
    which outlives the parents (they leave the predecessor list as they end)."""
    root, parents = _xml(text, "qstat -j", "detailed_job_info", "unknown_jobs"), {}
    for job in root.iterfind("djob_info/element"):
        asked = (_child(e, "JRE_job_name") for e in job.iterfind("JB_jid_request_list/element"))
        parents[_child(job, "JB_job_number")] = list(dict.fromkeys(filter(is_number, asked)))
    return parents


def parse_lookup_history(stdout: str, stderr: str, token: str) -> str | None:
    """The accounted job carrying ``token`` (``account``) in ``qacct -j NAME``'s answer, else
    None (trusted only past :data:`ACCOUNTING_LAG_SECONDS`); odd text: ClusterAPIError."""
    records = parse_qacct(stdout)
    if not records and not _NOT_FOUND.search(stderr):
        raise ClusterAPIError(f"qacct gave no records and no answer: {stderr.strip()[:300]!r}")
    for record in records:
        if record.get("account") == token and is_number(record.get("jobnumber", "")):
            return record["jobnumber"]
    return None


def parse_listing(text: str, prefix: str | None = None) -> dict[str, str]:
    """Id -> name of the queued jobs named ``prefix-...`` (all when None), from
    ``qstat -xml``'s answer (qstat cannot filter names); an array once."""
    entries = _xml(text, "qstat -xml", "job_info").iter("job_list")
    pairs = ((_child(e, "JB_job_number"), _child(e, "JB_name")) for e in entries)
    ours = (i for i in pairs if prefix is None or i[1].startswith(f"{prefix}-"))
    return {i: name for i, name in ours if is_number(i)}
