"""Report an anomaly once, where it starts: the score of an episode's first point, then quiet.

An alert is worth most at the start of an anomaly; the same anomaly reported again
a minute later is noise (NAB scores exactly that way: the first detection in a window
earns the reward, later ones nothing, and every detection outside costs). This
wrapper turns a detector's scores into episode onsets, the idea behind ARTime's and
Numenta's suppression of re-alerts.
"""

from __future__ import annotations

from streams.detectors.base import Detector, Features


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

    The child keeps its own gate: this wrapper learns every point it is given
    (``patience=0``), passing it to the child, which refuses what it flags itself.
    Missing features advance the hold like any point. :meth:`rebaseline` rebaselines
    the child and ends the episode.

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

    def __init__(self, child: Detector, alarm: float = 0.3, hold: int = 100) -> None:
        if not 0.0 < alarm < 1.0 or hold < 0:
            raise ValueError("alarm must lie in (0, 1) and hold be at least 0")
        super().__init__(threshold=1.0, warmup=child.warmup, patience=0, memory=1,
                         direction=child.direction)
        self.child = child
        self.alarm = alarm
        self.hold = hold
        self._held = 0  # points left in the current episode
        self._child_score: tuple[Features, float] | None = None

    def _child(self, x: Features) -> float:
        memo = self._child_score
        if memo is not None and memo[0] == x:
            return memo[1]
        score = self.child.calibrated(self.child.score_one(x))
        self._child_score = (dict(x), score)
        return score

    def _score(self, x: Features) -> float:
        c = self._child(x)
        if self._held <= 0 and c >= self.alarm:
            reported = 0.75 + c / 4
        elif c >= 0.5:
            reported = 0.5 + (c - 0.5) / 2
        else:
            reported = c
        # as a raw score against threshold 1: calibrated() gives `reported` back
        return reported / (1.0 - reported) if reported < 1.0 else float("inf")

    def learn_one(self, x: Features) -> None:
        """Learn ``x`` (the child gates it) and open or run down the episode."""
        onset = self.warm and self._held <= 0 and self._child(x) >= self.alarm
        super().learn_one(x)
        self._held = self.hold if onset else self._held - 1
        self._child_score = None

    def _learn(self, x: Features) -> bool:
        before = self.child.n_learned
        self.child.learn_one(x)
        return self.child.n_learned > before

    def _forget(self) -> None:
        self.child.rebaseline()
        self._held = 0
        self._child_score = None
