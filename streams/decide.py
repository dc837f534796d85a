"""From closed windows to anomalies and verdicts, per function.

Each function has a cost-rate detector, a demand (attempts) baseline and a state:
``normal`` → ``throttled``/``isolated`` → ``normal`` (released). Windows are
learned only while the function is normal and not flagged. A new function
version (a deploy) re-baselines its detectors, so a legitimate step change is
learned instead of paged for (during a verdict, at release). On a flag the verdict
caps spend at the baseline: throttle to ``baseline cost rate / current cost per
call`` calls per second (never above the baseline call rate); below
``min_rps`` that means isolate. A verdict is released once it has held for
``hold_seconds`` and demand and cost per call are back within ``min_ratio`` of
the baseline; a function flagged again soon after release holds twice as long.
"""

from __future__ import annotations

import functools
import logging
import pickle
import time
from dataclasses import dataclass, field
from enum import StrEnum

from schemas import Action, Anomaly, CostEvent, Event, Severity, Verdict, sign_verdict
from streams.detectors.zscore import RobustZScore
from streams.features import Window
from streams.settings import Settings
from streams.snapshots import SnapshotError, seal, unseal

log = logging.getLogger("governor.worker")

BEHAVIOUR: dict[str, tuple[float, str, int]] = {
    # feature: (absolute floor of its scale, how to print a value, calls a window needs)
    "error_rate": (0.05, "{:.0%}", 10),
    "duration_ms_p95": (5.0, "{:.0f} ms", 40),  # below that, "p95" is the slowest call
    "egress_bytes_per_s": (10_000.0, "{:,.0f} B/s", 10),
}
"""Behaviour features watched besides cost (reported, not enforced)."""
STORM_ERROR_RATE = 0.5
"""Windows with at least this error rate never teach the cost baselines."""
MIN_ERRORS = 5
"""Failed calls a window needs before its error rate can be anomalous."""


class State(StrEnum):
    NORMAL = "normal"
    THROTTLED = "throttled"
    ISOLATED = "isolated"


@dataclass
class _Function:
    cost: RobustZScore
    demand: RobustZScore
    per_call: RobustZScore
    state: State = State.NORMAL
    since_ns: int = 0
    hold_ns: int = 0
    anomaly_id: str = ""
    fast_path_window_ns: int = -1  # window of the last single-invocation report
    behaviour: dict[str, RobustZScore] = field(default_factory=dict)
    behaviour_flagged: set[str] = field(default_factory=set)  # reported, still anomalous
    version: str = ""  # the function version the baseline was learned on
    rebaseline_pending: bool = False  # a deploy happened while a verdict was in force

    def rebaseline(self) -> None:
        for detector in (self.cost, self.demand, self.per_call, *self.behaviour.values()):
            detector.rebaseline()
        self.rebaseline_pending = False


@dataclass
class VerdictIssuer:
    """Signs verdicts and numbers them per function (monotonic across restarts)."""

    key: bytes
    ttl_ns: int
    issuer: str
    _sequence: dict[str, int] = field(default_factory=dict)

    def issue(self, function: str, action: Action, reason: str, rate_rps: float | None = None,
              anomaly_id: str = "", ttl_ns: int | None = None) -> Verdict:
        now = time.time_ns()
        sequence = max(self._sequence.get(function, 0) + 1, now // 1000)
        self._sequence[function] = sequence
        verdict = Verdict(function=function, action=action, rate_rps=rate_rps,
                          issued_at_unix_nano=now, time_unix_nano=now,
                          expires_at_unix_nano=now + (ttl_ns or self.ttl_ns), sequence=sequence,
                          reason=reason, anomaly_id=anomaly_id, issuer=self.issuer)
        return sign_verdict(verdict, self.key)


class Decider:
    """Turns each closed window of a function into zero or more events."""

    def __init__(self, settings: Settings, issuer: VerdictIssuer,
                 snapshots: dict[str, bytes] | None = None) -> None:
        self.settings = settings
        self.issuer = issuer
        self._functions: dict[str, _Function] = {}
        self._snapshots = dict(snapshots or {})  # restored lazily, on a function's first use

    def snapshot(self, function: str) -> bytes | None:
        """The function's sealed state, for :mod:`streams.snapshots`."""
        f = self._functions.get(function)
        return seal(f, self.issuer.key) if f is not None else None

    def state(self, function: str) -> State:
        f = self._functions.get(function)
        return f.state if f else State.NORMAL

    def _get(self, function: str) -> _Function:
        f = self._functions.get(function)
        if f is None and function in self._snapshots:
            try:
                f = self._functions[function] = unseal(self._snapshots.pop(function),
                                                       self.issuer.key)
            except (SnapshotError, pickle.UnpicklingError, AttributeError, ImportError) as exc:
                log.warning("state of %s not restored (%s); it warms up again", function, exc)
        if f is None:
            s = self.settings
            make = functools.partial(RobustZScore, window=s.baseline_windows,
                                       warmup=s.warmup_windows, threshold=s.zscore_threshold)
            f = self._functions[function] = _Function(
                make("cost_per_s", count_feature="attempts"), make("attempts_per_s"),
                make("cost_per_ok_invocation"),
                behaviour={feature: make(feature, abs_floor=floor)
                           for feature, (floor, _, _) in BEHAVIOUR.items()})
        return f

    def on_event(self, event: CostEvent, window_ns: int) -> list[Event]:
        """The per-event fast path: one extreme invocation is reported at once.

        At most one such report per function and window; no verdict (one expensive
        call is worth a look, not a throttle — the window decides that).
        """
        if event.cold_start:
            return []  # a cold start's init is expected to cost many warm calls
        f = self._functions.get(event.function)
        if f is None and event.function in self._snapshots:
            f = self._get(event.function)
        if f is None or not f.per_call.warm:
            return []
        baseline = f.per_call.median()
        factor = self.settings.fast_path_factor
        window = event.time_unix_nano - event.time_unix_nano % window_ns
        if baseline <= 0 or event.cost_usd < factor * baseline or window == f.fast_path_window_ns:
            return []
        f.fast_path_window_ns = window
        ratio = event.cost_usd / baseline
        return [Anomaly(
            function=event.function, detector="single_invocation", score=ratio,
            threshold=factor, severity=Severity.WARNING,
            window_start_unix_nano=window, window_end_unix_nano=window + window_ns,
            features={"cost_per_invocation": event.cost_usd,
                      "duration_ms": event.duration_ms},
            baseline={"cost_per_invocation": baseline},
            explanation=(f"one invocation ({event.invocation_id}) cost ${event.cost_usd:.6f}, "
                         f"{ratio:.0f}x the baseline ${baseline:.6f} per invocation"),
            cost_impact_usd_per_hour=0.0, version=event.version)]

    def on_window(self, function: str, window: Window) -> list[Event]:
        f = self._get(function)
        x = window.features()
        if window.version and window.version != f.version:
            if f.version:  # a deploy: the new version learns its own baseline
                log.info("%s deployed %s: re-baselining", function, window.version)
                f.rebaseline_pending = True
            f.version = window.version
        behaviour = self._check_behaviour(function, f, window, x)
        if f.state is State.NORMAL:
            if f.rebaseline_pending:
                f.rebaseline()
            return behaviour + self._check_normal(function, f, window, x)
        return behaviour + self._check_enforced(function, f, window, x)

    def _check_behaviour(self, function: str, f: _Function, window: Window,
                         x: dict[str, float]) -> list[Event]:
        """Error rate, latency and egress against their own baselines: an anomaly when
        one departs (once per episode), no verdict — cost decides verdicts."""
        found: list[Event] = []
        for feature, detector in f.behaviour.items():
            if window.invocations < BEHAVIOUR[feature][2]:
                continue  # a rate or a p95 over a handful of calls is noise
            if feature == "error_rate" and window.errors < MIN_ERRORS:
                detector.learn_one(x)
                f.behaviour_flagged.discard(feature)
                continue
            score = detector.score_one(x)
            base = detector.median()
            value = x[feature]
            if score < detector.threshold or value < self.settings.min_ratio * base:
                detector.learn_one(x)
                f.behaviour_flagged.discard(feature)
                continue
            if feature in f.behaviour_flagged:
                continue
            f.behaviour_flagged.add(feature)
            unit = BEHAVIOUR[feature][1]
            found.append(Anomaly(
                function=function, detector=f"behaviour.{feature}", score=score,
                threshold=detector.threshold, severity=Severity.WARNING,
                window_start_unix_nano=window.start_ns, window_end_unix_nano=window.end_ns,
                features=x, baseline={feature: base},
                explanation=f"{feature.replace('_', ' ')} {unit.format(value)} vs baseline "
                            f"{unit.format(base)}",
                cost_impact_usd_per_hour=0.0, version=window.version))
        return found

    def _check_normal(self, function: str, f: _Function, window: Window,
                      x: dict[str, float]) -> list[Event]:
        score = f.cost.score_one(x)
        base_cost = f.cost.median()
        ratio = x["cost_per_s"] / base_cost if base_cost > 0 else 0.0
        if score < f.cost.threshold or ratio < self.settings.min_ratio:
            if "error_rate" in f.behaviour_flagged or x["error_rate"] >= STORM_ERROR_RATE:
                return []  # failing calls are cheap: do not learn their cost as normal
            f.cost.learn_one(x)
            f.demand.learn_one(x)
            if window.invocations > window.errors:
                f.per_call.learn_one(x)
            return []
        base_rps = f.demand.median()
        per_call = x["cost_per_invocation"] or f.per_call.median()
        allowed = min(base_rps, base_cost / per_call) if per_call > 0 else base_rps
        demand_ratio = x["attempts_per_s"] / base_rps if base_rps > 0 else 0.0
        per_call_ratio = per_call / f.per_call.median() if f.per_call.median() > 0 else 0.0
        driver = ("invocations" if demand_ratio >= per_call_ratio else "cost per invocation")
        explanation = (
            f"cost/s {ratio:.1f}x baseline (${x['cost_per_s'] * 60:.4f}/min vs "
            f"${base_cost * 60:.4f}/min); invocations {demand_ratio:.1f}x, "
            f"cost per invocation {per_call_ratio:.1f}x; driver: {driver}")
        impact = max(0.0, x["cost_per_s"] - base_cost) * 3600
        anomaly = Anomaly(
            function=function, detector=f.cost.name, score=score, threshold=f.cost.threshold,
            severity=Severity.CRITICAL if ratio >= 10 else Severity.WARNING,
            window_start_unix_nano=window.start_ns, window_end_unix_nano=window.end_ns,
            features=x, baseline={"cost_per_s": base_cost, "attempts_per_s": base_rps,
                                  "cost_per_invocation": f.per_call.median()},
            explanation=explanation, cost_impact_usd_per_hour=impact, version=window.version)
        now = time.time_ns()
        f.hold_ns = (min(2 * f.hold_ns, 8 * self._hold()) if now - f.since_ns < 2 * f.hold_ns
                     else self._hold())
        f.since_ns, f.anomaly_id = now, anomaly.event_id
        if allowed < self.settings.min_rps:
            f.state = State.ISOLATED
            verdict = self.issuer.issue(function, Action.ISOLATE, f"isolated: {explanation}",
                                        anomaly_id=anomaly.event_id)
        else:
            f.state = State.THROTTLED
            rps = round(allowed, 2)
            verdict = self.issuer.issue(
                function, Action.THROTTLE, f"throttled to {rps:g} rps: {explanation}",
                rate_rps=rps, anomaly_id=anomaly.event_id)
        return [anomaly, verdict]

    def _check_enforced(self, function: str, f: _Function, window: Window,
                        x: dict[str, float]) -> list[Event]:
        if time.time_ns() - f.since_ns < f.hold_ns:
            return []
        limit = self.settings.min_ratio
        base_rps, base_call = f.demand.median(), f.per_call.median()
        demand_ok = base_rps <= 0 or x["attempts_per_s"] < limit * base_rps
        per_call_ok = (not window.invocations or base_call <= 0
                       or x["cost_per_invocation"] < limit * base_call)
        if not (demand_ok and per_call_ok):
            return []
        was = f.state
        f.state, f.since_ns = State.NORMAL, time.time_ns()
        return [self.issuer.issue(
            function, Action.RELEASE,
            f"released after {was.value}: demand {x['attempts_per_s']:.2f} rps vs "
            f"baseline {base_rps:.2f}", anomaly_id=f.anomaly_id)]

    def _hold(self) -> int:
        return int(self.settings.hold_seconds * 1e9)
