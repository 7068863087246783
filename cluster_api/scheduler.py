"""The scheduler translation interface: what a batch scheduler looks like to the engine.

A `Scheduler` is pure translation, with no I/O and no record changes: it says which
directive lines a job gets, which commands submit, query, look up, list and cancel, and
what their answers mean, as `Observation`s and ids. `cluster_api.engine.BatchExecutor`
runs those commands and does everything else (bounded concurrency, retries, exactly-once
submission, the journal, exit files, history fallback, zombies, dependency failure,
"killed" only for what the scheduler accepted, reconnect adoption) once for every
scheduler. ``docs/executors/add-a-scheduler.md`` walks through writing one.

Every answer reaches a parser as a `CommandAnswer` (stdout, stderr, whether it exited
non-zero): the parser decides whether a failed command still said something usable, and
raises `ClusterAPIError` when an answer cannot be read (never guesses an ending).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import ClassVar

from .config import ClusterConfig
from .errors import ClusterAPIError, SubmitError
from .history import HistoryQuery, Key
from .jobspec import JobSpec
from .models import JobRecord
from .script import directive_lines
from .status import Observation, QueryResult

#: The metadata key listing the scheduler's own ids of an array whose elements are
#: separate jobs (`Scheduler.array_elements_are_jobs`); the tracked id is the first.
ELEMENT_IDS = "element_ids"


def own_ids(record: JobRecord) -> list[str]:
    """The scheduler's ids behind one tracked job: its own, or its elements' when they
    are separate jobs."""
    own = record.metadata.get(ELEMENT_IDS)
    return [str(i) for i in own] if isinstance(own, list) and own else [record.job_id]


def keyed_by_element(result: QueryResult) -> dict[Key, Observation]:
    """A history answer read like a status answer, keyed as `Scheduler.parse_history`
    returns it: (job id, None) for plain jobs, (job id, index) for array elements."""
    finals: dict[Key, Observation] = {(job_id, None): obs for job_id, obs in result.jobs.items()}
    for job_id, elements in result.elements.items():
        finals.update(((job_id, index), obs) for index, obs in elements.items())
    return finals


@dataclass(frozen=True)
class Command:
    """One scheduler command: its argv, extra environment, and a file to feed on stdin."""

    argv: list[str]
    env: Mapping[str, str] | None = None
    stdin_file: str | None = None


@dataclass
class CommandAnswer:
    """What one scheduler command given ``ids`` printed, and whether it exited non-zero."""

    ids: list[str]
    stdout: str
    stderr: str = ""
    failed: bool = False
    #: The error a failed command raised, for a parser that finds nothing usable in it.
    error: ClusterAPIError | None = None

    @property
    def text(self) -> str:
        """Both streams, for messages that may come on either."""
        return f"{self.stdout}\n{self.stderr}"

    def unusable(self, what: str) -> ClusterAPIError:
        """The error to raise for an answer that says nothing usable: the command's own
        failure when it failed, else ``what``."""
        return self.error if self.error is not None else ClusterAPIError(what)

    def require_success(self, program: str) -> None:
        """Raise for a failed command, for a parser that can use no failed answer of
        ``program``: the command's own failure, or one quoting what it printed."""
        if self.failed:
            raise self.unusable(f"{program} failed: {self.text.strip()[:200]!r}")


@dataclass
class Listing:
    """The jobs a listing command found: what it said about each (as a status answer)
    and each job's scheduler-side name."""

    result: QueryResult = field(default_factory=QueryResult)
    names: dict[str, str] = field(default_factory=dict)
    #: For an array whose elements are separate jobs: its elements' ids, by its id.
    element_ids: dict[str, list[str]] = field(default_factory=dict)


class HistoryRetry(Exception):
    """Raised by `Scheduler.parse_history` when the answer showed that history must be
    asked another way (Slurm without slurmdbd: ``sacct -c``); the engine asks again."""


class Scheduler:
    """Translation for one batch scheduler. Subclasses set the class attributes and
    implement the methods that raise ``NotImplementedError``; the others have defaults
    that fit a scheduler without that feature."""

    #: The name written as ``executor:`` in a config.
    name: ClassVar[str] = ""
    #: How this scheduler's directive lines start (``#BSUB``).
    directive_prefix: ClassVar[str] = ""
    #: What this scheduler's job ids look like, and an example of one (for messages).
    job_id_pattern: ClassVar[re.Pattern[str] | None] = None
    job_id_example: ClassVar[str] = ""
    #: Environment variable in which the scheduler gives an array element its index.
    array_index_variable: ClassVar[str | None] = None
    #: Whether ``cancel(done=True)`` makes the scheduler record the job as DONE.
    records_cancel_as_done: ClassVar[bool] = False
    #: Where the submit command's answer gives the new job's id (group 1), for the
    #: default `parse_submit`.
    submitted_pattern: ClassVar[re.Pattern[str] | None] = None
    #: Submit errors of a busy or restarting scheduler: worth one more try.
    transient: ClassVar[re.Pattern[str]] = re.compile(r"(?!)")
    #: Seconds before a submission whose answer was lost is looked up.
    submit_retry_delay: ClassVar[float] = 5.0
    #: How many ids go into one cancel command.
    cancel_batch: ClassVar[int] = 100
    #: Above this many characters of ids, status and history ask more broadly instead.
    max_id_chars: ClassVar[int] = 32_000
    #: What ``metadata["resolved_from"]`` says for an end read from the history.
    history_source: ClassVar[str] = "history"
    #: How many jobs one history command can ask about (None: any number).
    history_ids_per_call: ClassVar[int | None] = None
    #: Seconds by which the history lags the status command: how long after a lookup
    #: found nothing queued the history is asked (`lookup_history_command`).
    history_lag: ClassVar[float] = 0.0
    #: Whether dependants are submitted held because the scheduler's own dependency is
    #: "after any exit" (Grid Engine's ``-hold_jid``): the engine releases
    #: (`release_command`) those whose parents all ended DONE; the others end by the
    #: dependency rule.
    holds_dependants: ClassVar[bool] = False
    #: Whether the scheduler can cap how many elements of an array run at once; when it
    #: cannot, the engine refuses ``max_concurrent`` (rather than let it be ignored).
    caps_array_concurrency: ClassVar[bool] = True
    #: Whether an array is submitted as one job per element, each with its own id (Flux
    #: ``--cc``): the engine keeps them under ``metadata[ELEMENT_IDS]`` and cancels them
    #: all, and a submit printing fewer ids than elements is cancelled and refused.
    array_elements_are_jobs: ClassVar[bool] = False
    #: The id of one array element, for ``cancel`` and the task records of
    #: ``submit_many`` (``{job_id}`` the array's id, ``{index}`` the element's).
    element_id_format: ClassVar[str] = "{job_id}[{index}]"

    def __init__(self, config: ClusterConfig) -> None:
        self.config = config

    # -- directives and submission ----------------------------------------------------
    def validate(self, spec: JobSpec) -> None:
        """Refuse, with ``ValueError``, a job this scheduler cannot run (dependency ids
        are checked against ``job_id_pattern`` by the engine already)."""

    def options(self, spec: JobSpec) -> list[str]:
        """The directive options of one job, one per string (``-q normal``), for the
        default `header`."""
        raise NotImplementedError

    def header(self, spec: JobSpec) -> list[str]:
        """The directive lines of one job (arrays, dependencies and the token included):
        by default each of its `options` after ``directive_prefix``, minus those matching
        the config's ``directives_skip``, then its ``extra_directives`` verbatim."""
        config = self.config
        options = self.options(spec)
        return directive_lines(
            self.directive_prefix, options, config.directives_skip, config.extra_directives
        )

    def preamble(self, spec: JobSpec) -> list[str]:
        """Extra script lines before the job's environment is set."""
        return []

    def submit_command(self, spec: JobSpec, script_path: str) -> Command:
        """How to hand the written script to the scheduler."""
        raise NotImplementedError

    def parse_submit(self, out: str) -> str:
        """The new job's id from the submit command's stdout; ``SubmitError`` otherwise.
        By default group 1 of ``submitted_pattern`` in the last line it is found in."""
        if self.submitted_pattern is None:
            raise NotImplementedError
        for line in reversed(out.strip().splitlines()):
            match = self.submitted_pattern.search(line.strip())
            if match:
                return match.group(1)
        raise SubmitError(f"{self.name} submit did not report a job id: {out.strip()[:500]!r}")

    def submitted_ids(self, out: str) -> list[str]:
        """Every id the submit command printed: more than one only for an array whose
        elements are separate jobs (`parse_lookup` then answers in the same format)."""
        return [self.parse_submit(out)]

    def lookup_command(self, name: str, token: str) -> Command:
        """Lists the jobs called ``name`` with their tokens, finished ones included."""
        raise NotImplementedError

    def parse_lookup(self, answer: CommandAnswer, token: str) -> str | None:
        """The id of the job carrying ``token``; None when the answer says there is none;
        ``ClusterAPIError`` when it cannot tell (that is not "not found")."""
        raise NotImplementedError

    def lookup_history_command(self, name: str) -> Command | None:
        """Lists the jobs called ``name`` that the history knows, for a scheduler whose
        `lookup_command` cannot see ended jobs; None when it can."""
        return None

    def parse_lookup_history(self, answer: CommandAnswer, token: str) -> str | None:
        """As `parse_lookup`, for the answer of `lookup_history_command`."""
        raise NotImplementedError

    # -- status and history -------------------------------------------------------------
    def status_command(self, active: Mapping[str, JobRecord]) -> Command | None:
        """One command asking about every job in ``active``; None when none of them
        could be asked about (the answer is then read as an empty one)."""
        raise NotImplementedError

    def parse_status(self, answer: CommandAnswer, active: Mapping[str, JobRecord]) -> QueryResult:
        """Observations of the jobs in ``active``; ids the scheduler no longer knows go
        in ``not_found``. ``ClusterAPIError`` when the answer is not usable."""
        raise NotImplementedError

    def history_command(self, query: HistoryQuery) -> Command | None:
        """A command asking the job history for the ends in ``query``; None when there
        is no history to ask (or nothing in the query it could be asked about)."""
        return None

    def parse_history(self, answer: CommandAnswer, query: HistoryQuery) -> dict[Key, Observation]:
        """What the history says about the jobs of ``query``, by (job id, element index
        or None)."""
        return {}

    # -- cancellation -----------------------------------------------------------------
    def cancel_command(self, job_ids: Sequence[str], done: bool) -> Command:
        """Cancel these jobs (at most ``cancel_batch``)."""
        raise NotImplementedError

    def parse_cancel(self, answer: CommandAnswer) -> set[str]:
        """The ids whose cancel the scheduler accepted, from its answer; never one it said
        had already ended."""
        raise NotImplementedError

    def release_command(self, job_ids: Sequence[str]) -> Command:
        """Release these held dependants (``holds_dependants``); the answer is read by
        `parse_cancel` (the ids it released)."""
        raise NotImplementedError

    def parents_command(self, job_ids: Sequence[str]) -> Command:
        """Tell which jobs each of these waits for (``holds_dependants``): a dependant
        that reconnect() finds on the scheduler, and no journal remembers, is released
        only once the engine knows its parents."""
        raise NotImplementedError

    def parse_parents(self, answer: CommandAnswer) -> dict[str, list[str]]:
        """Each job's parent ids, from `parents_command`'s answer."""
        raise NotImplementedError

    def cancel_by_name_command(self, pattern: str) -> Command | None:
        """Cancel the jobs whose name matches the ``*`` pattern; None when the scheduler
        cannot, and the engine lists, matches and cancels the ids instead."""
        return None

    # -- reconnection -----------------------------------------------------------------
    def listing_command(self, prefix: str | None) -> Command:
        """Lists the jobs whose names start with ``prefix-`` (all of the user's when
        None), finished ones included where the scheduler still knows them."""
        raise NotImplementedError

    def parse_listing(self, answer: CommandAnswer) -> Listing:
        """The jobs of a listing answer; ``ClusterAPIError`` when it is not one."""
        raise NotImplementedError
