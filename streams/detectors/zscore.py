"""Robust rolling z-score: distance from the rolling median in MAD units."""

from __future__ import annotations

import math
import statistics
from collections import deque
from typing import Any

from streams.detectors.base import Detector, Direction, Features, value_of
from streams.state import MAX_ITEMS, Reader


class RobustZScore(Detector):
    """Median/MAD z-score of one feature over the last ``window`` learned values.

    The scale is the MAD (the mean absolute deviation when over half the values are
    equal) with a floor (``rel_floor`` × median) so a perfectly steady baseline
    does not turn tiny wiggles into huge scores. With ``count_feature`` (the number
    of events behind the window) the relative floor is at least the Poisson noise of
    that count, 1/√count, so sparse traffic is not paged for. ``range_floor`` ×
    (max − min of the window) is a further floor, for metrics that sit on one value
    between bursts or switch between two levels, where the MAD says nothing, and
``abs_floor`` a floor in the feature's own unit (an error rate that is always 0
should not page for one error). Scores are 0 until
    ``warmup`` values have been learned. :meth:`rebaseline` keeps nothing: the new
    version is scored again after ``warmup`` values.

    >>> d = RobustZScore("cost", window=10, warmup=3)
    >>> for v in (1.0, 1.1, 0.9, 1.0):
    ...     d.learn_one({"cost": v})
    >>> d.score_one({"cost": 1.05}) < 1 < d.score_one({"cost": 5.0})
    True
    >>> d.score_one({"cost": 0.0})  # direction="up": a drop is not anomalous
    0.0
    """

    name = "robust_zscore"

    def __init__(self, feature: str, window: int = 60, warmup: int = 6,
                 threshold: float = 6.0, rel_floor: float = 0.1,
                 count_feature: str | None = None, *, range_floor: float = 0.0,
                 direction: Direction = "up", patience: int | None = 30,
                 memory: int = 500, abs_floor: float = 0.0) -> None:
        super().__init__(threshold=threshold, warmup=warmup, patience=patience, memory=memory,
                         direction=direction)
        self.feature = feature
        self.count_feature = count_feature
        self.rel_floor = rel_floor
        self.range_floor = range_floor
        self.abs_floor = abs_floor
        self._history: deque[float] = deque(maxlen=window)
        self._counts: deque[float] = deque(maxlen=window)
        self._median: float | None = None  # of the history; None when it changed

    def median(self) -> float:
        """The median of the learned values (cached: the per-event fast path asks for it
        on every call, and it changes only when a window is learned)."""
        median = self._median
        if median is None:
            median = self._median = statistics.median(self._history) if self._history else 0.0
        return median

    def _score(self, x: Features) -> float:
        value = value_of(x, self.feature)
        if value is None or not self._history:
            return 0.0
        median = self.median()
        deviations = [abs(v - median) for v in self._history]
        # over half the values equal: fall back to the mean absolute deviation
        spread = 1.4826 * statistics.median(deviations) or 1.2533 * statistics.fmean(deviations)
        rel_floor = self.rel_floor
        if self._counts:
            rel_floor = max(rel_floor, 1 / math.sqrt(max(statistics.median(self._counts), 1.0)))
        spread = max(spread, self.range_floor * (max(self._history) - min(self._history)))
        scale = max(spread, rel_floor * abs(median), self.abs_floor, 1e-12)
        return self._directed((value - median) / scale, (median - value) / scale)

    def _learn(self, x: Features) -> bool:
        value = value_of(x, self.feature)
        if value is None:
            return False
        self._history.append(value)
        self._median = None
        if self.count_feature is not None:
            self._counts.append(value_of(x, self.count_feature) or 0.0)
        return True

    def _forget(self) -> None:
        self._history.clear()
        self._counts.clear()
        self._median = None

    def _state(self) -> dict[str, Any]:
        return {"feature": self.feature, "count_feature": self.count_feature,
                "window": self._history.maxlen, "rel_floor": self.rel_floor,
                "range_floor": self.range_floor, "abs_floor": self.abs_floor,
                "history": list(self._history), "counts": list(self._counts)}

    @classmethod
    def _from_state(cls, r: Reader) -> RobustZScore:
        window = r.integer("window", 1, MAX_ITEMS)
        d = cls(r.text("feature"), window=window, rel_floor=r.number("rel_floor", 0.0),
                count_feature=r.text("count_feature") if r.has("count_feature") else None,
                range_floor=r.number("range_floor", 0.0), abs_floor=r.number("abs_floor", 0.0))
        d._history.extend(r.numbers("history", window))
        d._counts.extend(r.numbers("counts", window))
        return d
