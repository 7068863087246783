"""Grid Engine (Son of Grid Engine 8.1.9): ``qsub`` to submit, one ``qstat -xml`` per poll,
``qacct`` for how jobs ended, ``qdel`` to cancel, ``qrls`` to release held dependants.

The `SGE` translation below names the commands and what their answers mean; the formats
are read in `.sge_formats` (facts from recorded answers, ``tests/data/sge/FINDINGS.md``).
What Grid Engine does differently, and who handles it:

- jobs leave ``qstat`` the moment they end, and ``qacct`` lags up to ~15 s: a job qacct
  does not know yet is no ending (the engine asks again at the next poll, the exit files
  tell meanwhile);
- ``qacct -j`` takes one job: ``history_ids_per_call = 1``;
- ``-hold_jid`` waits for any exit: dependants are submitted held (``-h``) and the engine
  releases them once every parent ended DONE (``holds_dependants``), or ends them by the
  dependency rule;
- an ``Eqw`` job never ends by itself: it is reported FAILED with the reason and handed
  to the engine to delete (``doomed``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from ..engine import BatchExecutor
from ..history import HistoryQuery, Key
from ..jobspec import JobSpec
from ..models import JobRecord, JobStatus
from ..options import BatchOptions
from ..scheduler import Command, CommandAnswer, Listing, Scheduler, keyed_by_element
from ..status import Observation, QueryResult
from . import sge_formats as formats


class SGE(Scheduler):
    """Grid Engine, as translation."""

    name = "sge"
    history_source = "qacct"
    directive_prefix = formats.DIRECTIVE
    job_id_pattern = formats.JOB_ID_PATTERN
    job_id_example = formats.JOB_ID_EXAMPLE
    array_index_variable = formats.ARRAY_INDEX_VARIABLE
    # qmaster busy, restarting or out of reach: worth one more try.
    transient = re.compile(r"commlib error|contact qmaster|receiving gdi", re.I)
    history_ids_per_call = formats.HISTORY_IDS_PER_CALL
    history_lag = formats.ACCOUNTING_LAG_SECONDS
    holds_dependants = True

    # -- submission --------------------------------------------------------------------
    def validate(self, spec: JobSpec) -> None:
        formats.directives(spec)

    def options(self, spec: JobSpec) -> list[str]:
        """``-S`` included: Grid Engine ignores the shebang."""
        return formats.directives(spec)

    def submit_command(self, spec: JobSpec, script_path: str) -> Command:
        """qsub reads the ``#$`` lines from the script either way."""
        extra = [*self.config.extra_args, *(spec.resources.extra_args or [])]
        if self.config.use_stdin:
            return Command(formats.submit_argv(None, extra), stdin_file=script_path)
        return Command(formats.submit_argv(script_path, extra))

    def parse_submit(self, out: str) -> str:
        return formats.parse_submit(out)

    def lookup_command(self, name: str, token: str) -> Command:
        return Command(["qstat", "-j", name, "-xml"])  # queued jobs called NAME, with tokens

    def parse_lookup(self, answer: CommandAnswer, token: str) -> str | None:
        """The queued job carrying ``token``; one that left qstat is looked for in qacct."""
        if answer.failed:
            raise answer.unusable(f"qstat -j failed: {answer.text.strip()[:200]!r}")
        return formats.parse_lookup(answer.stdout, token)

    def lookup_history_command(self, name: str) -> Command:
        return Command(["qacct", "-j", name])

    def parse_lookup_history(self, answer: CommandAnswer, token: str) -> str | None:
        """qacct exits 1 for a name it has no record of: that is an answer too."""
        return formats.parse_lookup_history(answer.stdout, answer.stderr, token)

    # -- status and history ------------------------------------------------------------
    def status_command(self, active: Mapping[str, JobRecord]) -> Command:
        return Command(self._qstat(all_users=self.config.poll_all_users))

    def _qstat(self, *, all_users: bool) -> list[str]:
        return ["qstat", "-xml", *(["-u", "*"] if all_users else [])]  # -j alone selects ids

    def parse_status(self, answer: CommandAnswer, active: Mapping[str, JobRecord]) -> QueryResult:
        """Ended jobs are simply absent: not found. A job in an error state (``Eqw``)
        is doomed: the engine deletes it, it never leaves that state by itself."""
        if answer.failed:
            raise answer.unusable(f"qstat failed: {answer.text.strip()[:200]!r}")
        result = formats.parse_status(answer.stdout, active)
        result.not_found.update(job_id for job_id in active if not result.seen(job_id))
        failed = JobStatus.FAILED
        result.doomed.update(i for i, obs in result.jobs.items() if obs.status is failed)
        result.doomed.update(
            job_id
            for job_id, elements in result.elements.items()
            if all(obs.status is failed for obs in elements.values())
        )
        return result

    def history_command(self, query: HistoryQuery) -> Command:
        (job_id,) = query.job_ids  # history_ids_per_call
        return Command(["qacct", "-j", job_id])

    def parse_history(self, answer: CommandAnswer, query: HistoryQuery) -> dict[Key, Observation]:
        """qacct exits 1 for a job it does not know (yet): nothing is concluded."""
        history = formats.parse_history(answer.stdout, answer.stderr)
        if answer.failed and not (history.jobs or history.elements or history.not_found):
            raise answer.unusable(f"qacct failed: {answer.text.strip()[:200]!r}")
        return keyed_by_element(history)

    # -- cancellation and listing ------------------------------------------------------
    def cancel_command(self, job_ids: Sequence[str], done: bool) -> Command:
        """Grid Engine cannot record a deleted job as done: ``done`` deletes it."""
        return Command(["qdel", *job_ids])

    def release_command(self, job_ids: Sequence[str]) -> Command:
        return Command(["qrls", *job_ids])  # lift the user hold

    def parents_command(self, job_ids: Sequence[str]) -> Command:
        return Command(["qstat", "-j", ",".join(job_ids), "-xml"])

    def parse_parents(self, answer: CommandAnswer) -> dict[str, list[str]]:
        if answer.failed:
            raise answer.unusable(f"qstat -j failed: {answer.text.strip()[:200]!r}")
        return formats.parse_parents(answer.stdout)

    def parse_cancel(self, answer: CommandAnswer) -> set[str]:
        """qdel and qrls name each id on stdout, refusals too (exit 1 when one was
        unknown); those that "do not exist" had ended and are not accepted."""
        accepted, _ended = formats.parse_cancel(
            answer.stdout, answer.stderr, int(answer.failed), answer.ids
        )
        return accepted

    def listing_command(self, prefix: str | None) -> Command:
        return Command(self._qstat(all_users=bool(prefix and self.config.poll_all_users)))

    def parse_listing(self, answer: CommandAnswer) -> Listing:
        if answer.failed:
            raise answer.unusable(f"qstat failed: {answer.text.strip()[:200]!r}")
        return Listing(
            formats.parse_status(answer.stdout, None), formats.parse_listing(answer.stdout)
        )


class SGEExecutor(BatchExecutor):
    """Runs jobs through Grid Engine (Son of Grid Engine, and the Sun/Oracle lineage)."""

    scheduler_class = SGE
    options = BatchOptions
    scheduler: SGE
