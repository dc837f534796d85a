"""Agent self-metrics: plain counters, cheap to bump from any thread.

Read them with :func:`agents.stats`; telemetry drops are also reported on the
``governor.agent`` logger once a minute while they happen.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter

log = logging.getLogger("governor.agent")


class Stats:
    """Named counters (drops, exports, verdicts accepted and rejected …)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._reported: dict[str, int] = {}

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)

    def report(self) -> None:
        """Log the drops since the last report, if any (one WARNING line)."""
        now = self.snapshot()
        previous, self._reported = self._reported, now
        drops = {k: v - previous.get(k, 0) for k, v in now.items()
                 if k.startswith("dropped_") and v > previous.get(k, 0)}
        if drops:
            log.warning("Governor agent dropped %d telemetry records (%s); the handler was "
                        "not affected. Check GOVERNOR_KAFKA_BOOTSTRAP and the broker.",
                        sum(drops.values()),
                        ", ".join(f"{k.removeprefix('dropped_')}: {v}" for k, v in drops.items()))
