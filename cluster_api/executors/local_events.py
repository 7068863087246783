"""A local job's events, applied to its record.

The supervisor (`.local_supervisor`) plays the scheduler for the local executor and its
events file is the scheduler's answer; this is the translation of one event into the
record's change. A line the supervisor cannot have written (a damaged file) is skipped and
logged, and the events after it still apply.
"""

from __future__ import annotations

import logging
from datetime import datetime, timezone
from typing import Any

from ..models import ArrayElement, JobRecord, JobStatus
from ..status import Observation, update_record
from .local_supervisor import EVENT_KINDS

logger = logging.getLogger("cluster_api")


def event_time(event: dict[str, Any]) -> datetime | None:
    value = event.get("time")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return datetime.fromtimestamp(value, timezone.utc)
    return None


def apply_event(record: JobRecord, event: dict[str, Any]) -> bool:
    """Apply one event to ``record``; True for the supervisor's last one (``finished``),
    which leaves closing the job to the executor."""
    kind, when = event.get("event"), event_time(event)
    index = event.get("index")
    culprits = event.get("dependency_failed")
    if (
        kind not in EVENT_KINDS
        or not (index is None or type(index) is int)
        or not (culprits is None or isinstance(culprits, list))
    ):
        logger.warning("local job %s: skipped an unreadable event %r", record.job_id, event)
        return False
    target: JobRecord | ArrayElement | None = (
        record if index is None else record.array_elements.get(index)
    )
    if target is None:
        logger.warning(
            "local job %s: skipped an event for unknown element %r", record.job_id, index
        )
        return False
    if kind == "start":
        update_record(
            target, Observation(JobStatus.RUNNING, exec_host=event.get("host"), start_time=when)
        )
        if isinstance(event.get("pid"), int):
            if index is None:
                record.metadata["pid"] = event["pid"]
            else:
                record.metadata.setdefault("pids", {})[str(index)] = event["pid"]
    elif kind == "end":
        _apply_end(record, target, event, when)
    elif kind == "error":
        record.metadata["executor_error"] = event.get("message")
        logger.error("local job %s: supervisor failed: %s", record.job_id, event.get("message"))
    return bool(kind == "finished")


def _apply_end(
    record: JobRecord,
    target: JobRecord | ArrayElement,
    event: dict[str, Any],
    when: datetime | None,
) -> None:
    try:
        status = JobStatus(event.get("status"))
    except ValueError:
        logger.warning("local job %s: skipped an unreadable event %r", record.job_id, event)
        return
    code, reason = event.get("exit_code"), event.get("reason")
    reason = reason if isinstance(reason, str) else None
    update_record(
        target,
        Observation(
            status,
            exit_code=code if isinstance(code, int) else None,
            finish_time=when,
            reason=reason,
        ),
    )
    if reason and status is not JobStatus.DONE and target is not record:
        record.metadata.setdefault("exit_reason", reason)
