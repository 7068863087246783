"""A live view of jobs: progress bars on a terminal, plain lines everywhere else.

``ProgressView`` is what ``await monitor.wait_for(*jobs, progress=True)`` and the
``cluster-api watch`` command draw. On a terminal, with `rich <https://rich.readthedocs.io>`_
installed (``pip install 'py-cluster-api[cli]'``), each job gets a row: a bar per array
with its done/failed/running counts, and the time elapsed. Otherwise (a log file, a pipe,
CI, no rich) it prints one line per job whenever that job's state changes::

    [00:12] capi-arr 1234: 7/10 done, 1 failed, 2 running

The view only reads the records; whoever polls the scheduler calls `ProgressView.update()`
after each cycle and `ProgressView.close()` at the end.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from typing import Any, TextIO

from .models import JobRecord, JobStatus

__all__ = ["ProgressView", "element_counts", "format_elapsed", "job_summary", "rich_available"]


def rich_available() -> bool:
    """Whether the optional ``rich`` package can be imported."""
    try:
        import rich  # noqa: F401
    except ImportError:
        return False
    return True


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is an interactive terminal (False for anything that cannot say)."""
    isatty = getattr(stream, "isatty", None)
    if isatty is None:
        return False
    try:
        return bool(isatty())
    except (OSError, ValueError):  # closed or detached streams
        return False


def format_elapsed(seconds: float) -> str:
    """``MM:SS``, or ``H:MM:SS`` from one hour on."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}:{minutes:02d}:{secs:02d}"
    return f"{minutes:02d}:{secs:02d}"


def element_counts(record: JobRecord) -> dict[JobStatus, int]:
    """How many elements of an array are in each status; elements the scheduler has
    not reported yet count as pending."""
    counts = Counter(element.status for element in record.array_elements.values())
    total = record.element_count or len(record.array_elements)
    counts[JobStatus.PENDING] += max(0, total - len(record.array_elements))
    return {status: counts.get(status, 0) for status in JobStatus}


def _array_summary(record: JobRecord) -> str:
    counts = element_counts(record)
    total = sum(counts.values())
    # An element whose state the scheduler could not tell is still on its way.
    running = counts[JobStatus.RUNNING] + counts[JobStatus.UNKNOWN]
    parts = [
        f"{counts[JobStatus.DONE]}/{total} done",
        f"{counts[JobStatus.FAILED]} failed",
        f"{running} running",
    ]
    if counts[JobStatus.PENDING]:
        parts.append(f"{counts[JobStatus.PENDING]} pending")
    if counts[JobStatus.KILLED]:
        parts.append(f"{counts[JobStatus.KILLED]} killed")
    text = ", ".join(parts)
    if record.status.is_terminal:
        text += f" -> {record.status.value}"
    return text


def _ending(record: JobRecord) -> str:
    """Why a job ended, in a few words (empty for a plain success)."""
    meta = record.metadata
    if meta.get("dependency_failed"):
        culprits = meta["dependency_failed"]
        named = ", ".join(culprits) if isinstance(culprits, list) else culprits
        return f"dependency {named} did not succeed"
    if meta.get("zombie"):
        return "lost by the scheduler"
    details = []
    if record.exit_code is not None:
        details.append(f"exit {record.exit_code}")
    reason = meta.get("exit_reason")
    if reason and record.status is not JobStatus.DONE:
        details.append(str(reason))
    return ", ".join(details)


def job_summary(record: JobRecord) -> str:
    """One short phrase for a job's state: ``running``, ``failed (exit 3)``, or for an
    array ``7/10 done, 1 failed, 2 running``."""
    if record.is_array or record.array_elements:
        return _array_summary(record)
    text = record.status.value
    if record.status.is_terminal:
        ending = _ending(record)
        if ending:
            text += f" ({ending})"
    return text


def display_name(record: JobRecord) -> str:
    """The record's name, or a stand-in for a job tracked by id only."""
    return record.name or "(unnamed)"


class ProgressView:
    """Shows how a set of jobs is doing, on ``stream`` (default: standard error).

    With rich installed and ``stream`` a terminal this is a live display (one bar per
    job array, a spinner-like bar for a single job, done/failed/running counts, elapsed
    time). Otherwise every `update()` prints a line for each job whose state changed
    since the last line printed for it, prefixed with the time since the view started.

    ``use_rich`` forces one mode or the other (True still needs rich installed);
    ``clock`` replaces `time.monotonic`, for tests.
    """

    def __init__(
        self,
        records: Sequence[JobRecord],
        stream: TextIO | None = None,
        *,
        use_rich: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.records = list(records)
        self.stream: TextIO = stream if stream is not None else sys.stderr
        self._clock = clock
        self._started = clock()
        self._last: dict[int, str] = {}
        self._closed = False
        self._status = ""
        if use_rich is None:
            use_rich = is_terminal(self.stream) and rich_available()
        elif use_rich and not rich_available():
            raise RuntimeError("rich is not installed: pip install 'py-cluster-api[cli]'")
        self._rich: _RichDisplay | None = _RichDisplay(self.stream) if use_rich else None
        # A plain view on a terminal may rewrite one status line in place; in a file or
        # a pipe every byte stays, so there it writes change lines only.
        self._transient = self._rich is None and is_terminal(self.stream)
        self.update()

    @property
    def uses_rich(self) -> bool:
        """Whether this view draws a rich live display (else plain lines)."""
        return self._rich is not None

    @property
    def elapsed(self) -> float:
        """Seconds since the view was created."""
        return self._clock() - self._started

    def line(self, record: JobRecord) -> str:
        """The plain line for one record, as printed now."""
        return (
            f"[{format_elapsed(self.elapsed)}] {display_name(record)} {record.job_id}: "
            f"{job_summary(record)}"
        )

    def add(self, record: JobRecord) -> None:
        """Show one more job (``cluster-api watch`` adopts jobs submitted after it started)."""
        if all(r is not record for r in self.records):
            self.records.append(record)
            self.update()

    def set_status(self, text: str) -> None:
        """A line under the jobs that changes between updates, such as when the next
        status query is due, so a long poll interval never looks like a hang. Drawn by
        rich, rewritten in place on a plain terminal, not written to files or pipes."""
        self._status = text
        if self._closed:
            return
        if self._rich is not None:
            self._rich.set_status(text)
        elif self._transient:
            self._draw_status()

    def _status_line(self) -> str:
        return f"[{format_elapsed(self.elapsed)}] {self._status}"

    def _draw_status(self) -> None:
        self.stream.write(f"\r{self._status_line()}{_CLEAR_TO_END}")
        self.stream.flush()

    def update(self) -> None:
        """Redraw (rich) or print the lines of jobs whose state changed (plain)."""
        if self._closed:
            return
        if self._rich is not None:
            for record in self.records:
                self._rich.show(record)
            return
        changed = []
        for record in self.records:
            summary = job_summary(record)
            if self._last.get(id(record)) != summary:
                self._last[id(record)] = summary
                changed.append(self.line(record))
        if not changed:
            return
        lines = "".join(f"{line}\n" for line in changed)
        if self._transient and self._status:
            # Replace the status line by the change lines, then draw it again below them.
            self.stream.write(f"\r{_CLEAR_TO_END}{lines}")
            self._draw_status()
        else:
            self.stream.write(lines)
            self.stream.flush()

    def close(self) -> None:
        """Show the final state and stop the live display (idempotent)."""
        if self._closed:
            return
        self._status = ""
        self.update()
        self._closed = True
        if self._rich is not None:
            self._rich.stop()
        elif self._transient:
            self.stream.write(f"\r{_CLEAR_TO_END}")
            self.stream.flush()

    def __enter__(self) -> ProgressView:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


_CLEAR_TO_END = "\x1b[K"  # ANSI: erase from the cursor to the end of the line

_STATUS_STYLE = {
    JobStatus.PENDING: "yellow",
    JobStatus.RUNNING: "cyan",
    JobStatus.DONE: "green",
    JobStatus.FAILED: "bold red",
    JobStatus.KILLED: "magenta",
    JobStatus.UNKNOWN: "dim",
}


def status_style(status: JobStatus) -> str:
    """The rich style in which a status is shown."""
    return _STATUS_STYLE[status]


class _RichDisplay:
    """The rich half of ProgressView: one progress task per record."""

    def __init__(self, stream: TextIO) -> None:
        from rich.console import Console, RenderableType
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
        from rich.text import Text

        status = Text(style="dim")

        class WithStatus(Progress):
            """The bars, then the status line (rich's documented way to add rows)."""

            def get_renderables(self) -> Iterable[RenderableType]:
                yield from super().get_renderables()
                if status.plain:
                    yield status

        self._status = status
        self._progress = WithStatus(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.fields[detail]}"),
            TimeElapsedColumn(),
            console=Console(file=stream, force_terminal=True),
            refresh_per_second=4,
        )
        self._tasks: dict[int, Any] = {}
        self._stopped: set[int] = set()
        self._progress.start()

    def show(self, record: JobRecord) -> None:
        from rich.markup import escape

        style = status_style(record.status)
        detail = f"[{style}]{escape(job_summary(record))}[/]"
        if record.is_array or record.array_elements:
            counts = element_counts(record)
            total: float | None = float(sum(counts.values()))
            completed = counts[JobStatus.DONE] + counts[JobStatus.FAILED] + counts[JobStatus.KILLED]
        elif record.status is JobStatus.RUNNING:
            total, completed = None, 0  # a pulsing bar: running, length unknown
        else:
            total, completed = 1.0, 1 if record.status.is_terminal else 0
        key = id(record)
        if key not in self._tasks:
            description = f"{escape(display_name(record))} [dim]{escape(record.job_id)}[/]"
            self._tasks[key] = self._progress.add_task(
                description, total=total, completed=completed, detail=detail
            )
        else:
            self._progress.update(self._tasks[key], total=total, completed=completed, detail=detail)
        if record.status.is_terminal and key not in self._stopped:
            self._stopped.add(key)
            self._progress.stop_task(self._tasks[key])  # freezes its elapsed time

    def set_status(self, text: str) -> None:
        self._status.plain = text
        self._progress.refresh()

    def stop(self) -> None:
        self._status.plain = ""
        self._progress.refresh()
        self._progress.stop()
