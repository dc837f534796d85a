"""Leave one NAB category out: figures that hold on series the parameters never saw.

The default detector's hyper-parameters (:func:`streams.detectors.onset`: the onset
``alarm`` level and the ``hold``-off) are chosen, for each category in turn, on the
*other* categories alone — the grid point and the standard-profile threshold with the
best score there — and the held-out category is scored with exactly those. Summed over
the folds and normalised over the whole corpus, that is the held-out score, the honest
predictor of the score on series outside this corpus; the in-sample score (the shipped
parameters, threshold optimised on everything) is printed beside it.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from streams import detectors
from streams.bench.nab.corpus import open_corpus
from streams.bench.nab.runner import Run, run_corpus
from streams.bench.nab.scoring import (
    STANDARD,
    ScoredSeries,
    evaluate,
    normalize,
    null_score,
    optimize,
    perfect_score,
    score_at,
)
from streams.detectors.base import Detector
from streams.errors import BenchmarkError

ALARMS = (0.15, 0.25, 0.35)
HOLDS = (100, 200, 400)
SHIPPED = (0.25, 200)
"""The parameters :data:`streams.detectors.DETECTORS` ships (``onset()``'s defaults)."""


@dataclass(frozen=True)
class Onset:
    """A picklable factory of the onset detector at one grid point."""

    alarm: float
    hold: int

    def __call__(self) -> Detector:
        return detectors.onset(self.alarm, self.hold)


@dataclass(frozen=True)
class Fold:
    """One held-out category: what was chosen without it, and how it then scored."""

    category: str
    chosen: tuple[float, int]
    threshold: float
    train_score: float  # normalised over the other categories
    held_raw: float
    held_null: float
    held_perfect: float

    @property
    def held_score(self) -> float:
        """Normalised over the category alone (NaN when it has no window)."""
        if self.held_perfect == self.held_null:
            return float("nan")
        return normalize(self.held_raw, self.held_null, self.held_perfect)


@dataclass(frozen=True)
class CrossValidation:
    folds: list[Fold]
    held_out: float  # the folds' raw scores summed, normalised over the corpus
    in_sample: float  # the shipped parameters, threshold optimised on the corpus
    best_in_sample: tuple[tuple[float, int], float]  # the grid's best on the whole corpus
    series: int
    seconds: float


def crossvalidate(data: Path, out: Path, *, workers: int | None = None) -> CrossValidation:
    """Run every grid point over the corpus once, then score the folds."""
    started = time.perf_counter()
    corpus = open_corpus(data)
    if not any(corpus.windows.values()):
        raise BenchmarkError(f"{corpus.root}: the labels have no anomaly window")
    runs: dict[tuple[float, int], Run] = {}
    for alarm, hold in itertools.product(ALARMS, HOLDS):
        runs[(alarm, hold)] = run_corpus(corpus, out / f"alarm{alarm:g}-hold{hold}", "onset",
                                         workers=workers, factory=Onset(alarm, hold))
    scored = {params: [s.scored() for s in run.series] for params, run in runs.items()}
    categories = sorted({key.split("/")[0] for key in corpus.keys})
    folds = [_fold(category, scored) for category in categories]
    any_run = scored[SHIPPED]
    null, perfect = null_score(any_run, STANDARD), perfect_score(any_run, STANDARD)
    held_out = normalize(sum(f.held_raw for f in folds), null, perfect)
    whole = {params: normalize(optimize(series, STANDARD).score, null, perfect)
             for params, series in scored.items()}
    best = max(whole, key=whole.__getitem__)
    in_sample = next(p for p in evaluate(any_run, [STANDARD])).score
    return CrossValidation(folds, held_out, in_sample, (best, whole[best]), len(corpus.keys),
                           time.perf_counter() - started)


def _fold(category: str,
          scored: dict[tuple[float, int], list[ScoredSeries]]) -> Fold:
    def split(series: Sequence[ScoredSeries]) -> tuple[list[ScoredSeries], list[ScoredSeries]]:
        held = [s for s in series if s.name.split("/")[0] == category]
        return [s for s in series if s.name.split("/")[0] != category], held

    best: tuple[float, tuple[float, int], float] | None = None
    for params, series in scored.items():
        train, _ = split(series)
        top = optimize(train, STANDARD)
        score = normalize(top.score, null_score(train, STANDARD), perfect_score(train, STANDARD))
        if best is None or score > best[0]:
            best = (score, params, top.threshold)
    assert best is not None
    train_score, chosen, threshold = best
    _, held = split(scored[chosen])
    return Fold(category, chosen, threshold, train_score,
                score_at(held, STANDARD, threshold).score, null_score(held, STANDARD),
                perfect_score(held, STANDARD))


def format_crossvalidation(cv: CrossValidation) -> list[str]:
    """The report's lines; the last is ``nab held-out: <score> (in-sample <score>)``."""
    lines = [f"NAB, leave one category out: {cv.series} series, onset over alarm "
             f"{'/'.join(f'{a:g}' for a in ALARMS)} x hold {'/'.join(map(str, HOLDS))}",
             "",
             f"{'held-out category':<24}{'chosen alarm, hold':>20}{'threshold':>11}"
             f"{'train':>8}{'held-out':>10}"]
    for f in cv.folds:
        held = "n/a" if f.held_score != f.held_score else f"{f.held_score:.1f}"
        lines.append(f"{f.category:<24}{f'{f.chosen[0]:g}, {f.chosen[1]}':>20}"
                     f"{f.threshold:>11.6f}{f.train_score:>8.1f}{held:>10}")
    (alarm, hold), best = cv.best_in_sample
    lines += ["",
              f"in-sample, shipped parameters (alarm {SHIPPED[0]:g}, hold {SHIPPED[1]}): "
              f"{cv.in_sample:.1f}; the grid's best in-sample (alarm {alarm:g}, hold {hold}): "
              f"{best:.1f}",
              "held-out: each category scored with the parameters and threshold chosen on "
              "the others, raw scores summed and normalised over the corpus",
              f"wall time {cv.seconds:.0f} s",
              f"nab held-out: {cv.held_out:.1f} (in-sample {cv.in_sample:.1f})"]
    return lines
