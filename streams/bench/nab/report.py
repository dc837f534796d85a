"""Score a NAB run under every profile and per category, and render the report."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path

from streams.bench.nab.corpus import open_corpus
from streams.bench.nab.runner import Run, default_detector, run_corpus
from streams.bench.nab.scoring import (
    NO_DETECTION,
    STANDARD,
    ProfileResult,
    ThresholdScore,
    evaluate,
    normalize,
    null_score,
    perfect_score,
    score_at,
)
from streams.errors import BenchmarkError


@dataclass(frozen=True)
class CategoryResult:
    """A category's standard-profile result at the corpus's standard threshold."""

    category: str
    result: ThresholdScore
    score: float  # normalised; NaN for a category without windows


@dataclass(frozen=True)
class Report:
    """A benchmark run, scored; ``seconds`` is the wall time of running and scoring."""

    run: Run
    profiles: list[ProfileResult]
    categories: list[CategoryResult]
    seconds: float

    @property
    def standard(self) -> ProfileResult:
        return next(p for p in self.profiles if p.profile == STANDARD)


def score_run(run: Run, started: float | None = None) -> Report:
    """Every profile's best threshold and score, and per-category standard scores.

    ``started`` (a ``time.perf_counter()`` reading) dates the wall time; default: the run's.
    """
    scoring_started = time.perf_counter()
    profiles = evaluate([s.scored() for s in run.series])
    threshold = next(p for p in profiles if p.profile == STANDARD).best.threshold
    categories = []
    for category, members in groupby(run.series, key=lambda s: s.category):
        corpus = [s.scored() for s in members]
        result = score_at(corpus, STANDARD, threshold)
        categories.append(CategoryResult(category, result, normalize(
            result.score, null_score(corpus, STANDARD), perfect_score(corpus, STANDARD))))
    end = time.perf_counter()
    wall = end - started if started is not None else run.seconds + end - scoring_started
    return Report(run, profiles, categories, wall)


def bench(data: Path, out: Path, detector: str | None = None, *,
          workers: int | None = None) -> Report:
    """Run a detector (default: the registry's) over a NAB folder and score it."""
    started = time.perf_counter()
    corpus = open_corpus(data)
    if not any(corpus.windows.values()):
        raise BenchmarkError(f"{corpus.root}: the labels have no anomaly window, so NAB's "
                             "score is undefined")
    run = run_corpus(corpus, out, detector or default_detector(), workers=workers)
    return score_run(run, started)


def format_report(report: Report) -> list[str]:
    """The report's lines; the last is ``nab standard: <score>`` to one decimal."""
    run = report.run
    lines = [f"NAB: detector {run.detector} on {run.corpus.root}: {len(run.series)} series, "
             f"{run.rows:,} rows, {run.workers} worker(s); results in {run.results_dir}", "",
             f"{'profile':<20}{'score':>7}{'threshold':>11}{'detections':>12}{'tp':>7}"
             f"{'fp':>7}{'fn':>8}{'windows':>9}"]
    for p in report.profiles:
        best = p.best
        threshold = "none" if best.threshold == NO_DETECTION else f"{best.threshold:.6f}"
        lines.append(f"{p.profile.name:<20}{p.score:>7.1f}{threshold:>11}"
                     f"{best.detections:>12,}{best.tp:>7,}{best.fp:>7,}{best.fn:>8,}"
                     f"{best.windows_detected:>5}/{best.windows}")
    lines += ["", f"{'category (standard)':<24}{'score':>7}{'raw':>9}{'detections':>12}"
                  f"{'windows':>9}"]
    for c in report.categories:
        score = "n/a" if math.isnan(c.score) else f"{c.score:.1f}"
        lines.append(f"{c.category:<24}{score:>7}{c.result.score:>9.2f}"
                     f"{c.result.detections:>12,}{c.result.windows_detected:>5}/"
                     f"{c.result.windows}")
    lines += ["", "threshold none: no threshold beats never firing; tp/fp/fn: scored rows (after "
              "each file's probationary period); windows: detected/scored",
              f"wall time {report.seconds:.1f} s (detection {run.seconds:.1f} s)",
              f"nab standard: {report.standard.score:.1f}"]
    return lines
