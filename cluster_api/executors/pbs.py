"""PBS Professional / OpenPBS: ``qsub`` to submit, one ``qstat -f -F json`` per poll,
``qstat -x`` for jobs that left the queue, ``qdel`` to cancel.

The answers' formats are read in `.pbs_formats`; this is the `PBS` translation on the
engine. Jobs start in ``$HOME`` on PBS, so the script moves to its work dir itself (the
`Scheduler.preamble` hook). Where the server keeps no history (``job_history_enable``
off) it says so on the first ``qstat -x``; from then on ended jobs are told by the exit
files alone.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..config import ClusterConfig
from ..engine import BatchExecutor
from ..history import HistoryQuery, Key
from ..jobspec import JobSpec
from ..models import JobRecord
from ..options import BatchOptions
from ..scheduler import Command, CommandAnswer, Listing, Scheduler, keyed_by_element
from ..status import Observation, QueryResult
from . import pbs_formats as formats


class PBS(Scheduler):
    """PBS Professional and OpenPBS, as translation."""

    name = "pbs"
    directive_prefix = formats.DIRECTIVE
    job_id_pattern = formats.JOB_ID_PATTERN
    job_id_example = formats.JOB_ID_EXAMPLE
    array_index_variable = formats.ARRAY_INDEX_VARIABLE
    transient = formats.TRANSIENT
    history_source = "qstat -x"
    #: What starts a readable answer of this scheduler's qstat (JSON here).
    answer_mark = "{"

    def __init__(self, config: ClusterConfig) -> None:
        super().__init__(config)
        # Set once qstat -x says the server keeps no history: ask it no more.
        self.history_off = False

    # -- directives and submission ----------------------------------------------------
    def options(self, spec: JobSpec) -> list[str]:
        return formats.directives(spec)

    def preamble(self, spec: JobSpec) -> list[str]:
        return formats.work_dir_lines(spec.resources.work_dir)

    def submit_argv(self, script_path: str, extra: list[str]) -> tuple[list[str], str | None]:
        return formats.submit_argv(script_path, extra, use_stdin=self.config.use_stdin)

    def submit_command(self, spec: JobSpec, script_path: str) -> Command:
        extra = [*self.config.extra_args, *(spec.resources.extra_args or [])]
        argv, stdin = self.submit_argv(script_path, extra)
        return Command(argv, stdin_file=stdin)

    def parse_submit(self, out: str) -> str:
        return formats.parse_submit(out)

    def lookup_command(self, name: str, token: str) -> Command:
        return Command(formats.lookup_argv(history=not self.history_off))

    def parse_lookup(self, answer: CommandAnswer, token: str) -> str | None:
        self._check(answer)
        self.history_off = self.history_off or formats.HISTORY_OFF in answer.stderr
        name = token.rpartition(".")[0]  # the token is "<job name>.<counter>"
        return formats.parse_lookup(answer.stdout, answer.stderr, name, token)

    # -- status and history -------------------------------------------------------------
    def _check(self, answer: CommandAnswer) -> None:
        """Raise the command's own error for a failed qstat that printed no job and named
        no ended one (an outage, not an answer); exit 153/35 with gone ids is one."""
        said = self.answer_mark in answer.stdout or formats.ids_named(answer.stderr, formats.GONE)
        if answer.failed and not said and formats.HISTORY_OFF not in answer.stderr:
            raise answer.unusable(f"qstat failed: {answer.text.strip()[:200]!r}")

    def status_argv(self, ids: Sequence[str]) -> list[str]:
        return formats.status_argv(ids)

    def read_status(self, stdout: str, stderr: str, wanted: Sequence[str]) -> QueryResult:
        return formats.parse_status(stdout, stderr, wanted)

    def status_command(self, active: Mapping[str, JobRecord]) -> Command | None:
        ids = [i for i in active if formats.JOB_ID_PATTERN.match(i)]
        if not ids:
            return None
        # Too many ids for one argv: every job on the server, filtered by the parser.
        fits = sum(len(i) + 1 for i in ids) <= self.max_id_chars
        return Command(self.status_argv(ids if fits else []))

    def parse_status(self, answer: CommandAnswer, active: Mapping[str, JobRecord]) -> QueryResult:
        """What qstat listed; ids it said are gone, and ids it left out, in not_found."""
        self._check(answer)
        result = self.read_status(answer.stdout, answer.stderr, list(active))
        result.not_found.update(j for j in active if not result.seen(j))
        return result

    def history_command(self, query: HistoryQuery) -> Command | None:
        if self.history_off:
            return None
        return Command(formats.history_argv(query.job_ids))

    def parse_history(self, answer: CommandAnswer, query: HistoryQuery) -> dict[Key, Observation]:
        if formats.HISTORY_OFF in answer.stderr:
            self.history_off = True
            return {}
        self._check(answer)
        ended = formats.parse_history(answer.stdout, answer.stderr, query.job_ids)
        return keyed_by_element(ended)

    # -- cancellation and listing ------------------------------------------------------
    def cancel_command(self, job_ids: Sequence[str], done: bool) -> Command:
        return Command(formats.cancel_argv(job_ids))

    def parse_cancel(self, answer: CommandAnswer) -> set[str]:
        accepted, _ended = formats.parse_cancel(
            answer.stdout, answer.stderr, 1 if answer.failed else 0, answer.ids
        )
        return accepted

    def listing_command(self, prefix: str | None) -> Command:
        return Command(formats.listing_argv())

    def read_listing(self, stdout: str) -> formats.Listing:
        return formats.parse_listing(stdout, None)

    def parse_listing(self, answer: CommandAnswer) -> Listing:
        self._check(answer)
        result, names = self.read_listing(answer.stdout)
        return Listing(result, names)


class PBSExecutor(BatchExecutor):
    """Runs jobs through PBS Professional or OpenPBS."""

    scheduler_class = PBS
    options = BatchOptions
    scheduler: PBS
