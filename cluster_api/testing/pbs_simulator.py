"""``PBSSimulator``: the Python handle on one simulated PBS Pro or Torque server."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from cluster_api.testing.handle import SimulatorHandle
from cluster_api.testing.pbssim.qsub import LAUNCHER
from cluster_api.testing.pbssim.settings import COMMANDS, DEFAULT_SETTINGS, ENV_STATE_DIR

__all__ = ["PBSSimulator", "install_pbs_simulator"]

FLAVOURS = ("pbs", "torque")


class PBSSimulator(SimulatorHandle):
    """Control and inspect the simulated PBS server whose state lives in ``state_dir``;
    ``set(flavour="torque")`` makes it answer as Torque."""

    scheduler = "PBS"
    commands = COMMANDS
    env_state_dir = ENV_STATE_DIR
    defaults = DEFAULT_SETTINGS
    launcher = str(Path(LAUNCHER).resolve())

    def set(self, **settings: Any) -> None:
        """Change knobs: flavour, server, history, clean_period, slots,
        seconds_per_minute, job_terminate_interval, mem_sample_interval, max_array_size."""
        super().set(**settings)

    def _normalise(self, settings: dict[str, Any]) -> dict[str, Any]:
        if settings.get("flavour", "pbs") not in FLAVOURS:
            raise ValueError(f"flavour must be one of {FLAVOURS}, got {settings['flavour']!r}")
        return settings

    def qsub_answer_delay(self, seconds: float) -> None:
        """Every qsub submits the job, then waits ``seconds`` before printing its id
        (0 to stop): a client killed meanwhile never learns the id of a job that exists."""
        self._submit_answer_delay("qsub", seconds)

    def qsub_hang_after_submit(self, seconds: float, times: int = 1) -> None:
        """The next qsub call(s) submit and start the job, then sleep before printing."""
        self._submit_hang("qsub", seconds, times)


def install_pbs_simulator(state_dir: str | os.PathLike[str], flavour: str = "pbs") -> PBSSimulator:
    """Create a simulated server in ``state_dir`` with its wrapper commands in ``bin``."""
    simulator = PBSSimulator(state_dir)
    simulator.write_wrappers()
    simulator.set(flavour=flavour)
    return simulator
