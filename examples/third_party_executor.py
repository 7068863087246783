"""A third-party executor written only to the design's extension hooks, as code written for
py-cluster-api 0.8.1 subclasses `Executor`, for "toy", a made-up scheduler:

- ``tsub [--array A-B] [--after ID,ID] SCRIPT`` answers ``Submitted job 17``;
- ``tstat`` prints one ``ID STATE EXIT`` line per job it knows (an array element's id is
  ``17[2]``; ``-`` for no exit code yet), and STATE is ``Q``, ``R``, ``OK``, ``ERR`` or
  ``DEL``;
- ``tdel ID`` cancels a job.

Nothing here uses the library's newer engine: the base class adapts these hooks, so the
monitor, the journal, the exit files and bounded concurrency work for it as for the
built-in executors. tests/test_compat_hooks.py drives it through a patched ``_call``.
"""

from __future__ import annotations

import shlex
from typing import Any

from cluster_api import Executor, JobStatus, ResourceSpec
from cluster_api.script import render_script, write_script

STATES = {
    "Q": JobStatus.PENDING,
    "R": JobStatus.RUNNING,
    "OK": JobStatus.DONE,
    "ERR": JobStatus.FAILED,
    "DEL": JobStatus.KILLED,
}


class ToyExecutor(Executor):
    """Runs jobs through the toy scheduler."""

    submit_command = "tsub"
    status_command = "tstat"
    cancel_command = "tdel"
    directive_prefix = "#TOY"
    job_id_regexp = r"Submitted job (?P<job_id>\d+)"

    def build_header(self, name: str, resources: ResourceSpec | None = None) -> list[str]:
        lines = [f"{self.directive_prefix} --name {name}"]
        if resources is not None and resources.cpus:
            lines.append(f"{self.directive_prefix} --cpus {resources.cpus}")
        return lines

    def _write(
        self,
        command: str,
        name: str,
        resources: ResourceSpec,
        prologue: list[str] | None,
        epilogue: list[str] | None,
        env: dict[str, str] | None,
        cwd: str | None,
    ) -> str:
        exports = [f"export {key}={shlex.quote(value)}" for key, value in (env or {}).items()]
        content = render_script(
            self.config,
            command,
            self.build_header(name, resources),
            [*exports, *(prologue or [])],
            epilogue,
        )
        return write_script(cwd or resources.work_dir, content, name, next(self._script_counter))

    async def _tsub(self, argv: list[str], script: str, depends_on: list[str] | None) -> str:
        after = ["--after", ",".join(depends_on)] if depends_on else []
        out = await self._call([str(self.submit_command), *argv, *after, script])
        return self._job_id_from_submit_output(out)

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
        script = self._write(command, name, resources, prologue, epilogue, env, cwd)
        return await self._tsub([], script, depends_on), script

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
        script = self._write(command, name, resources, prologue, epilogue, env, cwd)
        span = ["--array", f"{array_range[0]}-{array_range[1]}"]
        return await self._tsub(span, script, depends_on), script

    def _build_status_args(self) -> list[str]:
        return [str(self.status_command)]

    def _parse_job_statuses(self, output: str) -> dict[str, tuple[JobStatus, dict[str, Any]]]:
        statuses: dict[str, tuple[JobStatus, dict[str, Any]]] = {}
        for line in output.splitlines():
            raw_id, state, code = line.split()
            statuses[raw_id] = (STATES[state], {"exit_code": None if code == "-" else int(code)})
        return statuses

    async def _cancel_job(self, job_id: str, *, done: bool = False) -> None:
        await self._call([str(self.cancel_command), job_id])
