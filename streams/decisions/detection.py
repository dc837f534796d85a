"""From closed windows to anomalies and proposals, per function.

Each function has a cost-rate detector, a demand (attempts) baseline, a slow-leak
detector on its cost per call and behaviour detectors (error rate, latency, egress).
On a cost surge or a leak, detection makes a typed :class:`~.proposal.Proposal`
(throttle to a rate, or isolate) and keeps it standing until the figures are back; it
signs nothing and holds no verdict state: the cost-guard policy weighs the proposal and
the verdict lifecycle (:mod:`streams.decisions.lifecycle`) alone issues what agents see.

The cost rate is judged with cold starts priced as warm calls (at a few calls a window
one cold start's init can cost more than the rest of the window; that is the platform,
not a runaway), and the cost per call against a slow reference by a count-weighted
CUSUM, which sees a leak of a few per cent a window that the rolling baseline absorbs.
Windows are learned only while no proposal stands and nothing is flagged. A new
function version (a deploy) re-baselines its detectors, so a legitimate step change is
learned instead of paged for (while a proposal stands, once it ends). A proposal caps
spend at the baseline: throttle to ``baseline cost rate / current cost per call`` calls
per second (never above the baseline call rate); below ``min_rps`` that means isolate.
It stands for at least ``hold_seconds`` and until demand and cost per call are back
within ``min_ratio`` of the baseline. Time is the decision step's clock (``now_ns``),
never read here.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from statistics import NormalDist
from typing import Any, NamedTuple

import orjson

from schemas import Action, Anomaly, CostEvent, Driver, Hold, Severity
from streams.decisions.proposal import Detection, Proposal
from streams.decisions.windows import Window
from streams.detectors import onset
from streams.detectors.base import Detector
from streams.detectors.cusum import CusumScore
from streams.detectors.zscore import RobustZScore
from streams.settings import Settings
from streams.state import MAX_INT, MIN_INT, Reader, StateError, integer, number, rows

log = logging.getLogger("governor.worker")

BEHAVIOUR: dict[str, tuple[float, str, int]] = {
    # feature: (absolute floor of its scale, how to print a value, calls a window needs)
    "error_rate": (0.05, "{:.0%}", 10),
    # a p95 over fewer calls is the 2nd to 5th slowest call: too noisy to page for
    "duration_ms_p95": (5.0, "{:.0f} ms", 100),
    "egress_bytes_per_call": (1_000.0, "{:,.0f} B", 20),
}
"""Behaviour features watched besides cost (reported, not enforced)."""
SIGNIFICANCE = 1e-6
"""A window (or a few pooled ones) is anomalous only if chance would give its call count,
its cost per call or its failed calls with at most this probability under the baseline:
at a few calls a window a robust z-score alone pages for Poisson noise."""
ROUTINE_BURSTS = 3
"""A cost surge is routine — a batch, a cron — once it is the third at one period: it is
reported (info) but not enforced."""
EPISODE_GAP = 3
"""A held-back surge's episode ends after this many normal windows in a row (a window
or two back within noise of the baseline is the same episode: one report)."""
BURST_MEMORY = 8
"""Surges remembered per function to tell a routine one (see :meth:`Decider._routine`)."""
ROUTINE_SLACK = 0.1
"""…at one period (or a multiple: a burst too small to flag is missed) give or take this
share of it (at least two windows): a sparse function's burst is judged over pooled
windows, so it is seen a window or two late."""
ROUTINE_GROWTH = 2.0
"""…unless it is more than this × the largest of the earlier ones (a growing burst)."""
ESCALATE = 2.0
"""A standing proposal is replaced when the cost rate reaches this × the one it was made
on."""
PARTIAL_MIN_SECONDS = 1.0
"""The fast path judges an open window once this much of it has passed."""
PARTIAL_SIGNIFICANCE = 1e-9
"""The fast path's :data:`SIGNIFICANCE`: it looks at each window many times, on fewer
calls, so each look must be far less likely to be chance."""
SCAN_WINDOWS = 6
"""A sparse function's cost is also judged over its last 2 … this many windows pooled."""
SPARSE_CALLS = 10.0
"""Baseline calls a window below which a function is sparse (its cost is scanned)."""
STORM_ERROR_RATE = 0.5
"""Windows with at least this error rate never teach the cost baselines."""
MIN_ERRORS = 5
"""Failed calls a window needs before its error rate can be anomalous."""
POOL_WINDOWS = 12
"""A window with too few calls for a behaviour rate is judged with the windows before it,
pooled until they hold enough calls (at most this many windows; duration p95 excepted)."""
@functools.cache
def _quantile(level: float) -> float:
    """The normal quantile a one-sided test at ``level`` needs (two levels in use)."""
    return NormalDist().inv_cdf(1 - level)


_Z_SIGNIFICANT = _quantile(SIGNIFICANCE)
_Z_PARTIAL = _quantile(PARTIAL_SIGNIFICANCE)
SIZE_LEVEL = 1e-4
"""A surge is enforced when it is at least ``enforce_ratio`` × with this confidence (its
lower bound at this level; whether it is a surge at all was judged at
:data:`SIGNIFICANCE`)."""
PARTIAL_SIZE_LEVEL = 1e-6
""":data:`SIZE_LEVEL` on the fast path, which bounds many parts of each open window."""
ONSET = 0.75
"""The shape detector's calibrated score at which an episode starts
(:class:`streams.detectors.onset.OnsetAlert`)."""
SHAPE_SEVERITY = Severity.INFO
"""Not higher: on the incident suite's 10 s cost-rate windows the shape detector reports
about 530 onsets per 100 function-days where nothing happened (NAB's 5-minute series are
far smoother); it is the analysts' view, never a page."""
LAYOUT = 5
"""Version of the per-function state's meaning; a snapshot of another layout is refused
(the function warms up again)."""
_DRIVERS = {"error_rate": Driver.ERROR_RATE, "duration_ms_p95": Driver.DURATION,
            "egress_bytes_per_call": Driver.EGRESS}


class _Sums(NamedTuple):
    """One window's counts and sums, kept for pooling a sparse function's windows."""

    attempts: int
    invocations: int
    errors: int
    warm_ok: int
    warm_ok_cost: float
    warm_cost: float  # the cost with cold starts priced as warm calls
    egress: float

    @classmethod
    def from_state(cls, state: object, where: str) -> _Sums:
        """The sums of a ``list(sums)`` (four counts, three amounts)."""
        values = rows([state], where, 1, 7)[0]
        counts = [integer(v, f"{where}[{i}]") for i, v in enumerate(values[:4])]
        amounts = [number(v, f"{where}[{i + 4}]", 0.0) for i, v in enumerate(values[4:])]
        return cls(*counts, *amounts)

    def minus(self, earlier: _Sums) -> _Sums:
        """What was added since ``earlier`` (the same window, looked at before)."""
        return _Sums(self.attempts - earlier.attempts, self.invocations - earlier.invocations,
                     self.errors - earlier.errors, self.warm_ok - earlier.warm_ok,
                     self.warm_ok_cost - earlier.warm_ok_cost,
                     self.warm_cost - earlier.warm_cost, self.egress - earlier.egress)


class _Evidence(NamedTuple):
    """The windows a surge was judged on, ``seconds`` long in all: what the surge's
    lower bound (:meth:`Decider._lower_ratio`) is computed from."""

    windows: list[_Sums]
    seconds: float
    level: float = SIZE_LEVEL
    last: float = 0.0  # seconds of the last window (0: an equal share of ``seconds``)

    def latest(self) -> _Evidence:
        """The last window alone: a growing surge shows there before the pool does."""
        last = self.last or self.seconds / max(len(self.windows), 1)
        return self._replace(windows=self.windows[-1:], seconds=last, last=last)


def _cost_ratio(anomaly: Anomaly) -> float:
    """The cost rate an anomaly saw over its baseline (0.0 when it says none)."""
    base = anomaly.baseline.get("cost_per_s", 0.0)
    seen = anomaly.features.get("cost_per_s_warm", anomaly.features.get("cost_per_s", 0.0))
    return seen / base if base > 0 else 0.0


def poisson_tail(n: float, mean: float) -> float:
    """P(N ≥ n) for N ~ Poisson(``mean``) (1.0 when ``n`` ≤ ``mean``).

    >>> f"{poisson_tail(20, 2.0):.2g}", poisson_tail(1, 2.0)
    ('6.4e-14', 1.0)
    """
    k = math.ceil(n)
    if k <= 0:
        return 1.0
    if mean <= 0:
        return 0.0
    if k <= mean:
        return 1.0  # not significant; ≥ about 0.5 in fact
    term = math.exp(-mean + k * math.log(mean) - math.lgamma(k + 1))
    total = 0.0
    while term > total * 1e-12:
        total += term
        k += 1
        term *= mean / k
    return min(total, 1.0)


def poisson_lower(n: float, level: float) -> float:
    """The lowest Poisson mean that gives ``n`` or more with probability ``level``
    (the one-sided lower confidence bound of a count ``n``; 0.0 for ``n`` ≤ 0).

    >>> round(poisson_lower(100, 1e-6), 1), poisson_lower(0, 1e-6)
    (59.4, 0.0)
    """
    if n <= 0:
        return 0.0
    low, high = 0.0, float(n)
    for _ in range(60):
        mid = (low + high) / 2
        if poisson_tail(n, mid) > level:
            high = mid
        else:
            low = mid
        if high - low <= 1e-6 * high:
            break
    return low


def binomial_tail(k: float, n: float, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(``n``, ``p``) (1.0, not significant, when ``k`` ≤ ``n·p``).

    >>> f"{binomial_tail(6, 6, 0.05):.3g}", binomial_tail(0, 10, 0.5)
    ('1.56e-08', 1.0)
    """
    k, n = math.ceil(k), round(n)
    if k <= n * p or k <= 0:
        return 1.0
    if k > n or p <= 0:
        return 0.0
    term = math.exp(math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)
                    + k * math.log(p) + (n - k) * math.log1p(-p))
    total = 0.0
    while k <= n and term > total * 1e-12:
        total += term
        term *= (n - k) / (k + 1) * p / (1 - p)
        k += 1
    return min(total, 1.0)


@dataclass
class _Function:
    cost: RobustZScore
    demand: RobustZScore
    per_call: RobustZScore
    leak: CusumScore
    proposal: Proposal | None = None  # standing while the function is anomalous
    fast_path_window_ns: int = -1  # window of the last single-invocation report
    behaviour: dict[str, RobustZScore] = field(default_factory=dict)
    behaviour_flagged: set[str] = field(default_factory=set)  # reported, still anomalous
    version: str = ""  # the function version the baseline was learned on
    rebaseline_pending: bool = False  # a deploy happened while a verdict was in force
    # the last windows' sums, for pooling (see _Sums)
    recent: deque[_Sums] = field(default_factory=lambda: deque(maxlen=POOL_WINDOWS))
    errors_seen: float = 0.0  # failed calls and calls learned, fading: the error rate
    calls_seen: float = 0.0  # the binomial test of a storm is against
    # mean attempts and cost (cold starts as warm calls) per second over the baseline:
    # at a fraction of a call per window the medians say 0, the means do not
    mean_rps: float = 0.0
    mean_cost: float = 0.0
    means_learned: int = 0
    min_ratio: float = 0.0  # live-tuned (0: the setting)
    fast_path_factor: float = 0.0  # live-tuned (0: the setting)
    min_rps: float = -1.0  # live-tuned (negative: the setting)
    enforce_ratio: float = 0.0  # live-tuned (0: the setting)
    seen: int = 0  # windows closed since the function was first seen
    # the windows of a surge held back from enforcement (reported once; it lasts while
    # this is not empty): its evidence accumulates until it is enforced or normal
    held: deque[_Sums] = field(default_factory=lambda: deque(maxlen=POOL_WINDOWS))
    held_for: int = 0  # windows the held-back episode has lasted
    # the fast path's last looks: (window start, elapsed ns, the window's sums so far)
    looks: deque[tuple[int, int, _Sums]] = field(default_factory=lambda: deque(maxlen=8))
    calm: int = 0  # normal windows in a row since the last held-back one
    # the last surges' (window start, cost ratio), to tell routine bursts
    bursts: deque[tuple[int, float]] = field(
        default_factory=lambda: deque(maxlen=BURST_MEMORY))
    # the cost rate's shape, by the detector `governor bench nab` scores by default
    shape: Detector = field(default_factory=onset)
    layout: int = LAYOUT

    _FIGURES = ("errors_seen", "calls_seen", "mean_rps", "mean_cost", "min_ratio",
                "fast_path_factor", "enforce_ratio")
    _COUNTS = ("means_learned", "seen", "held_for", "calm")

    def to_state(self) -> dict[str, Any]:
        """Plain data (see :mod:`streams.state`)."""
        p = self.proposal
        return {
            "layout": self.layout, "cost": self.cost.to_state(),
            "demand": self.demand.to_state(), "per_call": self.per_call.to_state(),
            "leak": self.leak.to_state(), "shape": self.shape.to_state(),
            "behaviour": {k: d.to_state() for k, d in self.behaviour.items()},
            "behaviour_flagged": sorted(self.behaviour_flagged),
            "proposal": p.to_state() if p is not None else None,
            "fast_path_window_ns": self.fast_path_window_ns, "version": self.version,
            "rebaseline_pending": self.rebaseline_pending, "min_rps": self.min_rps,
            "recent": [list(s) for s in self.recent], "held": [list(s) for s in self.held],
            "looks": [[start, elapsed, list(sums)] for start, elapsed, sums in self.looks],
            "bursts": [list(b) for b in self.bursts],
            **{name: getattr(self, name) for name in (*self._FIGURES, *self._COUNTS)}}

    @classmethod
    def from_state(cls, r: Reader) -> _Function:
        """The state :meth:`to_state` gave (:class:`~streams.state.StateError` if not)."""
        layout = r.integer("layout")
        if layout != LAYOUT:
            raise StateError(f"{r.where}.layout: {layout}, not this version's {LAYOUT}",
                             "format")
        behaviour = r.reader("behaviour")
        f = cls(RobustZScore.from_state(r.raw("cost"), f"{r.where}.cost"),
                RobustZScore.from_state(r.raw("demand"), f"{r.where}.demand"),
                RobustZScore.from_state(r.raw("per_call"), f"{r.where}.per_call"),
                CusumScore.from_state(r.raw("leak"), f"{r.where}.leak"),
                shape=Detector.from_state(r.raw("shape"), f"{r.where}.shape"),
                behaviour={k: RobustZScore.from_state(behaviour.raw(k), f"{behaviour.where}.{k}")
                           for k in BEHAVIOUR if behaviour.has(k)},
                proposal=(Proposal.from_state(r.reader("proposal")) if r.has("proposal")
                          else None),
                fast_path_window_ns=r.integer("fast_path_window_ns", -1),
                version=r.text("version", 128), rebaseline_pending=r.flag("rebaseline_pending"),
                min_rps=r.number("min_rps", -1.0))
        flagged = set(r.texts("behaviour_flagged", len(BEHAVIOUR), 64))
        if not flagged <= BEHAVIOUR.keys():
            raise StateError(f"{r.where}.behaviour_flagged: not behaviour features")
        f.behaviour_flagged = flagged
        for name in cls._FIGURES:
            setattr(f, name, r.number(name, 0.0))
        for name in cls._COUNTS:
            setattr(f, name, r.integer(name, 0, MAX_INT))
        at = r.where
        f.recent.extend(_Sums.from_state(s, f"{at}.recent[{i}]")
                        for i, s in enumerate(r.items("recent", POOL_WINDOWS)))
        f.held.extend(_Sums.from_state(s, f"{at}.held[{i}]")
                      for i, s in enumerate(r.items("held", POOL_WINDOWS)))
        maxlen = f.looks.maxlen or 0
        f.looks.extend((integer(start, f"{at}.looks[{i}][0]", MIN_INT),
                        integer(elapsed, f"{at}.looks[{i}][1]"),
                        _Sums.from_state(sums, f"{at}.looks[{i}][2]"))
                       for i, (start, elapsed, sums) in enumerate(rows(r.raw("looks"),
                                                                       f"{at}.looks", maxlen, 3)))
        f.bursts.extend((integer(start, f"{at}.bursts[{i}][0]", MIN_INT),
                         number(ratio, f"{at}.bursts[{i}][1]", 0.0))
                        for i, (start, ratio) in enumerate(r.rows("bursts", BURST_MEMORY, 2)))
        return f

    def rebaseline(self) -> None:
        for detector in (self.cost, self.demand, self.per_call, self.leak,
                         *self.behaviour.values()):
            detector.rebaseline()
        self.mean_rps = self.mean_cost = 0.0
        self.means_learned = 0
        self.rebaseline_pending = False

    def learn_means(self, x: dict[str, float], windows: int) -> None:
        self.means_learned += 1
        rate = 1.0 / min(self.means_learned, windows)
        self.mean_rps += rate * (x["attempts_per_s"] - self.mean_rps)
        self.mean_cost += rate * (x["cost_per_s_warm"] - self.mean_cost)


class Decider:
    """Turns each closed window of a function into zero or more events."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._functions: dict[str, _Function] = {}
        self._dormant: dict[str, bytes] = {}  # forgotten functions' state, as JSON

    def state(self, function: str) -> dict[str, Any] | None:
        """The function's state as plain data, for the worker's snapshots."""
        f = self._functions.get(function)
        return f.to_state() if f is not None else None

    def restore(self, function: str, state: object) -> None:
        """Take over ``function``'s state from :meth:`state` (a snapshot's); raises
        :class:`~streams.state.StateError`, keeping what it had, if it is not one."""
        self._functions[function] = _Function.from_state(Reader(state, "state.detection"))
        self._dormant.pop(function, None)

    def warm(self, function: str) -> bool:
        """Whether ``function``'s cost baseline is learned (restored ones included)."""
        f = self._functions.get(function)
        if f is None and function in self._dormant:
            f = self._get(function)
        return f is not None and f.cost.warm

    def proposal(self, function: str) -> Proposal | None:
        """The proposal standing for ``function`` (``None``: it looks normal)."""
        f = self._functions.get(function)
        return f.proposal if f else None

    def _get(self, function: str) -> _Function:
        f = self._functions.get(function)
        if f is None and function in self._dormant:
            state = orjson.loads(self._dormant.pop(function))
            f = self._functions[function] = _Function.from_state(Reader(state, "dormant"))
        if f is None:
            s = self.settings
            # a change flagged for adapt_windows (and not enforced) is the new normal
            make = functools.partial(RobustZScore, window=s.baseline_windows,
                                     warmup=s.warmup_windows, threshold=s.zscore_threshold,
                                     patience=s.adapt_windows,
                                     memory=max(500, s.adapt_windows * (s.adapt_windows + 1) // 2))
            f = self._functions[function] = _Function(
                make("cost_per_s_warm", count_feature="attempts"), make("attempts_per_s"),
                make("cost_per_warm_call"),
                CusumScore("cost_per_warm_call", count_feature="warm_ok", shift=s.min_ratio,
                           warmup=5 * s.warmup_windows),
                behaviour={feature: make(feature, abs_floor=floor)
                           for feature, (floor, _, _) in BEHAVIOUR.items()})
        return f

    def functions(self) -> set[str]:
        """Every function with state here, live or dormant."""
        return set(self._functions) | set(self._dormant)

    @property
    def dormant(self) -> int:
        """Functions forgotten while idle, their state kept as JSON."""
        return len(self._dormant)

    def knows(self, function: str) -> bool:
        return function in self._functions or function in self._dormant

    def evict_dormant(self) -> str | None:
        """Drop the function dormant longest (it warms up again if it comes back) and
        name it; ``None`` when none is dormant."""
        function = next(iter(self._dormant), None)
        if function is not None:
            del self._dormant[function]
        return function

    def drop(self, function: str) -> None:
        """Drop everything about ``function`` (another worker decides it now)."""
        self._functions.pop(function, None)
        self._dormant.pop(function, None)

    def forget(self, function: str) -> None:
        """Drop the function's live state, kept as JSON so it resumes without a warm-up."""
        f = self._functions.pop(function, None)
        if f is not None:
            self._dormant[function] = orjson.dumps(f.to_state())

    def tune(self, function: str, zscore_threshold: float, min_ratio: float,
             fast_path_factor: float, min_rps: float, enforce_ratio: float = 0.0) -> None:
        """Apply live detection thresholds to ``function`` (see :mod:`.thresholds`)."""
        f = self._get(function)
        for detector in (f.cost, f.demand, f.per_call, *f.behaviour.values()):
            detector.threshold = zscore_threshold
        f.min_ratio, f.fast_path_factor, f.min_rps = min_ratio, fast_path_factor, min_rps
        f.enforce_ratio = enforce_ratio

    def _min_ratio(self, f: _Function) -> float:
        return f.min_ratio or self.settings.min_ratio

    def on_event(self, event: CostEvent, window_ns: int) -> list[Anomaly]:
        """The per-event fast path: one extreme invocation is reported at once.

        At most one such report per function and window; no verdict (one expensive
        call is worth a look, not a throttle — the window decides that).
        """
        if event.cold_start:
            return []  # a cold start's init is expected to cost many warm calls
        f = self._functions.get(event.function)
        if f is None and event.function in self._dormant:
            f = self._get(event.function)
        if f is None or not f.per_call.warm:
            return []
        baseline = f.per_call.median()
        factor = f.fast_path_factor or self.settings.fast_path_factor
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
            cost_impact_usd_per_hour=0.0, version=event.version,
            driver=Driver.COST_PER_INVOCATION)]

    def on_window(self, function: str, window: Window, now_ns: int) -> Detection:
        """Score one closed window of ``function`` at ``now_ns`` (the step's clock)."""
        f = self._get(function)
        f.seen += 1
        x = window.features()
        if "cost_per_s_warm" not in x:  # no warm call: price the cold ones at the baseline
            per_call = f.per_call.median()
            x["cost_per_s_warm"] = (window.cold_starts * per_call / window.seconds
                                    if per_call > 0 else x["cost_per_s"])
        if window.invocations:
            x["egress_bytes_per_call"] = window.egress_bytes / window.invocations
        f.recent.append(_Sums(window.attempts, window.invocations, window.errors,
                              window.warm_ok, window.warm_ok_cost_usd,
                              x["cost_per_s_warm"] * window.seconds, float(window.egress_bytes)))
        if window.version and window.version != f.version:
            if f.version:  # a deploy: the new version learns its own baseline
                log.info("%s deployed %s: re-baselining", function, window.version)
                f.rebaseline_pending = True
            f.version = window.version
        behaviour = self._check_behaviour(function, f, window, x)
        if not f.cost.warm:
            self._note_burst(f, window, x)
        shape = self._check_shape(function, f, window, x)
        if f.proposal is None:
            if f.rebaseline_pending:
                f.rebaseline()
            anomalies, proposal = self._check_normal(function, f, window, x, now_ns)
            if shape is not None and not anomalies and not f.held:
                anomalies = [shape]
            return Detection(behaviour + anomalies, proposal, proposal is not None)
        self._check_standing(f, x, now_ns)
        stronger = self._escalate(function, f, window, x, now_ns) if f.proposal else None
        if stronger is not None:
            return Detection([*behaviour, stronger], f.proposal, True)
        return Detection(behaviour, f.proposal)

    def _check_shape(self, function: str, f: _Function, window: Window,
                     x: dict[str, float]) -> Anomaly | None:
        """The cost rate through :func:`streams.detectors.onset` (NAB's default: fences
        with a daily profile, the shape of the last ten windows, one report per episode,
        a daily routine not reported): an episode's onset is reported, never enforced."""
        point = {"value": x["cost_per_s_warm"], "t": window.start_ns / 1e9}
        score = f.shape.score_one(point)
        f.shape.learn_one(point)
        calibrated = f.shape.calibrated(score)
        if calibrated < ONSET or not f.cost.warm:
            return None
        base = f.cost.median() or f.mean_cost
        ratio = x["cost_per_s_warm"] / base if base > 0 else 0.0
        return Anomaly(
            function=function, detector=f.shape.name, score=calibrated, threshold=ONSET,
            severity=SHAPE_SEVERITY, window_start_unix_nano=window.start_ns,
            window_end_unix_nano=window.end_ns, features=x,
            baseline={"cost_per_s": base, "attempts_per_s": self._base_rps(f)},
            explanation=(f"the cost rate departs from its learned shape ({ratio:.1f}x the "
                         "baseline); reported, not enforced"),
            cost_impact_usd_per_hour=max(0.0, x["cost_per_s_warm"] - base) * 3600,
            version=window.version)

    def _escalate(self, function: str, f: _Function, window: Window, x: dict[str, float],
                  now_ns: int) -> Anomaly | None:
        """A standing proposal never hides a stronger surge: cost ``ESCALATE`` × what it
        was made on (a compounding creep, a loop that widens) makes a new one."""
        standing = f.proposal
        assert standing is not None
        base_cost = f.cost.median() or f.mean_cost
        if base_cost <= 0 or "cost_per_s_warm" not in x:
            return None
        ratio = x["cost_per_s_warm"] / base_cost
        made_on = _cost_ratio(standing.anomaly)
        score = f.cost.score_one(x)
        if made_on <= 0 or ratio < ESCALATE * made_on or score < f.cost.threshold or not (
                self._significant(f, [f.recent[-1]], window.seconds)):
            return None
        anomaly, proposal = self._propose(function, f, window, x, score, ratio, now_ns,
                                          f.per_call.median(),
                                          _Evidence([f.recent[-1]], window.seconds),
                                          record=False)
        if proposal is None:
            f.proposal = standing  # a held-back surge never lifts a standing proposal
            return None
        return anomaly

    def on_partial(self, function: str, window: Window, now_ns: int) -> Detection:
        """The fast path: ``window`` is still open, and its calls so far (up to
        ``now_ns``) may already prove a cost surge — a runaway loop or a cost-per-call
        jump — beyond chance at the function's volume (:data:`SIGNIFICANCE`). Then
        the proposal is made now instead of at the window's close; nothing is learned.
        """
        f = self._get(function)
        elapsed_ns = min(now_ns, window.end_ns) - window.start_ns
        if (f.proposal is not None or not f.cost.warm or f.means_learned == 0
                or elapsed_ns < PARTIAL_MIN_SECONDS * 1e9):
            return Detection([])
        so_far = replace(window, end_ns=window.start_ns + elapsed_ns)
        warm_cost = (so_far.warm_ok_cost_usd / so_far.warm_ok * so_far.invocations
                     if so_far.warm_ok else so_far.cost_usd)
        sums = _Sums(so_far.attempts, so_far.invocations, so_far.errors, so_far.warm_ok,
                     so_far.warm_ok_cost_usd, warm_cost, float(so_far.egress_bytes))
        looks = [(e, w) for start, e, w in f.looks if start == window.start_ns]
        f.looks.append((window.start_ns, elapsed_ns, sums))
        # the window so far, and what came since each earlier look at least a second
        # back: a runaway that starts late in a window is not diluted by its start
        candidates = [(sums, elapsed_ns / 1e9)] + [
            (sums.minus(w), (elapsed_ns - e) / 1e9)
            for e, w in reversed(looks) if elapsed_ns - e >= PARTIAL_MIN_SECONDS * 1e9]
        for part, seconds in candidates:
            detection = self._judge_part(function, f, so_far, part, seconds, now_ns)
            if detection is not None:
                return detection
        return Detection([])

    def _judge_part(self, function: str, f: _Function, so_far: Window, part: _Sums,
                    seconds: float, now_ns: int) -> Detection | None:
        """A proposal if ``part`` (the calls of the last ``seconds`` of the open window
        ``so_far``) proves a cost surge; None otherwise."""
        expected_cost = f.mean_cost * seconds
        if expected_cost <= 0 or part.warm_cost < self._min_ratio(f) * expected_cost:
            return None  # spend is within the ratio: nothing to see yet
        if not self._significant(f, [part], seconds, PARTIAL_SIGNIFICANCE, _Z_PARTIAL):
            return None
        x = so_far.features()
        x["cost_per_s_warm"] = part.warm_cost / seconds
        x["attempts_per_s"] = part.attempts / seconds
        if part.warm_ok:
            x["cost_per_warm_call"] = part.warm_ok_cost / part.warm_ok
        score = f.cost.score_one(x)
        if score < f.cost.threshold:
            return None
        anomaly, proposal = self._propose(
            function, f, so_far, x, score, part.warm_cost / expected_cost, now_ns,
            f.per_call.median(),
            _Evidence([*f.held, part], len(f.held) * self.settings.window_seconds + seconds,
                      PARTIAL_SIZE_LEVEL, last=seconds),
            record=False)
        if proposal is None:  # held back (routine, learning, small): said at the close
            return None
        return Detection([anomaly], proposal, True)

    def _check_behaviour(self, function: str, f: _Function, window: Window,
                         x: dict[str, float]) -> list[Anomaly]:
        """Error rate, latency and egress against their own baselines: an anomaly when
        one departs (once per episode), no verdict — cost decides verdicts.

        A window with too few calls for a rate is pooled with the windows before it
        (see :data:`POOL_WINDOWS`). During an error storm only the error rate learns:
        failing calls are short and send little, and a baseline learned from them
        would page for the recovery.
        """
        found: list[Anomaly] = []
        for feature, detector in f.behaviour.items():
            need = BEHAVIOUR[feature][2]
            px: dict[str, float] | None = x
            if window.invocations < need:
                px = None if feature == "duration_ms_p95" else self._pooled(f, x, need)
            if px is None:
                continue  # a rate or a p95 over a handful of calls is noise
            learns = feature == "error_rate" or not self._storm(f, x)
            score = detector.score_one(px)
            base = detector.median()
            value = px[feature]
            if (score < detector.threshold or value < self._min_ratio(f) * base
                    or (feature == "error_rate" and not self._errors_significant(f, px))):
                if learns:
                    detector.learn_one(px)
                if feature == "error_rate":
                    fade = 1.0 - 1.0 / (50 * self.settings.baseline_windows)
                    f.errors_seen = f.errors_seen * fade + window.errors
                    f.calls_seen = f.calls_seen * fade + window.invocations
                f.behaviour_flagged.discard(feature)
                continue
            if learns:
                detector.learn_one(px)  # refused, unless it has lasted (the detector's gate)
            if feature in f.behaviour_flagged:
                continue
            f.behaviour_flagged.add(feature)
            unit = BEHAVIOUR[feature][1]
            found.append(Anomaly(
                function=function, detector=f"behaviour.{feature}", score=score,
                threshold=detector.threshold, severity=Severity.WARNING,
                window_start_unix_nano=window.start_ns, window_end_unix_nano=window.end_ns,
                features=px, baseline={feature: base},
                explanation=f"{feature.replace('_', ' ')} {unit.format(value)} vs baseline "
                            f"{unit.format(base)}",
                cost_impact_usd_per_hour=0.0, version=window.version,
                driver=_DRIVERS[feature]))
        return found

    @staticmethod
    def _pooled(f: _Function, x: dict[str, float], need: int) -> dict[str, float] | None:
        """``x`` with the behaviour rates over the last windows that hold ``need`` calls."""
        calls = errors = 0
        egress = 0.0
        for w in reversed(f.recent):
            calls, errors, egress = calls + w.invocations, errors + w.errors, egress + w.egress
            if calls >= need:
                return {**x, "invocations": float(calls), "errors": float(errors),
                        "error_rate": errors / calls, "egress_bytes_per_call": egress / calls}
        return None

    @staticmethod
    def _errors_significant(f: _Function, x: dict[str, float]) -> bool:
        """At least :data:`MIN_ERRORS` failed calls, and more than the function's long-run
        error rate gives by chance (:data:`SIGNIFICANCE`)."""
        if x["errors"] < MIN_ERRORS:
            return False
        rate = (f.errors_seen + 1.0) / (f.calls_seen + 100.0)  # prior: 1 %, worth 100 calls
        return binomial_tail(x["errors"], x["invocations"], rate) <= SIGNIFICANCE

    def _surge(self, f: _Function, window: Window, score: float,
               ratio: float) -> tuple[float, float, _Evidence] | None:
        """(score, cost ratio, evidence) of a cost surge, or None.

        A surge is a window whose cost rate scores at the threshold, is ``min_ratio`` ×
        the baseline or more, and is no chance event (:meth:`_significant`). A sparse
        function's last 2 … :data:`SCAN_WINDOWS` windows are also judged pooled: a
        runaway at a fraction of a call per window shows over a few windows, not one.
        """
        base_cost, min_ratio = f.cost.median(), self._min_ratio(f)
        if not f.cost.warm:
            return None
        if (base_cost > 0 and score >= f.cost.threshold and ratio >= min_ratio
                and self._significant(f, [f.recent[-1]], window.seconds)):
            return score, ratio, _Evidence([f.recent[-1]], window.seconds)
        if f.mean_rps * window.seconds >= SPARSE_CALLS or f.mean_cost <= 0:
            return None
        recent = list(f.recent)[-SCAN_WINDOWS:]
        for k in range(2, len(recent) + 1):
            pooled = recent[-k:]
            pooled_ratio = (sum(w.warm_cost for w in pooled)
                            / (k * window.seconds * f.mean_cost))
            if pooled_ratio >= min_ratio and self._significant(f, pooled, window.seconds):
                return score, pooled_ratio, _Evidence(pooled, k * window.seconds)
        return None

    def _significant(self, f: _Function, windows: list[_Sums], seconds: float,
                     level: float = SIGNIFICANCE, z_level: float = _Z_SIGNIFICANT) -> bool:
        """Would chance give these windows' calls, or their cost per call, at most with
        probability ``level`` (Poisson calls at the baseline rate; a mean of
        lognormal-ish costs per call at the baseline, with the leak detector's noise)?
        ``z_level`` is the normal quantile of ``level``."""
        expected = f.mean_rps * seconds * len(windows)
        if poisson_tail(sum(w.attempts for w in windows), expected) <= level:
            return True
        calls, base_call = sum(w.warm_ok for w in windows), f.per_call.median()
        if not calls or base_call <= 0:
            return False
        per_call = sum(w.warm_ok_cost for w in windows) / calls
        if per_call <= base_call:
            return False
        z = (math.log(per_call / base_call) * math.sqrt(self._weight(f, windows))
             / max(f.leak.noise, 0.1))
        return z >= z_level

    @staticmethod
    def _weight(f: _Function, windows: Sequence[_Sums]) -> float:
        """How many calls' worth of evidence the windows' mean cost per call holds: each
        window's calls up to the leak detector's ``max_count``, the count its noise was
        learned with (a window's calls share its level: a cost that moves window to
        window is not averaged away by many calls)."""
        return sum(min(w.warm_ok, f.leak.max_count) for w in windows)

    @staticmethod
    def _base_rps(f: _Function) -> float:
        """Baseline calls per second: the median window's, or the mean for a function
        whose median window is empty."""
        return f.demand.median() or f.mean_rps

    @staticmethod
    def _storm(f: _Function, x: dict[str, float]) -> bool:
        return "error_rate" in f.behaviour_flagged or x["error_rate"] >= STORM_ERROR_RATE

    def _check_normal(self, function: str, f: _Function, window: Window,
                      x: dict[str, float], now_ns: int) -> tuple[list[Anomaly], Proposal | None]:
        score = f.cost.score_one(x)
        base_cost = f.cost.median()
        ratio = x["cost_per_s_warm"] / base_cost if base_cost > 0 else 0.0
        surge = self._surge(f, window, score, ratio)
        evidence = _Evidence([], window.seconds)
        if surge is not None:
            score, ratio, evidence = surge
            if f.held:  # judged with the episode's earlier windows
                evidence = _Evidence([*f.held, f.recent[-1]],
                                     (len(f.held) + 1) * window.seconds)
        leak_score = f.leak.score_one(x)
        leak = leak_score >= f.leak.threshold
        if not (surge or leak):
            f.calm += 1
            if f.calm >= EPISODE_GAP:
                f.held.clear()
                f.held_for = 0
            if self._storm(f, x):
                return [], None  # failing calls are cheap: do not learn their cost as normal
            if window.blocked:
                return [], None  # shaped by a verdict (a probe, a throttle): not normal
            self._learn(f, window, x)
            return [], None
        if surge:
            anomaly, proposal = self._propose(function, f, window, x, score, ratio, now_ns,
                                              f.per_call.median(), evidence)
            if proposal is not None:
                return [anomaly], proposal
            if anomaly.severity is Severity.INFO:  # a routine burst: pooled scans start after
                f.recent.clear()
                return [anomaly], None
            # held back (learning, or below the enforcement ratio): reported once, and
            # learned once it has lasted adapt_windows (the detectors' own gate)
            return self._hold(f, window, x, [anomaly]), None
        anomalies, proposal = self._propose_leak(function, f, window, x, leak_score, now_ns)
        if proposal is None:
            return self._hold(f, window, x, anomalies), None
        return anomalies, proposal

    def _hold(self, f: _Function, window: Window, x: dict[str, float],
              anomalies: list[Anomaly]) -> list[Anomaly]:
        """A surge or leak held back from enforcement: kept as evidence, reported only
        at the start of its episode, and learned as normal once it has lasted
        ``adapt_windows`` (a launch: the new level is the function's normal)."""
        f.held_for += 1
        f.calm = 0
        if f.held_for >= self.settings.adapt_windows:
            self._learn(f, window, x)
        reported = bool(f.held)
        f.held.append(f.recent[-1])
        return [] if reported else anomalies

    def _learn(self, f: _Function, window: Window, x: dict[str, float]) -> None:
        """Learn ``x`` as normal (each detector's gate still refuses what it flags, until
        it has flagged ``adapt_windows`` of late)."""
        f.cost.learn_one(x)
        f.demand.learn_one(x)
        f.learn_means(x, self.settings.baseline_windows)
        if window.warm_ok:
            f.per_call.learn_one(x)
            f.leak.learn_one(x)

    def _note_burst(self, f: _Function, window: Window, x: dict[str, float]) -> None:
        """During warm-up, remember a window that would be a surge against what was
        learned so far, so that a batch job's bursts seen then count as routine."""
        learned = f.cost.median() if f.cost.n_learned >= 2 else 0.0
        if learned > 0 and x["cost_per_s_warm"] >= self._min_ratio(f) * learned:
            f.bursts.append((window.start_ns, x["cost_per_s_warm"] / learned))

    def _propose(self, function: str, f: _Function, window: Window, x: dict[str, float],
                 score: float, ratio: float, now_ns: int, base_call: float,
                 evidence: _Evidence, record: bool = True) -> tuple[Anomaly, Proposal | None]:
        """The anomaly and proposal of a cost surge ``ratio`` × the baseline: no
        proposal when it is routine, the function is still being learned, or the surge
        is not beyond chance at least ``enforce_ratio`` × (:meth:`_lower_ratio`)."""
        base_cost = f.cost.median() or f.mean_cost
        base_rps = self._base_rps(f)
        per_call = x.get("cost_per_warm_call") or x["cost_per_invocation"] or base_call
        demand_ratio = x["attempts_per_s"] / base_rps if base_rps > 0 else 0.0
        allowed = min(base_rps, base_cost / per_call) if per_call > 0 else base_rps
        per_call_ratio = per_call / base_call if base_call > 0 else 0.0
        driver = (Driver.INVOCATIONS if demand_ratio >= per_call_ratio
                  else Driver.COST_PER_INVOCATION)
        explanation = (
            f"cost/s {ratio:.1f}x baseline (${x['cost_per_s_warm'] * 60:.4f}/min vs "
            f"${base_cost * 60:.4f}/min); invocations {demand_ratio:.1f}x, "
            f"cost per invocation {per_call_ratio:.1f}x")
        lower = min(ratio, max(self._lower_ratio(f, evidence),
                               self._lower_ratio(f, evidence.latest())))
        # a surge that goes on from held-back windows is sustained: no burst
        routine = None if f.held else self._routine(f, window.start_ns, ratio, lower, record)
        if routine is not None:
            held, why = Hold.ROUTINE, (f"; routine: the same burst every {routine:g} s, "
                                       "reported, not enforced")
        else:
            held, why = self._held_back(f, lower)
        return self._proposal(function, f, window, x, f.cost.name, score, f.cost.threshold,
                              ratio, base_cost, allowed, driver, explanation + why, now_ns,
                              held)

    def _held_back(self, f: _Function, ratio: float) -> tuple[Hold, str]:
        """Whether and why a surge or leak at least ``ratio`` × is reported but not
        enforced (the function is still being learned, or the ratio is below
        ``enforce_ratio``), with the explanation's tail; ``Hold.NONE``: enforce it."""
        enforce_ratio = max(f.enforce_ratio or self.settings.enforce_ratio, self._min_ratio(f))
        if f.seen < self.settings.learning_windows:
            return Hold.LEARNING, (f"; a function seen for {f.seen} windows: learning, "
                                   f"reported, enforced from window "
                                   f"{self.settings.learning_windows}")
        if ratio < enforce_ratio:
            return Hold.BELOW_RATIO, (
                f"; not shown to be {enforce_ratio:g}x or more (at least {ratio:.1f}x): "
                f"reported, not enforced, normal if it lasts "
                f"{self.settings.adapt_windows} windows")
        return Hold.NONE, ""

    def _lower_ratio(self, f: _Function, evidence: _Evidence) -> float:
        """The cost ratio the evidence shows beyond chance (at its level): calls ×
        cost per call, each at its lower bound where it is above the baseline beyond
        chance, else at what it shows (at most 1). ``inf`` without windows."""
        if not evidence.windows:
            return math.inf
        expected = f.mean_rps * evidence.seconds
        attempts = sum(w.attempts for w in evidence.windows)
        demand = 1.0
        if expected > 0:
            demand = min(attempts / expected, 1.0)
            if poisson_tail(attempts, expected) <= evidence.level:
                demand = poisson_lower(attempts, evidence.level) / expected
        calls, base_call = sum(w.warm_ok for w in evidence.windows), f.per_call.median()
        if not calls or base_call <= 0:
            return demand
        per_call = sum(w.warm_ok_cost for w in evidence.windows) / calls / base_call
        z = _quantile(evidence.level)
        bound = (math.log(per_call)
                 - z * max(f.leak.noise, 0.1) / math.sqrt(self._weight(f, evidence.windows)))
        return demand * (math.exp(bound) if bound > 0 else min(per_call, 1.0))

    def _routine(self, f: _Function, start_ns: int, ratio: float, lower: float,
                 record: bool) -> float | None:
        """The period in seconds if this surge (in the window starting ``start_ns``)
        repeats earlier ones at one period — remembered surges lie at least
        :data:`ROUTINE_BURSTS` - 1 different whole numbers of periods back, give or take
        :data:`ROUTINE_SLACK` — and is not shown (its lower bound ``lower``) to be more
        than :data:`ROUTINE_GROWTH` × them. With ``record`` (a closed window) the surge
        is remembered at ``ratio``. The period is one of the gaps between remembered
        surges, long enough that its multiples are told apart (more than twice the
        slack)."""
        earlier = [(s, r) for s, r in f.bursts if s != start_ns]
        if record and (not f.bursts or f.bursts[-1][0] != start_ns):
            f.bursts.append((start_ns, ratio))
        window_ns = int(self.settings.window_seconds * 1e9)
        starts = [when for when, _ in earlier] + [start_ns]
        # candidate periods: the gaps between remembered surges, the latest first
        for period in reversed([b - a for a, b in itertools.pairwise(starts)]):
            slack = max(2 * window_ns, ROUTINE_SLACK * period)  # a sparse burst is seen late
            if period <= 2 * slack:
                continue
            matched: dict[int, float] = {}  # periods back: the largest surge there
            for s, r in earlier:
                k = max(1, round((start_ns - s) / period))
                if abs(start_ns - s - k * period) <= slack:
                    matched[k] = max(r, matched.get(k, 0.0))
            if (len(matched) >= ROUTINE_BURSTS - 1
                    and lower <= ROUTINE_GROWTH * max(matched.values())):
                return period / 1e9
        return None

    def _propose_leak(self, function: str, f: _Function, window: Window,
                      x: dict[str, float], score: float,
                      now_ns: int) -> tuple[list[Anomaly], Proposal | None]:
        """The anomaly and proposal of a cost per call crept from its reference (held
        back as a surge is, on its observed ratio: the CUSUM has already judged chance)."""
        base_rps, base_call = self._base_rps(f), f.per_call.median()
        per_call = x.get("cost_per_warm_call") or x["cost_per_invocation"] or base_call
        demand_ratio = x["attempts_per_s"] / base_rps if base_rps > 0 else 0.0
        reference = f.leak.reference
        ratio = per_call / reference if reference > 0 else 0.0
        allowed = base_rps * min(1.0, reference / per_call) if per_call > 0 else base_rps
        explanation = (
            f"cost per invocation {ratio:.1f}x its long-run reference (${per_call:.6f} vs "
            f"${reference:.6f}), risen over many windows; invocations {demand_ratio:.1f}x")
        impact_base = x["cost_per_s_warm"] / ratio if ratio > 0 else x["cost_per_s_warm"]
        held, why = self._held_back(f, ratio)
        anomaly, proposal = self._proposal(
            function, f, window, x, f.leak.name, score, f.leak.threshold, ratio, impact_base,
            allowed, Driver.COST_PER_INVOCATION, explanation + why, now_ns, held)
        return [anomaly], proposal

    def _proposal(self, function: str, f: _Function, window: Window, x: dict[str, float],
                  detector: str, score: float, threshold: float, ratio: float,
                  impact_base: float, allowed: float, driver: Driver, explanation: str,
                  now_ns: int, held: Hold = Hold.NONE) -> tuple[Anomaly, Proposal | None]:
        """Make ``f``'s proposal: isolate below ``min_rps``, else throttle to ``allowed``;
        when ``held`` back only the anomaly (at info severity if routine)."""
        base_cost = f.cost.median() or f.mean_cost
        impact = max(0.0, x["cost_per_s_warm"] - impact_base) * 3600
        anomaly = Anomaly(
            function=function, detector=detector, score=score, threshold=threshold,
            severity=(Severity.INFO if held is Hold.ROUTINE
                      else Severity.CRITICAL if ratio >= 10 else Severity.WARNING),
            window_start_unix_nano=window.start_ns, window_end_unix_nano=window.end_ns,
            features=x, baseline={"cost_per_s": base_cost, "attempts_per_s": self._base_rps(f),
                                  "cost_per_invocation": f.per_call.median()},
            explanation=f"{explanation}; driver: {driver.value}",
            cost_impact_usd_per_hour=impact, version=window.version, driver=driver,
            held=held)
        if held is not Hold.NONE:
            return anomaly, None
        if allowed < (f.min_rps if f.min_rps >= 0 else self.settings.min_rps):
            f.proposal = Proposal(Action.ISOLATE, driver, anomaly, explanation,
                                  since_ns=now_ns, evidence_ns=now_ns)
        else:
            f.proposal = Proposal(Action.THROTTLE, driver, anomaly, explanation,
                                  rate_rps=round(allowed, 2), since_ns=now_ns,
                                  evidence_ns=now_ns)
        return anomaly, f.proposal

    def _check_standing(self, f: _Function, x: dict[str, float], now_ns: int) -> None:
        """End the standing proposal once it has stood ``hold_seconds`` and demand and
        cost per call are back within ``min_ratio`` of the baseline.

        Calls refused by enforcement say nothing of the cost per call: a proposal driven
        by it ends only on admitted calls that show it back (a window without any keeps
        it standing, its evidence as old as it was)."""
        proposal = f.proposal
        assert proposal is not None
        limit = self._min_ratio(f)
        base_rps, base_call = self._base_rps(f), f.per_call.median()
        per_call = x.get("cost_per_warm_call")
        # a proposal driven by the cost per call is judged on that alone: the attempts
        # of a throttled or probed function count the callers' retries of refused calls
        demand_ok = (proposal.driver is Driver.COST_PER_INVOCATION or base_rps <= 0
                     or x["attempts_per_s"] < limit * base_rps)
        if per_call is None:
            per_call_ok = proposal.driver is not Driver.COST_PER_INVOCATION
        else:
            per_call_ok = base_call <= 0 or per_call < limit * base_call
        if not (demand_ok and per_call_ok):
            if per_call is not None or not demand_ok:
                f.proposal = replace(proposal, evidence_ns=now_ns)
            return
        if now_ns - proposal.since_ns >= self.settings.hold_seconds * 1e9:
            f.proposal = None
            f.recent.clear()  # pools start after the episode, not inside it
