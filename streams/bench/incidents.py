"""Score the incident suite per label kind and render ``governor bench incidents``' report.

Two passes over the same fleet (:mod:`streams.sim.scenarios`), both through the real Decider
(:mod:`streams.bench.incident_runs`):

* **labels** — every function 720 windows at the configured window length (10 s by
  default) with its label: an incident, or a control. Detection, time to detect, and
  false alarms at the production window length.
* **long** — every function ``days`` days at 60 s windows with no incident (deploy
  controls keep their deploy): false alarms over many function-days (10 s windows would
  cost 6× the time).

An incident is detected when an alarm (an Anomaly, or a throttle/isolate verdict) falls
in ``[start, end + 2)``. Time to detect counts windows from the onset: 1 = at the close of
the first anomalous window, 0 = before the onset (a slow leak caught before it reached
2×). A false alarm is a window with an alarm outside every incident's range, controls
included. ``chance`` is how many detections the function's own false-alarm rate would
give over the same windows anyway, so a noisy function's lucky hit can be told apart.

The summary line: detected % over every labelled incident (error storms included), the
median time to detect over the detected ones, false alarms per 100 function-days over
both passes.
"""

from __future__ import annotations

import math
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from streams.bench.incident_runs import FunctionRun, Progress, run_scenarios, worker_count
from streams.decisions.windows import quantile
from streams.errors import BenchmarkError
from streams.settings import Settings
from streams.sim.scenarios import (
    BENIGN,
    CONTROLS,
    HARD_INCIDENTS,
    INCIDENTS,
    Kind,
    Scenario,
    control_scenarios,
    hard_scenarios,
    incident_scenarios,
)

LONG_WINDOW_SECONDS = 60.0
AFTER = 2
"""Windows after an incident's end in which an alarm still counts as its detection."""


@dataclass(frozen=True)
class KindResult:
    """One label kind's results in one pass (``incidents`` 0 for a control; kind None:
    a pass's total)."""

    kind: Kind | None
    functions: int
    incidents: int
    detected: int
    enforced: int  # incidents with a throttle or isolate verdict in their range
    ttd: tuple[int, ...]  # time to detect, in windows, of each detected incident
    chance: float
    cost_factor: float  # median over the kind's functions; NaN without label windows
    false_alarms: int
    function_days: float
    sources: dict[str, int] = field(default_factory=dict)  # false-alarm windows by source
    large: int = 0  # incidents whose cost rose at least enforce_ratio × (cost x)
    large_enforced: int = 0  # …of them enforced in their range
    false_pages: int = 0  # windows that paged outside any incident (paging rules in force)

    @property
    def fa_per_100_days(self) -> float:
        return 100 * self.false_alarms / self.function_days if self.function_days else 0.0


@dataclass(frozen=True)
class Report:
    """Both passes, scored; ``seconds`` is the wall time of generating, running and scoring."""

    functions: int
    days: float
    seed: int
    settings: Settings
    workers: int
    labels: list[KindResult]
    long: list[KindResult]
    seconds: float
    suite: str = "standard"

    @property
    def detected(self) -> float:
        """Share of all labelled incidents detected, in %."""
        incidents = sum(r.incidents for r in self.labels)
        return 100 * sum(r.detected for r in self.labels) / incidents if incidents else 0.0

    @property
    def median_ttd(self) -> float:
        ttd = [t for r in self.labels for t in r.ttd]
        return float(statistics.median(ttd)) if ttd else math.nan

    @property
    def fa_per_100_days(self) -> float:
        """False alarms per 100 function-days over both passes."""
        rows = self.labels + self.long
        days = sum(r.function_days for r in rows)
        return 100 * sum(r.false_alarms for r in rows) / days if days else 0.0


def bench(functions: int = 210, days: float = 1.0, seed: int = 1,
          settings: Settings | None = None, *, workers: int | None = None,
          suite: str = "standard", progress: Progress | None = None) -> Report:
    """Generate the fleet, run both passes through the Decider, score them;
    ``progress(done, total)`` hears of each scenario run.

    ``suite`` "hard": other functions, with subtle (1.5-3x) incidents and benign
    changes (a ramp, batch bursts, a launch step, noisy cost) on the labelled pass only;
    a throttle or isolate of a benign function is a false enforcement.
    """
    if functions < 1 or not days > 0:
        raise BenchmarkError(f"need at least 1 function and more than 0 days; got "
                             f"--functions {functions} --days {days}")
    if suite not in ("standard", "hard"):
        raise BenchmarkError(f"--suite {suite!r}: use standard or hard")
    settings = settings or Settings()
    started = time.perf_counter()
    if suite == "hard":
        labels = hard_scenarios(functions, seed, settings.window_seconds)
        long: list[Scenario] = []
    else:
        labels = incident_scenarios(functions, seed, settings.window_seconds)
        long = control_scenarios(functions, seed, days, LONG_WINDOW_SECONDS)
    runs = run_scenarios(long + labels, settings, workers=workers,  # longest first
                         progress=progress)
    return Report(functions, days, seed, settings, worker_count(workers, len(runs)),
                  score(runs[len(long):], settings.enforce_ratio),
                  score(runs[:len(long)], settings.enforce_ratio),
                  time.perf_counter() - started, suite)


def score(runs: Sequence[FunctionRun], large_ratio: float = 3.0) -> list[KindResult]:
    """Per label kind present in ``runs``, in :class:`Kind` order; an incident whose
    cost rose at least ``large_ratio`` × is large (it must be enforced)."""
    results = []
    for kind in (*INCIDENTS, *HARD_INCIDENTS, *CONTROLS, *BENIGN):
        mine = [r for r in runs if r.scenario.label.kind is kind]
        if not mine:
            continue
        ttd = [t for r in mine if (t := time_to_detect(r)) is not None]
        incident = mine[0].scenario.label.is_incident
        # incidents: enforced in their range; others: enforced at all (false enforcements)
        hit = [any("verdict" in found and (r.scenario.label.covers(w, AFTER) or not incident)
                   for w, found in r.alarms) for r in mine]
        large = [incident and r.cost_factor >= large_ratio for r in mine]
        false = [w for r in mine for w in false_alarms(r)]
        sources: Counter[str] = Counter()
        for r in mine:
            for w, found in r.alarms:
                if not r.scenario.label.covers(w, AFTER):
                    sources.update(found)
        factors = [r.cost_factor for r in mine if not math.isnan(r.cost_factor)]
        results.append(KindResult(
            kind, len(mine), len(mine) if incident else 0, len(ttd), sum(hit),
            tuple(ttd), sum(chance(r) for r in mine),
            float(statistics.median(factors)) if factors else math.nan,
            len(false), sum(r.scenario.function_days for r in mine), dict(sources),
            sum(large), sum(h and big for h, big in zip(hit, large, strict=True)),
            sum(1 for r in mine for w in r.pages if not r.scenario.label.covers(w, AFTER))))
    return results


def time_to_detect(run: FunctionRun) -> int | None:
    """Windows from the incident's onset to its first alarm (see the module); None: missed."""
    label = run.scenario.label
    hits = [w for w in run.alarm_windows if label.covers(w, AFTER)]
    return max(0, hits[0] - label.onset + 1) if hits else None


def false_alarms(run: FunctionRun) -> list[int]:
    """Alarm windows outside the incident's ``[start, end + 2)`` (all, for a control)."""
    return [w for w in run.alarm_windows if not run.scenario.label.covers(w, AFTER)]


def chance(run: FunctionRun) -> float:
    """Probability that the function's false-alarm rate alone hits the incident's range."""
    label = run.scenario.label
    if not label.is_incident:
        return 0.0
    span = min(label.end + AFTER, run.scenario.windows) - label.start
    rate = len(false_alarms(run)) / max(1, run.scenario.windows - span)
    return 1 - (1 - min(rate, 1.0)) ** span


def format_report(report: Report) -> list[str]:
    """The report's lines; the last is the one-line summary (see ``governor bench``)."""
    s = report.settings
    labels_windows = sum(round(r.function_days * 86_400 / s.window_seconds)
                         for r in report.labels)
    long_windows = sum(round(r.function_days * 86_400 / LONG_WINDOW_SECONDS)
                       for r in report.long)
    lines = [
        f"incident suite: {report.functions} functions, seed {report.seed}, "
        f"{report.workers} process(es); Decider: warm-up {s.warmup_windows}, baseline "
        f"{s.baseline_windows} windows, z >= {s.zscore_threshold:g}, cost >= "
        f"{s.min_ratio:g}x baseline (enforced >= {s.enforce_ratio:g}x after "
        f"{s.learning_windows} windows learning, adapts in {s.adapt_windows}), fast path "
        f"{s.fast_path_factor:g}x, hold "
        f"{s.hold_seconds:g} s on a simulated clock",
        f"labels: each function {labels_windows // report.functions} windows of "
        f"{s.window_seconds:g} s with its label ({labels_windows:,} windows, "
        f"{_days(report.labels):.1f} function-days)",
        f"long:   each function {report.days:g} day(s) of {LONG_WINDOW_SECONDS:g} s windows, no "
        f"incidents, deploys kept ({long_windows:,} windows, {_days(report.long):.1f} "
        "function-days)", ""]
    header = (f"{'n':>5}{'detected':>10}{'verdict':>9}{'chance':>8}{'ttd p50':>9}{'ttd p95':>9}"
              f"{'cost x':>8}{'false alarms':>14}{'per 100 fd':>12}")
    for name, rows in ((f"labels, {s.window_seconds:g} s windows", report.labels),
                       (f"long, {LONG_WINDOW_SECONDS:g} s windows", report.long)):
        if not rows:
            continue
        lines.append(f"{name:<22}{header}")
        lines += [_row(str(r.kind), r) for r in rows]
        lines += [_row("all", _total(rows)), ""]
    sources = Counter[str]()
    for r in report.labels + report.long:
        sources.update(r.sources)
    days = _days(report.labels + report.long)
    lines += [
        "false alarms by source, both passes (windows, one may have several; per 100 "
        "function-days): " + (", ".join(f"{k} {v:,} ({100 * v / days:.1f})"
                                        for k, v in sources.most_common()) or "none"),
        "detected: any alarm in [start, end + 2); verdict: a throttle or isolate verdict "
        "there; chance: detections the functions' own false-alarm rates would give anyway",
        "ttd: windows from onset to the first alarm (1: at the close of the first anomalous "
        "window; 0: before onset); cost x: median cost in the first 60 anomalous windows / "
        "the 60 before",
        f"targets: >= 95% detected, median ttd <= 2 windows, <= 1 false alarm per 100 "
        f"function-days; wall time {report.seconds:.1f} s",
        *(_hard_lines(report) if report.suite == "hard" else []),
        _large_line(report),
        _pages_line(report),
        f"incidents: {report.detected:.1f}% detected, median {_g(report.median_ttd)} windows "
        f"to detect, {report.fa_per_100_days:.2f} false alarms per 100 function-days"]
    return lines


def _pages_line(report: Report) -> str:
    rows = report.labels + report.long
    pages, days = sum(r.false_pages for r in rows), _days(rows)
    rate = 100 * pages / days if days else 0.0
    return (f"false pages (the worker's paging rules; both passes): {pages} over "
            f"{days:.1f} function-days = {rate:.2f} per 100 function-days (target <= 1)")


def _large_line(report: Report) -> str:
    large = sum(r.large for r in report.labels)
    enforced = sum(r.large_enforced for r in report.labels)
    share = f"{100 * enforced / large:.1f}%" if large else "-"
    return (f"incidents whose cost rose >= {report.settings.enforce_ratio:g}x (cost x): "
            f"{large}, enforced in their range: {share} (target >= 95%)")


def _hard_lines(report: Report) -> list[str]:
    benign = [r for r in report.labels if r.kind in BENIGN]
    return ["hard suite: the verdict column of a benign change counts the functions "
            "throttled or isolated at all (false enforcements; target 0); subtle "
            "incidents' targets: >= 80% detected",
            f"false enforcements: {sum(r.enforced for r in benign)} of "
            f"{sum(r.functions for r in benign)} benign functions"]


def _row(name: str, r: KindResult) -> str:
    if r.incidents:
        ttd = sorted(r.ttd)
        detected = f"{100 * r.detected / r.incidents:.1f}%"
        enforced = f"{100 * r.enforced / r.incidents:.0f}%"
        p50 = _g(float(statistics.median(ttd))) if ttd else "-"
        p95 = _g(quantile([float(t) for t in ttd], 0.95)) if ttd else "-"
        luck = f"{r.chance:.1f}"
    else:
        detected = luck = p50 = p95 = "-"
        enforced = f"{r.enforced} fn" if r.kind in BENIGN else "-"
    cost = "-" if math.isnan(r.cost_factor) else f"{r.cost_factor:.2f}"
    return (f"{name:<22}{r.functions:>5}{detected:>10}{enforced:>9}{luck:>8}{p50:>9}{p95:>9}"
            f"{cost:>8}{r.false_alarms:>14,}{r.fa_per_100_days:>12.2f}")


def _total(rows: Sequence[KindResult]) -> KindResult:
    sources: Counter[str] = Counter()
    for r in rows:
        sources.update(r.sources)
    return KindResult(None, sum(r.functions for r in rows),
                      sum(r.incidents for r in rows), sum(r.detected for r in rows),
                      sum(r.enforced for r in rows if r.incidents),
                      tuple(t for r in rows for t in r.ttd), sum(r.chance for r in rows),
                      math.nan, sum(r.false_alarms for r in rows), _days(rows), dict(sources),
                      sum(r.large for r in rows), sum(r.large_enforced for r in rows),
                      sum(r.false_pages for r in rows))


def _days(rows: Sequence[KindResult]) -> float:
    return sum(r.function_days for r in rows)


def _g(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:g}"
