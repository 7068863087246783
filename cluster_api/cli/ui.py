"""How the ``cluster-api`` command shows things: exit codes, messages, tables and the
one-line texts of ``watch``. Nothing here asks the scheduler."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any, TextIO

import yaml

from ..models import JobRecord, JobStatus
from ..monitor import JobMonitor
from ..progress import display_name, is_terminal, job_summary, rich_available, status_style

PROG = "cluster-api"
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class UsageError(Exception):
    """A mistake in the command line or the configuration: exit code 2."""


class Ui:
    """Where output goes and how it looks: rich on a terminal (if installed), else plain."""

    def __init__(self, plain: bool = False, stdout: TextIO | None = None) -> None:
        self.out: TextIO = stdout if stdout is not None else sys.stdout
        self.rich = not plain and is_terminal(self.out) and rich_available()

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    @staticmethod
    def note(text: str) -> None:
        print(f"{PROG}: {text}", file=sys.stderr, flush=True)

    @staticmethod
    def warning(text: str) -> None:
        print(f"{PROG}: warning: {text}", file=sys.stderr, flush=True)

    @staticmethod
    def error(text: str) -> None:
        print(f"{PROG}: error: {text}", file=sys.stderr, flush=True)

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], styles: Any) -> None:
        """A table; ``styles[i]`` is the rich style of row ``i``'s status column (col 2)."""
        if self.rich:
            from rich.console import Console
            from rich.table import Table
            from rich.text import Text

            table = Table(*headers, box=None, header_style="bold", pad_edge=False)
            for row, style in zip(rows, styles, strict=True):
                cells = [Text(cell) for cell in row]
                cells[2].stylize(style)
                table.add_row(*cells)
            Console(file=self.out).print(table)
            return
        widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(headers)]
        for line in (headers, *rows):
            self.print(
                "  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip()
            )


def exit_code(records: Sequence[JobRecord]) -> int:
    """1 when a job failed or was killed, else 0."""
    failed = any(r.status in (JobStatus.FAILED, JobStatus.KILLED) for r in records)
    return EXIT_FAILED if failed else EXIT_OK


def _time(record: JobRecord) -> str:
    moment = record.submit_time or record.start_time
    return moment.astimezone().strftime("%Y-%m-%d %H:%M:%S") if moment else "-"


def print_status_table(ui: Ui, records: Sequence[JobRecord], unknown: Sequence[str] = ()) -> None:
    """The jobs' table; ids in ``unknown`` get a row that says so."""
    headers = ("JOB ID", "NAME", "STATUS", "EXIT", "PROGRESS", "HOST", "SUBMITTED")
    rows = []
    for r in records:
        progress = job_summary(r) if r.is_array or r.array_elements else "-"
        rows.append(
            (
                r.job_id,
                display_name(r),
                r.status.value,
                "-" if r.exit_code is None else str(r.exit_code),
                progress,
                r.exec_host or "-",
                _time(r),
            )
        )
    rows += [(job_id, "-", JobStatus.UNKNOWN.value, "-", "-", "-", "-") for job_id in unknown]
    styles = [status_style(r.status) for r in records]
    ui.table(headers, rows, styles + [status_style(JobStatus.UNKNOWN)] * len(unknown))


def report_unknown(executor_name: str, job_ids: Sequence[str], consequence: str = "") -> None:
    """Say, on stderr, which ids no source knows."""
    for job_id in job_ids:
        Ui.error(
            f"job {job_id}: unknown (not in this config's journal, and the {executor_name} "
            f"executor does not report it){consequence}"
        )


def next_query_text(monitor: JobMonitor, now: datetime) -> str:
    """When the monitor asks the scheduler next (or why it is late), for the status line."""
    failures = monitor.consecutive_failures
    if failures:
        plural = "query" if failures == 1 else f"{failures} queries"
        return f"the scheduler did not answer the last {plural}; retrying with backoff"
    last = monitor.last_successful_poll
    if last is None:
        return "asking the scheduler..."
    left = round(monitor.poll_interval - (now - last).total_seconds())
    every = f"every {monitor.poll_interval:g} s"
    return f"next query in {left} s ({every})" if left > 0 else f"asking the scheduler ({every})"


def summary_line(records: Sequence[JobRecord]) -> str:
    """``2 jobs: 1 done, 1 failed`` (and the failed elements of arrays)."""
    counts: dict[str, int] = {}
    for r in records:
        counts[r.status.value] = counts.get(r.status.value, 0) + 1
    noun = "job" if len(records) == 1 else "jobs"
    text = f"{len(records)} {noun}: " + ", ".join(f"{n} {s}" for s, n in counts.items())
    for r in records:
        failed = r.failed_element_indices
        if failed:
            shown = ", ".join(map(str, failed[:20])) + (", …" if len(failed) > 20 else "")
            text += f"; {display_name(r)} {r.job_id} failed elements: {shown}"
    return text


def yaml_scalar(value: Any) -> str:
    """``value`` as it would be written after ``key:`` in YAML, on one line."""
    text = yaml.safe_dump({"k": value}, default_flow_style=True, width=10**6).strip()
    return text[len("{k: ") : -1]
