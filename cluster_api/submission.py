"""Submission: check the arguments, write the script, journal the intent, submit.

Part of `cluster_api.core.Executor`; a scheduler supplies its directives
(``_header_for``) and how a written script is handed over (``_submit_script``).
"""

from __future__ import annotations

import logging
import os
import posixpath
from abc import abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from .base import ExecutorBase
from .errors import ClusterAPIError, SubmitError
from .jobspec import JobSpec, check_max_concurrent, effective_resources, job_spec, set_array
from .journal import JournalError
from .models import ArrayElement, JobRecord, ResourceSpec
from .packing import checked_commands
from .script import compose_script, environment_lines, exit_record_lines
from .status import utcnow

logger = logging.getLogger("cluster_api")


class Submission(ExecutorBase):
    """The submitting part of an executor."""

    async def submit(
        self,
        command: str,
        name: str,
        resources: ResourceSpec | None = None,
        prologue: Sequence[str] | None = None,
        epilogue: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        inherit_env: bool = True,
        login_shell: bool = False,
        depends_on: Sequence[JobRecord | str] | JobRecord | str | None = None,
    ) -> JobRecord:
        """Render, write and submit one job; return its record (already tracked)."""
        spec = job_spec(
            self.config,
            self.directive_prefix,
            command,
            name,
            resources,
            prologue,
            epilogue,
            env,
            metadata,
            inherit_env,
            login_shell,
            depends_on,
        )
        return await self._submit(spec)

    async def submit_array(
        self,
        command: str,
        name: str,
        array_range: tuple[int, int],
        resources: ResourceSpec | None = None,
        prologue: Sequence[str] | None = None,
        epilogue: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        max_concurrent: int | None = None,
        inherit_env: bool = True,
        login_shell: bool = False,
        depends_on: Sequence[JobRecord | str] | JobRecord | str | None = None,
    ) -> JobRecord:
        """Submit a job array over the inclusive ``array_range``; elements read their
        index from ``$ARRAY_INDEX`` (and the scheduler's own variable)."""
        spec = job_spec(
            self.config,
            self.directive_prefix,
            command,
            name,
            resources,
            prologue,
            epilogue,
            env,
            metadata,
            inherit_env,
            login_shell,
            depends_on,
        )
        set_array(spec, array_range, max_concurrent)
        return await self._submit(spec)

    async def submit_many(
        self,
        commands: Sequence[str],
        name: str,
        resources: ResourceSpec | None = None,
        prologue: Sequence[str] | None = None,
        epilogue: Sequence[str] | None = None,
        env: Mapping[str, str] | None = None,
        metadata: Mapping[str, Any] | None = None,
        max_concurrent: int | None = None,
        inherit_env: bool = True,
        login_shell: bool = False,
        depends_on: Sequence[JobRecord | str] | JobRecord | str | None = None,
    ) -> list[JobRecord]:
        """Submit independent commands sharing one name and resources; one record per
        command, in order, each with its own callbacks, logs, exit code and cancel.
        How they run is the executor's (`_submit_many`): batch schedulers pack them into
        arrays (`cluster_api.packing`)."""
        checked = checked_commands(commands)

        def spec_for(command: str) -> JobSpec:
            return job_spec(
                self.config,
                self.directive_prefix,
                command,
                name,
                resources,
                prologue,
                epilogue,
                env,
                metadata,
                inherit_env,
                login_shell,
                depends_on,
            )

        return await self._submit_many(checked, spec_for, max_concurrent)

    async def _submit_many(
        self, commands: list[str], spec_for: Callable[[str], JobSpec], max_concurrent: int | None
    ) -> list[JobRecord]:
        """Hook: each command is a job of its own here, started as soon as a slot is
        free. This executor has no per-group limit, so a ``max_concurrent`` below its own
        cap is logged as not applied rather than silently ignored."""
        if max_concurrent is not None:
            check_max_concurrent(max_concurrent)
            logger.warning(
                "%s runs each command of submit_many as its own job: max_concurrent=%d "
                "is not applied (its own limit on running jobs is)",
                type(self).__name__,
                max_concurrent,
            )
        return [await self._submit(spec_for(command)) for command in commands]

    def effective_resources(self, resources: ResourceSpec | None) -> ResourceSpec:
        """The job's resources with unset fields taken from the config, and work_dir made
        absolute (see `.jobspec.effective_resources`)."""
        return effective_resources(self.config, resources)

    async def _submit(self, spec: JobSpec) -> JobRecord:
        """Write the script, journal the intent, run the scheduler command, track the job.

        The intent goes to the journal before the command runs, so a process killed while
        the command is in flight leaves a trace ``reconnect()`` resolves by token. A
        journal that cannot be written stops the submission before the scheduler sees it.
        A submission that certainly did not happen leaves nothing behind.
        """
        self._validate(spec)
        await self._place_work_dir(spec)
        path = await self._write_job_script(spec)
        record = JobRecord(
            job_id="",
            name=spec.name,
            command=spec.command,
            resources=spec.resources,
            script_path=path,
            metadata=spec.metadata,
            submit_time=utcnow(),
            depends_on=list(spec.depends_on),
        )
        if spec.array_range is not None:
            start, end = spec.array_range
            for index in range(start, end + 1):
                record.array_elements[index] = ArrayElement(
                    index=index, submit_time=record.submit_time
                )
        key = os.path.abspath(path)
        if self._journal is not None:
            try:
                self._journal.intend(key, spec.token, record)
            except JournalError as exc:
                await self._remove_script(path)
                raise SubmitError(f"job {spec.name} was not submitted: {exc}") from exc
        self._submitting.add(key)
        try:
            record.job_id = await self._submit_script(spec, path)
        except (SubmitError, ValueError) as exc:
            if isinstance(exc, SubmitError) and exc.job_may_exist:
                logger.error("%s (its script %s is kept: the job may run it)", exc, path)
            else:
                await self._forget_submission(key, path)
            raise
        finally:
            self._submitting.discard(key)
        self._register(record)
        self.persist([record])
        self._after_register(record)
        logger.info("submitted %s as job %s (%s)", spec.name, record.job_id, path)
        return record

    async def _place_work_dir(self, spec: JobSpec) -> None:
        """Make the job's work_dir absolute where it runs (over ssh: under the remote
        home), before anything is written in it."""
        if not posixpath.isabs(spec.resources.work_dir):
            work_dir = await self.files.absolute(spec.resources.work_dir)
            spec.resources = replace(spec.resources, work_dir=work_dir)

    async def _forget_submission(self, key: str, path: str) -> None:
        """Remove what a submission the scheduler never got left: its script, its intent."""
        await self._remove_script(path)
        if self._journal is not None:
            try:
                self._journal.discard(key)
            except JournalError as exc:
                logger.error("could not remove a refused submission from the journal: %s", exc)

    def _validate(self, spec: JobSpec) -> None:
        """Refuse a job this executor cannot run, before anything is written. Subclasses
        extend it (and call it): here, dependencies must look like this scheduler's ids,
        since they are written into a directive."""
        pattern = self.job_id_pattern
        if pattern is None:
            return
        for job_id in spec.depends_on:
            if not pattern.match(job_id):
                raise ValueError(
                    f"{self.name} dependency must be a job id such as "
                    f"{self.job_id_example}, got {job_id!r}"
                )

    def _after_register(self, record: JobRecord) -> None:
        """Hook for executors that act once a record is tracked (the local one starts it)."""

    async def _remove_script(self, path: str) -> None:
        try:
            await self.files.remove([path])
        except ClusterAPIError as exc:
            logger.error("could not remove the script %s of a refused submission: %s", path, exc)

    async def _write_job_script(self, spec: JobSpec) -> str:
        directory = spec.resources.work_dir
        while True:
            counter = next(self._counter)
            path = os.path.join(directory, f"{spec.name}.{counter}.sh")
            spec.token = f"{spec.name}.{counter}"
            header = self._header_for(spec)
            content = compose_script(
                self.config,
                spec.command,
                header,
                spec.prologue,
                spec.epilogue,
                preamble=self._preamble(spec, path),
                login_shell=spec.login_shell,
            )
            try:
                return await self.files.write_script(directory, content, spec.name, counter)
            except FileExistsError:
                continue
            except NotADirectoryError:
                raise ValueError(
                    f"ResourceSpec.work_dir {spec.resources.work_dir!r} is not a folder"
                ) from None
            except OSError as exc:  # nothing was submitted: a caller removes what it wrote
                raise SubmitError(f"cannot write job script {path}: {exc}") from exc

    def _preamble(self, spec: JobSpec, path: str) -> list[str]:
        lines = environment_lines(spec.env)
        if spec.array_range is not None and self.array_index_variable not in (None, "ARRAY_INDEX"):
            lines.append(f'export ARRAY_INDEX="${{{self.array_index_variable}}}"')
        lines += exit_record_lines(path, spec.array_range is not None)
        return lines

    def _header_for(self, spec: JobSpec) -> list[str]:
        """The directive lines of one job, arrays and dependencies included."""
        return []

    def build_header(self, name: str, resources: ResourceSpec | None = None) -> list[str]:
        """The directive lines for a plain job called exactly ``name``: no prefix added and
        nothing replaced, since callers (0.8.1's and third-party executors) pass the final
        name."""
        spec = job_spec(
            self.config,
            self.directive_prefix,
            "true",
            name,
            resources,
            None,
            None,
            None,
            None,
            True,
            False,
            None,
        )
        spec.name = name  # job_spec checked it is one line
        return self._header_for(spec)

    @abstractmethod
    async def _submit_script(self, spec: JobSpec, script_path: str) -> str:
        """Hand the written script to the scheduler; return the new job id."""
