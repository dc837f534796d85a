"""The detector interface every implementation follows.

One mechanism keeps every detector from learning what it flags, and it lives here,
in :meth:`Detector.learn_one`: a point whose score reaches the threshold
(calibrated score ≥ 0.5) is not learned. A detector that only ever refused would
lock onto its old baseline after a real, lasting change (or never learn that a
function has regular bursts), so once about ``patience`` of the last ``memory``
points were flagged (a leaky count: each flag fades by 1/``memory`` a point) it
learns flagged points again and absorbs the new normal at its own pace
(``patience=None``: never). A sustained new level is therefore flagged, and not
learned, for its first ``patience`` points (exactly that many when ``memory`` ≥
patience × (patience + 1) / 2, as with the defaults, 30 in 500; a few more otherwise).

Implementations supply ``_score``, ``_learn`` and ``_forget``; warm-up, the gate and
calibration are handled once, here, and :func:`value_of` reads a feature so that a
missing or non-finite one is simply skipped.

State is plain data (:mod:`streams.state`): :meth:`Detector.to_state` gives a detector's
settings and everything it has learned as JSON data tagged with its ``name``, and
:meth:`Detector.from_state` rebuilds it, the tag looked up among the detector classes
(each implementation supplies ``_state`` and ``_from_state``), so a restored detector
scores every later point exactly as the original would.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, ClassVar, Literal, Self

from streams.state import MAX_INT, Reader, StateError

Features = dict[str, float]
Direction = Literal["up", "both"]
_KINDS: dict[str, type[Detector]] = {}
"""Every detector class by its ``name``: the type tags :meth:`Detector.from_state` knows."""


class Detector(ABC):
    """An online anomaly detector over one function's feature windows.

    ``score_one(x)`` never learns; it is 0 until ``warmup`` points have been learned
    (since construction or the last :meth:`rebaseline`). ``learn_one(x)`` learns
    ``x`` unless it is flagged (see the module docstring). ``direction="up"`` scores
    only increases (a cost detector), ``"both"`` increases and decreases.

    >>> from streams.detectors import EWMAZScore
    >>> d = EWMAZScore("cost", warmup=3, patience=2, memory=10)
    >>> for v in (1.0, 1.1, 0.9, 1.0):
    ...     d.learn_one({"cost": v})
    >>> d.score_one({"cost": 1.05}) < d.threshold <= d.score_one({"cost": 9.0})
    True
    >>> for _ in range(3):  # flagged twice: not learned; a 3rd time: the new normal
    ...     d.learn_one({"cost": 9.0}); d.n_learned
    4
    4
    5
    >>> d.calibrated(d.threshold)
    0.5
    """

    name: ClassVar[str]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "name" in cls.__dict__:
            if cls.name in _KINDS:
                raise TypeError(f"two detectors are named {cls.name!r}")
            _KINDS[cls.name] = cls

    def __init__(self, *, threshold: float, warmup: int, patience: int | None,
                 memory: int = 500, direction: Direction = "up") -> None:
        if direction not in ("up", "both"):
            raise ValueError(f"direction must be 'up' or 'both', not {direction!r}")
        if memory < 1 or threshold <= 0:
            raise ValueError("memory must be at least 1 and the threshold positive")
        self._threshold = threshold
        self.warmup = warmup
        self.patience = patience
        self.memory = memory
        self.direction = direction
        self.n_learned = 0
        self._flags = 0.0  # flagged points, each fading by 1/memory a point
        self._memo: tuple[Features, float] | None = None

    @property
    def threshold(self) -> float:
        """Score at and above which a point is anomalous (calibrated 0.5)."""
        return self._threshold

    @threshold.setter
    def threshold(self, value: float) -> None:
        """Retune live (e.g. from :mod:`streams.decisions.thresholds`); what was learned stays."""
        if not value > 0:
            raise ValueError(f"a detector threshold must be > 0, not {value}")
        self._threshold = value

    @property
    def warm(self) -> bool:
        return self.n_learned >= self.warmup

    def score_one(self, x: Features) -> float:
        """Anomaly score of ``x``: higher is more anomalous; 0 during warm-up."""
        score = self._score(x) if self.warm else 0.0
        score = score if score > 0.0 else 0.0  # also NaN
        self._memo = (dict(x), score)  # learn_one(x) right after reuses it
        return score

    def learn_one(self, x: Features) -> None:
        """Learn ``x`` as normal, unless it is flagged (see the module docstring)."""
        memo = self._memo
        score = memo[1] if memo is not None and memo[0] == x else self.score_one(x)
        self._flags *= 1.0 - 1.0 / self.memory
        if score >= self._threshold:
            self._flags += 1.0
            if self.patience is None or self._flags < self.patience:
                return
        if self._learn(x):
            self.n_learned += 1
            self._memo = None

    def rebaseline(self) -> None:
        """Forget the old baseline (a new version is deployed) and warm up again."""
        self.n_learned = 0
        self._flags = 0.0
        self._memo = None
        self._forget()

    def to_state(self) -> dict[str, Any]:
        """The detector's settings and what it has learned, as plain data."""
        return {"kind": self.name, "threshold": self._threshold, "warmup": self.warmup,
                "patience": self.patience, "memory": self.memory,
                "direction": self.direction, "n_learned": self.n_learned,
                "flags": self._flags, **self._state()}

    @classmethod
    def from_state(cls, state: object, where: str = "detector") -> Self:
        """The detector ``state`` (from :meth:`to_state`) describes, of this class or a
        subclass; :class:`~streams.state.StateError` if it is not one."""
        r = Reader(state, where)
        kind = r.text("kind", 64)
        found = _KINDS.get(kind)
        if found is None or not issubclass(found, cls):
            known = sorted(k for k, c in _KINDS.items() if issubclass(c, cls))
            raise StateError(f"{where}.kind: {kind!r:.70} is not a {cls.__name__} "
                             f"({', '.join(known)})")
        try:
            detector = found._from_state(r)
            detector.threshold = r.number("threshold", 0.0)
            detector.warmup = r.integer("warmup")
            detector.patience = r.integer("patience") if r.has("patience") else None
            detector.memory = r.integer("memory", 1)
        except ValueError as exc:  # a constructor's own checks
            raise StateError(f"{where}: {exc}") from None
        direction = r.text("direction", 8)
        if direction not in ("up", "both"):
            raise StateError(f"{where}.direction: {direction!r} is not 'up' or 'both'")
        detector.direction = "up" if direction == "up" else "both"
        detector.n_learned = r.integer("n_learned", 0, MAX_INT)
        detector._flags = r.number("flags", 0.0)
        assert isinstance(detector, cls)
        return detector

    def calibrated(self, score: float) -> float:
        """``score`` mapped into [0, 1): ``score / (score + threshold)``, 0.5 at the threshold.

        Unlike an exponential it does not round to 1.0 for large scores, so scores
        far above the threshold still rank.
        """
        score = max(score, 0.0)
        return score / (score + self._threshold) if math.isfinite(score) else 1.0

    def _directed(self, up: float, down: float) -> float:
        """The score of a deviation ``up`` above / ``down`` below normal (≤ 0: none)."""
        return up if self.direction == "up" else max(up, down)

    @abstractmethod
    def _score(self, x: Features) -> float:
        """Raw score of ``x`` once warm; 0 when ``x`` lacks what the detector reads."""

    @abstractmethod
    def _learn(self, x: Features) -> bool:
        """Update the baseline with ``x``; False if ``x`` had nothing to learn."""

    @abstractmethod
    def _forget(self) -> None:
        """Drop (part of) the learned baseline; each implementation says what it keeps."""

    @abstractmethod
    def _state(self) -> dict[str, Any]:
        """The implementation's own settings and learned numbers, as plain data."""

    @classmethod
    @abstractmethod
    def _from_state(cls, r: Reader) -> Detector:
        """A detector made with the settings in ``r`` and holding what it learned (the
        base class restores its own fields after)."""


def value_of(x: Features, feature: str) -> float | None:
    """``x[feature]`` as a finite float, or None when missing or not a number."""
    value = x.get(feature)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    value = float(value)
    return value if math.isfinite(value) else None
