"""``LSFSimulator``: the Python handle on one simulated LSF cluster (a state folder)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cluster_api.testing.handle import Call, SimulatorHandle
from cluster_api.testing.lsfsim.bkill import request_kill
from cluster_api.testing.lsfsim.bsub import LAUNCHER
from cluster_api.testing.lsfsim.formats import UNIT_KB
from cluster_api.testing.lsfsim.settings import COMMANDS, DEFAULT_SETTINGS, ENV_STATE_DIR

__all__ = ["Call", "LSFSimulator", "install_simulator"]


class LSFSimulator(SimulatorHandle):
    """Control and inspect the simulated LSF cluster whose state lives in ``state_dir``.

    The commands themselves are the wrapper scripts in :attr:`bin_dir`; put that folder
    first on ``PATH`` (or merge :attr:`env` into a subprocess environment) to use them.
    """

    scheduler = "LSF"
    commands = COMMANDS
    env_state_dir = ENV_STATE_DIR
    defaults = DEFAULT_SETTINGS
    launcher = str(Path(LAUNCHER).resolve())

    def submit(self, script: str, *args: str, cwd: str | os.PathLike[str] | None = None) -> int:
        """``bsub [args] < script``; return the job id (raise RuntimeError if rejected)."""
        result = self.run("bsub", *args, input=script, cwd=cwd)
        text = result.stdout.strip()
        if result.returncode != 0 or not text.startswith("Job <"):
            raise RuntimeError(f"bsub failed ({result.returncode}): {result.stderr.strip()}")
        return int(text[5 : text.index(">")])

    def set(self, **settings: Any) -> None:
        """Change knobs: clean_period, display_year, parse_script, slots, unit_for_limits,
        seconds_per_minute, job_terminate_interval, mem_sample_interval, max_array_size."""
        super().set(**settings)

    def _normalise(self, settings: dict[str, Any]) -> dict[str, Any]:
        if "unit_for_limits" in settings:
            unit = str(settings["unit_for_limits"]).upper()
            if unit not in UNIT_KB:
                raise ValueError(f"unknown unit {settings['unit_for_limits']!r}")
            settings["unit_for_limits"] = unit
        return settings

    def bsub_answer_delay(self, seconds: float) -> None:
        """Every bsub submits the job, then waits ``seconds`` before printing its answer
        (0 to stop): a client killed meanwhile never learns the id of a job that exists."""
        self._submit_answer_delay("bsub", seconds)

    def bsub_hang_after_submit(self, seconds: float, times: int = 1) -> None:
        """The next bsub call(s) submit and start the job, then sleep before printing."""
        self._submit_hang("bsub", seconds, times)

    def kill_as_admin(self, job_id: int | str, index: int | str | None = None) -> None:
        """Kill a job as the LSF administrator would: it ends EXIT with TERM_ADMIN."""
        keys = None if index is None else [str(index)]
        request_kill(str(self._state_dir), str(job_id), keys, reason="TERM_ADMIN", who="lsfadmin")


def install_simulator(state_dir: str | os.PathLike[str]) -> LSFSimulator:
    """Create a simulated cluster in ``state_dir`` with its wrapper commands in ``bin``."""
    simulator = LSFSimulator(state_dir)
    simulator.write_wrappers()
    return simulator
