"""The design's extension hooks, adapted onto the executor's native interface.

Code written for py-cluster-api 0.8.1 subclasses `Executor` the way its design says:
``_submit_job`` (and ``_submit_array_job``) write a script and submit it,
``_build_status_args`` and ``_parse_job_statuses`` ask about every job and read the
answer, ``_cancel_job`` cancels one. `HookAdapter` turns those hooks into the native
methods the built-in executors implement themselves (``_submit_script``, ``_query``,
``_cancel_ids``, ``_cancel_name_pattern``), so such a subclass is a complete executor:
its commands run in the executor's command slots (bounded concurrency, its runner behind
`_call`), its jobs go to the journal, its scripts record their exit status beside them,
and the monitor, zombies and dependency rule treat them as they treat the built-ins'.
"""

from __future__ import annotations

import asyncio
import dataclasses
import fnmatch
import itertools
import logging
import os
import re
from abc import abstractmethod
from collections.abc import Collection, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, ClassVar

from .errors import ClusterAPIError, CommandFailedError, CommandTimeoutError, SubmitError
from .jobspec import JobSpec
from .models import JobRecord, JobStatus, ResourceSpec
from .script import script_path
from .status import Observation, QueryResult
from .submission import Submission

logger = logging.getLogger("cluster_api")

#: What ``_parse_job_statuses`` says about one job: its status and the details it knows.
StatusEntry = tuple[JobStatus, Mapping[str, Any]]
_DETAILS = ("exit_code", "exec_host", "max_mem", "submit_time", "start_time", "finish_time")
_ELEMENT_ID = re.compile(r"(?P<parent>[^\[\]]+)\[(?P<index>\d+)\]")


class HookAdapter(Submission):
    """The native executor interface, implemented through the design's hooks; the
    built-in executors override the native methods and never reach the hooks."""

    #: The scheduler's programs, for the hooks' own use and for messages.
    submit_command: ClassVar[str | None] = None
    status_command: ClassVar[str | None] = None
    cancel_command: ClassVar[str | None] = None
    #: Finds the job id in the submit command's answer (group ``job_id``).
    job_id_regexp: ClassVar[str] = r"(?P<job_id>\d+)"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._hook_scripts: dict[str, str] = {}  # reserved script path -> the one written
        self._reserved: dict[str, int] = {}  # reserved script path -> its counter

    @property
    def _script_counter(self) -> Iterator[int]:
        """The counter a hook numbers its script with, ``next(self._script_counter)``, as
        in 0.8.1 (see `_write_job_script`)."""
        return self._counter

    # -- the hooks (a subclass written to the design implements them) -------------------
    def _job_id_from_submit_output(self, out: str) -> str:
        """The new job's id in the submit command's answer; SubmitError without one."""
        match = re.search(self.job_id_regexp, out)
        if match is None:
            program = self.submit_command or "the submit command"
            raise SubmitError(f"{program} did not report a job id: {out.strip()[:500]!r}")
        return match.group("job_id") if "job_id" in match.groupdict() else match.group(0)

    async def _submit_job(
        self,
        command: str,
        name: str,
        resources: ResourceSpec,
        prologue: list[str] | None = None,
        epilogue: list[str] | None = None,
        env: dict[str, str] | None = None,
        *,
        cwd: str | None = None,
        inherit_env: bool = True,
        login_shell: bool = False,
        depends_on: list[str] | None = None,
    ) -> tuple[str, str | None]:
        """Hook: write and submit one job; return its id and its script's path."""
        raise NotImplementedError(f"{type(self).__name__} implements no _submit_job")

    async def _submit_array_job(
        self,
        command: str,
        name: str,
        array_range: tuple[int, int],
        resources: ResourceSpec,
        prologue: list[str] | None = None,
        epilogue: list[str] | None = None,
        env: dict[str, str] | None = None,
        max_concurrent: int | None = None,
        *,
        cwd: str | None = None,
        inherit_env: bool = True,
        login_shell: bool = False,
        depends_on: list[str] | None = None,
    ) -> tuple[str, str | None]:
        """Hook (optional): write and submit a job array; return its id and script."""
        raise SubmitError(f"{type(self).__name__} cannot submit job arrays")

    def _build_status_args(self) -> list[str]:
        """Hook: the whole argv of one status command about every job."""
        raise NotImplementedError(f"{type(self).__name__} implements no _build_status_args")

    def _parse_job_statuses(self, output: str) -> Mapping[str, StatusEntry]:
        """Hook: ``{raw_id: (status, details)}`` from the status answer; an array
        element's raw id is ``"PARENT[INDEX]"``."""
        raise NotImplementedError(f"{type(self).__name__} implements no _parse_job_statuses")

    async def _cancel_job(self, job_id: str, *, done: bool = False) -> None:
        """Hook: cancel one job (raise ClusterAPIError when the scheduler refused)."""
        raise NotImplementedError(f"{type(self).__name__} implements no _cancel_job")

    # -- the native interface, through the hooks ------------------------------------------
    @abstractmethod
    async def _run(
        self,
        cmd: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        stdin_file: str | None = None,
        timeout: float | None = None,
    ) -> str:
        """Run one scheduler command in a command slot (`cluster_api.core.Executor._run`)."""

    def _uses_hooks(self) -> bool:
        return type(self)._submit_script is HookAdapter._submit_script

    async def _write_job_script(self, spec: JobSpec) -> str:
        """Reserve the path ``{work_dir}/{name}.{n}.sh`` instead of writing a script: the
        hook renders its own, with the exit-status lines in its prologue, and numbers it
        with ``next(self._script_counter)``, which `_submit_script` makes ``n``."""
        if not self._uses_hooks():
            return await super()._write_job_script(spec)
        directory = spec.resources.work_dir
        counter = next(self._counter)
        while os.path.exists(path := script_path(directory, spec.name, counter)):
            counter = next(self._counter)
        spec.token = f"{spec.name}.{counter}"
        self._reserved[path] = counter
        return path

    async def _submit_script(self, spec: JobSpec, script_path: str) -> str:
        """Call the submit hook, in a command slot, with the exit-status lines first in
        the prologue; a command error becomes the SubmitError `submit` promises."""
        prologue = [*self._preamble(dataclasses.replace(spec, env={}), script_path), *spec.prologue]
        options: dict[str, Any] = {
            "cwd": spec.resources.work_dir,
            "inherit_env": spec.inherit_env,
            "login_shell": spec.login_shell,
            "depends_on": list(spec.depends_on),
        }
        args = (spec.command, spec.name)
        try:
            async with self._command_slot():
                # The hook takes this counter with its first next(), before any await.
                self._counter = itertools.chain([self._reserved.pop(script_path)], self._counter)
                if spec.array_range is None:
                    job_id, written = await self._submit_job(
                        *args, spec.resources, prologue, list(spec.epilogue), dict(spec.env),
                        **options,
                    )  # fmt: skip
                else:
                    job_id, written = await self._submit_array_job(
                        *args, spec.array_range, spec.resources, prologue, list(spec.epilogue),
                        dict(spec.env), spec.max_concurrent, **options,
                    )  # fmt: skip
        except SubmitError:
            raise
        except ClusterAPIError as exc:
            lost = isinstance(exc, CommandTimeoutError)
            raise SubmitError(
                f"job {spec.name} was not submitted: {exc}", job_may_exist=lost
            ) from exc
        if written and os.path.abspath(written) != os.path.abspath(script_path):
            logger.info(
                "job %s wrote %s, not %s: no exit file to read", spec.name, written, script_path
            )
            self._hook_scripts[script_path] = written
        return str(job_id)

    def _after_register(self, record: JobRecord) -> None:
        written = self._hook_scripts.pop(record.script_path or "", None)
        if written is not None:
            record.script_path = written
            self.persist([record])
        super()._after_register(record)

    async def _query(self, active: dict[str, JobRecord]) -> QueryResult:
        """Ask the status hook's command (bounded like every command) and read its answer;
        an empty or unreadable answer raises ClusterAPIError, so nothing changes."""
        argv = self._build_status_args()
        try:
            out = await self._run(argv)
        except CommandFailedError as exc:
            if not exc.stdout.strip():
                raise
            out = exc.stdout  # some schedulers exit non-zero for ids they no longer know
        if not out.strip():
            raise ClusterAPIError(f"{argv[0]} answered nothing")
        try:
            return _query_result(self._parse_job_statuses(out), active)
        except ClusterAPIError:
            raise
        except Exception as exc:  # a third-party parser's IndexError, ValueError, ...
            raise ClusterAPIError(f"cannot read the answer of {argv[0]}: {exc!r}") from exc

    async def _cancel_ids(self, job_ids: list[str], *, done: bool) -> Collection[str] | None:
        """Cancel through the hook, one job per call, concurrently within the command
        slots; the ids whose cancel the hook did not refuse."""

        async def cancel_one(job_id: str) -> str | None:
            try:
                async with self._command_slot():
                    await self._cancel_job(job_id, done=done)
            except ClusterAPIError as exc:
                logger.warning("cancel of job %s refused: %s", job_id, exc)
                return None
            return job_id

        answers = await asyncio.gather(*(cancel_one(job_id) for job_id in job_ids))
        return {job_id for job_id in answers if job_id is not None}

    async def _cancel_name_pattern(self, pattern: str) -> Collection[str] | None:
        """The hooks cancel by id: the tracked active jobs whose name matches."""
        ids = [r.job_id for r in self.active_jobs.values() if fnmatch.fnmatchcase(r.name, pattern)]
        return await self._cancel_ids(ids, done=False)


def _query_result(parsed: Mapping[str, StatusEntry], active: Collection[str]) -> QueryResult:
    """A status hook's answer as the engine's `QueryResult`; active jobs it does not
    mention are jobs the scheduler no longer knows (their exit files tell)."""
    result = QueryResult()
    for raw_id, (status, details) in parsed.items():
        values = {key: details.get(key) for key in _DETAILS}
        for key in ("submit_time", "start_time", "finish_time"):
            if values[key] is not None and not isinstance(values[key], datetime):
                raise ClusterAPIError(f"{key} of job {raw_id} is not a datetime: {values[key]!r}")
        obs = Observation(JobStatus(status), **values)
        element = _ELEMENT_ID.fullmatch(str(raw_id))
        if element is None:
            result.jobs[str(raw_id)] = obs
        else:
            result.elements.setdefault(element["parent"], {})[int(element["index"])] = obs
    result.not_found = {job_id for job_id in active if not result.seen(job_id)}
    return result
