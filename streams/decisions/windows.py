"""Per-function feature windows built from cost events, in event time.

Each event counts in the window its own timestamp falls in (windows are aligned to a
multiple of the window length), so a backlog delivered late — a worker restart, a
broker outage, an agent's buffer — lands where it belongs and never looks like a
spike. A window closes ``lateness`` after its end: by the wall clock while the ingest
is caught up, and during a backlog once the function's own events have got that far
(never ahead of the wall clock).

An event whose window has already closed is *late*: :meth:`WindowAggregator.add`
says so, and it is stored but not decided on. A function that was seen but is idle
gets empty windows, so a drop to zero shows.
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
class _Lane:
    """One function's open windows, by start, and how far it has closed."""

    frontier_ns: int  # start of the oldest window not closed yet
    windows: dict[int, Window] = field(default_factory=dict)
    newest_ns: int = 0  # the newest event time seen
    idle: int = 0  # empty windows closed in a row
    version: str = ""
    team: str = ""


@dataclass
class WindowAggregator:
    """Open windows per function; :meth:`close_due` hands back the finished ones."""

    window_ns: int
    lateness_ns: int = 500_000_000
    idle_windows: int = 30
    retire: Callable[[str], bool] | None = None
    """Asked before an idle function's windows are dropped: ``False`` keeps them (say,
    while a verdict holds), ``True`` lets them go (the callee may drop its own state)."""
    _lanes: dict[str, _Lane] = field(default_factory=dict)

    def __contains__(self, function: object) -> bool:
        """Whether ``function`` has windows here (seen and not retired)."""
        return function in self._lanes

    def __len__(self) -> int:
        """Functions with windows here."""
        return len(self._lanes)

    def add(self, event: CostEvent) -> bool:
        """Count ``event`` in its window; ``False`` if that window has closed already
        (a late event)."""
        t = event.time_unix_nano
        start = t - t % self.window_ns
        lane = self._lanes.get(event.function)
        if lane is None:
            lane = self._lanes[event.function] = _Lane(start)
        if start < lane.frontier_ns:
            return False
        window = lane.windows.get(start)
        if window is None:
            window = lane.windows[start] = Window(start, start + self.window_ns)
        window.add(event)
        lane.newest_ns = max(lane.newest_ns, t)
        lane.idle = 0
        return True

    @property
    def open_windows(self) -> int:
        """Windows holding events that are not closed yet (the decision backlog)."""
        return sum(len(lane.windows) for lane in self._lanes.values())

    def watch(self, function: str, now_ns: int) -> None:
        """Close windows for ``function`` from ``now_ns`` on even if it sends nothing (a
        function restored with a verdict or an incident: its decisions go on, so the
        verdict is renewed or released and the incident resolved)."""
        if function not in self._lanes:
            self._lanes[function] = _Lane(now_ns - now_ns % self.window_ns)

    def drop(self, keep: Callable[[str], bool]) -> list[str]:
        """Drop the open windows of every function ``keep`` refuses (another worker
        decides it now; its events are stored there and count in its windows)."""
        gone = [function for function in self._lanes if not keep(function)]
        for function in gone:
            del self._lanes[function]
        return gone

    def current(self, function: str, now_ns: int) -> Window | None:
        """The function's open window that ``now_ns`` falls in, if it has calls."""
        lane = self._lanes.get(function)
        if lane is None:
            return None
        return lane.windows.get(now_ns - now_ns % self.window_ns)

    def close_due(self, now_ns: int, caught_up: bool = True) -> list[tuple[str, Window]]:
        """Windows due at ``now_ns``, oldest first per function; ``caught_up``: the
        ingest has no backlog, so the wall clock closes them (else each function's own
        events do)."""
        closed: list[tuple[str, Window]] = []
        for function, lane in list(self._lanes.items()):
            horizon = now_ns - self.lateness_ns
            if not caught_up:
                horizon = min(horizon, lane.newest_ns - self.lateness_ns)
            if self._close(function, lane, horizon, closed):
                del self._lanes[function]
        return closed

    def _close(self, function: str, lane: _Lane, horizon: int,
               closed: list[tuple[str, Window]]) -> bool:
        """Close ``lane``'s windows that end by ``horizon``; whether to drop the lane."""
        while lane.frontier_ns + self.window_ns <= horizon:
            start = lane.frontier_ns
            window = lane.windows.pop(start, None) or Window(
                start, start + self.window_ns, version=lane.version, team=lane.team)
            lane.version, lane.team = window.version, window.team
            closed.append((function, window))
            lane.frontier_ns = start + self.window_ns
            lane.idle = lane.idle + 1 if window.attempts == 0 else 0
            if lane.idle < self.idle_windows:
                continue
            if not lane.windows and (self.retire is None or self.retire(function)):
                return True
            if lane.windows:  # a long gap in event time: resume at the next events
                lane.frontier_ns = min(lane.windows)
                lane.idle = 0
            elif horizon - lane.frontier_ns > self.idle_windows * self.window_ns:
                # idle and held: one empty window per call is enough to keep deciding
                lane.frontier_ns = horizon - horizon % self.window_ns - self.window_ns
        return False
