"""Exponentially weighted mean and variance whose state is two plain numbers each.

River's ``stats.EWMean`` and ``stats.EWVar`` keep theirs inside a compiled object that
offers ``update`` and ``get`` only, so a snapshot could not rebuild them from numbers.
These do the same arithmetic in the same order (Finch 2009: the first value is the
mean; then ``alpha · x + (1 − alpha) · mean``; the variance is the weighted mean of
squares minus the squared mean), which gives River's results to the bit
(``tests/unit/test_detectors.py`` checks), and expose their numbers.

>>> m = EWMean(0.5)
>>> for x in (1.0, 3.0, 5.0):
...     m.update(x)
>>> m.get(), EWMean.from_state(m.to_state(), 0.5).get()
(3.5, 3.5)
"""

from __future__ import annotations

from typing import Any

from streams.state import Reader


class EWMean:
    """Exponentially weighted mean with fading factor ``alpha`` (River's ``EWMean``)."""

    __slots__ = ("_rest", "alpha", "initialized", "mean")

    def __init__(self, alpha: float) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"a fading factor lies in [0, 1], not {alpha}")
        self.alpha = alpha
        self._rest = 1.0 - alpha
        self.mean = 0.0
        self.initialized = False

    def update(self, x: float) -> None:
        if self.initialized:
            self.mean = self.alpha * x + self._rest * self.mean
        else:
            self.mean, self.initialized = x, True

    def get(self) -> float:
        return self.mean

    def to_state(self) -> dict[str, Any]:
        return {"mean": self.mean, "initialized": self.initialized}

    @classmethod
    def from_state(cls, state: object, alpha: float, where: str = "ewmean") -> EWMean:
        r = Reader(state, where)
        made = cls(alpha)
        made.mean, made.initialized = r.number("mean"), r.flag("initialized")
        return made


class EWVar:
    """Exponentially weighted variance with fading factor ``alpha`` (River's ``EWVar``)."""

    __slots__ = ("_mean", "_squares", "alpha")

    def __init__(self, alpha: float) -> None:
        self.alpha = alpha
        self._mean = EWMean(alpha)
        self._squares = EWMean(alpha)

    def update(self, x: float) -> None:
        self._mean.update(x)
        self._squares.update(x * x)

    def get(self) -> float:
        mean = self._mean.get()
        return self._squares.get() - mean * mean

    def to_state(self) -> dict[str, Any]:
        return {"mean": self._mean.to_state(), "squares": self._squares.to_state()}

    @classmethod
    def from_state(cls, state: object, alpha: float, where: str = "ewvar") -> EWVar:
        r = Reader(state, where)
        made = cls(alpha)
        made._mean = EWMean.from_state(r.raw("mean"), alpha, f"{where}.mean")
        made._squares = EWMean.from_state(r.raw("squares"), alpha, f"{where}.squares")
        return made
