"""``FluxSimulator``: the Python handle on one simulated Flux instance (a state folder)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cluster_api.testing.fluxsim.settings import COMMANDS, DEFAULT_SETTINGS, ENV_STATE_DIR
from cluster_api.testing.fluxsim.submitting import LAUNCHER
from cluster_api.testing.handle import SimulatorHandle

__all__ = ["FluxSimulator", "install_flux_simulator"]


class FluxSimulator(SimulatorHandle):
    """Control and inspect the simulated Flux instance whose state lives in ``state_dir``.

    Its one command is ``flux`` (in :attr:`bin_dir`); faults given for ``"flux"`` hit
    every subcommand."""

    scheduler = "Flux"
    commands = COMMANDS
    env_state_dir = ENV_STATE_DIR
    defaults = DEFAULT_SETTINGS
    launcher = str(Path(LAUNCHER).resolve())

    def set(self, **settings: Any) -> None:
        """Change knobs: clean_period, slots, seconds_per_minute, job_terminate_interval,
        mem_sample_interval."""
        super().set(**settings)

    def flux_job(self, job_id: str) -> dict[str, Any]:
        """The simulator's record of the job printed as ``job_id``."""
        for job in self.jobs().values():
            if job["jobid"] == job_id:
                return dict(job)
        raise KeyError(job_id)


def install_flux_simulator(state_dir: str | Path) -> FluxSimulator:
    """Create a simulated Flux instance in ``state_dir`` with its ``flux`` in ``bin``."""
    simulator = FluxSimulator(state_dir)
    simulator.write_wrappers()
    return simulator
