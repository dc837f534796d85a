"""Exponentially weighted z-score: fast to adapt, for level changes that matter now."""

from __future__ import annotations

import math
from typing import Any

from streams.detectors.base import Detector, Direction, Features, value_of
from streams.detectors.running import EWMean, EWVar
from streams.state import Reader


class EWMAZScore(Detector):
    """Distance from the exponentially weighted mean in exponentially weighted SDs.

    River's ``EWMean``/``EWVar`` arithmetic (:mod:`.running`) with fading factor
    ``alpha`` (memory ≈ 2/alpha points). The scale has a floor of ``rel_floor`` ×
    |mean|. :meth:`rebaseline` keeps nothing: the level and spread are re-learned from
    the next ``warmup`` values.

    >>> d = EWMAZScore("latency", alpha=0.2, warmup=3)
    >>> for v in (10.0, 11.0, 9.0, 10.0, 10.5):
    ...     d.learn_one({"latency": v})
    >>> d.score_one({"latency": 10.2}) < 1 < d.threshold < d.score_one({"latency": 30.0})
    True
    """

    name = "ewma_zscore"

    def __init__(self, feature: str, alpha: float = 0.1, warmup: int = 10,
                 threshold: float = 6.0, rel_floor: float = 0.01, *,
                 direction: Direction = "up", patience: int | None = 30,
                 memory: int = 500) -> None:
        super().__init__(threshold=threshold, warmup=warmup, patience=patience, memory=memory,
                         direction=direction)
        self.feature = feature
        self.alpha = alpha
        self.rel_floor = rel_floor
        self._mean = EWMean(alpha)
        self._var = EWVar(alpha)

    def _score(self, x: Features) -> float:
        value = value_of(x, self.feature)
        if value is None:
            return 0.0
        mean = self._mean.get()
        scale = max(math.sqrt(max(self._var.get(), 0.0)), self.rel_floor * abs(mean), 1e-12)
        return self._directed((value - mean) / scale, (mean - value) / scale)

    def _learn(self, x: Features) -> bool:
        value = value_of(x, self.feature)
        if value is None:
            return False
        self._mean.update(value)
        self._var.update(value)
        return True

    def _forget(self) -> None:
        self._mean = EWMean(self.alpha)
        self._var = EWVar(self.alpha)

    def _state(self) -> dict[str, Any]:
        return {"feature": self.feature, "alpha": self.alpha, "rel_floor": self.rel_floor,
                "mean": self._mean.to_state(), "var": self._var.to_state()}

    @classmethod
    def _from_state(cls, r: Reader) -> EWMAZScore:
        d = cls(r.text("feature"), alpha=r.number("alpha", 0.0, 1.0),
                rel_floor=r.number("rel_floor", 0.0))
        d._mean = EWMean.from_state(r.raw("mean"), d.alpha, f"{r.where}.mean")
        d._var = EWVar.from_state(r.raw("var"), d.alpha, f"{r.where}.var")
        return d
