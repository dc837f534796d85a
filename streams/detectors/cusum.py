"""Count-weighted CUSUM of a level against a slow reference: for shifts that creep."""

from __future__ import annotations

import math
from typing import Any

from streams.detectors.base import Detector, Direction, Features, value_of
from streams.state import MAX_INT, Reader


class CusumScore(Detector):
    """One-sided CUSUM of ``log(feature)`` for a rise by ``shift``× over a slow reference.

    A rolling baseline absorbs a level that creeps up a few per cent a window (each
    window looks like the last), so a slow leak never stands out against it. This
    detector keeps a slow reference instead — the exponentially weighted mean ``μ`` of
    ``log(value)`` with fading factor ``alpha``, learned only while there is no
    evidence of a shift — and accumulates Page's CUSUM of the log-likelihood ratio of
    "the level is ``shift`` × the reference" against "it is the reference"::

        S ← max(0, S + n·δ·(log(value) − μ − δ/2) / σ²),   δ = log(shift)

    where ``n`` is the number of events behind the value (``count_feature``, capped at
    ``max_count``; 1 without one) and ``σ²`` the variance of one event's ``log(value)``,
    learned (with the same ``alpha``) from successive differences, which a slow drift
    hardly inflates (so a window of 3 calls weighs as little as its noise deserves and
    one of 300 is capped). The score is what ``S`` would become with ``x``; a point
    scoring ``threshold`` or more is flagged (and, by the base class's gate, neither
    moves ``S`` nor the reference). ``S`` drifts down on normal points, so only a
    sustained rise accumulates; a rise to ``shift``× scores about
    ``n·δ²/(2σ²)`` a point. Values ≤ 0 are skipped. :meth:`rebaseline` keeps nothing.

    >>> d = CusumScore("cost", warmup=5, patience=None)
    >>> for i in range(20):
    ...     d.learn_one({"cost": 1.0 + 0.05 * (i % 3)})
    >>> d.score_one({"cost": 1.05}) < d.threshold
    True
    >>> scores = []
    >>> for i in range(40):  # +3 % a window: never a jump, soon a shift
    ...     x = {"cost": 1.03 ** i}
    ...     scores.append(d.score_one(x))
    ...     d.learn_one(x)
    >>> first = next(i for i, s in enumerate(scores) if s >= d.threshold)
    >>> 1.03 ** first < 2.0
    True
    """

    name = "cusum"

    def __init__(self, feature: str = "value", count_feature: str | None = None,
                 shift: float = 2.0, alpha: float = 0.005, warmup: int = 20,
                 threshold: float = 20.0, *, max_count: float = 50.0,
                 sigma_floor: float = 0.05, direction: Direction = "up",
                 patience: int | None = None, memory: int = 500) -> None:
        if direction != "up":
            raise ValueError("CusumScore only watches rises (direction='up')")
        if shift <= 1.0 or not 0.0 < alpha < 1.0:
            raise ValueError("shift must be above 1 and alpha in (0, 1)")
        super().__init__(threshold=threshold, warmup=warmup, patience=patience, memory=memory,
                         direction=direction)
        self.feature = feature
        self.count_feature = count_feature
        self.shift = shift
        self.alpha = alpha
        self.max_count = max_count
        self.sigma_floor = sigma_floor
        self._mean = self._var = self._sum = 0.0
        self._seen = 0
        self._last = (0.0, 1.0)  # log value and count of the last point learned

    @property
    def reference(self) -> float:
        """The slow reference level (``exp(μ)``; 0.0 before anything was learned)."""
        return math.exp(self._mean) if self._seen else 0.0

    @property
    def noise(self) -> float:
        """The learned standard deviation of one event's ``log(value)`` (σ, floored)."""
        return math.sqrt(max(self._var, self.sigma_floor ** 2))

    @property
    def statistic(self) -> float:
        """The CUSUM ``S`` so far."""
        return self._sum

    def _point(self, x: Features) -> tuple[float, float] | None:
        value = value_of(x, self.feature)
        if value is None or value <= 0.0:
            return None
        count = 1.0
        if self.count_feature is not None:
            count = value_of(x, self.count_feature) or 0.0
            if count < 1.0:
                return None
        return math.log(value), min(count, self.max_count)

    def _step(self, log_value: float, count: float) -> float:
        delta = math.log(self.shift)
        var = max(self._var, self.sigma_floor ** 2)
        return count * delta * (log_value - self._mean - delta / 2) / var

    def _score(self, x: Features) -> float:
        point = self._point(x)
        if point is None or not self._seen:
            return 0.0
        return max(0.0, self._sum + self._step(*point))

    def _learn(self, x: Features) -> bool:
        point = self._point(x)
        if point is None:
            return False
        log_value, count = point
        last_value, last_count = self._last
        self._last = (log_value, count)
        self._seen += 1
        if self._seen == 1:
            self._mean = log_value
            return True
        warming = self._seen <= self.warmup
        # the noise of one event, from successive differences, which a slow drift does
        # not inflate: var(x_t - x_t-1) = σ²(1/n_t + 1/n_t-1); winsorised at 4σ
        noise = (log_value - last_value) ** 2 / (1.0 / count + 1.0 / last_count)
        if not warming:
            self._sum = max(0.0, self._sum + self._step(log_value, count))
            noise = min(noise, 16 * max(self._var, self.sigma_floor ** 2))
        rate = 1.0 / self._seen if warming else self.alpha
        self._var += (1.0 / (self._seen - 1) if warming else self.alpha) * (noise - self._var)
        if warming or self._sum == 0.0:  # the reference moves only without evidence
            self._mean += rate * (log_value - self._mean)
        return True

    def _forget(self) -> None:
        self._mean = self._var = self._sum = 0.0
        self._seen = 0
        self._last = (0.0, 1.0)

    def _state(self) -> dict[str, Any]:
        return {"feature": self.feature, "count_feature": self.count_feature,
                "shift": self.shift, "alpha": self.alpha, "max_count": self.max_count,
                "sigma_floor": self.sigma_floor, "mean": self._mean, "var": self._var,
                "sum": self._sum, "seen": self._seen, "last": list(self._last)}

    @classmethod
    def _from_state(cls, r: Reader) -> CusumScore:
        d = cls(r.text("feature"),
                count_feature=r.text("count_feature") if r.has("count_feature") else None,
                shift=r.number("shift"), alpha=r.number("alpha"),
                max_count=r.number("max_count", 1.0),
                sigma_floor=r.number("sigma_floor", 1e-9))
        d._mean, d._var, d._sum = r.number("mean"), r.number("var", 0.0), r.number("sum", 0.0)
        d._seen = r.integer("seen", 0, MAX_INT)
        log_value, count = r.numbers("last", 2)
        d._last = (log_value, count)
        return d
