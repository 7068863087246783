"""When the monitor polls next: sooner after something happened, ``poll_interval`` else.

A job that ends two seconds after it was submitted should not wait for a ten-second
poll, yet a scheduler must not be asked more often because jobs are many. So after a
submit or an observed change of state the next three polls come ``poll_floor`` seconds
apart, each quiet poll after that doubles the wait (1, 1, 1, 2, 4, 8 s), and from
``poll_interval`` on it stays there: a quiet ten-minute job costs one query per
``poll_interval`` plus a handful at each change. The floor polls are for short jobs: one
seen starting at a poll (it started up to a floor earlier, and a busy scheduler may show
it a little late) that ends two seconds later is seen within a floor of its end. With
only two, a 2 s job's end fell just past the second one often enough to put the median
callback 1.5 s after the end (`benchmarks/throughput.py`, 20 jobs). Every poll is still
one status command for every job.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .config import ClusterConfig


@dataclass
class PollSchedule:
    """The waits between polls; ``adaptive=False`` keeps ``interval`` always."""

    interval: float
    floor: float = 1.0
    adaptive: bool = True
    #: Quiet polls since the last activity; None once backed off to ``interval``.
    _quiet: int | None = field(default=None, repr=False)

    @classmethod
    def from_config(cls, config: ClusterConfig, interval: float) -> PollSchedule:
        return cls(interval, min(config.poll_floor, interval), config.adaptive_polling)

    def next_wait(self, activity: bool) -> float:
        """The wait before the next poll, after a successful one; ``activity``: a submit
        or a change of state happened since the poll before."""
        if not self.adaptive:
            return self.interval
        if activity:
            self._quiet = 0
        elif self._quiet is not None:
            self._quiet += 1
        if self._quiet is None:
            return self.interval
        wait: float = self.floor * 2.0 ** max(0, self._quiet - 2)
        if wait >= self.interval:
            self._quiet = None
            return self.interval
        return wait

    def rest_of_floor(self, since_last_poll: float) -> float:
        """How much longer to wait when woken ``since_last_poll`` seconds after the last
        poll began (a submit wakes the monitor): adaptive polls are never closer than
        ``floor``."""
        return max(0.0, self.floor - since_last_poll) if self.adaptive else 0.0
