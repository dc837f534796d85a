"""Rolling-quantile fences: how far beyond the rolling p99 (or below p1), in IQRs."""

from __future__ import annotations

from collections import deque
from typing import Any

from river import utils

from streams.detectors.base import Detector, Direction, Features, value_of
from streams.state import MAX_ITEMS, Reader, StateError, number


class RollingQuantileScore(Detector):
    """0 inside the rolling ``1 - q`` .. ``q`` quantile fences; beyond, 1 + the excess in IQRs.

    The quantiles come from one River ``SortedWindow`` (what ``RollingQuantile`` is
    built on) of the last ``window`` learned values. To remember rare bursts for
    longer than one window at a fraction of the state, the fences of each of the
    last ``blocks`` full windows are kept too: the upper fence is the highest
    ``q``-quantile of any of them, the lower fence the lowest ``1 - q``-quantile
    (``q=1``: the extremes of the last (``blocks`` + 1) × ``window`` values). A heavy
    but stable tail is not flagged; any value past a fence scores at least 1, so
    even a small excursion outranks every value inside them. The IQR is floored at a
    quarter of the distance between the fences (a mostly constant metric with bursts
    has none) and at ``rel_floor`` × |median|. :meth:`rebaseline` keeps nothing: the
    fences are re-learned from the next ``warmup`` values. In a snapshot the window is
    its values in arrival order, from which River's ``SortedWindow`` is rebuilt as it was.

    >>> d = RollingQuantileScore("cost", window=50, warmup=10)
    >>> for i in range(40):
    ...     d.learn_one({"cost": 1.0 + (i % 7) / 10})
    >>> d.score_one({"cost": 1.5}), d.score_one({"cost": 3.0}) > d.threshold
    (0.0, True)
    """

    name = "rolling_quantile"

    def __init__(self, feature: str, window: int = 500, q: float = 0.99, blocks: int = 0,
                 warmup: int = 20, threshold: float = 2.5, rel_floor: float = 0.01, *,
                 direction: Direction = "up", patience: int | None = 30,
                 memory: int = 500) -> None:
        super().__init__(threshold=threshold, warmup=warmup, patience=patience,
                         memory=memory, direction=direction)
        self.feature = feature
        self.q = q
        self.rel_floor = rel_floor
        self._window: utils.SortedWindow[float] = utils.SortedWindow(window)
        self._fences: deque[tuple[float, float]] = deque(maxlen=blocks)
        self._fill = 0

    def _quantile(self, q: float) -> float:
        window = self._window
        position = q * (len(window) - 1)
        below = int(position)
        above = min(below + 1, len(window) - 1)
        return window[below] + (position - below) * (window[above] - window[below])

    def fences(self) -> tuple[float, float]:
        """The (lower, upper) fences over the remembered windows."""
        low, high = self._quantile(1 - self.q), self._quantile(self.q)
        for old_low, old_high in self._fences:
            low, high = min(low, old_low), max(high, old_high)
        return low, high

    def _score(self, x: Features) -> float:
        value = value_of(x, self.feature)
        if value is None or not self._window:
            return 0.0
        low, high = self.fences()
        iqr = self._quantile(0.75) - self._quantile(0.25)
        scale = max(iqr, (high - low) / 4, self.rel_floor * abs(self._quantile(0.5)), 1e-12)
        excess = self._directed((value - high) / scale, (low - value) / scale)
        return 1.0 + excess if excess > 0 else 0.0

    def _learn(self, x: Features) -> bool:
        value = value_of(x, self.feature)
        if value is None:
            return False
        self._window.append(value)
        self._fill += 1
        if self._fill == self._window.size:
            self._fill = 0
            if self._fences.maxlen:
                self._fences.append((self._quantile(1 - self.q), self._quantile(self.q)))
        return True

    def _forget(self) -> None:
        self._window = utils.SortedWindow(self._window.size)
        self._fences.clear()
        self._fill = 0

    def _state(self) -> dict[str, Any]:
        return {"feature": self.feature, "window": self._window.size, "q": self.q,
                "blocks": self._fences.maxlen, "rel_floor": self.rel_floor,
                "values": list(self._window.unsorted_window),
                "fences": [list(f) for f in self._fences], "fill": self._fill}

    @classmethod
    def _from_state(cls, r: Reader) -> RollingQuantileScore:
        window, blocks = r.integer("window", 1, MAX_ITEMS), r.integer("blocks", 0, MAX_ITEMS)
        d = cls(r.text("feature"), window=window, q=r.number("q", 0.0, 1.0), blocks=blocks,
                rel_floor=r.number("rel_floor", 0.0))
        for value in r.numbers("values", window):
            d._window.append(value)
        where = f"{r.where}.fences"
        for i, (low, high) in enumerate(r.rows("fences", blocks, 2)):
            d._fences.append((number(low, f"{where}[{i}][0]"), number(high, f"{where}[{i}][1]")))
        d._fill = r.integer("fill", 0, window - 1)
        if d._fill > len(d._window):
            raise StateError(f"{r.where}.fill: {d._fill} is more than the window holds")
        return d
