"""Agent self-metrics: plain counters, cheap to bump from any thread."""

from __future__ import annotations

import threading
from collections import Counter


class Stats:
    """Named counters (drops, exports, verdicts accepted and rejected …)."""

    def __init__(self) -> None:
        self._counts: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counts[name] += n

    def snapshot(self) -> dict[str, int]:
        with self._lock:
            return dict(self._counts)
