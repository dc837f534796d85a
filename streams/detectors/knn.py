"""Shape novelty: how far the last few values, as a window, lie from every window seen before.

The fences and the daily profile judge one value at a time; a metric whose values
all stay in range but whose *shape* changes (spikes coming twice as often, a sawtooth
going flat, a level that starts to drift) is left to this detector. It is the
nearest-neighbour idea of KNN-CAD (Burnaev & Ishimtsev, NAB's "KNN CAD" entry), with
the raw distance turned into a per-metric surprise the way Numenta's anomaly
likelihood does: how far the recent mean distance lies above its own long-run mean,
in its own standard deviations.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from streams.detectors.base import Detector, Features, value_of
from streams.state import MAX_ITEMS, Reader, StateError, finite_or_none


class WindowKNN(Detector):
    """Surprise of the last ``length`` values' distance to their ``k`` nearest past windows.

    Every learned value joins a history of the last ``history`` values; the windows
    of ``length`` consecutive values in it, except the ``length`` most recent (which
    overlap the query), are the reference set. The query is the ``length`` - 1 values
    seen last (learned or not) and ``x``. Its raw novelty is the mean RMS distance to
    its ``k`` nearest reference windows, divided by the range of all learned values
    (so a flat metric's first wiggle is not infinitely novel). The score is the mean
    novelty of the last ``short`` points (``x`` included) above the exponentially
    weighted mean novelty (a plain mean over the first 1/``alpha`` points), in its
    standard deviations; 0 when below. Novelties are tracked for every point, flagged
    or not, like Numenta's likelihood; the gate only keeps flagged values out of the
    history. ``direction`` is always ``"both"``: a shape has no up. :meth:`rebaseline`
    keeps nothing.

    >>> import math
    >>> d = WindowKNN(length=4, warmup=60)
    >>> for i in range(300):
    ...     d.learn_one({"value": math.sin(i / 3)})
    >>> d.score_one({"value": math.sin(300 / 3)}) < d.threshold
    True
    >>> d.score_one({"value": 30.0}) > d.threshold
    True
    """

    name = "window_knn"

    def __init__(self, feature: str = "value", length: int = 10, history: int = 2000,
                 k: int = 5, short: int = 5, alpha: float = 0.001, warmup: int = 150,
                 threshold: float = 6.0, *, patience: int | None = 30,
                 memory: int = 500) -> None:
        super().__init__(threshold=threshold, warmup=warmup, patience=patience, memory=memory,
                         direction="both")
        if length < 1 or k < 1 or short < 1 or history < 2 * length + k:
            raise ValueError("need length, k, short >= 1 and history >= 2 length + k")
        self.feature = feature
        self.length = length
        self.history = history
        self.k = k
        self.short = short
        self.alpha = alpha
        self._recent: deque[float] = deque(maxlen=max(length - 1, 1))
        self._novelties: deque[float] = deque(maxlen=max(short - 1, 1))
        self._values = np.empty(0)
        self._low, self._high = math.inf, -math.inf
        self._stats = [0.0, 0.0, 0.0]  # novelties seen, their mean, their variance
        self._last: tuple[Features, float | None] | None = None

    def _novelty(self, x: Features) -> float | None:
        """Raw novelty of ``x`` after the recent values; None without a value or history."""
        last = self._last
        if last is not None and last[0] == x:
            return last[1]
        value = value_of(x, self.feature)
        novelty = None
        values = self._values
        if (value is not None and len(values) >= 2 * self.length + self.k
                and len(self._recent) >= self.length - 1):
            query = np.fromiter((*list(self._recent)[-(self.length - 1):], value)
                                if self.length > 1 else (value,), float, self.length)
            reference = sliding_window_view(values, self.length)[:-self.length]
            with np.errstate(over="ignore", invalid="ignore"):  # huge values: no novelty
                squares = np.concatenate(([0.0], np.cumsum(values * values)))
                norms = (squares[self.length:] - squares[:-self.length])[:-self.length]
                # squared distances as |r|² - 2 r·q + |q|²: one matrix-vector product
                distances = norms - 2.0 * (reference @ query) + query @ query
                nearest = np.partition(distances, self.k - 1)[:self.k]
                rms = np.sqrt(np.maximum(nearest, 0.0) / self.length)
                novelty = float(rms.mean()) / max(self._high - self._low, 1e-12)
            if not math.isfinite(novelty):
                novelty = None
        self._last = (dict(x), novelty)
        return novelty

    def _score(self, x: Features) -> float:
        novelty = self._novelty(x)
        if novelty is None:
            return 0.0
        recent = [*self._novelties, novelty][-self.short:]
        _, mean, variance = self._stats
        spread = math.sqrt(variance)
        surprise = sum(recent) / len(recent) - mean
        return surprise / max(spread, 1e-9 * abs(mean), 1e-12)

    def learn_one(self, x: Features) -> None:
        """Track ``x``'s novelty and keep ``x`` as recent context; learn it unless flagged."""
        novelty = self._novelty(x)
        super().learn_one(x)
        value = value_of(x, self.feature)
        if value is None:
            return
        if novelty is not None:
            self._novelties.append(novelty)
            self._track(novelty)
        self._recent.append(value)
        self._last = None

    def _track(self, novelty: float) -> None:
        """Mean and variance of the novelties: a plain average over the first 1/``alpha``,
        exponentially weighted (fading ``alpha``) after."""
        count, mean, variance = self._stats
        count += 1
        weight = max(1.0 / count, self.alpha)
        delta = novelty - mean
        mean += weight * delta
        variance = (1.0 - weight) * (variance + weight * delta * delta)
        self._stats = [count, mean, variance]

    def _learn(self, x: Features) -> bool:
        value = value_of(x, self.feature)
        if value is None:
            return False
        values = self._values
        if len(values) >= self.history:
            values = values[-(self.history - 1):]
        self._values = np.append(values, value)
        self._low, self._high = min(self._low, value), max(self._high, value)
        return True

    def _forget(self) -> None:
        self._recent.clear()
        self._novelties.clear()
        self._values = np.empty(0)
        self._low, self._high = math.inf, -math.inf
        self._stats = [0.0, 0.0, 0.0]
        self._last = None

    def _state(self) -> dict[str, Any]:
        return {"feature": self.feature, "length": self.length, "history": self.history,
                "k": self.k, "short": self.short, "alpha": self.alpha,
                "recent": list(self._recent), "novelties": list(self._novelties),
                "values": self._values.tolist(), "low": finite_or_none(self._low),
                "high": finite_or_none(self._high), "stats": list(self._stats)}

    @classmethod
    def _from_state(cls, r: Reader) -> WindowKNN:
        d = cls(r.text("feature"), length=r.integer("length", 1, MAX_ITEMS),
                history=r.integer("history", 1, MAX_ITEMS), k=r.integer("k", 1, MAX_ITEMS),
                short=r.integer("short", 1, MAX_ITEMS), alpha=r.number("alpha", 0.0, 1.0))
        d._recent.extend(r.numbers("recent", d.length))
        d._novelties.extend(r.numbers("novelties", d.short, 0.0))
        d._values = np.array(r.numbers("values", d.history), dtype=float)
        if len(d._values):
            d._low, d._high = r.number("low"), r.number("high")
            if not d._low <= float(d._values.min()) <= float(d._values.max()) <= d._high:
                raise StateError(f"{r.where}: low and high do not bound the values")
        count, mean, variance = r.numbers("stats", 3)
        if count < 0 or variance < 0:
            raise StateError(f"{r.where}.stats: a negative count or variance")
        d._stats = [count, mean, variance]
        return d
