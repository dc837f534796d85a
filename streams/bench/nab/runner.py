"""Run a detector strictly online over a NAB folder and write NAB's results files.

Every series runs in its own detector, in parallel over processes. For each row the
detector scores ``{"value": value, "t": unix_seconds}`` before it learns that row, and
sees the next row only after; the results file
``<out>/<detector>/<category>/<detector>_<name>.csv`` holds ``timestamp,value,
anomaly_score,label`` with the calibrated score in [0, 1] and label 1 inside a window.
"""

from __future__ import annotations

import csv
import multiprocessing
import os
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from streams import detectors
from streams.bench.nab.corpus import Corpus, SeriesData, Window, read_series, unix_seconds
from streams.bench.nab.scoring import ScoredSeries, window_rows
from streams.detectors import Detector
from streams.errors import BenchmarkError

Factory = Callable[[], Detector]

def registry() -> Mapping[str, Factory]:
    """Detector factories by name (:data:`streams.detectors.DETECTORS`)."""
    return detectors.DETECTORS


def default_detector() -> str:
    """The default detector's name (:data:`streams.detectors.DEFAULT`)."""
    return detectors.DEFAULT


def make_detector(name: str) -> Detector:
    """A fresh detector from the registry; unknown names list the known ones."""
    factories = registry()
    if name not in factories:
        raise BenchmarkError(f"unknown detector {name!r}; known: {', '.join(sorted(factories))}")
    return factories[name]()


def score_online(detector: Detector, times: Sequence[float],
                 values: Sequence[float]) -> list[float]:
    """Each row's calibrated score, computed before the detector learns that row."""
    scores = []
    for t, value in zip(times, values, strict=True):
        x = {"value": value, "t": t}
        scores.append(float(detector.calibrated(detector.score_one(x))))
        detector.learn_one(x)
    return scores


def results_path(out: Path, detector: str, key: str) -> Path:
    """NAB's results file for data file ``<category>/<name>.csv``."""
    category, name = key.split("/")
    return out / detector / category / f"{detector}_{name}"


@dataclass(frozen=True)
class SeriesResult:
    """One series' calibrated scores and its windows as row ranges."""

    key: str
    scores: list[float]
    windows: list[tuple[int, int]]

    @property
    def category(self) -> str:
        return self.key.split("/")[0]

    def scored(self) -> ScoredSeries:
        return ScoredSeries(self.key, self.scores, self.windows)


@dataclass(frozen=True)
class Run:
    """A detector's results over a corpus."""

    detector: str
    corpus: Corpus
    results_dir: Path
    series: list[SeriesResult]
    workers: int
    seconds: float

    @property
    def rows(self) -> int:
        return sum(len(s.scores) for s in self.series)


@dataclass(frozen=True)
class _Task:
    key: str
    path: Path
    windows: tuple[Window, ...]
    detector: str
    factory: Factory | None
    out: Path


def run_corpus(corpus: Corpus, out: Path, detector: str, *, workers: int | None = None,
               factory: Factory | None = None) -> Run:
    """Run ``detector`` (by registry name, or made by ``factory``) over every series.

    ``workers`` processes (default: one per CPU) share the series; 1 runs them inline.
    A ``factory`` must be picklable to cross into worker processes.
    """
    if factory is None:
        make_detector(detector)  # an unknown name fails here, before any work
    started = time.perf_counter()
    tasks = sorted((_Task(key, corpus.path(key), corpus.windows[key], detector, factory, out)
                    for key in corpus.keys), key=lambda t: -t.path.stat().st_size)
    workers = min(max(1, workers or os.cpu_count() or 1), len(tasks))
    if workers == 1:
        done = [_run(task) for task in tasks]
    else:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"))
        try:
            done = [f.result() for f in as_completed([pool.submit(_run, t) for t in tasks])]
        except BrokenProcessPool as exc:
            raise BenchmarkError(f"a worker process died ({exc}); rerun with --workers 1 "
                                 "to see why") from None
        finally:
            pool.shutdown(cancel_futures=True)
    return Run(detector, corpus, out / detector, sorted(done, key=lambda s: s.key), workers,
               time.perf_counter() - started)


def _run(task: _Task) -> SeriesResult:
    data = read_series(task.path)
    try:
        windows = window_rows(data.times, task.windows)
    except ValueError as exc:
        raise BenchmarkError(f"{task.path}: {exc}; check its entry in "
                             "labels/combined_windows.json") from None
    detector = task.factory() if task.factory is not None else make_detector(task.detector)
    scores = score_online(detector, [unix_seconds(t) for t in data.times], data.values)
    for row, score in enumerate(scores, start=1):
        if not 0.0 <= score <= 1.0:  # also false for NaN
            raise BenchmarkError(f"{task.path}: row {row}: detector {task.detector!r} gave "
                                 f"the calibrated score {score}, outside [0, 1]")
    _write(results_path(task.out, task.detector, task.key), data, scores, windows)
    return SeriesResult(task.key, scores, windows)


def _write(path: Path, data: SeriesData, scores: list[float],
           windows: list[tuple[int, int]]) -> None:
    labels = [0] * len(scores)
    for first, last in windows:
        labels[first:last + 1] = [1] * (last - first + 1)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.writer(f, lineterminator="\n")
            writer.writerow(("timestamp", "value", "anomaly_score", "label"))
            writer.writerows(zip(data.stamps, data.texts, map(repr, scores), labels,
                                 strict=True))
    except OSError as exc:
        raise BenchmarkError(f"{path}: cannot write the results ({exc.strerror})") from None

