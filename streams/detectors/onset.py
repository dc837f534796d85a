"""Report an anomaly once, where it starts: the score of an episode's first point, then quiet.

An alert is worth most at the start of an anomaly; the same anomaly reported again
a minute later is noise (NAB scores exactly that way: the first detection in a window
earns the reward, later ones nothing, and every detection outside costs). This
wrapper turns a detector's scores into episode onsets, the idea behind ARTime's and
Numenta's suppression of re-alerts.

An onset that repeats a routine is not reported either: a burst with the same shape
as bursts that started at the same time of day on earlier days (a nightly job's
spike) is what the function does, not an anomaly. The child cannot learn that by
itself, since its gate keeps every flagged burst out of its baseline.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Any

from streams.detectors.base import Detector, Features, value_of
from streams.state import (
    MAX_ITEMS,
    MIN_INT,
    Reader,
    StateError,
    finite_or_none,
    number,
    numbers,
    rows,
)

DAY = 86_400


class OnsetAlert(Detector):
    """The child's calibrated score, ranked high only where an episode starts.

    With ``c`` the child's calibrated score: a point with ``c`` ≥ ``alarm`` outside an
    episode opens one for the next ``hold`` points and is reported as
    ``0.75 + c / 4`` (calibrated; at least 0.75 + ``alarm`` / 4). Inside an episode,
    a point the child flags (``c`` ≥ 0.5) is reported as ``0.5 + (c - 0.5) / 2``, in
    [0.5, 0.75): still flagged, so not learned, but below every onset; any other
    point is reported as ``c``, below 0.5. So the calibrated scores rank onsets above
    flags above the rest, and a threshold at 0.75 or above keeps one alert per
    episode. ``alarm`` may be below 0.5: an onset then needs less evidence than
    flagging does (hold-off keeps the cost of that down).

    A *routine* onset opens its episode too but is reported like a point inside one.
    It is routine when, on at least ``routine`` earlier days (among the last ``keep``
    onsets, routine or not), an onset started within ``slack`` seconds of the same
    time of day (``t`` modulo ``period``) with the same shape: the last ``length``
    values (``feature``, every point seen) within an RMS distance of ``tolerance`` ×
    the range of all values seen. ``routine=0`` turns this off; so does a missing
    ``feature`` or ``t``.

    The child keeps its own gate: this wrapper learns every point it is given
    (``patience=0``), passing it to the child, which refuses what it flags itself.
    Missing features advance the hold like any point. :meth:`rebaseline` rebaselines
    the child and ends the episode; the onsets and values seen are kept.

    >>> from streams.detectors import EWMAZScore
    >>> d = OnsetAlert(EWMAZScore("cost", warmup=3), alarm=0.5, hold=3)
    >>> for v in (1.0, 1.1, 0.9, 1.0):
    ...     d.learn_one({"cost": v})
    >>> scores = []
    >>> for v in (9.0, 9.0, 9.0, 9.0, 9.0):  # one onset, flagged while it lasts
    ...     scores.append(round(d.calibrated(d.score_one({"cost": v})), 2))
    ...     d.learn_one({"cost": v})
    >>> [s >= 0.75 for s in scores], [s >= 0.5 for s in scores]
    ([True, False, False, False, True], [True, True, True, True, True])
    """

    name = "onset"

    def __init__(self, child: Detector, alarm: float = 0.3, hold: int = 100, *,
                 routine: int = 0, tolerance: float = 0.05, length: int = 10,
                 slack: float = 3600.0, period: float = DAY, keep: int = 16,
                 feature: str = "value", time_feature: str = "t") -> None:
        if not 0.0 < alarm < 1.0 or hold < 0:
            raise ValueError("alarm must lie in (0, 1) and hold be at least 0")
        if routine < 0 or tolerance < 0 or length < 1 or keep < 1 or not 0 <= slack < period:
            raise ValueError("need routine >= 0, tolerance >= 0, length and keep >= 1, "
                             "0 <= slack < period")
        super().__init__(threshold=1.0, warmup=child.warmup, patience=0, memory=1,
                         direction=child.direction)
        self.child = child
        self.alarm = alarm
        self.hold = hold
        self.routine = routine
        self.tolerance = tolerance
        self.slack = slack
        self.period = period
        self.feature = feature
        self.time_feature = time_feature
        self._held = 0  # points left in the current episode
        self._recent: deque[float] = deque(maxlen=length)  # the last values seen
        self._onsets: deque[tuple[float, tuple[float, ...]]] = deque(maxlen=keep)
        self._low, self._high = math.inf, -math.inf  # of every value seen
        self._decided: tuple[Features, float, bool] | None = None

    def _decide(self, x: Features) -> tuple[float, bool]:
        """The child's calibrated score of ``x`` and whether ``x`` opens an episode."""
        memo = self._decided
        if memo is not None and memo[0] == x:
            return memo[1], memo[2]
        c = self.child.calibrated(self.child.score_one(x))
        opens = self.warm and self._held <= 0 and c >= self.alarm
        self._decided = (dict(x), c, opens)
        return c, opens

    def _shape(self, x: Features) -> tuple[float, tuple[float, ...]] | None:
        """``x``'s time and the window of the last ``length`` values ending at ``x``."""
        t, value = value_of(x, self.time_feature), value_of(x, self.feature)
        if t is None or value is None or self._recent.maxlen is None:
            return None
        window = (*self._recent, value)[-self._recent.maxlen:]
        return (t, window) if len(window) == self._recent.maxlen else None

    def is_routine(self, x: Features) -> bool:
        """Whether an onset at ``x`` repeats earlier days' onsets (see the class docstring)."""
        shape = self._shape(x) if self.routine else None
        if shape is None:
            return False
        t, window = shape
        value = window[-1]
        scale = max(max(self._high, value) - min(self._low, value), 1e-12)
        days = set()
        for when, past in self._onsets:
            lag = t - when
            offset = lag % self.period
            if lag < self.period / 2 or min(offset, self.period - offset) > self.slack:
                continue
            rms = math.sqrt(sum((a - b) ** 2 for a, b in zip(window, past, strict=True))
                            / len(window))
            if rms <= self.tolerance * scale:
                days.add(round(lag / self.period))
        return len(days) >= self.routine

    def _score(self, x: Features) -> float:
        c, opens = self._decide(x)
        if opens and not self.is_routine(x):
            reported = 0.75 + c / 4
        elif c >= 0.5:
            reported = 0.5 + (c - 0.5) / 2
        else:
            reported = c
        # as a raw score against threshold 1: calibrated() gives `reported` back
        return reported / (1.0 - reported) if reported < 1.0 else float("inf")

    def learn_one(self, x: Features) -> None:
        """Learn ``x`` (the child gates it) and open or run down the episode."""
        _, opens = self._decide(x)
        if opens and self.routine and (shape := self._shape(x)) is not None:
            self._onsets.append(shape)
        super().learn_one(x)
        self._held = self.hold if opens else self._held - 1
        value = value_of(x, self.feature)
        if value is not None:
            self._recent.append(value)
            self._low, self._high = min(self._low, value), max(self._high, value)
        self._decided = None

    def _learn(self, x: Features) -> bool:
        before = self.child.n_learned
        self.child.learn_one(x)
        return self.child.n_learned > before

    def _forget(self) -> None:
        self.child.rebaseline()
        self._held = 0
        self._decided = None

    def _state(self) -> dict[str, Any]:
        return {"child": self.child.to_state(), "alarm": self.alarm, "hold": self.hold,
                "routine": self.routine, "tolerance": self.tolerance,
                "length": self._recent.maxlen, "slack": self.slack, "period": self.period,
                "keep": self._onsets.maxlen, "feature": self.feature,
                "time_feature": self.time_feature, "held": self._held,
                "recent": list(self._recent),
                "onsets": [[when, list(shape)] for when, shape in self._onsets],
                "low": finite_or_none(self._low), "high": finite_or_none(self._high)}

    @classmethod
    def _from_state(cls, r: Reader) -> OnsetAlert:
        child = Detector.from_state(r.raw("child"), f"{r.where}.child")
        length, keep = r.integer("length", 1, MAX_ITEMS), r.integer("keep", 1, MAX_ITEMS)
        d = cls(child, alarm=r.number("alarm"), hold=r.integer("hold"),
                routine=r.integer("routine"), tolerance=r.number("tolerance"), length=length,
                slack=r.number("slack"), period=r.number("period"), keep=keep,
                feature=r.text("feature"), time_feature=r.text("time_feature"))
        d._held = r.integer("held", MIN_INT, d.hold)
        d._recent.extend(r.numbers("recent", length))
        where = f"{r.where}.onsets"
        for i, (when, shape) in enumerate(rows(r.raw("onsets"), where, keep, 2)):
            window = numbers(shape, f"{where}[{i}][1]", length)
            if len(window) != length:
                raise StateError(f"{where}[{i}]: a shape of {length} values was expected")
            d._onsets.append((number(when, f"{where}[{i}][0]"), tuple(window)))
        if d._recent:
            d._low, d._high = r.number("low"), r.number("high")
        return d
