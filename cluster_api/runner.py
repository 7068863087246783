"""The command runner: how a scheduler command (an argv, never a shell line) is run.

Every command goes through `Executor._call`, the seam tests patch. Behind it sits a
runner object, chosen per executor (``Executor(config, runner=...)``), so a runner that
runs commands elsewhere (over SSH, say) replaces this machine's processes without any
scheduler or engine code changing. A runner answers with stdout, stderr and the exit
status together: a scheduler's parser, not the runner, decides whether a non-zero exit
still printed a usable answer (``bjobs`` exits 255 when one id is unknown).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shlex
import signal
from collections.abc import Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Protocol

from .errors import CommandFailedError, CommandTimeoutError


@dataclass(frozen=True)
class CommandResult:
    """What one command printed, and how it exited."""

    argv: list[str]
    stdout: str
    stderr: str = ""
    returncode: int = 0

    def output(self) -> CommandOutput:
        """The stdout of a command that succeeded, surrounding whitespace stripped (as
        0.8.1 returned it); ``CommandFailedError`` (keeping stdout,
        stderr and the exit status) for one that did not."""
        if self.returncode != 0:
            detail = self.stderr.strip() or self.stdout.strip()
            raise CommandFailedError(
                f"Command failed (exit {self.returncode}): {shlex.join(self.argv)[:300]}"
                + (f": {detail[:1000]}" if detail else ""),
                stdout=self.stdout,
                returncode=self.returncode,
                stderr=self.stderr.strip(),
            )
        return CommandOutput(self.stdout.strip(), self.stderr)


class CommandOutput(str):
    """The stdout `Executor._call` returns, still carrying the command's stderr: some
    schedulers answer on stderr even when they succeed (``scancel -v``)."""

    stderr: str

    def __new__(cls, stdout: str, stderr: str = "") -> CommandOutput:
        text = super().__new__(cls, stdout)
        text.stderr = stderr
        return text


class CommandRunner(Protocol):
    """Runs one argv with a time limit; raises ``CommandTimeoutError`` when the command
    took longer and ``CommandFailedError`` when it could not be started at all."""

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin_file: str | None = None,
    ) -> CommandResult: ...


def terminate_process_group(pid: int, sig: int = signal.SIGTERM) -> None:
    """Signal a whole process group, ignoring one that is already gone."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


class LocalRunner:
    """Runs commands as processes on this machine, each in a session of its own so a
    timeout kills everything it started.

    Output is decoded as UTF-8 with replacement, so bytes a scheduler should not have
    printed become U+FFFD instead of an exception.
    """

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin_file: str | None = None,
    ) -> CommandResult:
        cmd = list(argv)
        full_env = {**os.environ, **env} if env else None
        try:
            stdin = open(stdin_file, "rb") if stdin_file else None  # noqa: SIM115
        except OSError as exc:
            raise CommandFailedError(f"cannot read {stdin_file}: {exc}") from exc
        try:
            try:
                proc = await asyncio.create_subprocess_exec(
                    *cmd,
                    stdin=stdin if stdin is not None else asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    env=full_env,
                    start_new_session=True,
                )
            except FileNotFoundError:
                raise CommandFailedError(f"{cmd[0]}: command not found (is it on PATH?)") from None
            except OSError as exc:
                raise CommandFailedError(f"{cmd[0]}: cannot run: {exc}") from exc
        finally:
            if stdin is not None:
                stdin.close()
        try:
            out_bytes, err_bytes = await asyncio.wait_for(proc.communicate(), timeout)
        except asyncio.TimeoutError:
            terminate_process_group(proc.pid, signal.SIGKILL)
            await proc.wait()
            raise CommandTimeoutError(
                f"{shlex.join(cmd)[:300]} timed out after {timeout:g}s"
            ) from None
        except asyncio.CancelledError:
            terminate_process_group(proc.pid, signal.SIGKILL)
            raise
        return CommandResult(
            cmd,
            out_bytes.decode("utf-8", errors="replace"),
            err_bytes.decode("utf-8", errors="replace"),
            proc.returncode if proc.returncode is not None else -1,
        )


#: The runner of the executor whose command `Executor._call` is running (set around each
#: command); None outside one, where ``LOCAL_RUNNER`` runs it.
ACTIVE_RUNNER: ContextVar[CommandRunner | None] = ContextVar("cluster_api_runner", default=None)
LOCAL_RUNNER = LocalRunner()
