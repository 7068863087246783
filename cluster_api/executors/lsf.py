"""IBM Spectrum LSF: ``bsub`` to submit, one ``bjobs -json`` per poll, ``bkill`` to cancel.

Read top to bottom: the directive table, the submit path, parsing of ``bjobs -json``
(every value a string, ``ERROR`` records for unknown ids, times with or without a year),
then cancellation and reconnection.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import time
from collections.abc import Container
from datetime import datetime, timezone
from operator import itemgetter
from typing import Any

try:
    import orjson
except ImportError:  # not installed (e.g. PyPy): the standard library decodes
    orjson = None  # type: ignore[assignment]

from ..core import (
    CommandAnswer,
    Executor,
    JobSpec,
    Observation,
    QueryResult,
    gc_paused,
    is_number,
    roll_up_array,
    update_element,
    update_record,
)
from ..errors import ClusterAPIError, CommandFailedError, SubmitError
from ..models import JobRecord, JobStatus, ResourceSpec
from ..options import LSFOptions
from ..script import directive_lines
from ..units import format_memory, parse_memory_bytes, parse_walltime_minutes

logger = logging.getLogger("cluster_api")

DIRECTIVE = "#BSUB"
BJOBS_FIELDS = (
    "jobid jobindex job_name stat exit_code exec_host max_mem "
    "submit_time start_time finish_time exit_reason"
)
# Above this many characters of ids, poll by name prefix instead (argv stays small).
MAX_ID_CHARS = 32_000
# How many ids go into one bkill.
KILL_BATCH = 100

_STATUS = {
    "PEND": JobStatus.PENDING,
    "PROV": JobStatus.PENDING,
    "WAIT": JobStatus.PENDING,
    "PSUSP": JobStatus.PENDING,
    "RUN": JobStatus.RUNNING,
    "USUSP": JobStatus.RUNNING,
    "SSUSP": JobStatus.RUNNING,
    "DONE": JobStatus.DONE,
    "EXIT": JobStatus.FAILED,
    "UNKWN": JobStatus.UNKNOWN,
    "ZOMBI": JobStatus.KILLED,
}
# EXIT reasons that mean a person (owner or admin) killed the job, not that it failed.
_KILL_REASONS = ("TERM_OWNER", "TERM_ADMIN", "TERM_FORCE_OWNER", "TERM_FORCE_ADMIN")
_SUBMITTED = re.compile(r"Job <(\d+)> is submitted")
# Messages of a busy or restarting mbatchd: worth one more try.
_TRANSIENT = re.compile(
    r"LSF is down|Cannot connect to LSF|daemon not responding|Please wait|try again later",
    re.IGNORECASE,
)
# How bjobs says that nothing matches (a valid answer, unlike an outage).
_NO_JOB = re.compile(r"No (?:unfinished )?job found|is not found")
SUBMIT_RETRY_DELAY = 5.0


# -- directives --------------------------------------------------------------------------
_SHELL_SPECIAL_IN_DQUOTES = re.compile(r'["\\$`]')
_LSF_JOB_ID = re.compile(r"^\d+(\[\d+\])?$")


def _quote(field: str, value: str) -> str:
    """A directive value as LSF's documentation writes them: bare when no shell would
    change it, in double quotes otherwise."""
    return value if shlex.quote(value) == value else _double_quoted(field, value)


def _double_quoted(field: str, value: str) -> str:
    """``value`` in double quotes (paths always are: ``-cwd "/scratch"``). Inside them
    ``"``, ``\\``, ``$`` and a backquote are special, to LSF's directive parser as to a
    shell, with no escape both read alike; a value with one is refused, naming the
    ``field`` it came from, rather than written so that LSF reads something else."""
    special = _SHELL_SPECIAL_IN_DQUOTES.search(value)
    if special:
        raise ValueError(
            f"{field} {value!r} contains {special.group()!r}, which cannot be written "
            'inside the double quotes of an LSF directive (no ", \\, $ or `)'
        )
    return f'"{value}"'


def _checked_work_dir(work_dir: str) -> str:
    """The job's folder, refused when LSF would not read it back as written: ``%J``,
    ``%I``, ``%U``... are placeholders in ``-cwd``, ``-o`` and ``-e`` and LSF has no
    escape for a literal ``%``, so the job would run (and log) somewhere else."""
    if "%" in work_dir:
        raise ValueError(
            f"ResourceSpec.work_dir {work_dir!r} contains '%', which LSF reads as a "
            "placeholder (%J, %I, %U, ...) in -cwd, -o and -e; use a folder without '%'"
        )
    return _double_quoted("ResourceSpec.work_dir", work_dir)


def lsf_options(spec: JobSpec, lsf_units: str) -> list[str]:
    """The bsub options for one job, one option per string (``-q normal``)."""
    res = spec.resources
    q = _quote
    name = spec.name
    is_array = spec.array_range is not None
    if spec.array_range is not None:
        start, end = spec.array_range
        limit = f"%{spec.max_concurrent}" if spec.max_concurrent else ""
        name = f"{name}[{start}-{end}{limit}]"
    suffix = "%J.%I" if is_array else "%J"
    cwd = _checked_work_dir(res.work_dir)
    stdout = res.stdout_path or f"{res.work_dir}/stdout.{suffix}.log"
    stderr = res.stderr_path or f"{res.work_dir}/stderr.{suffix}.log"
    options = [
        f"-J {q('job name', name)}",
        f"-o {_double_quoted('ResourceSpec.stdout_path', stdout)}",
        f"-e {_double_quoted('ResourceSpec.stderr_path', stderr)}",
    ]
    if spec.token:
        options.append(f"-Jd {q('job token', spec.token)}")
    if res.queue:
        options.append(f"-q {q('queue', res.queue)}")
    if res.cpus:
        options.append(f"-n {res.cpus}")
        if res.cpus > 1:
            options.append('-R "span[hosts=1]"')
    if res.gpus:
        options.append(f'-gpu "num={res.gpus}"')
    if res.memory:
        amount = format_memory(parse_memory_bytes(res.memory), lsf_units)
        options.append(f"-M {amount}")
        options.append(f'-R "rusage[mem={amount}]"')
    if res.walltime:
        minutes = parse_walltime_minutes(res.walltime)
        options.append(f"-W {minutes // 60}:{minutes % 60:02d}")
    if res.account:
        options.append(f"-P {q('account', res.account)}")
    options.append(f"-cwd {cwd}")
    if spec.depends_on:
        condition = " && ".join(f"done({job_id})" for job_id in spec.depends_on)
        options.append(f"-w {q('depends_on', condition)}")
        options.append("-ti")
    if not spec.inherit_env:
        options.append("-env none")
    options.extend(res.extra_directives or [])
    return options


def lsf_header(spec: JobSpec, config: Any) -> list[str]:
    """``#BSUB`` lines: generated ones (minus ``directives_skip``), then the config's
    ``extra_directives`` verbatim."""
    return directive_lines(
        DIRECTIVE,
        lsf_options(spec, config.lsf_units),
        config.directives_skip,
        config.extra_directives,
    )


def header_to_argv(header: list[str]) -> list[str]:
    """The options of ``#BSUB`` lines as argv words, for ``bsub [options] script``.

    LSF reads ``#BSUB`` lines of a script given as an argument only where the site sets
    ``LSB_BSUB_PARSE_SCRIPT=Y``; passing them on the command line works everywhere.
    """
    argv: list[str] = []
    for line in header:
        if line.startswith(DIRECTIVE):
            try:
                argv.extend(shlex.split(line[len(DIRECTIVE) :]))
            except ValueError as exc:
                raise ValueError(f"cannot parse directive {line!r}: {exc}") from None
    return argv


def parse_submit_output(text: str) -> str:
    match = _SUBMITTED.search(text)
    if match is None:
        raise SubmitError(f"bsub did not report a job id: {text.strip()[:500]!r}")
    return match.group(1)


# -- status ------------------------------------------------------------------------------
def parse_bjobs_json(text: str) -> list[dict[str, Any]]:
    """The records of a ``bjobs -json`` answer; ClusterAPIError if it is not one.

    Text before the JSON (site banners, warnings) is skipped.
    """
    start = text.find("{")
    if start < 0:
        raise ClusterAPIError(f"bjobs printed no JSON: {text.strip()[:200]!r}")
    data = _decode_json(text[start:])
    records = data.get("RECORDS") if isinstance(data, dict) else None
    if not isinstance(records, list):
        raise ClusterAPIError(f"bjobs JSON has no RECORDS list: {text.strip()[:200]!r}")
    if set(map(type, records)) <= {dict}:  # the usual answer, checked at C speed
        return records
    return [r for r in records if isinstance(r, dict)]


def _decode_json(text: str) -> Any:
    """The JSON value ``text`` starts with. orjson decodes a 10k-job answer in half the
    time of the standard library; anything orjson refuses (trailing text, NaN, huge
    numbers, lone surrogates) and platforms without it go through the standard library,
    which also words the error."""
    if orjson is not None:
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError:
            pass
    try:
        return json.JSONDecoder().raw_decode(text)[0]
    except (ValueError, RecursionError) as exc:
        raise ClusterAPIError(
            f"bjobs printed invalid JSON ({exc}): {text.strip()[:200]!r}"
        ) from None


def _text(record: dict[str, Any], key: str) -> str | None:
    """A bjobs value, or None when it is empty (``""``/``"-"``). Hot: called ~10x a job."""
    value = record.get(key)
    if not value:
        return None
    if value.__class__ is not str:
        value = str(value)
    if value[0] == " " or value[-1] == " ":
        value = value.strip()
    if not value or value == "-":
        return None
    return value


_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}


# LSF times are local wall-clock times at minute or second precision. A poll meets
# thousands of distinct times but only a few distinct local hours, so each hour's start is
# converted once ("Nov 22 10 2026" -> epoch seconds) and the minutes and seconds added.
_TIME = re.compile(
    r"([A-Z][a-z]{2} +\d{1,2} +\d{1,2}):(\d{2})(?::(\d{2}))?(?: +(\d{4}))?(?: +[LEX])?"
)
_HOUR_STARTS: dict[str, float] = {}
_SIXTY = {f"{n:02d}": n for n in range(60)}  # "00".."59": a minute or a second
_ZONE: list[object] = [None]


def parse_lsf_time(value: str | None, now: datetime | None = None) -> datetime | None:
    """An LSF time (``Nov 22 10:31[:17] [2026] [L]``, local time) as an aware UTC datetime.

    Without a year (sites without ``LSB_DISPLAY_YEAR=Y``) the most recent such date not
    more than a day in the future is meant, which is right across New Year.
    """
    _forget_hours_if_the_zone_changed()
    return _parse_time(value, now)


def _forget_hours_if_the_zone_changed() -> None:
    zone = (time.timezone, time.altzone, time.tzname)
    if _ZONE[0] != zone:
        _HOUR_STARTS.clear()
        _ZONE[0] = zone


def _parse_time(value: str | None, now: datetime | None) -> datetime | None:
    """``parse_lsf_time`` for callers that checked the time zone already."""
    if not value or value.__class__ is not str:
        return None
    # LSF's usual shape, "Nov 22 10:31:17 2026", once a time of its hour has been read.
    if len(value) == 20 and value[9] == ":" and value[12] == ":":
        start = _HOUR_STARTS.get(value[:9] + value[15:])
        minute, second = _SIXTY.get(value[10:12]), _SIXTY.get(value[13:15])
        if start is not None and minute is not None and second is not None:
            return datetime.fromtimestamp(start + 60 * minute + second, timezone.utc)
    match = _TIME.fullmatch(value.strip())
    if match is None:
        return None
    day_hour, minute_text, second_text, year = match.groups()
    minute, second = _SIXTY.get(minute_text), _SIXTY.get(second_text or "00")
    if minute is None or second is None:
        return None
    seconds = 60 * minute + second
    try:
        if year is not None:
            return datetime.fromtimestamp(_hour_start(day_hour, year) + seconds, timezone.utc)
        now = now or datetime.now(timezone.utc)
        start = _hour_start(day_hour, str(now.year))
        moment = datetime.fromtimestamp(start + seconds, timezone.utc)
        if (moment - now).days >= 1:
            start = _hour_start(day_hour, str(now.year - 1))
            moment = datetime.fromtimestamp(start + seconds, timezone.utc)
        return moment
    except (KeyError, ValueError, OverflowError, OSError):
        return None


def _hour_start(day_hour: str, year: str) -> float:
    """Epoch seconds at the start of a local hour (``"Nov 22 10"`` of ``"2026"``)."""
    key = f"{day_hour} {year}"
    start = _HOUR_STARTS.get(key)
    if start is None:
        month, day, hour = day_hour.split()
        local = datetime(int(year), _MONTHS[month], int(day), int(hour))
        start = _HOUR_STARTS[key] = local.astimezone().timestamp()
    return start


_EMPTY = frozenset({"", "-"})
_UNSET: Any = object()


def _exit_code(value: str | None, status: JobStatus) -> int | None:
    if value and value != "-":
        try:
            return int(value)
        except ValueError:
            return None
    return 0 if status is JobStatus.DONE else None


_PENDING, _DONE, _FAILED, _KILLED = (
    JobStatus.PENDING,
    JobStatus.DONE,
    JobStatus.FAILED,
    JobStatus.KILLED,
)


# The fields a poll reads, in the order query_result_from_records unpacks them.
_FIELDS = (
    "JOBID",
    "JOBINDEX",
    "STAT",
    "EXIT_CODE",
    "EXEC_HOST",
    "MAX_MEM",
    "SUBMIT_TIME",
    "START_TIME",
    "FINISH_TIME",
    "EXIT_REASON",
)
_all_fields = itemgetter(*_FIELDS)
_NOT_FOUND: Any = object()  # stands in for STAT in an ERROR record


def _record_fields(records: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    """Each record's ``_FIELDS`` (None where missing; STAT ``_NOT_FOUND`` in ERROR records)."""
    try:
        return list(map(_all_fields, records))  # the usual answer: every field everywhere
    except KeyError:
        pass
    rows = []
    for record in records:
        fields = tuple(map(record.get, _FIELDS))
        if "ERROR" in record:
            fields = (fields[0], None, _NOT_FOUND, *fields[3:])
        rows.append(fields)
    return rows


def query_result_from_records(
    records: list[dict[str, Any]], wanted: Container[str] | None = None
) -> QueryResult:
    """Sort bjobs records into plain jobs, array elements and unknown ids, keeping only
    the ``wanted`` job ids when given (a by-name query also returns jobs we don't track).

    This runs for every job on every poll, so it is one straight loop with no helper
    calls per record. bjobs values are strings; anything else counts as empty. Thousands
    of jobs share each distinct time, so each is parsed once per answer (``times``).
    """
    result = QueryResult()
    jobs, elements = result.jobs, result.elements
    now = datetime.now(timezone.utc)
    times: dict[Any, datetime | None] = {None: None, "": None, "-": None}
    _forget_hours_if_the_zone_changed()
    for job_id, index, stat, code, host, mem, submit, start, finish, reason in _record_fields(
        records
    ):
        if job_id.__class__ is not str or not job_id:
            continue
        if "[" in job_id:
            job_id = job_id.split("[", 1)[0]
        if wanted is not None and job_id not in wanted:
            continue
        status = _STATUS.get(stat) if stat.__class__ is str else None
        if status is None:
            if stat is _NOT_FOUND:
                result.not_found.add(job_id)
            continue
        if host.__class__ is not str or host in _EMPTY:
            host = None
        if mem.__class__ is not str or mem in _EMPTY:
            mem = None
        try:
            submit_time = times[submit]
        except KeyError:
            submit_time = times[submit] = _parse_time(submit, now)
        except TypeError:  # a list or an object, not a time
            submit_time = None
        if status is _PENDING:  # its START_TIME and FINISH_TIME are estimates
            obs = Observation(status, None, host, mem, submit_time)
        else:
            try:
                start_time = times[start]
            except KeyError:
                start_time = times[start] = _parse_time(start, now)
            except TypeError:  # a list or an object, not a time
                start_time = None
            if status is not _DONE and status is not _FAILED and status is not _KILLED:
                obs = Observation(status, None, host, mem, submit_time, start_time)
            else:
                if reason.__class__ is not str or reason in _EMPTY:
                    reason = None
                try:
                    finish_time = times[finish]
                except KeyError:
                    finish_time = times[finish] = _parse_time(finish, now)
                except TypeError:  # a list or an object, not a time
                    finish_time = None
                if status is _FAILED and reason and any(k in reason for k in _KILL_REASONS):
                    status = _KILLED
                exit_code = _exit_code(code if code.__class__ is str else None, status)
                obs = Observation(
                    status, exit_code, host, mem, submit_time, start_time, finish_time, reason
                )
        if index is None or index == "0" or index == "":
            jobs[job_id] = obs
            continue
        if index.__class__ is str and not index.isascii():  # int() reads "٣" as 3
            continue
        try:
            element = int(index)
        except (TypeError, ValueError):
            continue
        if element == 0:
            jobs[job_id] = obs
        elif element > 0:
            elements.setdefault(job_id, {})[element] = obs
    return result


def parse_bhist_long(text: str) -> dict[str, Observation]:
    """Final states from ``bhist -l`` (keys ``"123"`` or ``"123[4]"``); jobs that have not
    ended are left out. bhist wraps long lines with indented continuations."""
    joined = re.sub(r"\n {10,}", "", text)
    finals: dict[str, Observation] = {}
    for block in re.split(r"(?m)^(?=Job <)", joined):
        head = re.match(r"Job <(\d+(?:\[\d+\])?)>", block)
        if head is None:
            continue
        exited = re.search(r"Exited with exit code (\d+)", block)
        reason_match = re.search(r"\b(TERM_[A-Z_]+)", block)
        reason = reason_match.group(1) if reason_match else None
        if "Done successfully" in block:
            obs = Observation(JobStatus.DONE, exit_code=0)
        elif exited or re.search(r"\bExited\b", block):
            killed = reason is not None and reason in _KILL_REASONS
            obs = Observation(
                JobStatus.KILLED if killed else JobStatus.FAILED,
                exit_code=int(exited.group(1)) if exited else None,
                reason=reason,
            )
        else:
            continue
        finals[head.group(1)] = obs
    return finals


# bkill answers each job on a line of its own: stdout for a kill it accepted, stderr
# (exit 255) for one it refused ("Job <7>: Job has already finished").
_BKILL_ACCEPTED = re.compile(r"Job <([^<>\s]+)> is being (?:terminated|signaled)")
_BKILL_ANSWERED = re.compile(r"Job <([^<>\s]+)>(?: is being|:)")


def accepted_by_bkill(answer: CommandAnswer) -> set[str]:
    """The jobs a bkill accepted, by the ids it names. An answer naming no job at all
    (a bare ``bkill`` stand-in, or an error about bkill itself) accepted every job it was
    given if it succeeded, and none if it failed."""
    text = f"{answer.stdout}\n{answer.stderr}"
    accepted = set(_BKILL_ACCEPTED.findall(text))
    if accepted or _BKILL_ANSWERED.search(text):
        return accepted
    return set() if answer.failed else set(answer.ids)


class LSFExecutor(Executor):
    """Runs jobs through IBM Spectrum LSF."""

    name = "lsf"
    array_index_variable = "LSB_JOBINDEX"
    records_cancel_as_done = True  # bkill -d
    directive_prefix = DIRECTIVE
    job_id_pattern = _LSF_JOB_ID
    job_id_example = "123 or 123[4]"
    options = LSFOptions

    def _header_for(self, spec: JobSpec) -> list[str]:
        return lsf_header(spec, self.config)

    def _validate(self, spec: JobSpec) -> None:
        super()._validate(spec)
        if spec.array_range is not None and spec.array_range[0] < 1:
            raise ValueError(f"LSF array indices start at 1, got array_range {spec.array_range!r}")

    def _submit_env(self) -> dict[str, str]:
        return {"LSB_JOB_REPORT_MAIL": "N"} if self.config.suppress_job_email else {}

    def _extra_args(self, resources: ResourceSpec) -> list[str]:
        return [*self.config.extra_args, *(resources.extra_args or [])]

    async def _submit_script(self, spec: JobSpec, script_path: str) -> str:
        """Submit, surviving one lost answer: after a timeout or a transient error the job
        is looked up by its unique description before bsub is tried again, so it is
        submitted exactly once."""
        extra = self._extra_args(spec.resources)
        if self.config.use_stdin:
            argv, stdin = ["bsub", *extra], script_path
        else:
            # LSF joins the command words and hands them to /bin/sh: the path is quoted
            # for that shell, or a space in it breaks the job and a $(...) runs.
            command = shlex.quote(script_path)
            argv = ["bsub", *header_to_argv(self._header_for(spec)), *extra, command]
            stdin = None
        return await self._submit_exactly_once(
            spec,
            argv,
            stdin_file=stdin,
            env=self._submit_env(),
            transient=_TRANSIENT,
            parse=parse_submit_output,
            retry_delay=SUBMIT_RETRY_DELAY,
        )

    async def _find_submission(self, name: str, token: str) -> str | None:
        """The id of the job carrying this submission's token; None only when bjobs
        answered and lists no such job (an outage, empty or garbled answer raises)."""
        argv = ["bjobs", "-a", "-o", "jobid job_description", "-json", "-J", f"{name}*"]
        try:
            out = await self._run(argv)
        except CommandFailedError as exc:
            if "{" not in exc.stdout:
                if _TRANSIENT.search(str(exc)) or not _NO_JOB.search(str(exc)):
                    raise
                return None  # bjobs says it has no job of that name
            out = exc.stdout
        for record in parse_bjobs_json(out):
            if _text(record, "JOB_DESCRIPTION") == token and _text(record, "JOBID"):
                return str(_text(record, "JOBID")).split("[", 1)[0]
        return None

    def _bjobs_argv(self, active: dict[str, JobRecord]) -> list[str]:
        argv = ["bjobs"]
        if self.config.poll_all_users:
            argv += ["-u", "all"]
        argv += ["-a", "-o", BJOBS_FIELDS, "-json"]
        if len(" ".join(active)) < MAX_ID_CHARS:
            return argv + list(active)
        # Too many ids for one argv: ask by name prefix when every job carries it, else
        # for all of the user's jobs; either way still one command.
        prefix = self.config.job_name_prefix
        ours = f"{prefix}-"
        if prefix and all(r.name.startswith(ours) for r in active.values()):
            return [*argv, "-J", f"{prefix}-*"]
        return argv

    async def _query(self, active: dict[str, JobRecord]) -> QueryResult:
        try:
            out = await self._run(self._bjobs_argv(active))
        except CommandFailedError as exc:
            # bjobs exits 255 when any id is unknown but still prints the others.
            if "{" not in exc.stdout:
                raise
            out = exc.stdout
        with gc_paused():
            return query_result_from_records(parse_bjobs_json(out), active)

    async def _cancel_ids(self, job_ids: list[str], *, done: bool) -> set[str]:
        answers = await self._run_batches(["bkill", *(["-d"] if done else [])], job_ids, KILL_BATCH)
        return {job_id for answer in answers for job_id in accepted_by_bkill(answer)}

    async def _cancel_name_pattern(self, pattern: str) -> set[str] | None:
        try:
            out = await self._run(["bkill", "-J", pattern, "0"])
        except CommandFailedError as exc:
            logger.info("bkill -J %s reported: %s", pattern, exc)
            answer = CommandAnswer([], exc.stdout, exc.stderr or str(exc), failed=True)
            return accepted_by_bkill(answer)
        accepted = accepted_by_bkill(CommandAnswer([], out))
        return accepted or None  # a bkill that names no job: every tracked match

    async def recover_lost(self, records: list[JobRecord]) -> None:
        """Ask ``bhist -l`` (one call) how jobs that left bjobs ended."""
        ids = [r.job_id for r in records]
        try:
            out = await self._run(["bhist", "-l", *ids])
        except CommandFailedError as exc:
            out = exc.stdout  # bhist exits non-zero when it knows only some of them
        finals = parse_bhist_long(out)
        for record in records:
            if record.is_array:
                for index, element in record.array_elements.items():
                    obs = finals.get(f"{record.job_id}[{index}]")
                    if obs is not None and not element.status.is_terminal:
                        update_element(element, obs)
                roll_up_array(record)
            elif record.job_id in finals:
                update_record(record, finals[record.job_id])
            if record.status.is_terminal:
                record.metadata["resolved_from"] = "bhist"
                logger.info(
                    "job %s ended %s according to bhist", record.job_id, record.status.value
                )

    async def _discover(self, require: bool) -> list[JobRecord]:
        """Track the unfinished jobs whose names start with this config's prefix."""
        prefix = self.config.job_name_prefix
        if not prefix:
            if not require:
                return []
            raise ClusterAPIError("reconnect() needs job_name_prefix to tell our jobs from others")
        argv = [
            "bjobs",
            *(["-u", "all"] if self.config.poll_all_users else []),
            "-a",
            "-o",
            BJOBS_FIELDS,
            "-json",
            "-J",
            f"{prefix}-*",
        ]
        try:
            out = await self._run(argv)
        except CommandFailedError as exc:
            if "{" not in exc.stdout:
                if "No unfinished job found" in str(exc) or "No job found" in str(exc):
                    return []
                raise
            out = exc.stdout
        return self._adopt(parse_bjobs_json(out))

    def _adopt(self, records: list[dict[str, Any]]) -> list[JobRecord]:
        result = query_result_from_records(records)
        names: dict[str, str] = {}
        for raw in records:
            job_id, name = _text(raw, "JOBID"), _text(raw, "JOB_NAME")
            if job_id and name:
                names[job_id] = re.sub(r"\[\d+\]$", "", name)
        adopted = []
        for job_id in sorted({*result.jobs, *result.elements}, key=_numeric):
            if job_id in self._jobs or _finished(result, job_id):
                continue
            if not is_number(job_id):
                logger.warning("ignoring a bjobs record with job id %r: not an LSF job id", job_id)
                continue
            record = JobRecord(job_id=job_id, name=names.get(job_id, ""), command="")
            record.metadata["reconnected"] = True
            if job_id in result.elements:
                indices = sorted(result.elements[job_id])
                record.metadata["array_range"] = (indices[0], indices[-1])
            self._register(record)
            self._apply(record, result.jobs.get(job_id), result.elements.get(job_id))
            adopted.append(record)
        return adopted


def _finished(result: QueryResult, job_id: str) -> bool:
    """True when the job (every element of an array) has ended: nothing to reconnect to."""
    if job_id in result.elements:
        return all(obs.status.is_terminal for obs in result.elements[job_id].values())
    plain = result.jobs.get(job_id)
    return plain is not None and plain.status.is_terminal


def _numeric(job_id: str) -> tuple[int, str]:
    return (int(job_id), "") if is_number(job_id) else (0, job_id)
