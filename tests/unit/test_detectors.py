"""Contract test for every detector, plus the robust z-score's behaviour."""

from __future__ import annotations

import pickle
import random

import pytest

from streams import detectors
from streams.detectors import Detector, RobustZScore


def _all_detectors() -> list[Detector]:
    found = [getattr(detectors, name) for name in detectors.__all__]
    classes = [c for c in found if isinstance(c, type) and issubclass(c, Detector)
               and c is not Detector]
    assert classes, "no detector found"
    return [c("x") for c in classes]


def _series(seed: int, n: int = 50) -> list[dict[str, float]]:
    rnd = random.Random(seed)
    return [{"x": rnd.gauss(10, 1), "y": rnd.random()} for _ in range(n)]


@pytest.mark.parametrize("detector", _all_detectors(), ids=lambda d: d.name)
def test_detector_contract(detector: Detector) -> None:
    for x in _series(1):
        detector.learn_one(x)
    restored = pickle.loads(pickle.dumps(detector))
    probe = {"x": 30.0}
    assert restored.score_one(probe) == detector.score_one(probe)
    assert detector.score_one({}) >= 0  # missing features
    assert detector.score_one({"x": 10.0, "new": 1.0}) >= 0  # new features
    assert 0 <= detector.calibrated(detector.score_one(probe)) <= 1
    twin = type(detector)("x")
    for x in _series(1):
        twin.learn_one(x)
    assert twin.score_one(probe) == detector.score_one(probe)  # deterministic


def test_robust_zscore_warms_up_then_flags_increases_only() -> None:
    d = RobustZScore("cost", window=30, warmup=5, threshold=6)
    for value in (1.0, 1.2, 0.9, 1.1):
        d.learn_one({"cost": value})
    assert d.score_one({"cost": 100.0}) == 0.0  # still warming up
    d.learn_one({"cost": 1.0})
    assert d.score_one({"cost": 100.0}) > d.threshold
    assert d.score_one({"cost": 0.0}) == 0.0
    assert d.score_one({"cost": 1.1}) < 1.0
    assert d.calibrated(d.threshold) == pytest.approx(0.5)


def test_robust_zscore_floor_keeps_a_flat_baseline_sane() -> None:
    d = RobustZScore("cost", warmup=3)
    for _ in range(10):
        d.learn_one({"cost": 2.0})
    assert d.score_one({"cost": 2.2}) == pytest.approx(1.0)  # 10 % floor of the median


def test_count_feature_sets_a_poisson_noise_floor() -> None:
    sparse = RobustZScore("cost", warmup=3, count_feature="n")
    for n in (3, 2, 3, 4, 3):
        sparse.learn_one({"cost": float(n), "n": float(n)})
    # 3 calls a window: noise ~ 1/sqrt(3) of the median, so 9 calls is no page ...
    assert sparse.score_one({"cost": 9.0, "n": 9.0}) < sparse.threshold
    # ... while 25x the calls is
    assert sparse.score_one({"cost": 75.0, "n": 75.0}) > sparse.threshold
