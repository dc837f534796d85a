"""Per-function online anomaly detectors: one base class, one module each.

``DETECTORS`` maps a name to a zero-argument factory for one numeric feature named
``"value"`` with time in ``"t"`` (unix seconds), scoring rises and drops, with
patience 10 in 10,000: what ``governor bench nab`` runs. ``DEFAULT`` is the best of
them on NAB: ``onset``, the episode onsets of ``combined`` (fences with a long memory
and a daily profile) beside ``window_knn`` (the shape novelty of the last ten values),
with daily routines (the same burst at the same time of day) not reported.
"""

from __future__ import annotations

from collections.abc import Callable

from streams.detectors.base import Detector, Direction, Features, value_of
from streams.detectors.combine import Combiner
from streams.detectors.cusum import CusumScore
from streams.detectors.ewma import EWMAZScore
from streams.detectors.hst import HalfSpaceScore
from streams.detectors.knn import WindowKNN
from streams.detectors.onset import OnsetAlert
from streams.detectors.quantile import RollingQuantileScore
from streams.detectors.seasonal import SeasonalProfile
from streams.detectors.zscore import RobustZScore

__all__ = [
    "DEFAULT",
    "DETECTORS",
    "Combiner",
    "CusumScore",
    "Detector",
    "Direction",
    "EWMAZScore",
    "Features",
    "HalfSpaceScore",
    "OnsetAlert",
    "RobustZScore",
    "RollingQuantileScore",
    "SeasonalProfile",
    "WindowKNN",
    "onset",
    "value_of",
]

_PATIENCE, _MEMORY = 10, 10_000


def _robust_zscore() -> Detector:
    return RobustZScore("value", window=300, warmup=50, rel_floor=0.01, range_floor=0.25,
                        direction="both", patience=_PATIENCE, memory=_MEMORY)


def _ewma_zscore() -> Detector:
    return EWMAZScore("value", alpha=0.01, warmup=50, direction="both", patience=_PATIENCE,
                      memory=_MEMORY)


def _rolling_quantile() -> Detector:
    # the window's extremes (q=1), remembered over 31 windows of 500: ~15,000 points
    return RollingQuantileScore("value", window=500, q=1.0, blocks=30, warmup=50,
                                threshold=3.0, direction="both", patience=_PATIENCE,
                                memory=_MEMORY)


def _seasonal() -> Detector:
    return SeasonalProfile("value", slot=3600, warmup=100, direction="both",
                           patience=_PATIENCE, memory=_MEMORY)


def _half_space_trees() -> Detector:
    return HalfSpaceScore(patience=_PATIENCE, memory=_MEMORY)


def _cusum() -> Detector:
    return CusumScore("value", warmup=50, patience=_PATIENCE, memory=_MEMORY)


def _window_knn() -> Detector:
    return WindowKNN(patience=_PATIENCE, memory=_MEMORY)


def _combined() -> Detector:
    return Combiner([_rolling_quantile(), _seasonal()], patience=_PATIENCE, memory=_MEMORY)


def onset(alarm: float = 0.25, hold: int = 200) -> Detector:
    """The default detector: the max of the fences + profile (one shared gate) and the
    shape novelty (its own gate), reported once per episode, except where it repeats
    the same shape at the same time of day as on two earlier days (a routine: a nightly
    job's spike). ``alarm`` (the level an onset needs) and ``hold`` (the points its
    hold-off lasts) are the hyper-parameters ``governor bench nab --cv`` chooses by
    leaving one NAB category out; the routine's tolerance was chosen on NAB's shipped
    series, its length is window_knn's, its slack the seasonal profile's slot."""
    both = Combiner([_combined(), _window_knn()], patience=0, memory=1)
    return OnsetAlert(both, alarm=alarm, hold=hold, routine=2, tolerance=0.05, length=10,
                      slack=3600)


DETECTORS: dict[str, Callable[[], Detector]] = {
    RobustZScore.name: _robust_zscore,
    EWMAZScore.name: _ewma_zscore,
    RollingQuantileScore.name: _rolling_quantile,
    SeasonalProfile.name: _seasonal,
    HalfSpaceScore.name: _half_space_trees,
    CusumScore.name: _cusum,
    WindowKNN.name: _window_knn,
    Combiner.name: _combined,
    OnsetAlert.name: onset,
}
DEFAULT = OnsetAlert.name
