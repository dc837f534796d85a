"""Feed synthetic traffic through the real :class:`~streams.decide.Decider`, on simulated time.

Each scenario gets its own ``Decider`` (with a ``VerdictIssuer`` and the given
``Settings``); its windows go in order to ``decider.on_window`` as if the aggregator had
closed them. The per-event fast path sees each window's costliest call through
``decider.on_event`` before the window closes: it reports at most one call per window,
against a baseline fixed during the window, so the costliest call alone decides whether
it fires (``events=True`` sends every call instead, as CostEvents, and is much slower).

The Decider reads the wall clock (``time.time_ns()``) for its hold and cooldown and the
verdicts' timestamps. :func:`simulated_time` points the ``time`` name inside
:mod:`streams.decide` at a :class:`SimulatedClock` for the run — the end of each window
plus the aggregator's grace — so ``hold_seconds`` means simulated seconds. No component is
replaced; only the clock is. The traffic is open loop: verdicts are not enforced on it
(the agent is not simulated), so throttled functions keep sending their attempts.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from unittest import mock

import numpy as np

from agents import load_prices
from schemas import Action, Anomaly, Event, Severity, Verdict
from streams import decide
from streams.errors import BenchmarkError
from streams.features import Window
from streams.incidents import Floats, Scenario, simulate
from streams.settings import Settings

KEY = b"governor-bench-incidents"
GRACE_NS = 500_000_000
"""Windows close this long after their end (``WindowAggregator``'s default grace)."""

BEFORE = 60
"""Windows before a label whose mean cost is the reference of ``FunctionRun.cost_factor``."""

_PRICES = load_prices()


class SimulatedClock:
    """A wall clock that shows whatever the run sets ``now_ns`` to."""

    def __init__(self, now_ns: int) -> None:
        self.now_ns = now_ns

    def time_ns(self) -> int:
        return self.now_ns

    def time(self) -> float:
        return self.now_ns / 1e9


@contextmanager
def simulated_time(clock: SimulatedClock) -> Iterator[None]:
    """Make :mod:`streams.decide` read ``clock`` as its wall clock inside the block."""
    if not hasattr(decide, "time"):
        raise BenchmarkError("streams.decide no longer reads the clock through its 'time' "
                             "module; update streams.incident_runner.simulated_time to patch "
                             "what it reads now")
    with mock.patch.object(decide, "time", clock):
        yield


def alarm_sources(events: Sequence[Event]) -> set[str]:
    """What raised an alarm among ``events``: the detector of each Anomaly above info
    severity, and ``verdict`` for a throttle or isolate verdict; empty: no alarm."""
    sources = set()
    for e in events:
        if isinstance(e, Anomaly) and e.severity is not Severity.INFO:
            sources.add(e.detector)
        elif isinstance(e, Verdict) and e.action in (Action.THROTTLE, Action.ISOLATE):
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
    """

    scenario: Scenario
    alarms: tuple[tuple[int, frozenset[str]], ...]
    cost_factor: float

    @property
    def alarm_windows(self) -> tuple[int, ...]:
        return tuple(window for window, _ in self.alarms)


def run_scenario(scenario: Scenario, settings: Settings, *, events: bool = False) -> FunctionRun:
    """Every window of ``scenario`` through a fresh Decider; see the module docstring."""
    settings = settings.replace(window_seconds=scenario.window_seconds)
    issuer = decide.VerdictIssuer(KEY, int(settings.verdict_ttl_seconds * 1e9),
                                  "governor-bench")
    decider = decide.Decider(settings, issuer)
    name, window_ns = scenario.profile.name, scenario.window_ns
    clock = SimulatedClock(0)
    alarms: list[tuple[int, frozenset[str]]] = []
    costs = np.zeros(scenario.windows)
    with simulated_time(clock):
        for sim in simulate(scenario, _PRICES):
            window, sources = sim.window, set()
            if events:
                w = sim.window
                window = Window(w.start_ns, w.end_ns, version=w.version, team=w.team)
                for event in sim.events():
                    clock.now_ns = event.time_unix_nano
                    sources |= alarm_sources(decider.on_event(event, window_ns))
                    window.add(event)
            elif (costliest := sim.costliest()) is not None:
                clock.now_ns = costliest.time_unix_nano
                sources = alarm_sources(decider.on_event(costliest, window_ns))
            clock.now_ns = window.end_ns + GRACE_NS
            sources |= alarm_sources(decider.on_window(name, window))
            if sources:
                alarms.append((sim.index, frozenset(sources)))
            costs[sim.index] = window.cost_usd
    return FunctionRun(scenario, tuple(alarms), _cost_factor(scenario, costs))


def run_scenarios(scenarios: Sequence[Scenario], settings: Settings, *,
                  workers: int | None = None) -> list[FunctionRun]:
    """:func:`run_scenario` on each, over ``workers`` processes (default one per CPU)."""
    workers = worker_count(workers, len(scenarios))
    if workers == 1:
        return [run_scenario(s, settings) for s in scenarios]
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
    try:
        return list(pool.map(run_scenario, scenarios, [settings] * len(scenarios),
                             chunksize=max(1, len(scenarios) // (8 * workers))))
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
