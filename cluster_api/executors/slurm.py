"""Slurm: ``sbatch`` to submit, one ``squeue`` per poll, ``sacct`` for how jobs ended,
``scancel`` to cancel.

Read top to bottom: the command formats, then the `Slurm` translation (its directive
table, commands and what their answers mean; the answers' formats are read in
`.slurm_formats`; which ends the history is asked for, the engine decides).

Facts about Slurm's output come from recorded Slurm 22.05.8 answers
(``tests/data/slurm/FINDINGS.md``). Only the stable text formats are used: the JSON
layouts change between Slurm versions.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ..config import ClusterConfig
from ..engine import BatchExecutor
from ..errors import ClusterAPIError
from ..history import HistoryQuery, Key
from ..jobspec import JobSpec
from ..models import JobRecord
from ..options import BatchOptions
from ..scheduler import Command, CommandAnswer, HistoryRetry, Listing, Scheduler
from ..script import table_options
from ..status import Observation, QueryResult, is_number
from ..units import format_memory, parse_memory_bytes
from . import slurm_formats as formats

# %i shown id, %A the record's own job id, %F array job id (own id for plain jobs),
# %K array index ("N/A" for plain jobs), %T state, %r reason, %N nodes, %V submit,
# %S start, %e end, %j name. No widths (they truncate); the name, free text, goes last.
SQUEUE_FORMAT = "%i|%A|%F|%K|%T|%r|%N|%V|%S|%e|%j"
# Without it squeue cuts long array expressions short.
SQUEUE_ENV = {"SLURM_BITSTR_LEN": "0"}
SACCT_FIELDS = "JobIDRaw,JobID,State,ExitCode,NodeList,MaxRSS,Start,End"
# Looking a submission up by its comment: array job id and comment, under this header.
LOOKUP_FORMAT = "%F|%k"
LOOKUP_HEADER = "ARRAY_JOB_ID|COMMENT"

_INVALID_JOB_ID = "Invalid job id specified"
_SCANCEL_TERMINATING = re.compile(r"Terminating job (\d+(?:_\d+)?)")
_SCANCEL_REFUSED = re.compile(r"error on job id (\d+(?:_\d+)?)")
_NO_ACCOUNTING = "accounting storage is disabled"


# -- directives --------------------------------------------------------------------------
_BARE = re.compile(r"^[A-Za-z0-9_./:%@+,=-]+$")


def _quote(value: str) -> str:
    """A directive value as sbatch's script parser reads it: bare when safe, otherwise in
    double quotes with ``\\`` and ``"`` escaped (sbatch knows no single quotes)."""
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return value if _BARE.match(value) else f'"{escaped}"'


def _squeue(*options: str) -> Command:
    """squeue listing every job and element, finished ones too, in SQUEUE_FORMAT."""
    return Command(["squeue", "-h", "-t", "all", "-r", "-o", SQUEUE_FORMAT, *options], SQUEUE_ENV)


class Slurm(Scheduler):
    """Slurm, as translation. It remembers two things its answers taught it: each array
    element's own job id (after MinJobAge ``sacct -c`` knows elements by it alone), and
    whether the history needs ``sacct -c`` (no slurmdbd)."""

    name = "slurm"
    array_index_variable = "SLURM_ARRAY_TASK_ID"
    directive_prefix = "#SBATCH"
    job_id_pattern = formats.JOB_ID
    job_id_example = "123 or 123_4"
    submitted_pattern = re.compile(r"^(\d+)(?:;\S+)?$")  # sbatch --parsable: jobid[;cluster]
    # Messages of a busy, restarting or unreachable slurmctld: worth one more try.
    transient = re.compile(
        r"(?i)Socket timed out|Unable to contact slurm controller|temporarily unable|"
        r"Connection refused|Zero Bytes were transmitted|Resource temporarily unavailable"
    )
    history_source = "sacct"
    element_id_format = "{job_id}_{index}"

    def __init__(self, config: ClusterConfig) -> None:
        super().__init__(config)
        # An array element's own job id -> (array id, index), recorded while squeue shows it.
        self.element_ids: formats.ElementIds = {}
        # Whether there is only the jobcomp file (sacct -c), no slurmdbd: sacct told.
        self.jobcomp_only = False

    # -- submission --------------------------------------------------------------------
    def options(self, spec: JobSpec) -> list[str]:
        """The sbatch options for one job, one option per string (``--partition=normal``)."""
        res = spec.resources
        suffix = "%A_%a" if spec.array_range is not None else "%j"
        stdout = formats.log_pattern(res.stdout_path, res.work_dir, "stdout", suffix)
        stderr = formats.log_pattern(res.stderr_path, res.work_dir, "stderr", suffix)
        limit = f"%{spec.max_concurrent}" if spec.max_concurrent else ""
        after = f"--dependency=afterok:{':'.join(spec.depends_on)}"
        return table_options(
            (
                (spec.name, lambda v: [f"--job-name={_quote(v)}"]),
                (spec.array_range, lambda r: [f"--array={r[0]}-{r[1]}{limit}"]),
                (stdout, lambda v: [f"--output={_quote(v)}"]),
                (stderr, lambda v: [f"--error={_quote(v)}"]),
                (spec.token, lambda v: [f"--comment={_quote(v)}"]),
                (res.queue, lambda v: [f"--partition={_quote(v)}"]),
                (res.cpus, lambda n: [f"--cpus-per-task={n}"]),
                (res.gpus, lambda n: [f"--gpus={n}"]),
                (res.memory, lambda m: [f"--mem={format_memory(parse_memory_bytes(m), 'MB')}M"]),
                (res.walltime, lambda w: [f"--time={formats.format_walltime(w)}"]),
                (res.account, lambda v: [f"--account={_quote(v)}"]),
                (res.work_dir, lambda v: [f"--chdir={_quote(v)}"]),
                # Without the second, a dependant of a failed job pends forever.
                (spec.depends_on, lambda _: [after, "--kill-on-invalid-dep=yes"]),
                (not spec.inherit_env, lambda _: ["--export=NONE"]),
                (res.extra_directives, list),
            )
        )

    def preamble(self, spec: JobSpec) -> list[str]:
        # --export=NONE leaves SLURM_EXPORT_ENV=NONE in the job, so every srun in the
        # script would start its tasks with an empty environment (no PATH, none of the
        # job's env). The script exports what the job needs; let steps inherit it.
        return [] if spec.inherit_env else ["export SLURM_EXPORT_ENV=ALL"]

    def submit_command(self, spec: JobSpec, script_path: str) -> Command:
        """sbatch reads the ``#SBATCH`` lines from the script either way."""
        extra = [*self.config.extra_args, *(spec.resources.extra_args or [])]
        if self.config.use_stdin:
            return Command(["sbatch", "--parsable", *extra], stdin_file=script_path)
        return Command(["sbatch", "--parsable", *extra, script_path])

    def lookup_command(self, name: str, token: str) -> Command:
        return Command(["squeue", "-t", "all", f"--name={name}", "-o", LOOKUP_FORMAT], SQUEUE_ENV)

    def parse_lookup(self, answer: CommandAnswer, token: str) -> str | None:
        """The job carrying ``token`` as its comment. squeue prints its header line even
        when nothing matches, so an empty or garbled answer raises instead."""
        answer.require_success("squeue")
        header, *lines = answer.stdout.strip().splitlines() or [""]
        if header.strip() != LOOKUP_HEADER:
            raise ClusterAPIError(f"squeue printed no job table: {answer.stdout.strip()[:200]!r}")
        rows = [line.strip().partition("|") for line in lines]
        odd = ["".join(row) for row in rows if not is_number(row[0])]
        if odd:
            raise ClusterAPIError(f"squeue printed an odd line: {odd[0][:200]!r}")
        found = [int(job_id) for job_id, _, comment in rows if comment == token]
        return str(max(found)) if found else None

    # -- status ------------------------------------------------------------------------
    def status_command(self, active: Mapping[str, JobRecord]) -> Command | None:
        ids = [i for i in active if formats.JOB_ID.match(i)]
        if not ids:  # nothing squeue could be asked about (squeue refuses bad ids)
            return None
        if sum(len(i) + 1 for i in ids) <= self.max_id_chars:
            return _squeue(f"--jobs={','.join(ids)}")
        # Too many ids for one argv: every job of the user (of everyone with
        # poll_all_users), filtered here; still one command.
        return _squeue() if self.config.poll_all_users else _squeue("--me")

    def parse_status(self, answer: CommandAnswer, active: Mapping[str, JobRecord]) -> QueryResult:
        """Jobs squeue no longer lists are not found. A job whose dependency failed and
        that was submitted without --kill-on-invalid-dep (say, dropped by
        directives_skip) pends forever: it is doomed, for the engine to cancel."""
        # One unknown id (finished and purged) makes squeue exit 1; several are silently
        # left out. Either way: the controller no longer holds them.
        if _INVALID_JOB_ID not in answer.text:
            answer.require_success("squeue")
        rows = formats.parse_squeue(answer.stdout)
        self.element_ids = {k: v for k, v in self.element_ids.items() if v[0] in active}
        result = formats.query_result_from_rows(rows, self.element_ids)
        result.not_found.update(job_id for job_id in active if not result.seen(job_id))
        result.doomed.update(
            row.array_id
            for row in rows
            if row.reason == formats.NEVER_SATISFIED
            and formats.slurm_state(row.state) == "PENDING"
            and (row.array_id in active or row.shown_id in active)
        )
        return result

    # -- history -----------------------------------------------------------------------
    def history_command(self, query: HistoryQuery) -> Command | None:
        """One sacct for these jobs: by id, or when the ids would not fit on a command
        line, every job since the oldest submission (the parser keeps ours). Without
        slurmdbd, ``sacct -c`` (the jobcomp file; it ignores time windows)."""
        ids = formats.sacct_ids(query, self.element_ids)
        if not ids:
            return None
        argv = ["sacct", "--parsable2", "--noheader", f"--format={SACCT_FIELDS}"]
        argv += ["--allusers"] if self.config.poll_all_users else []
        since = query.since.astimezone().strftime("%Y-%m-%dT%H:%M:%S") if query.since else None
        fits = sum(len(i) + 1 for i in ids) <= self.max_id_chars
        argv.append(f"--jobs={','.join(ids)}" if fits else f"--starttime={since or 'now-30days'}")
        return Command([*argv, *(["-c"] if self.jobcomp_only else [])])

    def parse_history(self, answer: CommandAnswer, query: HistoryQuery) -> dict[Key, Observation]:
        """Final observations of the jobs asked about (`.slurm_formats.finals_from_sacct`)."""
        if answer.failed and not self.jobcomp_only and _NO_ACCOUNTING in answer.text:
            self.jobcomp_only = True
            raise HistoryRetry("no Slurm accounting database: reading job history with sacct -c")
        answer.require_success("sacct")
        return formats.finals_from_sacct(answer.stdout, query, self.element_ids)

    # -- cancellation and listing ------------------------------------------------------
    def cancel_command(self, job_ids: Sequence[str], done: bool) -> Command:
        """Slurm cannot record a cancelled job as done: ``done`` cancels it."""
        return Command(["scancel", "-v", *job_ids])

    def parse_cancel(self, answer: CommandAnswer) -> set[str]:
        """``scancel -v`` names each job on stderr, exit 0 either way: "Terminating job
        N" for each, then an error line for one it did not kill (already completing or
        completed, unknown); ``tests/data/slurm/scancel_*``. An answer naming no job
        accepted none: the next squeue tells."""
        terminating = set(_SCANCEL_TERMINATING.findall(answer.text))
        return terminating - set(_SCANCEL_REFUSED.findall(answer.text))

    def listing_command(self, prefix: str | None) -> Command:
        return _squeue() if prefix and self.config.poll_all_users else _squeue("--me")

    def parse_listing(self, answer: CommandAnswer) -> Listing:
        answer.require_success("squeue")
        rows = formats.parse_squeue(answer.stdout)
        names = {row.array_id: row.name for row in rows}
        return Listing(formats.query_result_from_rows(rows, self.element_ids), names)


class SlurmExecutor(BatchExecutor):
    """Runs jobs through Slurm."""

    scheduler_class = Slurm
    options = BatchOptions
    scheduler: Slurm
