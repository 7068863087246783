"""Torque: the classic PBS commands, answered in XML (``qstat -f -x``), with no history.

`Torque` is `PBS` with Torque's formats (`.torque_formats`): ``-t`` arrays and
``$PBS_ARRAYID``, ``-d`` for the work dir (so the script need not move itself), no
``-f`` on qsub. Finished jobs stay in ``qstat`` as ``C`` for ``keep_completed``
seconds; after that only the exit files tell how they ended.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..engine import BatchExecutor
from ..history import HistoryQuery
from ..jobspec import JobSpec
from ..options import BatchOptions
from ..scheduler import Command, CommandAnswer
from ..status import QueryResult
from . import pbs_formats, torque_formats
from .pbs import PBS


class Torque(PBS):
    """Torque (and PBS versions that answer ``qstat -f -x`` in XML), as translation."""

    name = "torque"
    array_index_variable = torque_formats.ARRAY_INDEX_VARIABLE
    history_source = "qstat"
    answer_mark = "<Data>"

    def options(self, spec: JobSpec) -> list[str]:
        return torque_formats.directives(spec)

    def preamble(self, spec: JobSpec) -> list[str]:
        return torque_formats.work_dir_lines(spec.resources.work_dir)

    def submit_argv(self, script_path: str, extra: list[str]) -> tuple[list[str], str | None]:
        return torque_formats.submit_argv(script_path, extra, use_stdin=self.config.use_stdin)

    def lookup_command(self, name: str, token: str) -> Command:
        return Command(torque_formats.lookup_argv())

    def parse_lookup(self, answer: CommandAnswer, token: str) -> str | None:
        self._check(answer)
        name = token.rpartition(".")[0]  # the token is "<job name>.<counter>"
        return torque_formats.parse_lookup(answer.stdout, answer.stderr, name, token)

    def status_argv(self, ids: Sequence[str]) -> list[str]:
        return torque_formats.status_argv(ids)

    def read_status(self, stdout: str, stderr: str, wanted: Sequence[str]) -> QueryResult:
        return torque_formats.parse_status(stdout, stderr, wanted)

    def history_command(self, query: HistoryQuery) -> None:
        """None: Torque keeps no history to ask."""
        return None

    def listing_command(self, prefix: str | None) -> Command:
        return Command(torque_formats.listing_argv())

    def read_listing(self, stdout: str) -> pbs_formats.Listing:
        return torque_formats.parse_listing(stdout, None)


class TorqueExecutor(BatchExecutor):
    """Runs jobs through Torque."""

    scheduler_class = Torque
    options = BatchOptions
    scheduler: Torque
