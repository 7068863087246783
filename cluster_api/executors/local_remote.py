"""The local executor on another machine: a workstation reached over ``ssh`` as the
"scheduler" (issue #15).

The jobs are the same supervisors as on this machine (:mod:`.local_supervisor`), started
on the remote host, so everything the supervisor guarantees holds there. What changes is
how this process follows them: no pipe can wake it across ssh, so each poll reads every
active job's events file (with the supervisors' ``/proc/PID/cmdline`` and the exit files)
in one remote command, and a cancel is one remote command that checks each PID is still
a supervisor of that job's script, signals it and waits until it is gone.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import posixpath
import re
from pathlib import Path
from typing import Any

from ..errors import ClusterAPIError, CommandTimeoutError, SubmitError, UnknownJobError
from ..files import exit_paths
from ..jobspec import JobSpec
from ..models import JobRecord
from ..remote import SSHError, SSHFailure
from ..status import QueryResult
from .local import CANCEL_MARGIN_SECONDS, LocalExecutor, _pid
from .local_supervisor import KILL_GRACE_SECONDS, SUPERVISOR_PATH, events_path, parse_events

logger = logging.getLogger("cluster_api")

#: The folder (under the remote work_dir, else the remote home's default one) that holds
#: the supervisor's copy and the slot files.
REMOTE_STATE_FOLDER = ".cluster-api"
#: What every copy of the supervisor has in its path, whichever work_dir or version put
#: it there: how a job submitted under another config or release is still recognised.
SUPERVISOR_MARK = f"/{REMOTE_STATE_FOLDER}/local_supervisor-"
_COPY_NAME = re.compile(re.escape(SUPERVISOR_MARK) + r"[0-9a-f]+\.0\.sh")
#: Tenths of a second a cancel waits for the signalled supervisors before SIGKILL.
_CANCEL_TICKS = int((KILL_GRACE_SECONDS + CANCEL_MARGIN_SECONDS) * 10)

# One line each, for `sh -c` behind any login shell (see `.remote`). Start: detached in a
# session of its own, every stream closed, so ssh returns at once; prints the PID. A
# missing program is exit 127 here (named by the runner), not a PID that never ran.
_START = (
    'cd "$1" || exit 1; shift; for p in setsid "$1"; do command -v "$p" >/dev/null || '
    '{ echo "$p: not found" >&2; exit 127; }; done; '
    'setsid "$@" </dev/null >/dev/null 2>&1 & echo $!'
)
# Cancel: $1 signal, $2 a text its command line must hold, $3 ticks to wait, then PID/script
# pairs (the command line must name that script; an empty one: any). Prints "gone",
# "refused", "signalled" or "killed" and the PID.
# A zombie is gone: nobody may reap a supervisor whose starting shell has exited.
_CANCEL = (
    'sig=$1; sup=$2; ticks=$3; shift 3; live=""; '
    'words() { tr "\\000" "\\n" < "/proc/$1/cmdline" 2>/dev/null; }; '
    'has() { words "$1" | grep -qxF -- "$2"; }; holds() { words "$1" | grep -qF -- "$2"; }; '
    'alive() { [ -e "/proc/$1" ] && ! grep -q ") Z " "/proc/$1/stat" 2>/dev/null; }; '
    "while [ $# -gt 1 ]; do p=$1; s=$2; shift 2; "
    'if ! alive "$p"; then echo "gone $p"; '
    'elif holds "$p" "$sup" && { [ -z "$s" ] || has "$p" "$s"; }; then '
    'kill -s "$sig" -- "-$p" 2>/dev/null; echo "signalled $p"; live="$live $p"; '
    'else echo "refused $p"; fi; done; n=0; '
    'while [ -n "$live" ]; do rest=""; '
    'for p in $live; do if alive "$p"; then rest="$rest $p"; fi; done; '
    'live=$rest; [ -z "$live" ] && break; n=$((n + 1)); '
    'if [ "$n" -gt "$ticks" ]; then for p in $live; do '
    'kill -s KILL -- "-$p" 2>/dev/null; echo "killed $p"; done; break; fi; sleep 0.1; done'
)


class RemoteLocalExecutor(LocalExecutor):
    """`LocalExecutor` whose jobs run on the config's ``ssh`` host."""

    _supervisor_copy: str | None = None  # the remote supervisor's path, once known
    _supervisor_written = False

    def _after_register(self, record: JobRecord) -> None:
        """Nothing to watch here: the supervisor runs on the other side."""

    async def _supervisor(self) -> str:
        """Where the supervisor's copy is on the remote host (named by its content, so
        every version and every executor finds its own)."""
        if self._supervisor_copy is None:
            base = await self.files.absolute(self.config.work_dir)
            digest = hashlib.sha256(_supervisor_source().encode()).hexdigest()[:16]
            self._supervisor_copy = f"{base.rstrip('/')}{SUPERVISOR_MARK}{digest}.0.sh"
        return self._supervisor_copy

    async def _install_supervisor(self) -> str:
        path = await self._supervisor()
        if not self._supervisor_written:
            folder, name = posixpath.split(path)
            with contextlib.suppress(FileExistsError):  # written before: same name, same text
                await self.files.write_script(folder, _supervisor_source(), name[:-5], 0)
            self._supervisor_written = True
        return path

    # -- submission --------------------------------------------------------------------
    async def _submit_script(self, spec: JobSpec, script_path: str) -> str:
        supervisor = await self._install_supervisor()
        slots = posixpath.join(posixpath.dirname(supervisor), "slots")
        plan = self._plan(spec, slots, None)
        argv = ["python3", "-I", "-S", supervisor, script_path, json.dumps(plan)]
        try:
            out = await self._run(["sh", "-c", _START, "sh", plan["work_dir"], *argv])
        except ClusterAPIError as exc:  # after a lost answer it may have started
            lost = isinstance(exc, CommandTimeoutError) or (
                isinstance(exc, SSHError) and exc.cause is SSHFailure.CONNECTION_LOST
            )
            message = f"cannot start local job {spec.name}: {exc}"
            raise SubmitError(message, job_may_exist=lost) from exc
        job_id = out.strip()
        if _pid(job_id) is None:
            raise SubmitError(f"starting {spec.name} answered {job_id[:200]!r}, not a PID")
        return job_id

    # -- status ------------------------------------------------------------------------
    def _new_events(self, job_id: str, script_path: str) -> list[dict[str, Any]]:
        """The events past those applied, from what the last remote read brought."""
        path = events_path(script_path)
        text = self.files.read_text(path)
        offset = self._offsets.get(job_id, 0)
        events, used = parse_events((text or "").encode()[offset:], path)
        self._offsets[job_id] = offset + used
        return events

    async def _query(self, active: dict[str, JobRecord]) -> QueryResult:
        """One remote read: each supervisor's command line first, then the events files,
        so a supervisor seen gone has its last events read after it ended."""
        cmdlines = {j: f"/proc/{j}/cmdline" for j in active if _pid(j) and j not in self._finished}
        events = [events_path(r.script_path) for r in active.values() if r.script_path]
        await self.files.refresh([*cmdlines.values(), *events, *exit_paths(active.values())])
        result = QueryResult()
        for job_id, record in active.items():
            cmdline = self.files.read_text(cmdlines[job_id]) if job_id in cmdlines else None
            if record.script_path is None and cmdline is not None:
                record.script_path = _script_in(cmdline)  # tracked by pid alone
            self._refresh(job_id)
            if job_id not in self._finished and not _supervises(cmdline, record):
                continue  # gone unfinished: exit files, then the zombie check, decide
            result.add_seen(record)
        return result

    # -- cancellation ------------------------------------------------------------------
    async def _cancel_ids(self, job_ids: list[str], *, done: bool) -> None:
        """Signal the supervisors in one remote command that returns once they are gone;
        an id that is not a supervisor of that job is refused without a signal."""
        pairs: list[str] = []
        for job_id in job_ids:
            record = self._jobs.get(job_id)
            if job_id in self._finished or _pid(job_id) is None:
                continue
            script = record.script_path if record is not None else None
            pairs += [job_id, script or ""]
        if not pairs:
            return
        said = await self._signal("USR1" if done else "TERM", SUPERVISOR_MARK, _CANCEL_TICKS, pairs)
        refused = [j for j in job_ids if said.get(j) == "refused"]
        refused += [j for j in job_ids if said.get(j) == "gone" and j not in self._jobs]
        killed = [j for j in job_ids if said.get(j) == "killed"]
        self._force_killed.update(killed)
        tracked = [self._jobs[j] for j in job_ids if j in self._jobs]
        await self.files.refresh([events_path(r.script_path) for r in tracked if r.script_path])
        for record in tracked:
            self._refresh(record.job_id)
        for record in (self._jobs[j] for j in killed if j in self._jobs):
            logger.error("local job %s: supervisor ignored the cancel; killed", record.job_id)
            await self._kill_elements(record)
            if record.job_id not in self._finished:
                self._supervisor_lost(record.job_id, "killed by cancel")
        if refused:
            raise UnknownJobError(
                f"not cancelled: {', '.join(refused)} is not the pid of a running local job "
                f"of cluster_api on {self.config.ssh} (nothing was signalled)",
                refused,
            )

    async def _signal(self, sig: str, owner: str, ticks: int, pairs: list[str]) -> dict[str, str]:
        """Run the cancel script: ``pairs`` are PID, script; a PID is signalled only when
        its command line names ``owner`` (and the script, when one is given). Returns what
        became of each PID."""
        argv = ["sh", "-c", _CANCEL, "sh", sig, owner, str(ticks), *pairs]
        timeout = self.config.command_timeout + ticks / 10
        out = await self._run(argv, timeout=timeout)
        said: dict[str, str] = {}
        for line in out.splitlines():
            what, _, pid = line.partition(" ")
            said[pid] = what
        return said

    async def _kill_elements(self, record: JobRecord) -> None:
        """SIGKILL the element groups a killed supervisor had started (from its events),
        each only while its command line still names the job's script."""
        script = record.script_path
        text = self.files.read_text(events_path(script)) if script else None
        if script is None or text is None:
            return
        events, _ = parse_events(text.encode(), events_path(script))
        pids = {e["pid"] for e in events if e.get("event") == "start" and type(e.get("pid")) is int}
        pairs = [word for pid in sorted(pids) for word in (str(pid), script)]
        if pairs:
            await self._signal("KILL", script, 0, pairs)


def _supervisor_source() -> str:
    return Path(SUPERVISOR_PATH).read_text(encoding="utf-8")


def _supervises(cmdline: str | None, record: JobRecord) -> bool:
    """Whether a command line (its NULs dropped by the remote read) is a supervisor of
    this record's script."""
    if cmdline is None or record.script_path is None:
        return False
    return _script_in(cmdline) == record.script_path


def _script_in(cmdline: str) -> str | None:
    """The script a supervisor's command line names: between the supervisor's copy and
    its plan (a JSON object that starts with its work_dir)."""
    found = _COPY_NAME.search(cmdline)
    if found is None:
        return None
    rest = cmdline[found.end() :]
    end = rest.find('{"work_dir"')
    return rest[:end] if end > 0 else None
