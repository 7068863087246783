"""IBM Spectrum LSF: ``bsub`` to submit, one ``bjobs -json`` per poll, ``bkill`` to cancel.

Read top to bottom: the directive table, the submit answer, then the `LSF` translation
(commands and what their answers mean; the answers' formats are read in `.lsf_formats`).
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping, Sequence
from typing import Any

from ..engine import BatchExecutor
from ..errors import SubmitError
from ..history import HistoryQuery, Key
from ..jobspec import JobSpec
from ..models import JobRecord
from ..options import LSFOptions
from ..scheduler import Command, CommandAnswer, Listing, Scheduler
from ..script import directive_argv, table_options
from ..status import Observation, QueryResult
from ..units import format_memory, parse_memory_bytes, parse_walltime_minutes
from . import lsf_formats as formats

DIRECTIVE = "#BSUB"

# Any "Job <N>" in bsub's answer is the id (sites wrap the message; 0.8.1 read any).
_SUBMITTED = re.compile(r"Job <(\d+)>")
# How bjobs says that nothing matches (a valid answer, unlike an outage).
_NO_JOB = re.compile(r"No (?:unfinished )?job found|is not found")


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
    condition = " && ".join(f"done({job_id})" for job_id in spec.depends_on)
    return table_options(
        (
            (name, lambda v: [f"-J {q('job name', v)}"]),
            (stdout, lambda v: [f"-o {_double_quoted('ResourceSpec.stdout_path', v)}"]),
            (stderr, lambda v: [f"-e {_double_quoted('ResourceSpec.stderr_path', v)}"]),
            (spec.token, lambda v: [f"-Jd {q('job token', v)}"]),
            (res.queue, lambda v: [f"-q {q('queue', v)}"]),
            (res.cpus, lambda n: [f"-n {n}", *(['-R "span[hosts=1]"'] if n > 1 else [])]),
            (res.gpus, lambda n: [f'-gpu "num={n}"']),
            (res.memory, lambda m: _memory_options(m, lsf_units)),
            (res.walltime, lambda w: [f"-W {_walltime(w)}"]),
            (res.account, lambda v: [f"-P {q('account', v)}"]),
            (cwd, lambda v: [f"-cwd {v}"]),
            (condition, lambda v: [f"-w {q('depends_on', v)}", "-ti"]),
            (not spec.inherit_env, lambda _: ["-env none"]),
            (spec.login_shell, lambda _: ["-L /bin/bash"]),
            (res.extra_directives, list),
        )
    )


def lsf_format_bytes_ceil(n_bytes: int, lsf_units: str = "MB") -> str:
    """``n_bytes`` in LSF's memory unit (``lsf_units``), rounded up so a limit never
    shrinks below what was asked."""
    return str(format_memory(n_bytes, lsf_units))


def _memory_options(memory: str, lsf_units: str) -> list[str]:
    amount = lsf_format_bytes_ceil(parse_memory_bytes(memory), lsf_units)
    return [f"-M {amount}", f'-R "rusage[mem={amount}]"']


_HOURS_MINUTES = re.compile(r"\d+:\d\d")


def _walltime(value: str | int) -> str:
    """LSF's ``-W [HH:]MM``: an ``HH:MM`` the user wrote is kept as written (``04:00``),
    other forms are converted, rounded up to whole minutes."""
    minutes = parse_walltime_minutes(value)  # validates every form
    if isinstance(value, str) and _HOURS_MINUTES.fullmatch(value.strip()):
        return value.strip()
    return f"{minutes // 60}:{minutes % 60:02d}"


class LSF(Scheduler):
    """IBM Spectrum LSF, as translation."""

    name = "lsf"
    array_index_variable = "LSB_JOBINDEX"
    records_cancel_as_done = True  # bkill -d
    directive_prefix = DIRECTIVE
    job_id_pattern = _LSF_JOB_ID
    job_id_example = "123 or 123[4]"
    # Messages of a busy or restarting mbatchd: worth one more try.
    transient = re.compile(
        r"LSF is down|Cannot connect to LSF|daemon not responding|Please wait|try again later",
        re.IGNORECASE,
    )
    history_source = "bhist"

    def validate(self, spec: JobSpec) -> None:
        if spec.array_range is not None and spec.array_range[0] < 1:
            raise ValueError(f"LSF array indices start at 1, got array_range {spec.array_range!r}")

    def options(self, spec: JobSpec) -> list[str]:
        return lsf_options(spec, self.config.lsf_units)

    def submit_command(self, spec: JobSpec, script_path: str) -> Command:
        extra = [*self.config.extra_args, *(spec.resources.extra_args or [])]
        env = {"LSB_JOB_REPORT_MAIL": "N"} if self.config.suppress_job_email else None
        if self.config.use_stdin:
            return Command(["bsub", *extra], env, stdin_file=script_path)
        # The #BSUB options go on the command line: LSF reads them from a script given as
        # an argument only where the site sets LSB_BSUB_PARSE_SCRIPT=Y. It joins the words
        # and hands them to /bin/sh, so the path is quoted for that shell (or a space in it
        # breaks the job and a $(...) runs).
        argv = ["bsub", *directive_argv(DIRECTIVE, self.header(spec)), *extra]
        return Command([*argv, shlex.quote(script_path)], env)

    def parse_submit(self, out: str) -> str:
        match = _SUBMITTED.search(out)
        if match is None:
            raise SubmitError(f"bsub did not report a job id: {out.strip()[:500]!r}")
        return match.group(1)

    def lookup_command(self, name: str, token: str) -> Command:
        return Command(["bjobs", "-a", "-o", "jobid job_description", "-json", "-J", f"{name}*"])

    def _records(self, answer: CommandAnswer) -> list[dict[str, Any]]:
        """The records of a bjobs answer. bjobs fails (printing no JSON) both when it has
        no job to show, which is an answer (no records), and when it cannot answer, which
        raises; so does an empty or garbled answer."""
        if answer.failed and "{" not in answer.stdout:
            if self.transient.search(answer.text) or not _NO_JOB.search(answer.text):
                raise answer.unusable(f"bjobs failed: {answer.text.strip()[:200]!r}")
            return []
        return formats.parse_bjobs_json(answer.stdout)

    def parse_lookup(self, answer: CommandAnswer, token: str) -> str | None:
        """None only when bjobs answered and lists no such job."""
        for record in self._records(answer):
            job_id = formats.field_text(record, "JOBID")
            if job_id and formats.field_text(record, "JOB_DESCRIPTION") == token:
                return job_id.split("[", 1)[0]
        return None

    def _bjobs(self) -> list[str]:
        users = ["-u", "all"] if self.config.poll_all_users else []
        return ["bjobs", *users, "-a", "-o", formats.BJOBS_FIELDS, "-json"]

    def status_command(self, active: Mapping[str, JobRecord]) -> Command:
        argv = self._bjobs()
        if len(" ".join(active)) < self.max_id_chars:
            return Command(argv + list(active))
        # Too many ids for one argv: ask by name prefix when every job carries it, else
        # for all of the user's jobs; either way still one command.
        prefix = self.config.job_name_prefix
        ours = f"{prefix}-"
        if prefix and all(r.name.startswith(ours) for r in active.values()):
            return Command([*argv, "-J", f"{prefix}-*"])
        return Command(argv)

    def parse_status(self, answer: CommandAnswer, active: Mapping[str, JobRecord]) -> QueryResult:
        # bjobs exits 255 when any id is unknown but still prints the others.
        return formats.query_result_from_records(self._records(answer), active)

    def history_command(self, query: HistoryQuery) -> Command:
        return Command(["bhist", "-l", *query.job_ids])

    def parse_history(self, answer: CommandAnswer, query: HistoryQuery) -> dict[Key, Observation]:
        # bhist exits non-zero when it knows only some of the jobs: read what it printed.
        return formats.parse_bhist_long(answer.stdout)

    def cancel_command(self, job_ids: Sequence[str], done: bool) -> Command:
        return Command(["bkill", *(["-d"] if done else []), *job_ids])

    def parse_cancel(self, answer: CommandAnswer) -> set[str]:
        return formats.accepted_by_bkill(answer)

    def cancel_by_name_command(self, pattern: str) -> Command:
        return Command(["bkill", "-J", pattern, "0"])

    def listing_command(self, prefix: str | None) -> Command:
        return Command([*self._bjobs(), *(["-J", f"{prefix}-*"] if prefix else [])])

    def parse_listing(self, answer: CommandAnswer) -> Listing:
        records = self._records(answer)
        listing = Listing(formats.query_result_from_records(records))
        for raw in records:
            job_id, name = formats.field_text(raw, "JOBID"), formats.field_text(raw, "JOB_NAME")
            if job_id and name:
                listing.names[job_id] = re.sub(r"\[\d+\]$", "", name)
        return listing


class LSFExecutor(BatchExecutor):
    """Runs jobs through IBM Spectrum LSF."""

    scheduler_class = LSF
    options = LSFOptions
