"""Synthetic serverless traffic with labelled incidents, for ``governor bench incidents``.

:func:`fleet` draws seeded function profiles: 0.2–50 rps (log-uniform), 128–3008 MB,
5–1000 ms median duration, no errors or 0.1–5 %, internet egress, LLM tokens on a fifth,
and daily seasonality ``rps × (1 + a·sin(2π·(hour + phase)/24))``, ``a`` in [0, 0.8].
:func:`incident_scenarios` gives each function one label (the seven kinds in turn) on a
short horizon; :func:`control_scenarios` runs the same fleet for days with no incident
(deploy controls keep their deploy).

:func:`simulate` draws every invocation of every window — Poisson counts, lognormal
durations, errors, cold starts (one per instance per lifetime of 15 min–2 h, with
100–1000 ms of billed init), egress, tokens — prices it with the agent's catalogue
(``agents/prices.toml``) and yields each closed :class:`~streams.decisions.windows.Window` holding
the sums ``Window.add`` would make, computed from per-call arrays rather than one
``CostEvent`` per call (:meth:`SimWindow.events` builds those; a test checks both give
the same window; ``samples`` are the first 256 calls, a uniform sample). Time is
simulated: window ``k`` is ``[START_NS + k·T, START_NS + (k + 1)·T)``; nothing sleeps.

Incidents, one per function, over windows ``[start, end)``, 6–60 windows long:

==================  ==================================================================
runaway loop        call rate × 10–50
cost-per-call jump  cost per invocation × 5–40 (every cost component scaled)
slow leak           cost per invocation × (1 + g)^(n + 1) in its n-th window (from 0),
                    g 2–5 %, up to a cap of × 3–5 held 30–120 windows; ``onset`` (time to
                    detect counts from it) is the first window above × 2
egress burst        egress bytes per call × 50, costed at the provider's egress price
error storm         error rate 50–100 %; failed calls stop early (× 0.05–0.3 the
                    duration, a tenth of the egress, no tokens), so cost per call
                    *falls*: a cost-rate detector cannot see it, only an error-rate one
==================  ==================================================================

Controls, on which every alarm is false: ``daily seasonality`` (no incident) and
``deploy`` (version ``v1`` → ``v2`` at ``start``, cost per invocation × 1.3 from then on,
which the Decider should re-baseline to, not page for).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, replace
from enum import StrEnum

import numpy as np
import numpy.typing as npt

from agents import Price, load_prices
from schemas import CostEvent, Outcome
from streams.decisions.windows import SAMPLES, Window
from streams.sim.units import TOKEN_PRICE_USD

START_NS = 1_767_571_200_000_000_000
"""Simulated time of window 0: 2026-01-05 00:00 UTC, a Monday."""

INCIDENT_WINDOWS = 720
"""Horizon of an incident scenario, in windows (2 h at 10 s)."""

FIRST_START, LAST_START = 90, 360
"""An incident (or deploy) starts in this window range: after the baseline has filled."""

DEPLOY_FACTOR = 1.3
EGRESS_FACTOR = 50.0
MAX_CALLS = 1_000_000
"""Calls drawn at once (windows are generated in chunks of about this many calls)."""

Floats = npt.NDArray[np.float64]


class Kind(StrEnum):
    """What a function's label says happens to it."""

    RUNAWAY = "runaway loop"
    COST_JUMP = "cost-per-call jump"
    SLOW_LEAK = "slow leak"
    EGRESS = "egress burst"
    ERROR_STORM = "error storm"
    SEASONALITY = "daily seasonality"
    DEPLOY = "deploy +30 %"
    # the hard suite (--suite hard): subtle incidents and benign changes
    SUBTLE_RUNAWAY = "runaway 1.5-3x"
    SUBTLE_JUMP = "cost jump 1.5-3x"
    RAMP = "traffic ramp x3"
    BATCH = "batch bursts x8"
    LAUNCH = "launch step x2.5"
    NOISY = "noisy cost"
    SLOWER = "deploy +25 % duration"
    SPARSE = "sparse, cold starts"


INCIDENTS = (Kind.RUNAWAY, Kind.COST_JUMP, Kind.SLOW_LEAK, Kind.EGRESS, Kind.ERROR_STORM)
CONTROLS = (Kind.SEASONALITY, Kind.DEPLOY)
HARD_INCIDENTS = (Kind.SUBTLE_RUNAWAY, Kind.SUBTLE_JUMP)
BENIGN = (Kind.RAMP, Kind.BATCH, Kind.LAUNCH, Kind.NOISY, Kind.SLOWER, Kind.SPARSE)
"""Benign changes: any throttle or isolate of them is a false enforcement. A batch job,
a noisy and a sparse function are so from their first window (it is their nature, not a
change); the others change at a random window after the baseline has filled."""
NATURE = (Kind.BATCH, Kind.NOISY, Kind.SPARSE)
BATCH_EVERY = 6
"""A batch burst comes every this many windows (a minute at 10 s windows)."""
RAMP_WINDOWS = 360
"""A traffic ramp takes an hour (at 10 s windows) to triple."""


@dataclass(frozen=True, slots=True)
class Profile:
    """One simulated function's normal behaviour."""

    name: str
    team: str
    provider: str
    memory_mb: int
    rps: float
    duration_ms: float  # median of a warm, successful call
    duration_sigma: float  # lognormal shape of durations
    error_rate: float
    fail_fast: float  # a failed call lasts this fraction of a normal one
    instance_lifetime_s: float  # an instance serves this long before it is replaced
    init_ms: float  # added to (and billed with) a cold call
    egress_bytes: float  # median internet egress per call
    tokens: float  # median LLM tokens per call (0: none)
    seasonality: float  # a in rps × (1 + a·sin(2π·(hour + phase)/24))
    phase_h: float


@dataclass(frozen=True, slots=True)
class Label:
    """Where a function's incident (or deploy) is, in windows; -1 when there is none.

    ``factor`` is the incident's size: rate × (runaway), cost × (jump, deploy, leak's
    cap), egress × (burst), error rate (storm). ``growth`` is the leak's per window.
    """

    kind: Kind
    start: int = -1
    end: int = -1
    onset: int = -1  # first window that counts as anomalous (time to detect runs from it)
    factor: float = 1.0
    growth: float = 0.0

    @property
    def is_incident(self) -> bool:
        return self.kind in INCIDENTS or self.kind in HARD_INCIDENTS

    def covers(self, window: int, after: int = 2) -> bool:
        """Is ``window`` in ``[start, end + after)``, where an alarm is no false alarm?"""
        return self.is_incident and self.start <= window < self.end + after


@dataclass(frozen=True, slots=True)
class Scenario:
    """A function, its label and a horizon; ``stream`` keeps horizons' draws apart."""

    index: int
    profile: Profile
    label: Label
    windows: int
    window_seconds: float
    seed: int
    stream: int = 1

    @property
    def window_ns(self) -> int:
        return round(self.window_seconds * 1e9)

    @property
    def function_days(self) -> float:
        return self.windows * self.window_seconds / 86_400


def fleet(n: int, seed: int) -> list[Profile]:
    """``n`` function profiles; profile ``i`` depends only on ``seed`` and ``i``."""
    return [_profile(i, np.random.default_rng([seed, i, 0])) for i in range(n)]


def kinds(n: int, seed: int) -> list[Kind]:
    """Each function's label kind: the seven kinds in turn, shuffled by ``seed``."""
    standard = (*INCIDENTS, *CONTROLS)
    every = [standard[i % len(standard)] for i in range(n)]
    order = np.random.default_rng([seed, 1 << 30]).permutation(n)
    return [every[int(i)] for i in order]


def incident_scenarios(n: int, seed: int, window_seconds: float = 10.0,
                       windows: int = INCIDENT_WINDOWS) -> list[Scenario]:
    """Every function of the fleet with its label, on ``windows`` windows."""
    if windows < LAST_START + 300:
        raise ValueError(f"an incident scenario needs at least {LAST_START + 300} windows "
                         f"(incidents start up to window {LAST_START}); got {windows}")
    profiles = fleet(n, seed)
    return [Scenario(i, p, _label(kind, np.random.default_rng([seed, i, 1]), windows),
                     windows, window_seconds, seed)
            for i, (p, kind) in enumerate(zip(profiles, kinds(n, seed), strict=True))]


def hard_scenarios(n: int, seed: int, window_seconds: float = 10.0,
                   windows: int = INCIDENT_WINDOWS) -> list[Scenario]:
    """``n`` other functions (profiles apart from the standard fleet's) with subtle
    incidents (1.5-3x) and benign changes, the eight kinds in turn. A sparse function
    calls every 3 to 20 s and its instances live 30 s to 2 min (cold starts abound)."""
    hard = (*HARD_INCIDENTS, *BENIGN)
    scenarios = []
    for i in range(n):
        index = 100_000 + i
        rng = np.random.default_rng([seed, index, 1])
        kind = hard[i % len(hard)]
        start = int(rng.integers(FIRST_START, LAST_START + 1))
        if kind in HARD_INCIDENTS:
            label = Label(kind, start, start + int(rng.integers(6, 61)), start,
                          float(rng.uniform(1.5, 3.0)))
        elif kind in NATURE:  # a batch job's first burst comes in its first period
            first = int(rng.integers(0, BATCH_EVERY)) if kind is Kind.BATCH else 0
            label = Label(kind, first, windows, first)
        else:
            label = Label(kind, start, windows, start, 1.25 if kind is Kind.SLOWER else 1.0)
        profile = _profile(index, np.random.default_rng([seed, index, 0]))
        if kind is Kind.SPARSE:
            profile = replace(profile, rps=float(rng.uniform(0.05, 0.35)),
                              instance_lifetime_s=float(rng.uniform(30.0, 120.0)))
        scenarios.append(Scenario(index, profile, label, windows, window_seconds, seed))
    return scenarios


def control_scenarios(n: int, seed: int, days: float,
                      window_seconds: float = 60.0) -> list[Scenario]:
    """The fleet for ``days`` without incidents; deploy controls deploy in the middle half."""
    windows = max(1, round(days * 86_400 / window_seconds))
    scenarios = []
    for i, (p, kind) in enumerate(zip(fleet(n, seed), kinds(n, seed), strict=True)):
        label = Label(Kind.SEASONALITY)
        if kind is Kind.DEPLOY:
            start = int(np.random.default_rng([seed, i, 3]).integers(windows // 4,
                                                                      3 * windows // 4 + 1))
            label = Label(Kind.DEPLOY, start, windows, start, DEPLOY_FACTOR)
        scenarios.append(Scenario(i, p, label, windows, window_seconds, seed, stream=2))
    return scenarios


def leak_factors(growth: float, cap: float, n: int) -> Floats:
    """A slow leak's cost multiplier in each of its first ``n`` windows."""
    return np.minimum((1.0 + growth) ** (np.arange(n) + 1.0), cap)


def _profile(i: int, rng: np.random.Generator) -> Profile:
    def log_uniform(low: float, high: float) -> float:
        return float(math.exp(rng.uniform(math.log(low), math.log(high))))

    return Profile(
        name=f"fn-{i:04d}",
        team=str(rng.choice(["payments", "media", "discovery", "ml", "platform", "growth"])),
        provider=str(rng.choice(["aws", "aws-arm64", "gcp", "azure"], p=[0.6, 0.2, 0.1, 0.1])),
        memory_mb=int(rng.choice([128, 256, 512, 1024, 1536, 2048, 3008])),
        rps=log_uniform(0.2, 50.0),
        duration_ms=log_uniform(5.0, 1000.0),
        duration_sigma=float(rng.uniform(0.15, 0.5)),
        error_rate=0.0 if rng.random() < 0.4 else float(rng.uniform(0.001, 0.05)),
        fail_fast=float(rng.uniform(0.05, 0.3)),
        instance_lifetime_s=log_uniform(900.0, 7200.0),
        init_ms=log_uniform(100.0, 1000.0),
        egress_bytes=log_uniform(500.0, 200_000.0),
        tokens=log_uniform(100.0, 2000.0) if rng.random() < 0.2 else 0.0,
        seasonality=float(rng.uniform(0.0, 0.8)),
        phase_h=float(rng.uniform(0.0, 24.0)),
    )


def _label(kind: Kind, rng: np.random.Generator, windows: int) -> Label:
    if kind is Kind.SEASONALITY:
        return Label(kind)
    start = int(rng.integers(FIRST_START, LAST_START + 1))
    if kind is Kind.DEPLOY:
        return Label(kind, start, windows, start, DEPLOY_FACTOR)
    end = start + int(rng.integers(6, 61))
    if kind is Kind.RUNAWAY:
        return Label(kind, start, end, start, float(rng.uniform(10, 50)))
    if kind is Kind.COST_JUMP:
        return Label(kind, start, end, start, float(rng.uniform(5, 40)))
    if kind is Kind.EGRESS:
        return Label(kind, start, end, start, EGRESS_FACTOR)
    if kind is Kind.ERROR_STORM:
        return Label(kind, start, end, start, float(rng.uniform(0.5, 1.0)))
    growth, cap = float(rng.uniform(0.02, 0.05)), float(rng.uniform(3, 5))
    ramp = math.ceil(math.log(cap) / math.log(1 + growth))
    onset = start + int(np.argmax(leak_factors(growth, cap, ramp) > 2.0))
    return Label(kind, start, start + ramp + int(rng.integers(30, 121)), onset, cap, growth)


@dataclass(frozen=True, slots=True)
class Effects:
    """A label's effect on each window: multipliers, error rate, and the deploy window."""

    rate: Floats
    cost: Floats
    duration: Floats
    egress: Floats
    error: Floats
    deploy_at: int

    @classmethod
    def of(cls, label: Label, profile: Profile, windows: int) -> Effects:
        rate, cost, egress = np.ones(windows), np.ones(windows), np.ones(windows)
        duration = np.ones(windows)
        error = np.full(windows, profile.error_rate)
        a, b = label.start, label.end
        deploy_at = windows
        if label.kind is Kind.RUNAWAY:
            rate[a:b] = label.factor
        elif label.kind is Kind.COST_JUMP:
            cost[a:b] = label.factor
        elif label.kind is Kind.SLOW_LEAK:
            cost[a:b] = leak_factors(label.growth, label.factor, b - a)
        elif label.kind is Kind.EGRESS:
            egress[a:b] = label.factor
        elif label.kind is Kind.ERROR_STORM:
            error[a:b] = label.factor
        elif label.kind is Kind.DEPLOY:
            cost[a:] = label.factor
            deploy_at = a
        elif label.kind is Kind.SUBTLE_RUNAWAY:
            rate[a:b] = label.factor
        elif label.kind is Kind.SUBTLE_JUMP:
            cost[a:b] = label.factor
        elif label.kind is Kind.RAMP:
            ramp = min(RAMP_WINDOWS, windows - a)
            rate[a:a + ramp] = np.linspace(1.0, 3.0, ramp)
            rate[a + ramp:] = 3.0
        elif label.kind is Kind.BATCH:
            rate[a::BATCH_EVERY] = 8.0
        elif label.kind is Kind.LAUNCH:
            rate[a:] = 2.5
        elif label.kind is Kind.NOISY:
            seed = zlib.crc32(profile.name.encode())
            noise = np.random.default_rng([seed, a, windows]).lognormal(0.0, 0.4, windows - a)
            cost[a:] = noise
        elif label.kind is Kind.SLOWER:
            duration[a:] = label.factor
            deploy_at = a
        return cls(rate, cost, duration, egress, error, deploy_at)

    def version(self, window: int) -> str:
        return "v2" if window >= self.deploy_at else "v1"


@dataclass(frozen=True, slots=True)
class Calls:
    """Every invocation of a run of windows, one array element per call."""

    window: npt.NDArray[np.intp]  # window offset in the run
    duration_ms: Floats
    billed_ms: Floats
    error: npt.NDArray[np.bool_]
    cold: npt.NDArray[np.bool_]
    egress_bytes: npt.NDArray[np.int64]
    compute_usd: Floats
    request_usd: Floats
    egress_usd: Floats
    tokens_usd: Floats
    cost_usd: Floats


@dataclass(frozen=True, slots=True)
class SimWindow:
    """One closed window: ``window`` (the sums) and its calls ``calls[first:last]``."""

    scenario: Scenario
    index: int
    window: Window
    calls: Calls
    first: int
    last: int

    def events(self) -> list[CostEvent]:
        """The window's calls as CostEvents, spread evenly over the window."""
        return [self._event(j) for j in range(self.first, self.last)]

    def opening(self, calls: int) -> Window:
        """The window while still open, holding only its first ``calls`` calls."""
        c, w = self.calls, self.window
        a, b = self.first, self.first + calls
        error, cold, cost = c.error[a:b], c.cold[a:b], c.cost_usd[a:b]
        warm_ok = ~(error | cold)
        sampled = min(calls, SAMPLES)
        return Window(
            w.start_ns, w.end_ns, attempts=calls, invocations=calls,
            errors=int(error.sum()), cold_starts=int(cold.sum()), cost_usd=float(cost.sum()),
            duration_ms=float(c.duration_ms[a:b].sum()),
            error_cost_usd=float((cost * error).sum()), cold_cost_usd=float((cost * cold).sum()),
            warm_ok=int(warm_ok.sum()), warm_ok_cost_usd=float((cost * warm_ok).sum()),
            egress_bytes=int(c.egress_bytes[a:b].sum()), version=w.version, team=w.team,
            samples=list(zip(cost[:sampled].tolist(), c.duration_ms[a:a + sampled].tolist(),
                             cold[:sampled].astype(bool).tolist(), strict=True)))

    def costliest(self) -> CostEvent | None:
        """The window's most expensive call (None if it had none)."""
        if self.first == self.last:
            return None
        return self._event(self.first + int(np.argmax(self.calls.cost_usd[self.first:self.last])))

    def _event(self, j: int) -> CostEvent:
        c, p, w = self.calls, self.scenario.profile, self.window
        n = self.last - self.first
        at = w.start_ns + round((j - self.first + 0.5) * (w.end_ns - w.start_ns) / n)
        tokens = float(c.tokens_usd[j])
        return CostEvent(
            function=p.name, invocation_id=f"{p.name}-{self.index}-{j - self.first}",
            time_unix_nano=at, provider=p.provider, version=w.version, team=p.team,
            memory_mb=p.memory_mb, duration_ms=float(c.duration_ms[j]),
            billed_duration_ms=float(c.billed_ms[j]), cold_start=bool(c.cold[j]),
            outcome=Outcome.ERROR if c.error[j] else Outcome.OK,
            egress_bytes=int(c.egress_bytes[j]), cost_usd=float(c.cost_usd[j]),
            compute_usd=float(c.compute_usd[j]), request_usd=float(c.request_usd[j]),
            egress_usd=float(c.egress_usd[j]),
            custom_usd={"llm_tokens": tokens} if tokens else {})


def simulate(scenario: Scenario, prices: dict[str, Price] | None = None) -> Iterator[SimWindow]:
    """Every window of ``scenario`` in order, closed; deterministic for its seed."""
    p, n = scenario.profile, scenario.windows
    price = (prices or load_prices())[p.provider]
    rng = np.random.default_rng([scenario.seed, scenario.index, 2, scenario.stream])
    effects = Effects.of(scenario.label, p, n)
    seconds = scenario.window_seconds
    hours = ((np.arange(n) + 0.5) * seconds / 3600 + p.phase_h) % 24
    expected = p.rps * (1 + p.seasonality * np.sin(2 * np.pi * hours / 24)) * effects.rate
    counts = rng.poisson(expected * seconds)
    # one cold start per instance lifetime; instances: the concurrency, at least one
    instances = np.maximum(1.0, expected * p.duration_ms / 1000)
    cold = np.minimum(1.0, instances / (p.instance_lifetime_s * expected))
    a = 0
    while a < n:
        b = a + max(1, int(np.searchsorted(np.cumsum(counts[a:]), MAX_CALLS, side="right")))
        yield from _windows(scenario, effects, price, counts, cold, a, min(b, n), rng)
        a = b


def _windows(scenario: Scenario, effects: Effects, price: Price, counts: npt.NDArray[np.int64],
             cold: Floats, a: int, b: int, rng: np.random.Generator) -> Iterator[SimWindow]:
    p, m = scenario.profile, counts[a:b]
    calls = _draw(p, price, effects, cold, np.repeat(np.arange(b - a), m), a, rng)
    n = b - a
    sums = {name: np.bincount(calls.window, weights=values, minlength=n)
            for name, values in (("errors", calls.error), ("cold", calls.cold),
                                 ("cost", calls.cost_usd), ("duration", calls.duration_ms),
                                 ("egress", calls.egress_bytes),
                                 ("error_cost", calls.cost_usd * calls.error),
                                 ("cold_cost", calls.cost_usd * calls.cold),
                                 ("warm_ok", ~(calls.error | calls.cold)),
                                 ("warm_ok_cost", calls.cost_usd * ~(calls.error | calls.cold)))}
    bounds = np.concatenate(([0], np.cumsum(m)))
    window_ns = scenario.window_ns
    for k in range(n):
        first, last = int(bounds[k]), int(bounds[k + 1])
        start = START_NS + (a + k) * window_ns
        sampled = min(last - first, SAMPLES)
        window = Window(
            start, start + window_ns, attempts=last - first, invocations=last - first,
            errors=int(sums["errors"][k]), cold_starts=int(sums["cold"][k]),
            cost_usd=float(sums["cost"][k]), duration_ms=float(sums["duration"][k]),
            error_cost_usd=float(sums["error_cost"][k]),
            cold_cost_usd=float(sums["cold_cost"][k]), warm_ok=int(sums["warm_ok"][k]),
            warm_ok_cost_usd=float(sums["warm_ok_cost"][k]),
            egress_bytes=int(sums["egress"][k]), version=effects.version(a + k), team=p.team,
            samples=list(zip(calls.cost_usd[first:first + sampled].tolist(),
                             calls.duration_ms[first:first + sampled].tolist(),
                             calls.cold[first:first + sampled].astype(bool).tolist(),
                             strict=True)))
        yield SimWindow(scenario, a + k, window, calls, first, last)


def _draw(p: Profile, price: Price, effects: Effects, cold_rate: Floats,
          window: npt.NDArray[np.intp], offset: int, rng: np.random.Generator) -> Calls:
    """Each call's duration, outcome and cost (window ``w`` of the run is ``offset + w``)."""
    total = len(window)
    error = rng.random(total) < effects.error[offset + window]
    cold = rng.random(total) < cold_rate[offset + window]
    duration = (p.duration_ms * effects.duration[offset + window]
                * np.exp(p.duration_sigma * rng.standard_normal(total)))
    duration = np.where(error, duration * p.fail_fast, duration) + np.where(cold, p.init_ms, 0.0)
    step = price.granularity_ms
    billed = np.maximum(np.ceil(duration / step) * step, max(price.min_duration_ms, step))
    per_ms = (price.billed_memory_mb(p.memory_mb) / 1024.0 * price.gb_second_usd
              + price.ghz(p.memory_mb) * price.ghz_second_usd) / 1000.0
    egress = np.rint(p.egress_bytes * np.exp(0.5 * rng.standard_normal(total))
                     * np.where(error, 0.1, 1.0) * effects.egress[offset + window]).astype(np.int64)
    tokens = np.zeros(total)
    if p.tokens:
        tokens = np.where(error, 0.0, p.tokens * TOKEN_PRICE_USD
                          * np.exp(0.3 * rng.standard_normal(total)))
    factor = effects.cost[offset + window]
    compute = billed * per_ms * factor
    request = np.full(total, price.request_usd) * factor
    egress_usd = egress / 1e9 * price.egress_gb_usd * factor
    tokens = tokens * factor
    return Calls(window, duration, billed, error, cold, egress, compute, request, egress_usd,
                 tokens, compute + request + egress_usd + tokens)
