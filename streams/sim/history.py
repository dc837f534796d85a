"""Simulated cost history of a fleet: weeks of calls with a daily and weekly pattern,
growth, noise, and deploys that change a function's memory.

Each function's duration follows ``duration ∝ memory^elasticity`` (its own
elasticity: CPU-bound code speeds up with memory, I/O-bound code does not), so a
memory change moves its cost the way a real one does. :func:`simulate` gives the
calls per hour; :func:`cost_events` expands them into one
:class:`~schemas.CostEvent` per call for ClickHouse, :func:`aggregates` into the
rows the gate's history queries return.
"""

from __future__ import annotations

import math
import random
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from agents import Price
from schemas import CostEvent

HOUR_NS = 3_600_000_000_000


@dataclass(frozen=True, slots=True)
class SimFunction:
    """One function's traffic and performance, and an optional memory change."""

    name: str
    team: str
    price_key: str
    memory_mb: int
    calls_per_hour: float
    duration_ms: float
    """Mean duration at ``memory_mb``."""
    elasticity: float = -0.5
    growth_per_week: float = 0.0
    daily_amplitude: float = 0.5
    weekend_factor: float = 0.7
    noise: float = 0.15
    """Day-to-day lognormal scatter of the rate."""
    deploy_hour: int | None = None
    deploy_memory_mb: int = 0
    egress_usd_per_call: float = 0.0

    def memory_at(self, hour: int) -> int:
        if self.deploy_hour is not None and hour >= self.deploy_hour:
            return self.deploy_memory_mb
        return self.memory_mb

    def duration_at(self, memory_mb: int) -> float:
        return self.duration_ms * (memory_mb / self.memory_mb) ** self.elasticity


@dataclass(frozen=True, slots=True)
class HourOfCalls:
    function: str
    team: str
    price_key: str
    hour: int
    """Hours since the Unix epoch."""
    calls: int
    memory_mb: int
    duration_ms: float
    egress_usd: float


def simulate(fleet: Iterable[SimFunction], start_hour: int, hours: int,
             seed: int = 1) -> Iterator[HourOfCalls]:
    """Calls per hour of each function from ``start_hour`` for ``hours`` (Poisson
    around a rate with a daily cycle peaking at 14:00 UTC, quieter weekends, growth
    and a lognormal day-to-day scatter)."""
    for f in fleet:
        rng = random.Random(f"{seed}:{f.name}")
        day_factor = 1.0
        for h in range(start_hour, start_hour + hours):
            if h % 24 == 0 or h == start_hour:
                day_factor = math.exp(rng.gauss(0.0, f.noise) - f.noise ** 2 / 2)
            weekday = (h // 24 + 3) % 7  # the epoch began on a Thursday; 0 is Monday
            rate = (f.calls_per_hour * day_factor
                    * (1 + f.daily_amplitude * math.cos(2 * math.pi * (h % 24 - 14) / 24))
                    * (f.weekend_factor if weekday >= 5 else 1.0)
                    * (1 + f.growth_per_week) ** ((h - start_hour) / 168))
            calls = _poisson(rng, rate)
            if calls:
                memory = f.memory_at(h)
                duration = f.duration_at(memory) * math.exp(rng.gauss(0.0, 0.05))
                yield HourOfCalls(f.name, f.team, f.price_key, h, calls, memory, duration,
                                  f.egress_usd_per_call)


def _poisson(rng: random.Random, rate: float) -> int:
    if rate > 50:
        return max(0, round(rng.gauss(rate, math.sqrt(rate))))
    limit, k, p = math.exp(-rate), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


def cost(hours: Iterable[HourOfCalls], prices: Mapping[str, Price]) -> float:
    """What the calls cost, priced by the catalogue."""
    total = 0.0
    for h in hours:
        bill = prices[h.price_key].invocation(duration_ms=h.duration_ms, memory_mb=h.memory_mb)
        total += h.calls * (bill.compute_usd + bill.request_usd + h.egress_usd)
    return total


def cost_events(hours: Iterable[HourOfCalls], prices: Mapping[str, Price]
                ) -> Iterator[CostEvent]:
    """One priced cost event per call, spread evenly over its hour."""
    for h in hours:
        bill = prices[h.price_key].invocation(duration_ms=h.duration_ms, memory_mb=h.memory_mb)
        for i in range(h.calls):
            yield CostEvent(
                function=h.function, invocation_id=f"{h.function}-{h.hour}-{i}",
                time_unix_nano=h.hour * HOUR_NS + (i * HOUR_NS) // h.calls,
                provider=h.price_key, team=h.team, memory_mb=h.memory_mb,
                duration_ms=h.duration_ms, billed_duration_ms=bill.billed_duration_ms,
                compute_usd=bill.compute_usd, request_usd=bill.request_usd,
                egress_usd=h.egress_usd,
                cost_usd=bill.compute_usd + bill.request_usd + h.egress_usd)


def aggregates(hours: Iterable[HourOfCalls], prices: Mapping[str, Price]
               ) -> tuple[list[tuple[str, int, int]], list[tuple[object, ...]]]:
    """The rows the gate's history queries return for these calls (calls per function
    and hour; per function and configuration, the call-weighted means)."""
    hourly = []
    configs: dict[tuple[str, str, int], list[float]] = defaultdict(lambda: [0.0] * 7)
    teams: dict[str, str] = {}
    for h in hours:
        hourly.append((h.function, h.hour, h.calls))
        bill = prices[h.price_key].invocation(duration_ms=h.duration_ms, memory_mb=h.memory_mb)
        c = configs[(h.function, h.price_key, h.memory_mb)]
        c[0] += h.calls
        c[1] += h.calls * math.log(h.duration_ms)
        c[2] += h.calls * h.duration_ms
        c[3] += h.calls * h.egress_usd
        c[4] += h.calls * (bill.compute_usd + bill.request_usd + h.egress_usd)
        c[5] = max(c[5], h.hour)
        teams[h.function] = h.team
    rows: list[tuple[object, ...]] = [
        (name, key, memory, int(n), log_d / n, d / n, e / n, 0.0, cost / n, teams[name],
         int(last))
        for (name, key, memory), (n, log_d, d, e, cost, last, _) in configs.items()]
    return hourly, rows
