"""Predicted monthly cost of a function's new configuration, learned from history.

Three bases, best first, each saying which it used in :attr:`Prediction.basis`:

``history``
    the function's own calls: weekly totals fitted with a log-linear trend (shrunk as
    far as it does not stand out of their scatter), spread over the next 30 days by
    its hour-of-week profile (its weekly and daily pattern); times the cost of one
    call under the new configuration (the catalogue price of the duration it ran
    with, scaled to the new memory and architecture as the fleet showed, plus the
    egress and custom cost per call it had). The interval is the 80 % band of the
    forecast: the weekly scatter, the level's and the trend's uncertainty a month
    ahead, with Student's t for few weeks (:func:`forecast_calls`).
``similar``
    a function without history: the median of up to five most similar functions (same
    team first, then the same price key and the nearest memory), with the spread among
    them added to the interval.
``catalogue``
    no usable history at all: catalogue price × an assumed traffic and duration,
    stated, with a tenfold interval either way.

The cost-risk score in [0, 1] is ``1 - exp(-max(0, high / reference - 1) / 2)``:
how far the top of the interval lies above what the function (or its similar
functions) costs now. 0 is no increase; 0.8 is about 4.2 times. Without a
reference (catalogue basis) it is 0.5: unknown.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from statistics import median
from typing import Any

import numpy as np

from agents import Price
from streams.gate.history import Config, FunctionHistory, History
from streams.gate.spec import FunctionSpec

HOURS_PER_MONTH = 720
Z80 = 1.2816
"""The normal quantile of a two-sided 80 % interval…"""
T80 = {1: 3.078, 2: 1.886, 3: 1.638, 4: 1.533}
"""…and Student's t quantiles for few neighbours (by degrees of freedom)."""
NEIGHBOURS = 5


@dataclass(frozen=True, slots=True)
class Assumptions:
    """What a catalogue-only prediction assumes, stated in its basis."""

    calls_per_month: float = 1_000_000.0
    duration_ms: float = 200.0
    memory_mb: int = 128


@dataclass(frozen=True, slots=True)
class Prediction:
    """A predicted monthly cost with its 80 % interval, risk score and basis."""

    function: str
    method: str
    """``history``, ``similar`` or ``catalogue``."""
    monthly_usd: float
    low_usd: float
    high_usd: float
    score: float
    calls_per_month: float
    cost_per_call_usd: float
    basis: str

    def policy_input(self) -> dict[str, Any]:
        """The function's entry of ``input.ai_predictions``."""
        return {"score": round(self.score, 4),
                "predicted_monthly_cost": round(self.monthly_usd, 4),
                "interval": [round(self.low_usd, 4), round(self.high_usd, 4)],
                "basis": self.basis, "method": self.method,
                "calls_per_month": round(self.calls_per_month, 1)}


def score(high: float, reference: float | None) -> float:
    """The cost-risk score of an interval's top against a reference cost.

    >>> score(100.0, 100.0), round(score(420.0, 100.0), 2), score(1.0, None)
    (0.0, 0.8, 0.5)
    """
    if reference is None or reference <= 0:
        return 0.5
    return 1.0 - math.exp(-max(0.0, high / reference - 1.0) / 2.0)


def forecast_calls(hourly: Mapping[int, int], end_hour: int) -> tuple[float, float, int]:
    """(calls in the next 30 days, log-scale spread, weeks used) from calls per hour.

    The weekly totals' log-linear trend counts as far as it stands out of their
    scatter: its slope is shrunk by ``t² / (t² + 1)`` (``t``: the slope over its
    standard error), so a trend three weeks of scatter happen to draw is not carried a
    month ahead. The spread is the forecast's own: the month's share of the weekly
    scatter, the level's and the trend's uncertainty at the month's distance, widened
    by Student's t for few weeks (and stated as a normal spread).

    >>> flat = {h: 10 for h in range(1000 - 24 * 28 + 1, 1001)}
    >>> calls, spread, weeks = forecast_calls(flat, 1000)
    >>> round(calls), weeks
    (7200, 4)
    """
    first = min(hourly, default=end_hour)
    weeks = (end_hour - first + 1) // 168
    if weeks < 1:  # under a week: the mean rate, with a wide spread
        hours = max(1, end_hour - first + 1)
        return sum(hourly.values()) / hours * HOURS_PER_MONTH, 0.5, 0
    start = end_hour - weeks * 168 + 1
    series = np.array([hourly.get(h, 0) for h in range(start, end_hour + 1)], dtype=float)
    by_week = series.reshape(weeks, 168)
    totals = by_week.sum(axis=1)
    logs = np.log(np.maximum(totals, 1.0))
    k = np.arange(weeks, dtype=float)
    future = np.arange(1, HOURS_PER_MONTH + 1)
    if weeks >= 3:
        slope, intercept = np.polyfit(k, logs, 1)
        residual = logs - (intercept + slope * k)
        scatter = max(float(np.sqrt((residual ** 2).sum() / (weeks - 2))), 0.01)
        sxx = float(((k - k.mean()) ** 2).sum())
        t2 = slope ** 2 / (scatter ** 2 / sxx)
        slope *= t2 / (t2 + 1)
        intercept = float(logs.mean()) - slope * float(k.mean())
        lead = weeks - 1 + float(future.mean()) / 168 - float(k.mean())
        spread = scatter * math.sqrt(168 / HOURS_PER_MONTH + 1 / weeks + lead ** 2 / sxx)
        spread *= T80.get(weeks - 2, Z80) / Z80
    else:
        slope, intercept, spread = 0.0, float(logs.mean()), 0.25
    profile = by_week.sum(axis=0)
    profile = profile / profile.sum() if profile.sum() > 0 else np.full(168, 1 / 168)
    level = np.exp(intercept + slope * (weeks - 1 + future / 168))
    calls = float((level * profile[(future - 1) % 168]).sum())
    return calls, max(spread, 0.05), weeks


class Predictor:
    """Predicts monthly costs from a :class:`History` and the price catalogue."""

    def __init__(self, history: History, prices: Mapping[str, Price],
                 assumptions: Assumptions = Assumptions()) -> None:
        self.history = history
        self.prices = prices
        self.assumptions = assumptions

    def predict(self, spec: FunctionSpec) -> Prediction | None:
        """The prediction for ``spec``; None when nothing prices it (a container
        platform without history)."""
        own = self.history.functions.get(spec.name)
        if own is not None:
            return self._from_own(spec, own)
        similar = self._similar(spec)
        if similar:
            return self._from_similar(spec, similar)
        return self._from_catalogue(spec)

    def _memory(self, spec: FunctionSpec, config: Config) -> int:
        return spec.memory_mb or config.memory_mb

    def _call_cost(self, spec: FunctionSpec, config: Config) -> tuple[float, float]:
        """(cost of one call under ``spec``, its duration in ms) from ``config``'s."""
        memory = self._memory(spec, config)
        duration = config.duration_ms * self.history.scaling.factor(
            config, memory, spec.architecture == "arm64")
        price = self.prices.get(spec.price_key or "")
        if price is None:  # no catalogue entry: what a call cost, as it was
            return config.cost_usd, duration
        bill = price.invocation(duration_ms=duration, memory_mb=memory)
        return (bill.compute_usd + bill.request_usd + config.egress_usd + config.custom_usd,
                duration)

    def _from_own(self, spec: FunctionSpec, own: FunctionHistory) -> Prediction:
        calls, spread, weeks = forecast_calls(own.hourly, self.history.end_hour)
        config = own.current
        per_call, duration = self._call_cost(spec, config)
        sigma = math.hypot(spread, self.history.scaling.spread(config,
                                                               self._memory(spec, config)))
        monthly = calls * per_call
        low, high = monthly * math.exp(-Z80 * sigma), monthly * math.exp(Z80 * sigma)
        reference = calls * config.cost_usd
        pattern = f"{weeks} weeks of calls (trend and hour-of-week pattern)" if weeks else \
            "under a week of calls (mean rate)"
        basis = (f"own history of {spec.name}: {pattern} → {calls:,.0f} calls in the next 30 "
                 f"days; {duration:.0f} ms at {self._memory(spec, config)} MB "
                 f"(was {config.duration_ms:.0f} ms at {config.memory_mb} MB on "
                 f"{config.price_key}; {self.history.scaling.words()}) → "
                 f"${per_call:.3g} a call")
        return Prediction(spec.name, "history", monthly, low, high, score(high, reference),
                          calls, per_call, basis)

    def _similar(self, spec: FunctionSpec) -> list[FunctionHistory]:
        def likeness(f: FunctionHistory) -> float:
            c = f.current
            memory = spec.memory_mb or c.memory_mb
            return (2.0 * (bool(spec.team) and f.team == spec.team)
                    + 1.0 * (c.price_key == spec.price_key)
                    + (max(0.0, 1.0 - abs(math.log2(memory / c.memory_mb)) / 3.0)
                       if memory > 0 and c.memory_mb > 0 else 0.0))

        ranked = sorted(self.history.functions.values(), key=lambda f: (-likeness(f), f.name))
        if not ranked:
            return []
        best = likeness(ranked[0])  # a team match outweighs the rest: stay within it
        return [f for f in ranked if likeness(f) >= best - 1.0][:NEIGHBOURS]

    def _from_similar(self, spec: FunctionSpec, similar: list[FunctionHistory]) -> Prediction:
        calls_each, costs_each, now_each = [], [], []
        for f in similar:
            calls, _, _ = forecast_calls(f.hourly, self.history.end_hour)
            per_call, _ = self._call_cost(spec, f.current)
            calls_each.append(calls)
            costs_each.append(per_call)
            now_each.append(calls * f.current.cost_usd)
        calls, per_call = median(calls_each), median(costs_each)
        logs = np.log(np.maximum(np.array(calls_each) * np.array(costs_each), 1e-12))
        n = len(logs)
        # a new function is one more draw from its neighbours: the spread among them
        # (sample size counted), plus what the history cannot tell (runtime, image)
        spread = float(logs.std(ddof=1)) * math.sqrt(1 + 1 / n) if n > 1 else 0.7
        sigma, z = math.hypot(spread, 0.3), T80.get(n - 1, Z80)
        monthly = calls * per_call
        low, high = monthly * math.exp(-z * sigma), monthly * math.exp(z * sigma)
        teams = sorted({f.team for f in similar if f.team})
        basis = (f"no history for {spec.name}: the median of {len(similar)} similar functions "
                 f"({', '.join(f.name for f in similar)}; team {', '.join(teams) or 'none'}, "
                 f"nearest memory and price key; runtime and image are not in the history) → "
                 f"{calls:,.0f} calls in 30 days at ${per_call:.3g} a call; wider interval")
        return Prediction(spec.name, "similar", monthly, low, high,
                          score(high, median(now_each)), calls, per_call, basis)

    def _from_catalogue(self, spec: FunctionSpec) -> Prediction | None:
        price = self.prices.get(spec.price_key or "")
        if price is None:
            return None
        a = self.assumptions
        memory = spec.memory_mb or a.memory_mb
        bill = price.invocation(duration_ms=a.duration_ms, memory_mb=memory)
        per_call = bill.compute_usd + bill.request_usd
        monthly = a.calls_per_month * per_call
        basis = (f"no history in ClickHouse: catalogue price ({spec.price_key}) × an assumed "
                 f"{a.calls_per_month:,.0f} calls a month of {a.duration_ms:.0f} ms at "
                 f"{memory} MB; interval ÷10…×10; risk unknown (0.5)")
        return Prediction(spec.name, "catalogue", monthly, monthly / 10, monthly * 10,
                          score(monthly * 10, None), a.calls_per_month, per_call, basis)
