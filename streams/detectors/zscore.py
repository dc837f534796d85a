"""Robust rolling z-score: distance from the rolling median in MAD units."""

from __future__ import annotations

import math
import statistics
from collections import deque

from streams.detectors.base import Detector, Features


class RobustZScore(Detector):
    """Median/MAD z-score of one feature over the last ``window`` normal windows.

    The scale has a floor (``rel_floor`` × median) so a perfectly steady baseline
    does not turn tiny wiggles into huge scores. With ``count_feature`` (the number
    of events behind the window) the relative floor is at least the Poisson noise of
    that count, 1/√count, so sparse traffic is not paged for. Scores are 0 until ``warmup``
    windows have been learned, and 0 for values at or below the median (only
    increases are anomalous: a cost detector).

    >>> d = RobustZScore("cost", window=10, warmup=3)
    >>> for v in (1.0, 1.1, 0.9, 1.0):
    ...     d.learn_one({"cost": v})
    >>> d.score_one({"cost": 1.05}) < 1 < d.score_one({"cost": 5.0})
    True
    """

    name = "robust_zscore"

    def __init__(self, feature: str, window: int = 60, warmup: int = 6,
                 threshold: float = 6.0, rel_floor: float = 0.1,
                 count_feature: str | None = None) -> None:
        self.feature = feature
        self.count_feature = count_feature
        self.warmup = warmup
        self.rel_floor = rel_floor
        self._threshold = threshold
        self._history: deque[float] = deque(maxlen=window)
        self._counts: deque[float] = deque(maxlen=window)

    @property
    def threshold(self) -> float:
        return self._threshold

    @property
    def warm(self) -> bool:
        return len(self._history) >= self.warmup

    def learn_one(self, x: Features) -> None:
        value = x.get(self.feature)
        if value is not None:
            self._history.append(float(value))
            if self.count_feature is not None:
                self._counts.append(float(x.get(self.count_feature, 0.0)))

    def median(self) -> float:
        return statistics.median(self._history) if self._history else 0.0

    def score_one(self, x: Features) -> float:
        value = x.get(self.feature)
        if value is None or not self.warm:
            return 0.0
        median = statistics.median(self._history)
        mad = statistics.median(abs(v - median) for v in self._history)
        rel_floor = self.rel_floor
        if self._counts:
            rel_floor = max(rel_floor, 1 / math.sqrt(max(statistics.median(self._counts), 1.0)))
        scale = max(1.4826 * mad, rel_floor * abs(median), 1e-12)
        return max(0.0, (float(value) - median) / scale)
