"""Running scheduler commands on another machine over SSH (groundwork for issue #15).

The system OpenSSH client, one multiplexed connection per target: docs/design/remote-ssh.md
says why, and measured what shapes this module. Racing ``ControlMaster=auto`` clients each
log in, so the master is started once under a lock and commands only join it; a command
whose master is gone quietly logs in on its own, so commands carry ``ProxyCommand=false``
(the number of logins is the number of masters); ``%C`` ignores the identity, so the
ControlPath hashes the whole target. The remote shell re-parses the command line, so it is
one word built with ``shlex.join``: nothing user-provided reaches it unquoted.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import math
import os
import posixpath
import re
import shlex
import signal
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import ClusterAPIError, CommandFailedError, CommandTimeoutError
from .runner import CommandResult
from .ssh_target import SSHTarget as SSHTarget
from .ssh_target import control_directory as control_directory
from .ssh_target import control_path as control_path
from .ssh_target import refuse_control_chars

#: The server's default MaxSessions is 10: a session past it silently logs in again.
MAX_SESSIONS = 10
#: Seconds an idle master outlives its last command (bounds a master left by a crash).
CONTROL_PERSIST = 300
#: Upper bound for ConnectTimeout: it bounds the TCP connect and the banner exchange.
CONNECT_TIMEOUT = 10
#: What ssh prints when a command could not reach the master: with ProxyCommand=false
#: the fallback direct connection closes before the banner, so the command never ran.
_NO_MASTER = "kex_exchange_identification"
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXISTS_STATUS = 17
_PATH_HINT = "(a non-login shell's PATH: not what ~/.profile or /etc/profile.d add)"


class SSHFailure(enum.Enum):
    """Why a command did not get through to the remote host (or found nothing to run)."""

    UNREACHABLE = "host unreachable"
    KEY_REFUSED = "key refused (Permission denied)"
    HOST_KEY_UNKNOWN = "host key not known or not trusted"
    HOST_KEY_CHANGED = "host key changed (REMOTE HOST IDENTIFICATION HAS CHANGED)"
    CONNECTION_LOST = "connection lost"
    CONNECT_FAILED = "could not connect"
    COMMAND_NOT_FOUND = "command not found on the remote host"


class SSHError(CommandFailedError):
    """A command could not run on the remote host (``destination``), for ``cause``: to the
    engine, like a local command that could not start (`CommandFailedError`), an outage."""

    def __init__(self, destination: str, cause: SSHFailure, detail: str = "") -> None:
        detail = detail.strip()
        message = f"ssh {destination}: {cause.value}" + (f": {detail[-1000:]}" if detail else "")
        super().__init__(message, returncode=None, stderr=detail)
        self.destination = destination
        self.cause = cause


class RemoteFileExistsError(ClusterAPIError):
    """A remote file was not written because one is already there."""


_UNREACHABLE = (
    "Could not resolve hostname|Connection refused|timed out|No route to host|unreachable"
)
_FAILURE_PATTERNS = (
    (re.compile("REMOTE HOST IDENTIFICATION HAS CHANGED"), SSHFailure.HOST_KEY_CHANGED),
    (re.compile("Host key verification failed"), SSHFailure.HOST_KEY_UNKNOWN),
    (re.compile(r"Permission denied \("), SSHFailure.KEY_REFUSED),
    (re.compile(_UNREACHABLE), SSHFailure.UNREACHABLE),
)


def classify_ssh_failure(stderr: str) -> SSHFailure | None:
    """The cause OpenSSH's stderr names for an exit 255, or None when it names none (a
    remote command may exit 255 itself)."""
    for pattern, failure in _FAILURE_PATTERNS:
        if pattern.search(stderr):
            return failure
    return None


def remote_command_line(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The one word the remote shell parses back into exactly `argv`, run under `env`."""
    if not argv or isinstance(argv, str):
        raise ValueError(f"argv must be a non-empty list of words, got {argv!r}")
    variables = dict(env or {})
    if any("\x00" in word for word in [*argv, *variables, *variables.values()]):
        raise ValueError(f"a NUL byte cannot be sent in a command line: {list(argv)!r}")
    bad = [name for name in variables if not _ENV_NAME.fullmatch(name)]
    if bad:
        raise ValueError(f"env: {bad[0]!r} is not a variable name")
    assignments = [f"{name}={value}" for name, value in variables.items()]
    return shlex.join(["env", *assignments, *argv] if assignments else argv)


# Each script is one line for `sh -c`: the login shell that parses the quoted word may be
# csh, where newlines inside quotes break.
# Writing a new file: $1 its folder, $2 its path, $3 its mode.
_WRITE_NEW = (
    'umask 077; if [ -e "$2" ] || [ -h "$2" ]; then exit 17; fi; mkdir -p -- "$1" || exit 1; '
    'tmp="$2.part.$$"; trap \'rm -f -- "$tmp"\' EXIT; set -C; '
    'cat > "$tmp" && chmod "$3" -- "$tmp" || exit 1; '
    'ln -- "$tmp" "$2" || { if [ -e "$2" ]; then exit 17; fi; exit 1; }'
)
_READ_SCRIPT = (
    'for f; do if [ -f "$f" ] && [ -r "$f" ]; then printf %s +; tr -d "\\000" < "$f"; '
    'else printf %s -; fi; printf "\\000"; done'
)


class SSHRunner:
    """Runs argvs on `target` through one multiplexed connection, opened on first use and
    re-opened on the first command after it drops (the failed command raises `SSHError`;
    pacing the retries is the engine's outage backoff). A `CommandRunner` (the protocol
    behind ``Executor._call``)."""

    def __init__(self, target: SSHTarget, *, max_concurrent: int = 8) -> None:
        if not 1 <= max_concurrent <= MAX_SESSIONS:
            limit = f"1 to {MAX_SESSIONS} (sshd's MaxSessions: past it, sessions log in again)"
            raise ValueError(f"max_concurrent: {max_concurrent} is not {limit}")
        self.target = target
        self.control_path = self._own_path = control_path(target, control_directory())
        self._sessions = asyncio.Semaphore(max_concurrent)
        self._master_lock = asyncio.Lock()
        self._master_up = self._owns_master = False
        self._master_failures = 0
        self._master_error: ClusterAPIError | None = None

    def _ssh_argv(self, timeout: float, *extra: str) -> list[str]:
        connect = max(1, min(CONNECT_TIMEOUT, math.ceil(timeout)))
        return [
            "ssh",
            *("-o", "BatchMode=yes", "-o", f"ConnectTimeout={connect}"),
            *("-o", "ServerAliveInterval=15", "-o", "ServerAliveCountMax=3"),
            *("-o", f"ControlPath={self.control_path}"),
            *extra,
            *self.target.connection_options(),
            "--",
            self.target.host,
        ]

    def master_argv(self, timeout: float) -> list[str]:
        """Starts the master in the background once it has logged in."""
        persist = f"ControlPersist={CONTROL_PERSIST}"
        return self._ssh_argv(timeout, "-o", "ControlMaster=yes", "-o", persist, "-N", "-f")

    def command_argv(
        self, argv: Sequence[str], env: Mapping[str, str] | None, timeout: float
    ) -> list[str]:
        """Runs `argv` through the master, and nowhere else (ProxyCommand=false)."""
        ssh = self._ssh_argv(timeout, "-o", "ControlMaster=no", "-o", "ProxyCommand=false", "-T")
        return [*ssh, remote_command_line(argv, env)]

    def control_argv(self, operation: str) -> list[str]:
        """``ssh -O check`` or ``-O exit`` for this target's master."""
        return self._ssh_argv(CONNECT_TIMEOUT, "-O", operation)

    async def _spawn(
        self,
        argv: list[str],
        label: Sequence[str],
        deadline: float,
        stdin: bytes | Path | None = None,
    ) -> CommandResult:
        """Runs one local ssh in a session of its own, killed with its group at `deadline`.
        Its stdout and stderr are our own pipes, not asyncio's: a mux client hands them to the
        master, which holds them until the remote command ends, so a timeout closes them."""
        loop = asyncio.get_running_loop()
        try:
            handle = open(stdin, "rb") if isinstance(stdin, Path) else None  # noqa: SIM115
        except OSError as exc:
            raise CommandFailedError(f"cannot read {stdin!s}: {exc}") from exc
        data = stdin if isinstance(stdin, bytes) else None
        feed = asyncio.subprocess.PIPE if data is not None else asyncio.subprocess.DEVNULL
        (out_r, out_w), (err_r, err_w) = os.pipe(), os.pipe()
        try:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=handle or feed, stdout=out_w, stderr=err_w, start_new_session=True
            )
        except OSError as exc:
            os.close(out_r)
            os.close(err_r)
            raise CommandFailedError(f"cannot run ssh (is OpenSSH installed?): {exc}") from exc
        finally:
            os.close(out_w)
            os.close(err_w)
            if handle is not None:
                handle.close()
        (out, out_pipe), (err, err_pipe) = await _reader(out_r), await _reader(err_r)
        try:
            both = asyncio.gather(out.read(), err.read(), _feed_and_wait(proc, data))
            left = max(deadline - loop.time(), 0)
            out_bytes, err_bytes, code = await asyncio.wait_for(both, left)
        except (asyncio.TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            if proc.stdin is not None:
                proc.stdin.close()
            await proc.wait()
            if isinstance(exc, asyncio.CancelledError):
                raise
            where = f"{shlex.join(label)[:300]} on {self.target.destination}"
            raise CommandTimeoutError(f"{where} timed out") from None
        finally:
            out_pipe.close()
            err_pipe.close()
        out_text, err_text = out_bytes.decode(errors="replace"), err_bytes.decode(errors="replace")
        return CommandResult(list(label), out_text, err_text, code)

    async def _ensure_master(self, deadline: float, failures: int) -> None:
        """Starts the master once, however many first commands race for it: commands issued
        before a start failed (`failures` counted then) get its error, not a login each."""
        if self._master_up:
            return
        async with self._master_lock:
            if self._master_up:
                return
            if self._master_failures != failures and self._master_error is not None:
                raise self._master_error
            try:
                await self._start_master(deadline)
            except ClusterAPIError as exc:
                self._master_error, self._master_failures = exc, self._master_failures + 1
                raise
            self._master_error = None

    async def _start_master(self, deadline: float) -> None:
        self.control_path = self._own_path
        if await self._control("check") or await self._join_users_master(deadline):
            self._master_up = True
            return
        # A killed master leaves its socket, and ControlMaster=yes will not replace it.
        self.control_path.unlink(missing_ok=True)
        remaining = deadline - asyncio.get_running_loop().time()
        start = await self._spawn(self.master_argv(remaining), ["ssh", "-N", "-f"], deadline)
        if start.returncode != 0:
            cause = classify_ssh_failure(start.stderr) or SSHFailure.CONNECT_FAILED
            raise SSHError(self.target.destination, cause, start.stderr)
        self._master_up = self._owns_master = True

    async def _join_users_master(self, deadline: float) -> bool:
        """Use the master the user's own OpenSSH setup keeps for this host (``ssh -G``
        tells its socket), when one runs: how a login made once with a second factor is
        reused. Not with an ``ssh_identity`` of ours, which must never ride their login."""
        if self.target.identity is not None:
            return False
        argv = ["ssh", "-G", *self.target.connection_options(), "--", self.target.host]
        resolved = await self._spawn(argv, ["ssh", "-G"], deadline)
        found = re.search(r"^controlpath (.+)$", resolved.stdout, flags=re.M)
        if resolved.returncode != 0 or found is None or found.group(1).strip() == "none":
            return False
        self.control_path = Path(found.group(1).strip())
        if await self._control("check"):
            return True
        self.control_path = self._own_path
        return False

    async def _control(self, operation: str) -> bool:
        """Whether ``ssh -O check`` (or ``exit``) found the master."""
        deadline = asyncio.get_running_loop().time() + CONNECT_TIMEOUT
        check = await self._spawn(self.control_argv(operation), ["ssh", "-O", operation], deadline)
        return check.returncode == 0

    async def _execute(
        self,
        argv: Sequence[str],
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin: bytes | Path | None = None,
    ) -> CommandResult:
        deadline = asyncio.get_running_loop().time() + timeout
        failures = self._master_failures
        async with self._sessions:
            for _attempt in (1, 2):
                await self._ensure_master(deadline, failures)
                remaining = deadline - asyncio.get_running_loop().time()
                ssh = self.command_argv(argv, env, remaining)
                result = await self._spawn(ssh, argv, deadline, stdin)
                if result.returncode != 255 or _NO_MASTER not in result.stderr:
                    return await self._checked(result)
                # The master was gone before the command: it never ran, so a retry on a
                # new master is safe. Twice in a row means the connection will not hold.
                self._master_up, failures = False, self._master_failures
            lost = "the master went away before the command, twice"
            raise SSHError(self.target.destination, SSHFailure.CONNECTION_LOST, lost)

    async def _checked(self, result: CommandResult) -> CommandResult:
        """The result, or `SSHError` when ssh (not the remote command) failed."""
        if result.returncode == 127:
            detail = f"{result.stderr.strip()} {_PATH_HINT}"
            raise SSHError(self.target.destination, SSHFailure.COMMAND_NOT_FOUND, detail)
        if result.returncode != 255:
            return result
        cause = classify_ssh_failure(result.stderr)
        if cause is None and not result.stderr.strip() and not await self._control("check"):
            cause = SSHFailure.CONNECTION_LOST
        if cause is None:
            return result
        self._master_up = False
        detail = result.stderr or f"{shlex.join(result.argv)[:300]} may or may not have run"
        raise SSHError(self.target.destination, cause, detail)

    async def run(
        self,
        argv: Sequence[str],
        *,
        timeout: float,
        env: Mapping[str, str] | None = None,
        stdin_file: str | None = None,
    ) -> CommandResult:
        """Runs `argv` on the remote host, `stdin_file` (a local file) fed to its stdin."""
        return await self._execute(argv, timeout, env, Path(stdin_file) if stdin_file else None)

    def _file_error(self, what: str, result: CommandResult) -> CommandFailedError:
        message = f"{self.target.destination}: {what} (exit {result.returncode})"
        detail = result.stderr.strip()[:1000]
        return CommandFailedError(f"{message}: {detail}", result.stdout, result.returncode, detail)

    async def write_script(self, path: str, content: str, *, timeout: float) -> None:
        """Writes an executable (0700) file, as `write_new`."""
        await self.write_new(path, content, mode=0o700, timeout=timeout)

    async def write_new(self, path: str, content: str, *, mode: int, timeout: float) -> None:
        """Writes a file of this mode, its folder (0700) made if missing; never over an
        existing file (`RemoteFileExistsError`), nor a half-written one at `path`."""
        refuse_control_chars("path", path)
        folder = posixpath.dirname(path) or "."
        argv = ["sh", "-c", _WRITE_NEW, "sh", folder, path, f"{mode:04o}"]
        result = await self._execute(argv, timeout, stdin=content.encode())
        if result.returncode == _EXISTS_STATUS:
            raise RemoteFileExistsError(f"{self.target.destination}:{path} already exists")
        if result.returncode != 0:
            raise self._file_error(f"cannot write {path}", result)

    async def read_files(self, paths: Sequence[str], *, timeout: float) -> dict[str, str | None]:
        """The text of each file, None for one that is missing or unreadable: one command
        for any number of paths (they travel on stdin, not in the command line)."""
        if not paths:
            return {}
        argv = ["xargs", "-0", "sh", "-c", _READ_SCRIPT, "sh"]
        result = await self._execute(argv, timeout, stdin=_nul_joined(paths))
        records = result.stdout.split("\x00")
        if result.returncode != 0 or records[-1] != "" or len(records) != len(paths) + 1:
            raise self._file_error(f"reading {len(paths)} files gave {len(records) - 1}", result)
        return {
            path: record[1:] if record.startswith("+") else None
            for path, record in zip(paths, records[:-1], strict=True)
        }

    async def remove_files(self, paths: Sequence[str], *, timeout: float) -> None:
        """Removes the files (missing ones are fine) in one command."""
        if not paths:
            return
        argv = ["xargs", "-0", "rm", "-f", "--"]
        result = await self._execute(argv, timeout, stdin=_nul_joined(paths))
        if result.returncode != 0:
            raise self._file_error(f"cannot remove {len(paths)} files", result)

    async def close(self) -> None:
        """Stops the master this runner started (one it found running is left alone)."""
        if self._owns_master:
            with contextlib.suppress(ClusterAPIError):
                await self._control("exit")
        self._master_up = self._owns_master = False


async def _reader(fd: int) -> tuple[asyncio.StreamReader, asyncio.BaseTransport]:
    """An asyncio reader on a pipe we made; closing the transport closes the pipe."""
    reader = asyncio.StreamReader()
    transport, _ = await asyncio.get_running_loop().connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(reader), os.fdopen(fd, "rb", buffering=0)
    )
    return reader, transport


async def _feed_and_wait(proc: asyncio.subprocess.Process, data: bytes | None) -> int:
    if data is not None and proc.stdin is not None:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            proc.stdin.write(data)
            await proc.stdin.drain()
        proc.stdin.close()
    return await proc.wait()


def _nul_joined(paths: Sequence[str]) -> bytes:
    bad = [path for path in paths if not path or "\x00" in path]
    if bad:
        raise ValueError(f"not a file path: {bad[0]!r}")
    return b"".join(path.encode() + b"\x00" for path in paths)
