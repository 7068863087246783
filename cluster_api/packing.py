"""Many tasks in one submission: the array of ``submit_many`` and its task records.

A scheduler handles one array of a thousand elements far more cheaply than a thousand
jobs (one submit command instead of a thousand, and a thousand fewer ids to query), yet a
pipeline wants each command to be a job of its own: its own callbacks, exit code, cancel
and journal entry. So the commands go into a tasks file beside the array script, one per
line; element ``i`` runs line ``i``; and each command gets a task record whose state is
the state of its element, copied from the array's record after every poll
(`cluster_api.table.JobTable.settle_tasks`). Only the array itself is ever queried.
"""

from __future__ import annotations

import os
import shlex
from collections.abc import Sequence

from .errors import ClusterAPIError
from .files import JobFiles
from .models import ArrayElement, JobRecord, check_single_line, check_utf8
from .status import Observation

#: ``metadata`` keys of a task record: the id of the array holding it, its element index.
PACKED_IN = "packed_in"
ARRAY_INDEX = "array_index"


def checked_commands(commands: Sequence[str]) -> list[str]:
    """The commands as a list, each a non-empty single line (it becomes one line of the
    tasks file); ValueError naming the first that is not."""
    if isinstance(commands, str):
        raise ValueError("submit_many takes a sequence of commands, not one string")
    checked = list(commands)
    if not checked:
        raise ValueError("submit_many needs at least one command")
    for position, command in enumerate(checked):
        what = f"command {position} of submit_many"
        if not isinstance(command, str) or not command.strip():
            raise ValueError(f"{what} must be a non-empty string, got {command!r}")
        check_single_line(what, command)
        check_utf8(what, command)
    return checked


def chunked(commands: list[str], size: int) -> list[list[str]]:
    """The commands in arrays of at most ``size`` elements."""
    return [commands[i : i + size] for i in range(0, len(commands), size)]


async def write_tasks_file(
    files: JobFiles, directory: str, name: str, commands: Sequence[str]
) -> str:
    """Write the commands, one per line, to a new file in ``directory`` where the job runs
    (through ``files``); its path. Created exclusively (never overwriting another
    submission's), named after the job, readable by its owner only."""
    content = "".join(f"{command}\n" for command in commands)
    counter = 0
    while True:
        counter += 1
        path = os.path.join(directory, f"{name}.tasks.{counter}")
        try:
            await files.write_private(path, content)
        except FileExistsError:
            continue
        except OSError as exc:
            raise ClusterAPIError(f"cannot write tasks file {path}: {exc}") from exc
        return path


def task_line(tasks_path: str) -> str:
    """The command of the array: element ``i`` runs line ``i`` of the tasks file, in the
    script's own shell (so the job's prologue, environment and epilogue apply to it)."""
    quoted = shlex.quote(tasks_path)
    return f'eval "$(sed -n "${{ARRAY_INDEX}}p" {quoted})"'


def task_records(
    array: JobRecord, commands: Sequence[str], element_id: str, metadata: dict[str, object]
) -> list[JobRecord]:
    """One record per command of the array ``array`` (indices from 1); ``element_id`` is
    a format with ``{job_id}`` and ``{index}``, the scheduler's id of one element."""
    return [
        JobRecord(
            job_id=element_id.format(job_id=array.job_id, index=index),
            name=array.name,
            command=command,
            resources=array.resources,
            script_path=array.script_path,
            metadata={**metadata, PACKED_IN: array.job_id, ARRAY_INDEX: index},
            submit_time=array.submit_time,
        )
        for index, command in enumerate(commands, start=1)
    ]


def is_task(record: JobRecord) -> bool:
    return PACKED_IN in record.metadata


def element_observation(element: ArrayElement) -> Observation:
    """What the array's record knows of one element, as a report about its task."""
    return Observation(
        element.status,
        element.exit_code,
        element.exec_host,
        element.max_mem,
        element.submit_time,
        element.start_time,
        element.finish_time,
    )
