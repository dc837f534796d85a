"""Per-function feature windows built from cost events.

A function's first window is aligned to a multiple of the window length at its
first event; windows are then consecutive and closed by the wall clock (plus a
grace period), and every event counts in the window open when it arrives. A
function that was seen but is idle gets empty windows, so a drop to zero shows.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from schemas import CostEvent, Outcome
from streams.detectors.base import Features


@dataclass(slots=True)
class Window:
    """Aggregates of one function over ``[start_ns, end_ns)``."""

    start_ns: int
    end_ns: int
    attempts: int = 0
    invocations: int = 0
    blocked: int = 0
    errors: int = 0
    cold_starts: int = 0
    cost_usd: float = 0.0
    duration_ms: float = 0.0
    version: str = ""
    team: str = ""

    def add(self, event: CostEvent) -> None:
        self.attempts += 1
        self.cost_usd += event.cost_usd
        if event.outcome in (Outcome.THROTTLED, Outcome.ISOLATED):
            self.blocked += 1
            return
        self.invocations += 1
        self.errors += event.outcome is Outcome.ERROR
        self.cold_starts += event.cold_start
        self.duration_ms += event.duration_ms
        self.version, self.team = event.version, event.team

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def features(self) -> Features:
        """Rates per second and per-invocation means, as detectors see them."""
        runs = max(self.invocations, 1)
        return {
            "attempts": float(self.attempts),
            "attempts_per_s": self.attempts / self.seconds,
            "invocations_per_s": self.invocations / self.seconds,
            "cost_per_s": self.cost_usd / self.seconds,
            "cost_per_invocation": self.cost_usd / runs if self.invocations else 0.0,
            "error_rate": self.errors / runs,
            "duration_ms_mean": self.duration_ms / runs,
        }


@dataclass
class WindowAggregator:
    """Open windows per function; :meth:`close_due` hands back the finished ones."""

    window_ns: int
    grace_ns: int = 500_000_000
    idle_windows: int = 30
    _open: dict[str, Window] = field(default_factory=dict)
    _idle: dict[str, int] = field(default_factory=dict)

    def add(self, event: CostEvent) -> None:
        window = self._open.get(event.function)
        if window is None:
            start = event.time_unix_nano - event.time_unix_nano % self.window_ns
            window = self._open[event.function] = Window(start, start + self.window_ns)
        window.add(event)  # early and late events count in the open window
        self._idle[event.function] = 0

    def close_due(self, now_ns: int) -> list[tuple[str, Window]]:
        """Windows whose end plus grace is past ``now_ns``, oldest first per function."""
        closed = []
        for function, window in list(self._open.items()):
            if window.end_ns + self.grace_ns > now_ns:
                continue
            closed.append((function, window))
            idle = self._idle.get(function, 0) + (window.attempts == 0)
            self._idle[function] = idle
            if idle >= self.idle_windows:
                del self._open[function]
                continue
            self._open[function] = Window(window.end_ns, window.end_ns + self.window_ns,
                                          version=window.version, team=window.team)
        return closed
