"""Per-function feature windows built from cost events.

A function's first window is aligned to a multiple of the window length at its
first event; windows are then consecutive and closed by the wall clock (plus a
grace period), and every event counts in the window open when it arrives. A
function that was seen but is idle gets empty windows, so a drop to zero shows.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field

from schemas import CostEvent, Outcome
from streams.detectors.base import Features

SAMPLES = 256
"""Invocations per window kept for quantiles (a uniform reservoir sample)."""


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile of ``values`` (nearest rank; 0.0 when empty).

    >>> quantile([5.0, 1.0, 3.0, 2.0, 4.0], 0.5), quantile([5.0, 1.0, 3.0, 2.0, 4.0], 0.95)
    (3.0, 5.0)
    """
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


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
    error_cost_usd: float = 0.0
    cold_cost_usd: float = 0.0  # cost of the cold-started calls, init included
    warm_ok: int = 0  # successful calls on a warm instance
    warm_ok_cost_usd: float = 0.0
    duration_ms: float = 0.0
    egress_bytes: int = 0
    version: str = ""
    team: str = ""
    samples: list[tuple[float, float, bool]] = field(default_factory=list)  # cost, ms, cold
    rng: random.Random | None = None

    def add(self, event: CostEvent) -> None:
        self.attempts += 1
        self.cost_usd += event.cost_usd
        if event.outcome in (Outcome.THROTTLED, Outcome.ISOLATED):
            self.blocked += 1
            return
        self.invocations += 1
        if event.outcome is Outcome.ERROR:
            self.errors += 1
            self.error_cost_usd += event.cost_usd
        self.cold_starts += event.cold_start
        if event.cold_start:
            self.cold_cost_usd += event.cost_usd
        elif event.outcome is not Outcome.ERROR:
            self.warm_ok += 1
            self.warm_ok_cost_usd += event.cost_usd
        self.duration_ms += event.duration_ms
        self.egress_bytes += event.egress_bytes
        self.version, self.team = event.version, event.team
        sample = (event.cost_usd, event.duration_ms, event.cold_start)
        if len(self.samples) < SAMPLES:
            self.samples.append(sample)
        else:  # reservoir sampling, seeded by the window so replays give the same features
            if self.rng is None:
                self.rng = random.Random(self.start_ns)
            slot = self.rng.randrange(self.invocations)
            if slot < SAMPLES:
                self.samples[slot] = sample

    @property
    def seconds(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9

    def features(self) -> Features:
        """Rates per second, per-invocation means and quantiles, as detectors see them.

        ``cost_per_s_warm`` is the cost rate with each cold start priced as a warm call
        of the window: at a few calls a window one cold start's init can cost more than
        all the other calls together, which is the platform at work, not a runaway. It
        and ``cost_per_warm_call`` (successful warm calls) are missing from a window
        without a warm call.
        """
        runs = max(self.invocations, 1)
        costs = [c for c, _, _ in self.samples]
        # latency of warm calls: one cold start must not set a small window's p95
        durations = [d for _, d, cold in self.samples if not cold] or [
            d for _, d, _ in self.samples]
        warm: Features = {}
        if (warm_calls := self.invocations - self.cold_starts) > 0:
            per_warm = (self.cost_usd - self.cold_cost_usd) / warm_calls
            warm["cost_per_s_warm"] = (self.cost_usd - self.cold_cost_usd
                                       + self.cold_starts * per_warm) / self.seconds
        if self.warm_ok:
            warm["cost_per_warm_call"] = self.warm_ok_cost_usd / self.warm_ok
        return {
            **warm,
            "attempts": float(self.attempts),
            "invocations": float(self.invocations),
            "errors": float(self.errors),
            "warm_ok": float(self.warm_ok),
            "attempts_per_s": self.attempts / self.seconds,
            "invocations_per_s": self.invocations / self.seconds,
            "cost_per_s": self.cost_usd / self.seconds,
            "cost_per_invocation": self.cost_usd / runs if self.invocations else 0.0,
            # failing calls are often cheap: successful calls carry the per-call baseline
            "cost_per_ok_invocation": ((self.cost_usd - self.error_cost_usd) / ok
                                       if (ok := self.invocations - self.errors) else 0.0),
            "cost_per_invocation_p50": quantile(costs, 0.5),
            "cost_per_invocation_p95": quantile(costs, 0.95),
            "duration_ms_mean": self.duration_ms / runs,
            "duration_ms_p95": quantile(durations, 0.95),
            "error_rate": self.errors / runs,
            "cold_start_rate": self.cold_starts / runs,
            "egress_bytes_per_s": self.egress_bytes / self.seconds,
        }


@dataclass
class WindowAggregator:
    """Open windows per function; :meth:`close_due` hands back the finished ones."""

    window_ns: int
    grace_ns: int = 500_000_000
    idle_windows: int = 30
    retire: Callable[[str], bool] | None = None
    """Asked before an idle function's window is dropped: ``False`` keeps it (say, while a
    verdict holds), ``True`` lets it go (the callee may drop its own state of it)."""
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
            if idle >= self.idle_windows and (self.retire is None or self.retire(function)):
                del self._open[function]
                del self._idle[function]
                continue
            self._open[function] = Window(window.end_ns, window.end_ns + self.window_ns,
                                          version=window.version, team=window.team)
        return closed
