"""Feed synthetic traffic through the real :class:`~streams.decisions.detection.Decider`.

Each scenario gets its own ``Decider`` (with the given ``Settings``); its windows go in
order to ``decider.on_window`` as if the aggregator had closed them, at the time the
worker would close them (the end of each window plus the aggregator's grace), so
``hold_seconds`` means simulated seconds: the decision step's clock is an argument, not
read from the machine. The per-event fast path sees each window's costliest call
through ``decider.on_event`` before the window closes: it reports at most one call per
window, against a baseline fixed during the window, so the costliest call alone decides
whether it fires (``events=True`` sends every call instead, as CostEvents, and is much
slower). The traffic is open loop: proposals are not enforced on it (the agent is not
simulated), so throttled functions keep sending their attempts.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np

from agents import load_prices
from schemas import Anomaly, IncidentStatus, Severity
from streams.decisions.detection import Decider
from streams.decisions.proposal import Detection
from streams.decisions.windows import Window
from streams.errors import BenchmarkError
from streams.paging.incidents import IncidentTracker, PageRules
from streams.settings import Settings
from streams.sim.scenarios import Floats, Scenario, simulate

GRACE_NS = 500_000_000
"""Windows close this long after their end (``WindowAggregator``'s default lateness)."""

LOOKS = (0.2, 0.4, 0.6, 0.8)
"""Fractions of each window at which the fast path looks at it while it is open (the
worker looks at every ingest batch; four looks stand in for those)."""

BEFORE = 60
"""Windows before a label whose mean cost is the reference of ``FunctionRun.cost_factor``."""

_PRICES = load_prices()


def alarm_sources(anomalies: Sequence[Anomaly], detection: Detection | None = None
                  ) -> set[str]:
    """What raised an alarm: the detector of each anomaly above info severity, and
    ``verdict`` for a new throttle or isolate proposal; empty: no alarm."""
    sources = {a.detector for a in anomalies if a.severity is not Severity.INFO}
    if detection is not None and detection.new:
        sources.add("verdict")
    return sources


@dataclass(frozen=True, slots=True)
class FunctionRun:
    """What the Decider raised on one scenario.

    ``alarms``: ``(window, sources)`` for each window with an alarm, from on_event or
    on_window (see :func:`alarm_sources`).
    ``cost_factor``: mean cost over the label's first :data:`BEFORE` anomalous windows
    (from ``onset``, before ``end``) ÷ the :data:`BEFORE` windows before ``start`` (NaN
    without a label window).
    ``pages``: the windows in which on-call would have been paged — a new enforcement
    proposal (its verdict pages), or an episode the incident tracker opens for
    anomalies alone (the worker's paging rules, :class:`~streams.paging.incidents.
    IncidentTracker` with the settings' page rules).
    """

    scenario: Scenario
    alarms: tuple[tuple[int, frozenset[str]], ...]
    cost_factor: float
    pages: tuple[int, ...] = ()

    @property
    def alarm_windows(self) -> tuple[int, ...]:
        return tuple(window for window, _ in self.alarms)


def run_scenario(scenario: Scenario, settings: Settings, *, events: bool = False) -> FunctionRun:
    """Every window of ``scenario`` through a fresh Decider; see the module docstring."""
    settings = settings.replace(window_seconds=scenario.window_seconds)
    decider = Decider(settings)
    tracker = IncidentTracker(PageRules.from_settings(settings))
    pages: list[int] = []
    name, window_ns = scenario.profile.name, scenario.window_ns
    alarms: list[tuple[int, frozenset[str]]] = []
    costs = np.zeros(scenario.windows)
    rng = np.random.default_rng([scenario.seed, scenario.index, 3, scenario.stream])
    for sim in simulate(scenario, _PRICES):
        window, sources = sim.window, set()
        found: list[Anomaly] = []
        enforced = False
        arrivals = rng.random(sim.last - sim.first)  # each call's place in the window
        for look in LOOKS:
            detection = decider.on_partial(name, sim.opening(int((arrivals < look).sum())),
                                           window.start_ns + int(look * window_ns))
            sources |= alarm_sources(detection.anomalies, detection)
            found += detection.anomalies
            enforced |= detection.new and detection.proposal is not None
        if events:
            w = sim.window
            window = Window(w.start_ns, w.end_ns, version=w.version, team=w.team)
            for event in sim.events():
                single = decider.on_event(event, window_ns)
                sources |= alarm_sources(single)
                found += single
                window.add(event)
        elif (costliest := sim.costliest()) is not None:
            single = decider.on_event(costliest, window_ns)
            sources |= alarm_sources(single)
            found += single
        now_ns = window.end_ns + GRACE_NS
        detection = decider.on_window(name, window, now_ns)
        sources |= alarm_sources(detection.anomalies, detection)
        found += detection.anomalies
        enforced |= detection.new and detection.proposal is not None
        opened = [i for a in found for i in tracker.on_anomaly(a, scenario.profile.team, now_ns)
                  if i.status is IncidentStatus.OPEN]
        tracker.on_quiet(name, now_ns)
        if enforced or opened:
            pages.append(sim.index)
        if sources:
            alarms.append((sim.index, frozenset(sources)))
        costs[sim.index] = window.cost_usd
    return FunctionRun(scenario, tuple(alarms), _cost_factor(scenario, costs), tuple(pages))


Progress = Callable[[int, int], None]
"""``progress(done, total)``: called once before the first scenario and after each."""


def run_scenarios(scenarios: Sequence[Scenario], settings: Settings, *,
                  workers: int | None = None, progress: Progress | None = None
                  ) -> list[FunctionRun]:
    """:func:`run_scenario` on each, over ``workers`` processes (default one per CPU),
    telling ``progress`` how many are done."""
    workers = worker_count(workers, len(scenarios))
    report = progress or (lambda done, total: None)
    report(0, len(scenarios))
    runs: list[FunctionRun] = []
    if workers == 1:
        for scenario in scenarios:
            runs.append(run_scenario(scenario, settings))
            report(len(runs), len(scenarios))
        return runs
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        for run in pool.map(run_scenario, scenarios, [settings] * len(scenarios),
                            chunksize=max(1, len(scenarios) // (8 * workers))):
            runs.append(run)  # in order: a result is counted once those before it are done
            report(len(runs), len(scenarios))
        return runs
    except BrokenProcessPool as exc:
        raise BenchmarkError(f"a worker process died ({exc}); rerun with --workers 1 "
                             "to see why") from None
    finally:
        pool.shutdown(cancel_futures=True)


def worker_count(workers: int | None, tasks: int) -> int:
    """Processes :func:`run_scenarios` uses: ``workers`` (default one per CPU), ≤ ``tasks``."""
    return min(max(1, workers or os.cpu_count() or 1), max(1, tasks))


def _cost_factor(scenario: Scenario, costs: Floats) -> float:
    label = scenario.label
    before = costs[max(0, label.start - BEFORE):label.start] if label.start > 0 else costs[:0]
    during = costs[label.onset:min(label.end, label.onset + BEFORE)] if label.onset >= 0 \
        else costs[:0]
    if not len(before) or not len(during) or before.mean() <= 0:
        return float("nan")
    return float(during.mean() / before.mean())
