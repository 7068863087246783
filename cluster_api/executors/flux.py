"""Flux (flux-core): ``flux batch`` to submit (``flux submit --cc`` for an array), one
``flux jobs --json`` per poll (it is the history too: inactive jobs stay listed until
purged, then the exit files tell), ``flux cancel`` to cancel.

Read top to bottom: the directive table, the commands, then the `Flux` translation (the
answers are read in `.flux_formats`). Ids are F58 (``ƒQ4FqC3``, ``fQ4FqC3`` outside a UTF-8
locale), kept as printed and compared by the number they encode. An array is one job per
``--cc`` index with no parent id: the engine keeps the elements' ids
(`Scheduler.array_elements_are_jobs`) and each element's name carries its index. Nothing
caps how many of them run at once, so ``max_concurrent`` is refused. job-list shows no free
field but the name, so the name is the exactly-once token ``{name}.{n}``. There is no
memory request: ``memory`` is refused.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Collection, Mapping, Sequence

from ..engine import BatchExecutor
from ..jobspec import JobSpec
from ..models import JobRecord
from ..options import BatchOptions
from ..scheduler import ELEMENT_IDS, Command, CommandAnswer, Listing, Scheduler, own_ids
from ..script import directive_argv, directive_lines
from ..status import QueryResult
from ..units import parse_walltime_seconds
from . import flux_formats as formats
from .flux_formats import JOB_ID_EXAMPLE, JOB_ID_PATTERN, directive_words, job_number
from .local_supervisor import MINIMAL_ENV

DIRECTIVE = "# flux:"
MAX_ID_CHARS = 32_000  # above this, list all of the user's jobs instead of naming ids

_BARE = re.compile(r"^[A-Za-z0-9_./:%@+,=*{}\[\]-]+$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_TEMPLATES = re.compile(r"\{\{[^{}]*\}\}|\{cc\}")  # mustache tags, and the --cc index


def _option(field: str, flag: str, value: str, array: bool) -> str:
    """``flag`` + ``value``, bare when safe, else double-quoted; refused (naming ``field``)
    unless Flux reads back exactly ``flag + value``. ``flux submit --cc`` passes values
    through ``str.format`` (keeping ``{{...}}``), with no escape for a literal brace."""
    if _CONTROL.search(value):
        raise ValueError(f"{field} {value!r} contains a control character")
    if array and re.search("[{}]", _TEMPLATES.sub("", value)):
        raise ValueError(f"{field} {value!r}: flux submit --cc reads braces as {{cc}} fields")
    text = flag + (value if _BARE.match(value) else '"' + re.sub(r'(["\\])', r"\\\1", value) + '"')
    with contextlib.suppress(ValueError):
        if directive_words(text) == [flag + value]:
            return text
    raise ValueError(f"{field} {value!r} cannot be written as a Flux directive")


def flux_job_name(name: str, token: str) -> str:
    """A submission's Flux job name: its token ``{name}.{n}`` (or ``name`` with none)."""
    if token and not re.fullmatch(re.escape(name) + r"\.[0-9]+", token):
        raise ValueError(f"submission token {token!r} is not {name!r} followed by .N")
    return token or name


def _log_option(given: str | None, work_dir: str, stream: str, array: bool) -> str:
    flag = {"stdout": "--output=", "stderr": "--error="}[stream]
    if given:
        return _option(f"ResourceSpec.{stream}_path", flag, given, array)
    if "{{" in work_dir or "}}" in work_dir:  # a mustache tag in the log path, no escape
        raise ValueError(f"ResourceSpec.work_dir {work_dir!r}: '{{{{' makes a Flux template")
    path = f"{work_dir}/{stream}.{{{{id}}}}{'.{cc}' if array else ''}.log"
    return _option("ResourceSpec.work_dir", flag, path, array)


def flux_options(spec: JobSpec) -> list[str]:
    """One job's options, one a string: ``flux batch`` directives, ``flux submit`` argv."""
    res, array = spec.resources, spec.array_range is not None
    if res.memory:
        message = "Flux has no memory request (jobs get their cores' or nodes' memory)"
        raise ValueError(f"ResourceSpec.memory {res.memory!r}: {message}; leave it unset")
    name = flux_job_name(spec.name, spec.token) + ("[{cc}]" if array else "")
    options = [
        _option("job name", "--job-name=", name, array),
        _log_option(res.stdout_path, res.work_dir, "stdout", array),
        _log_option(res.stderr_path, res.work_dir, "stderr", array),
        "-n1",  # one slot (batch) or task (submit): the script runs once
    ]
    options += [f"-c{res.cpus}"] if res.cpus else []
    options += [f"-g{res.gpus}"] if res.gpus else []
    if res.walltime:
        options.append(f"--time-limit={parse_walltime_seconds(res.walltime)}s")
    if res.queue:
        options.append(_option("ResourceSpec.queue", "--queue=", res.queue, array))
    if res.account:
        options.append(_option("ResourceSpec.account", "--bank=", res.account, array))
    options.append(_option("ResourceSpec.work_dir", "--cwd=", res.work_dir, array))
    for job_id in spec.depends_on:
        if job_number(job_id) is None:
            raise ValueError(f"depends_on {job_id!r} is not a Flux job id ({JOB_ID_EXAMPLE})")
        options.append(_option("depends_on", "--dependency=", f"afterok:{job_id}", array))
    if not spec.inherit_env:  # empty, then the minimal set back (as local jobs get)
        minimal = f"/^({'|'.join(MINIMAL_ENV)})$/"
        options += ["--env=-*", _option("environment", "--env=", minimal, array)]
    return options + list(res.extra_directives or [])


def directives(spec: JobSpec, skip: Sequence[str] = (), extra: Sequence[str] = ()) -> list[str]:
    """``# flux:`` lines: generated (minus config ``directives_skip``), then config extras."""
    return directive_lines(DIRECTIVE, flux_options(spec), skip, extra)


def submit_argv(
    spec: JobSpec,
    script_path: str,
    header: Sequence[str],
    extra_args: Sequence[str] = (),
    use_stdin: bool = False,
) -> tuple[list[str], str | None]:
    """(argv, file for stdin): ``flux batch [extra] SCRIPT`` (reads the directives), or
    for an array ``flux submit --cc=S-E [options] [extra] SCRIPT``, the ``# flux:`` lines
    of ``header`` read as flux batch would and put on argv (flux submit reads none)."""
    if spec.array_range is None and use_stdin:
        return ["flux", "batch", *extra_args], script_path
    if spec.array_range is None:
        return ["flux", "batch", *extra_args, script_path], None
    if "{" in script_path or "}" in script_path:  # {cc} and mustache apply to it too
        raise ValueError(f"script path {script_path!r}: flux submit --cc reads its braces")
    start, end = spec.array_range
    idset = str(start) if start == end else f"{start}-{end}"
    argv = ["flux", "submit", f"--cc={idset}", *directive_argv(DIRECTIVE, header, directive_words)]
    return [*argv, *extra_args, script_path], None


def status_argv(ids: Collection[str], all_users: bool = False) -> list[str]:
    """``flux jobs --json IDS`` (any state), or all the user's (``-A``: everyone's) jobs."""
    if sum(len(i) + 1 for i in ids) <= MAX_ID_CHARS:
        return ["flux", "jobs", "--json", *ids]
    return ["flux", "jobs", "-a", "-c", "0", "--json", *(["-A"] if all_users else [])]


def cancel_argv(ids: Sequence[str]) -> list[str]:
    """``flux cancel ID...``; one unreadable id makes it cancel none, so each is checked."""
    for job_id in ids:
        if job_number(job_id) is None:
            raise ValueError(f"not a Flux job id: {job_id!r} ({JOB_ID_EXAMPLE})")
    return ["flux", "cancel", *ids]


def lookup_argv() -> list[str]:
    """Every job of the user, any state: a submission is found by its token in the names
    (an array's elements are named ``{token}[i]``, so no ``--name`` filter)."""
    return ["flux", "jobs", "-a", "-c", "0", "--json"]


def listing_argv(all_users: bool = False) -> list[str]:
    """The user's (``-A``: everyone's) jobs, inactive ones too (a live array's ended
    elements belong to it), for reconnect() and cancel by name."""
    return ["flux", "jobs", "-a", "--json", "-c", "0", *(["-A"] if all_users else [])]


# Messages of a broker that is busy, restarting or not reachable: worth one more try.
_TRANSIENT = re.compile(
    r"Connection refused|Resource temporarily unavailable|Connection reset|timed out",
    re.IGNORECASE,
)


class Flux(Scheduler):
    """Flux, as translation."""

    name = "flux"
    directive_prefix = DIRECTIVE
    job_id_pattern = JOB_ID_PATTERN
    job_id_example = JOB_ID_EXAMPLE
    array_index_variable = "FLUX_JOB_CC"
    transient = _TRANSIENT
    max_id_chars = MAX_ID_CHARS
    history_source = "flux jobs"
    caps_array_concurrency = False
    array_elements_are_jobs = True

    def header(self, spec: JobSpec) -> list[str]:
        return directives(spec, self.config.directives_skip, self.config.extra_directives)

    def submit_command(self, spec: JobSpec, script_path: str) -> Command:
        extra = [*self.config.extra_args, *(spec.resources.extra_args or [])]
        header = self.header(spec)
        argv, stdin = submit_argv(spec, script_path, header, extra, self.config.use_stdin)
        return Command(argv, stdin_file=stdin)

    def parse_submit(self, out: str) -> str:
        return formats.parse_submit(out)[0]

    def submitted_ids(self, out: str) -> list[str]:
        return formats.parse_submit(out)

    def lookup_command(self, name: str, token: str) -> Command:
        return Command(lookup_argv())

    def parse_lookup(self, answer: CommandAnswer, token: str) -> str | None:
        """The id carrying ``token`` (an array's element ids, one a line, as flux submit
        prints them); None when Flux answered and has none."""
        if answer.failed:
            raise answer.unusable(f"flux jobs failed: {answer.text.strip()[:200]!r}")
        found = formats.parse_lookup(answer.stdout, token)
        return "\n".join(found[i] for i in sorted(found, key=lambda i: i or 0)) or None

    def status_command(self, active: Mapping[str, JobRecord]) -> Command | None:
        ids = [own for record in active.values() for own in own_ids(record)]
        ids = [i for i in ids if job_number(i) is not None]
        return Command(status_argv(ids, self.config.poll_all_users)) if ids else None

    def parse_status(self, answer: CommandAnswer, active: Mapping[str, JobRecord]) -> QueryResult:
        """Jobs Flux no longer knows (purged) are not found; an array is, once none of
        its elements is known."""
        if answer.failed and "unknown" not in answer.stderr:
            raise answer.unusable(f"flux jobs failed: {answer.text.strip()[:200]!r}")
        array_of = {
            own: job_id
            for job_id, record in active.items()
            if ELEMENT_IDS in record.metadata
            for own in own_ids(record)
        }
        wanted = [own for record in active.values() for own in own_ids(record)]
        result = formats.parse_status(answer.stdout, wanted, answer.stderr, array_of)
        result.not_found = {job_id for job_id in active if not result.seen(job_id)}
        return result

    def cancel_command(self, job_ids: Sequence[str], done: bool) -> Command:
        """Flux cannot record a cancelled job as done: ``done`` cancels it."""
        return Command(cancel_argv(job_ids))

    def parse_cancel(self, answer: CommandAnswer) -> set[str]:
        returncode = 1 if answer.failed else 0
        accepted, _ended = formats.parse_cancel(
            answer.stdout, answer.stderr, returncode, answer.ids
        )
        return set(accepted)

    def listing_command(self, prefix: str | None) -> Command:
        return Command(listing_argv(bool(prefix) and self.config.poll_all_users))

    def parse_listing(self, answer: CommandAnswer) -> Listing:
        """Our jobs; the elements of an array (one token) come together as one."""
        if answer.failed:
            raise answer.unusable(f"flux jobs failed: {answer.text.strip()[:200]!r}")
        listing = Listing(QueryResult())
        arrays: dict[str, dict[int, formats.ListedJob]] = {}
        for job in formats.listed_jobs(answer.stdout):
            if job.index is None:
                listing.result.jobs[job.job_id] = job.observation
                listing.names[job.job_id] = job.name
            else:
                arrays.setdefault(job.token, {})[job.index] = job
        for elements in arrays.values():  # one array, under its first element's id
            ordered = [elements[i] for i in sorted(elements)]
            first = ordered[0].job_id
            listing.result.elements[first] = {j.index or 0: j.observation for j in ordered}
            listing.names[first] = ordered[0].name
            listing.element_ids[first] = [j.job_id for j in ordered]
        return listing


class FluxExecutor(BatchExecutor):
    """Runs jobs through Flux."""

    scheduler_class = Flux
    options = BatchOptions
