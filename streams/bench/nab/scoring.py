"""NAB scoring: label windows, the scaled sigmoid, the profiles, the corpus threshold sweep.

A re-implementation of the Numenta Anomaly Benchmark's scorer (Lavin & Ahmad 2015; the
numenta/NAB repository: ``nab/sweeper.py`` ``Sweeper.calcSweepScore`` and
``calcScoreByThreshold``, ``nab/optimizer.py`` ``optimizeThreshold``, ``nab/runner.py``
``Runner.normalize``, ``nab/util.py`` ``getProbationPeriod``, ``config/profiles.json``),
vectorised with numpy. Anomaly scores lie in [0, 1]; a row whose score is at or above
the threshold is a detection, and:

* rows of the probationary period (the first 15 % of a file, at most 750 rows) are
  ignored, as are windows lying wholly inside it;
* a label window counts once: the best reward among its detections, ``-fn_weight`` if
  none. A detection at relative position ``p`` (-1 on the window's first row, rising
  towards 0 on its last) earns ``tp_weight · σ(p) / σ(-1)`` with
  ``σ(p) = 2 · sigmoid(-5p) - 1``, so the earliest detection is the one that counts;
* a detection outside every window costs ``fp_weight · σ(d)``, ``d`` its distance past
  the previous window's last row in units of that window's length - 1 (σ(d) < 0, and
  -1 from three lengths on), or ``fp_weight`` in full before the first window;
* the threshold is the anomaly score whose summed raw score over the whole corpus is
  highest (on ties the highest such score), found by sweeping every distinct score;
* raw scores normalise to ``100 · (raw - null) / (perfect - null)``: null never fires,
  perfect is ``tp_weight`` per window.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]
T = TypeVar("T", bound=Hashable)

PROBATION_PERCENT = 0.15
NO_DETECTION = 1.1
"""NAB's first sweep threshold: above every anomaly score, so nothing fires."""


@dataclass(frozen=True)
class Profile:
    """An application profile's weights (``config/profiles.json``; NAB never uses tnWeight)."""

    name: str
    tp_weight: float
    fp_weight: float
    fn_weight: float


STANDARD = Profile("standard", tp_weight=1.0, fp_weight=0.11, fn_weight=1.0)
REWARD_LOW_FP_RATE = Profile("reward_low_FP_rate", tp_weight=1.0, fp_weight=0.22, fn_weight=1.0)
REWARD_LOW_FN_RATE = Profile("reward_low_FN_rate", tp_weight=1.0, fp_weight=0.11, fn_weight=2.0)
PROFILES = (STANDARD, REWARD_LOW_FP_RATE, REWARD_LOW_FN_RATE)


@dataclass(frozen=True)
class ScoredSeries:
    """One file's anomaly scores, one per row, and its windows as inclusive row ranges."""

    name: str
    scores: Sequence[float]
    windows: Sequence[tuple[int, int]] = ()


@dataclass(frozen=True)
class ThresholdScore:
    """The raw score at one threshold, NAB's row counts, and the windows detected."""

    threshold: float
    score: float
    tp: int
    fp: int
    tn: int
    fn: int
    windows_detected: int
    windows: int

    @property
    def detections(self) -> int:
        """Scored rows at or above the threshold."""
        return self.tp + self.fp


@dataclass(frozen=True)
class ProfileResult:
    """A profile's best corpus threshold and the bounds that normalise its score."""

    profile: Profile
    best: ThresholdScore
    null: float
    perfect: float

    @property
    def score(self) -> float:
        """The normalised NAB score: 0 for a detector that never fires, 100 for perfect."""
        return normalize(self.best.score, self.null, self.perfect)


def scaled_sigmoid(position: float) -> float:
    """NAB's ``scaledSigmoid``: 2·sigmoid(-5·position) - 1, and -1 beyond position 3.

    >>> round(scaled_sigmoid(-1.0), 5), scaled_sigmoid(0.0), scaled_sigmoid(3.5)
    (0.98661, 0.0, -1.0)
    """
    if position > 3.0:
        return -1.0
    return 2.0 / (1.0 + math.exp(5.0 * position)) - 1.0


def _scaled_sigmoids(position: Floats) -> Floats:
    capped = np.minimum(position, 4.0)  # keeps exp finite; beyond 3 the value is -1 anyway
    return np.where(position > 3.0, -1.0, 2.0 / (1.0 + np.exp(5.0 * capped)) - 1.0)


def first_scored_row(n_rows: int, percent: float = PROBATION_PERCENT) -> int:
    """The first row after the probationary period: min(⌊percent·n⌋, percent·5000).

    >>> first_scored_row(100), first_scored_row(4032), first_scored_row(22695)
    (15, 604, 750)
    """
    return math.ceil(min(math.floor(percent * n_rows), percent * 5000))


def normalize(raw: float, null: float, perfect: float) -> float:
    """100·(raw - null)/(perfect - null); NaN when there is no window to score."""
    if perfect == null:
        return math.nan
    return 100.0 * (raw - null) / (perfect - null)


def window_rows(timestamps: Sequence[T], windows: Iterable[tuple[T, T]]) -> list[tuple[int, int]]:
    """Windows given by their first and last timestamps, as inclusive row ranges in order.

    As NAB's sweeper, a bound is the first row carrying exactly that timestamp. Raises
    ``ValueError`` when a bound is no row's timestamp, or windows overlap.
    """
    first_row: dict[T, int] = {}
    for row, stamp in enumerate(timestamps):
        first_row.setdefault(stamp, row)
    rows = []
    for start, end in windows:
        for bound in (start, end):
            if bound not in first_row:
                raise ValueError(f"window bound {bound} is not the timestamp of any row")
        rows.append((first_row[start], first_row[end]))
    rows.sort()
    _check_windows(len(timestamps), rows)
    return rows


def _check_windows(n_rows: int, windows: Sequence[tuple[int, int]]) -> None:
    previous_last = -1
    for first, last in windows:
        if not 0 <= first <= last < n_rows:
            raise ValueError(f"window rows {first}..{last} are not a range within the "
                             f"{n_rows} rows")
        if first <= previous_last:
            raise ValueError(f"window rows {first}..{last} are out of order or overlap the "
                             "previous window")
        previous_last = last


def row_rewards(n_rows: int, windows: Sequence[tuple[int, int]]) -> tuple[Floats, Ints]:
    """What each row would earn as a detection, before profile weights, and its window.

    Inside window ``k`` (ranges in row order): ``σ(p)/σ(-1)`` in (0, 1] with
    ``p = -(last - row + 1)/length``, window index ``k``. Outside: ``σ(d)`` in [-1, 0)
    with ``d = (row - last)/(length - 1)`` for the previous window, -1 before the first
    window and after a one-row window (where NAB would divide by zero); index -1.
    """
    _check_windows(n_rows, windows)
    reward = np.full(n_rows, -1.0)
    window = np.full(n_rows, -1, dtype=np.int64)
    rows = np.arange(n_rows, dtype=np.float64)
    max_tp = scaled_sigmoid(-1.0)
    for k, (first, last) in enumerate(windows):
        length = last - first + 1
        inside = slice(first, last + 1)
        reward[inside] = _scaled_sigmoids(-(last - rows[inside] + 1) / length) / max_tp
        window[inside] = k
        if length > 1:
            after = slice(last + 1, windows[k + 1][0] if k + 1 < len(windows) else n_rows)
            reward[after] = _scaled_sigmoids((rows[after] - last) / (length - 1))
    return reward, window


@dataclass(frozen=True)
class _Rows:
    """A corpus's scored rows (probation dropped): score, reward, window id (-1 outside)."""

    scores: Floats
    reward: Floats
    window: Ints
    all_windows: int

    @property
    def scored_windows(self) -> int:
        return int(np.unique(self.window[self.window >= 0]).size)

    def weights(self, profile: Profile) -> Floats:
        inside = self.window >= 0
        return self.reward * np.where(inside, profile.tp_weight, profile.fp_weight)


def _rows(corpus: Sequence[ScoredSeries]) -> _Rows:
    scores: list[Floats] = []
    rewards: list[Floats] = []
    windows: list[Ints] = []
    offset = 0
    for series in corpus:
        values = np.asarray(series.scores, dtype=np.float64)
        if not np.all((values >= 0.0) & (values <= 1.0)):  # also false for NaN
            raise ValueError(f"{series.name}: anomaly scores must lie in [0, 1]")
        try:
            reward, window = row_rewards(len(values), series.windows)
        except ValueError as exc:
            raise ValueError(f"{series.name}: {exc}") from None
        kept = slice(first_scored_row(len(values)), None)
        scores.append(values[kept])
        rewards.append(reward[kept])
        windows.append(np.where(window[kept] >= 0, window[kept] + offset, -1))
        offset += len(series.windows)
    if not scores:
        return _Rows(np.empty(0), np.empty(0), np.empty(0, dtype=np.int64), 0)
    return _Rows(np.concatenate(scores), np.concatenate(rewards), np.concatenate(windows),
                 offset)


def _window_gains(window: Ints, weight: Floats, fn_weight: float) -> tuple[Floats, Bools]:
    """For rows in firing order: how much each raises its window's score (the best weight
    fired so far, ``-fn_weight`` before any), and whether it is its window's first."""
    gain = np.zeros(len(window))
    first = np.zeros(len(window), dtype=np.bool_)
    at = np.flatnonzero(window >= 0)
    if at.size == 0:
        return gain, first
    at = at[np.argsort(window[at], kind="stable")]  # grouped by window, firing order kept
    ids = window[at]
    starts = np.append(True, ids[1:] != ids[:-1])
    # One running maximum serves every window once each window's ranks are offset above
    # the previous window's: exact, unlike offsetting the float weights themselves.
    values, rank = np.unique(weight[at], return_inverse=True)
    offset = (np.cumsum(starts) - 1) * len(values)
    best = values[np.maximum.accumulate(rank.ravel() + offset) - offset]
    before = np.append(-fn_weight, best[:-1])
    before[starts] = -fn_weight
    gain[at] = best - before
    first[at[starts]] = True
    return gain, first


@dataclass(frozen=True)
class _Sweep:
    thresholds: Floats
    scores: Floats
    tp: Ints
    fp: Ints
    hits: Ints
    inside: int
    outside: int
    windows: int

    def at(self, k: int) -> ThresholdScore:
        tp, fp = int(self.tp[k]), int(self.fp[k])
        return ThresholdScore(float(self.thresholds[k]), float(self.scores[k]), tp=tp, fp=fp,
                              tn=self.outside - fp, fn=self.inside - tp,
                              windows_detected=int(self.hits[k]), windows=self.windows)


def _sweep(rows: _Rows, profile: Profile) -> _Sweep:
    order = np.argsort(-rows.scores, kind="stable")
    scores, window = rows.scores[order], rows.window[order]
    weight = rows.weights(profile)[order]
    inside = window >= 0
    gain, first = _window_gains(window, weight, profile.fn_weight)
    null = -profile.fn_weight * rows.scored_windows
    running = null + np.cumsum(np.where(inside, gain, weight))
    ends = np.flatnonzero(np.append(scores[1:] != scores[:-1], True)) if scores.size else order

    def table(values: npt.NDArray[Any], start: float) -> npt.NDArray[Any]:
        return np.concatenate(([start], values[ends]))

    return _Sweep(table(scores, NO_DETECTION), table(running, null),
                  table(np.cumsum(inside), 0), table(np.cumsum(~inside), 0),
                  table(np.cumsum(first), 0), inside=int(inside.sum()),
                  outside=int((~inside).sum()), windows=rows.scored_windows)


def sweep(corpus: Sequence[ScoredSeries], profile: Profile) -> list[ThresholdScore]:
    """The raw score at every distinct anomaly score, highest threshold first, after
    :data:`NO_DETECTION` (NAB's ``calcScoreByThreshold`` over the pooled corpus)."""
    swept = _sweep(_rows(corpus), profile)
    return [swept.at(k) for k in range(len(swept.thresholds))]


def optimize(corpus: Sequence[ScoredSeries], profile: Profile) -> ThresholdScore:
    """The threshold with the best raw corpus score; the highest on ties, as NAB."""
    swept = _sweep(_rows(corpus), profile)
    return swept.at(int(np.argmax(swept.scores)))


def score_at(corpus: Sequence[ScoredSeries], profile: Profile,
             threshold: float) -> ThresholdScore:
    """The raw score when rows scoring at or above ``threshold`` are detections."""
    rows = _rows(corpus)
    weight = rows.weights(profile)
    inside = rows.window >= 0
    fired = rows.scores >= threshold
    best = np.full(rows.all_windows, -np.inf)
    np.maximum.at(best, rows.window[fired & inside], weight[fired & inside])
    scored = np.zeros(rows.all_windows, dtype=np.bool_)
    scored[rows.window[inside]] = True
    windows = float(np.maximum(best, -profile.fn_weight)[scored].sum())
    tp, fp = int((fired & inside).sum()), int((fired & ~inside).sum())
    return ThresholdScore(threshold, windows + float(weight[fired & ~inside].sum()), tp=tp,
                          fp=fp, tn=int((~inside).sum()) - fp, fn=int(inside.sum()) - tp,
                          windows_detected=int(np.isfinite(best).sum()),
                          windows=int(scored.sum()))


def null_score(corpus: Sequence[ScoredSeries], profile: Profile) -> float:
    """The raw score of a detector that never fires: every scored window missed."""
    return -profile.fn_weight * _rows(corpus).scored_windows


def perfect_score(corpus: Sequence[ScoredSeries], profile: Profile) -> float:
    """NAB's perfect raw score: ``tp_weight`` for every labelled window."""
    return profile.tp_weight * sum(len(series.windows) for series in corpus)


def evaluate(corpus: Sequence[ScoredSeries],
             profiles: Iterable[Profile] = PROFILES) -> list[ProfileResult]:
    """Each profile's best corpus threshold, raw score and normalisation bounds."""
    rows = _rows(corpus)
    results = []
    for profile in profiles:
        swept = _sweep(rows, profile)
        results.append(ProfileResult(
            profile, swept.at(int(np.argmax(swept.scores))),
            null=-profile.fn_weight * rows.scored_windows,
            perfect=profile.tp_weight * rows.all_windows))
    return results
