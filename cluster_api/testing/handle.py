"""``SimulatorHandle``: the Python handle on one simulated cluster (a state folder),
whatever scheduler it simulates; ``LSFSimulator`` is LSF's."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cluster_api.testing.simkit import store
from cluster_api.testing.simkit.faults import LOOKUP_FAULTS
from cluster_api.testing.simkit.jobs import (
    STAT_FINISHED,
    element_label,
    finish_element,
    sorted_elements,
)
from cluster_api.testing.simkit.procs import process_table, runner_alive, signal_group

__all__ = ["Call", "SimulatorHandle"]


@dataclass(frozen=True)
class Call:
    """One invocation of a simulated command, read back from the call log."""

    command: str
    argv: tuple[str, ...]
    start: float
    end: float | None
    exit_code: int | None

    @property
    def duration(self) -> float | None:
        return None if self.end is None else self.end - self.start


class SimulatorHandle:
    """Control and inspect the simulated cluster whose state lives in ``state_dir``.

    A scheduler's handle subclasses this and names its commands, its state-folder
    variable, its knobs and its launcher; everything here works on the shared state.

    The commands themselves are the wrapper scripts in :attr:`bin_dir`; put that folder
    first on ``PATH`` (or merge :attr:`env` into a subprocess environment) to use them.
    """

    scheduler: ClassVar[str]
    """Name in error messages (``LSF``)."""
    commands: ClassVar[tuple[str, ...]]
    env_state_dir: ClassVar[str]
    defaults: ClassVar[Mapping[str, Any]]
    launcher: ClassVar[str]
    """The ``__main__.py`` the wrapper scripts run by path."""

    def __init__(self, state_dir: str | os.PathLike[str]) -> None:
        self._state_dir = Path(state_dir).resolve()
        store.ensure_layout(str(self._state_dir))

    # ------------------------------------------------------------------ locations

    @property
    def state_dir(self) -> Path:
        return self._state_dir

    @property
    def bin_dir(self) -> Path:
        return self._state_dir / "bin"

    @property
    def env(self) -> dict[str, str]:
        """Variables to add to a subprocess environment so it finds the simulator."""
        path = os.environ.get("PATH", os.defpath)
        parts = [p for p in path.split(os.pathsep) if p and p != str(self.bin_dir)]
        return {
            "PATH": os.pathsep.join([str(self.bin_dir), *parts]),
            self.env_state_dir: str(self._state_dir),
        }

    def write_wrappers(self) -> None:
        """(Re)write one wrapper script per command in :attr:`bin_dir`."""
        self.bin_dir.mkdir(parents=True, exist_ok=True)
        for command in self.commands:
            target = self.bin_dir / command
            text = (
                "#!/bin/sh\n"
                f"{self.env_state_dir}={shlex.quote(str(self._state_dir))}\n"
                f"export {self.env_state_dir}\n"
                f"exec {shlex.quote(sys.executable)} -I -S {shlex.quote(self.launcher)} "
                f'{command} "$@"\n'
            )
            tmp = target.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.chmod(0o755)
            tmp.replace(target)

    # ------------------------------------------------------------------ running commands

    def run(
        self,
        command: str,
        *args: str,
        input: str | None = None,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = 30.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run one simulated command (through its wrapper) and capture its output."""
        if command not in self.commands:
            raise ValueError(f"unknown {self.scheduler} command {command!r}")
        full_env = dict(os.environ)
        full_env.update(env or {})
        full_env.update(self.env)
        return subprocess.run(
            [str(self.bin_dir / command), *args],
            input=input if input is not None else "",
            capture_output=True,
            text=True,
            errors="replace",
            cwd=cwd,
            env=full_env,
            timeout=timeout,
            check=False,
        )

    # ------------------------------------------------------------------ knobs and faults

    def _update_control(
        self, settings: Mapping[str, Any] | None, faults: Mapping[str, Any]
    ) -> None:
        state_dir = str(self._state_dir)
        with store.locked(state_dir):
            control = store.read_json(os.path.join(state_dir, store.CONTROL_FILE), {})
            control.setdefault("settings", {}).update(settings or {})
            current = control.setdefault("faults", {})
            for key, value in faults.items():
                if value is None:
                    current.pop(key, None)
                else:
                    current[key] = value
            store.save_control(state_dir, control)

    def _submit_answer_delay(self, command: str, seconds: float) -> None:
        """Every ``command`` (the submit command) submits the job, then waits ``seconds``
        before printing its answer (0 to stop)."""
        self._update_control(None, {f"{command}_answer_delay": float(seconds) or None})

    def _submit_hang(self, command: str, seconds: float, times: int) -> None:
        """The next ``times`` submissions start the job, then sleep before answering."""
        self._update_control(
            None, {f"{command}_hang": float(seconds), f"{command}_hang_count": times}
        )

    def set(self, **settings: Any) -> None:
        """Change knobs (the scheduler's ``DEFAULT_SETTINGS`` name them)."""
        unknown = sorted(set(settings) - set(self.defaults))
        if unknown:
            raise TypeError(f"unknown simulator setting(s): {', '.join(unknown)}")
        self._update_control(self._normalise(settings), {})

    def _normalise(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Check and canonicalise knob values the scheduler is strict about."""
        return settings

    def settings(self) -> dict[str, Any]:
        return dict(store.load_control(str(self._state_dir), self.defaults)["settings"])

    def outage(self, seconds: float) -> None:
        """Every command prints the scheduler's "down" message and exits 255 for a while."""
        self._update_control(None, {"outage_until": time.time() + seconds})

    def _once(self, key: str, command: str, times: int) -> None:
        if command not in self.commands:
            raise ValueError(f"unknown {self.scheduler} command {command!r}")
        state_dir = str(self._state_dir)
        with store.locked(state_dir):
            control = store.read_json(os.path.join(state_dir, store.CONTROL_FILE), {})
            pending = control.setdefault("faults", {}).setdefault(key, {})
            pending[command] = int(pending.get(command, 0)) + times
            store.save_control(state_dir, control)

    def empty_output_once(self, command: str = "bjobs", times: int = 1) -> None:
        """The next call(s) of ``command`` print nothing and exit 0 (doing nothing)."""
        self._once("empty_once", command, times)

    def garbage_output_once(self, command: str = "bjobs", times: int = 1) -> None:
        """The next call(s) of ``command`` print invalid UTF-8, non-JSON bytes and exit 0."""
        self._once("garbage_once", command, times)

    def slow(self, seconds: float, command: str | None = None) -> None:
        """Every call of ``command`` (all commands if None) sleeps first; 0 to stop."""
        if command is not None and command not in self.commands:
            raise ValueError(f"unknown {self.scheduler} command {command!r}")
        state_dir = str(self._state_dir)
        with store.locked(state_dir):
            control = store.read_json(os.path.join(state_dir, store.CONTROL_FILE), {})
            slow = control.setdefault("faults", {}).setdefault("slow", {})
            slow[command or "*"] = float(seconds)
            store.save_control(state_dir, control)

    def lookup_faults(self, *kinds: str) -> None:
        """The next token lookups (LSF: ``bjobs -o "... job_description"``) fail, one per kind,
        in order: ``down`` (the outage message, exit 255), ``empty`` (nothing, exit 0),
        ``garbage`` (not JSON, exit 0), ``ok`` (the true answer: spaces faults out).
        Other calls answer normally."""
        unknown = sorted(set(kinds) - set(LOOKUP_FAULTS))
        if unknown:
            raise ValueError(f"unknown lookup fault(s): {', '.join(unknown)}")
        state_dir = str(self._state_dir)
        with store.locked(state_dir):
            control = store.read_json(os.path.join(state_dir, store.CONTROL_FILE), {})
            queued = control.setdefault("faults", {}).setdefault("lookup_faults", [])
            queued.extend(kinds)
            store.save_control(state_dir, control)

    def clear_faults(self) -> None:
        state_dir = str(self._state_dir)
        with store.locked(state_dir):
            control = store.read_json(os.path.join(state_dir, store.CONTROL_FILE), {})
            control["faults"] = {}
            store.save_control(state_dir, control)

    # ------------------------------------------------------------------ call log

    def calls(self, command: str | None = None) -> list[Call]:
        """Every invocation so far (oldest first); ``end`` is None while it runs."""
        path = self._state_dir / store.CALLS_FILE
        if not path.exists():
            return []
        started: dict[str, dict[str, Any]] = {}
        ended: dict[str, dict[str, Any]] = {}
        for line in path.read_text().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue
            target = started if record.get("event") == "start" else ended
            target[str(record.get("id"))] = record
        out: list[Call] = []
        for call_id, record in started.items():
            if command is not None and record.get("command") != command:
                continue
            end = ended.get(call_id, {})
            out.append(
                Call(
                    command=str(record.get("command")),
                    argv=tuple(record.get("argv") or ()),
                    start=float(record.get("start") or 0.0),
                    end=float(end["end"]) if "end" in end else None,
                    exit_code=int(end["exit_code"]) if "exit_code" in end else None,
                )
            )
        out.sort(key=lambda call: call.start)
        return out

    def max_concurrency(self, command: str | None = None) -> int:
        """Peak number of invocations (of ``command``, or of all) running at once."""
        now = time.time()
        # Starts come from /proc in clock ticks, rounded down by up to one tick: without
        # this allowance a call that began just after another ended would count as overlap.
        tick = 1.0 / os.sysconf("SC_CLK_TCK")
        events: list[tuple[float, int]] = []
        for call in self.calls(command):
            events.append((call.start + tick, 1))
            events.append((call.end if call.end is not None else now, -1))
        events.sort(key=lambda event: (event[0], event[1]))
        peak = current = 0
        for _, delta in events:
            current += delta
            peak = max(peak, current)
        return peak

    # ------------------------------------------------------------------ jobs

    def jobs(self) -> dict[str, Any]:
        """The raw job table: ``{job_id: record}`` (fields: ``lsfsim.bsub.job_record``)."""
        jobs: dict[str, Any] = store.load_state(str(self._state_dir))["jobs"]
        return jobs

    def job(self, job_id: int | str) -> dict[str, Any]:
        record: dict[str, Any] = self.jobs()[str(job_id)]
        return record

    def status(self, job_id: int | str, index: int | str = 0) -> str:
        """STAT of a job (or of one element of an array)."""
        job = self.job(job_id)
        key = str(index) if job.get("array") else "0"
        return str(job["elements"][key]["stat"])

    def unfinished(self) -> list[str]:
        """Labels (``12`` or ``12[3]``) of every element not yet DONE or EXIT."""
        out: list[str] = []
        for job in self.jobs().values():
            for idx, element in sorted_elements(job):
                if element["stat"] not in STAT_FINISHED:
                    out.append(element_label(job, idx))
        return out

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Wait until every job has finished (raise TimeoutError otherwise)."""
        deadline = time.monotonic() + timeout
        while True:
            left = self.unfinished()
            if not left:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"jobs still unfinished after {timeout}s: {', '.join(left)}")
            time.sleep(0.05)

    def kill_everything(self, timeout: float = 5.0) -> None:
        """Stop every runner and job process of this cluster and mark them EXIT."""
        state_dir = str(self._state_dir)
        state = store.load_state(state_dir)
        for job in state["jobs"].values():
            pid = job.get("runner_pid")
            if runner_alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(int(pid), signal.SIGKILL)
        now = time.time()
        groups: list[tuple[int, str]] = []
        with store.locked(state_dir):
            state = store.load_state(state_dir)
            for job in state["jobs"].values():
                for idx, element in sorted_elements(job):
                    if element["stat"] in STAT_FINISHED:
                        continue
                    if element.get("pgid"):
                        label = element_label(job, idx)
                        groups.append((int(element["pgid"]), f"{state_dir}:{label}"))
                    finish_element(element, "EXIT", 130, "TERM_ADMIN", now)
            store.save_state(state_dir, state)
        for pgid, token in groups:
            signal_group(pgid, signal.SIGKILL, token)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            table = process_table()
            alive = [pgid for pgid, _ in groups if any(pgid in (g, s) for _, g, s, _ in table)]
            if not alive:
                return
            for pgid in alive:
                signal_group(pgid, signal.SIGKILL)
            time.sleep(0.05)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self._state_dir)!r})"
