"""Contract test for every detector, plus each detector's own behaviour."""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import random
from collections.abc import Callable, Iterator

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from river import stats

from streams import detectors
from streams.detectors import (
    DEFAULT,
    DETECTORS,
    Combiner,
    Detector,
    EWMAZScore,
    HalfSpaceScore,
    OnsetAlert,
    RobustZScore,
    RollingQuantileScore,
    SeasonalProfile,
    WindowKNN,
)
from streams.detectors.base import _KINDS
from streams.detectors.running import EWMean, EWVar
from streams.state import StateError

STEP = 300.0  # seconds between points: 288 a day, like most NAB series
T0 = 1_400_000_000.0

# Per registry entry: how many points a sustained extreme level is flagged (and not
# learned) before the detector takes it as the new normal (patience 10 in 10,000: N =
# patience, see streams.detectors.base; the combiner's gate and its children's nest; in
# onset the shape novelty, with its own gate, learns the new level first),
# and how many points after rebaseline() a new level is scored as normal again
# (warm-up; the daily profile needs two days in a slot).
FLAGGED_FOR = {**dict.fromkeys(DETECTORS, 10), "combined": 20}
RELEARNED_IN = {"robust_zscore": 50, "ewma_zscore": 50, "rolling_quantile": 50,
                "seasonal": 2 * 288, "half_space_trees": 150, "window_knn": 150, "cusum": 50,
                "combined": 2 * 288, "onset": 2 * 288}
STATE_BUDGET = 64 * 1024  # bytes of state (JSON) per detector (per function)


def _classes() -> set[type[Detector]]:
    """Every concrete detector defined anywhere in the package."""
    found = set()
    for module in pkgutil.iter_modules(detectors.__path__, f"{detectors.__name__}."):
        for obj in vars(importlib.import_module(module.name)).values():
            if (isinstance(obj, type) and issubclass(obj, Detector)
                    and not inspect.isabstract(obj)):
                found.add(obj)
    return found


def _stream(seed: int, n: int, level: float = 10.0, start: int = 0, daily: float = 3.0,
            ) -> Iterator[dict[str, float]]:
    """Noisy points every STEP seconds, on a daily cycle of amplitude ``daily``."""
    rnd = random.Random(seed)
    for i in range(start, start + n):
        cycle = daily * math.sin(2 * math.pi * i / 288)
        yield {"value": level + cycle + rnd.gauss(0, 0.5), "t": T0 + STEP * i}


def _feed(detector: Detector, points: Iterator[dict[str, float]]) -> list[float]:
    scores = []
    for x in points:
        scores.append(detector.score_one(x))
        detector.learn_one(x)
    return scores


def _flagged(detector: Detector, x: dict[str, float]) -> bool:
    return detector.calibrated(detector.score_one(x)) >= 0.5


def test_registry_covers_every_detector_and_all_is_complete() -> None:
    made = {name: factory() for name, factory in DETECTORS.items()}
    assert {type(d) for d in made.values()} == _classes()
    assert all(d.name == name for name, d in made.items())
    assert DEFAULT in DETECTORS
    assert {c.name: c for c in _classes()} == _KINDS  # every one can be restored by its tag
    assert {c.__name__ for c in _classes()} <= set(detectors.__all__)
    assert all(hasattr(detectors, name) for name in detectors.__all__)


@pytest.fixture(params=sorted(DETECTORS), ids=str)
def name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _restored(detector: Detector) -> Detector:
    """``detector`` through its state as JSON bytes and back."""
    return Detector.from_state(orjson.loads(orjson.dumps(detector.to_state())))


@pytest.mark.parametrize("points", [0, 1, 30, 1000])
def test_state_round_trip_gives_the_same_scores(name: str, points: int) -> None:
    """Restored at any point — new, warming up, warm — a detector goes on exactly as
    the original: the same scores and the same learning on the points after."""
    detector = DETECTORS[name]()
    _feed(detector, _stream(1, points))
    restored = _restored(detector)
    assert type(restored) is type(detector) and restored.to_state() == detector.to_state()
    later = list(_stream(2, 300, start=points, level=10.0))
    later[150:160] = [{**x, "value": 1000.0} for x in later[150:160]]  # flagged, then learned
    assert _feed(restored, iter(later)) == _feed(detector, iter(later))
    assert restored.to_state() == detector.to_state()


def test_state_round_trip_after_a_rebaseline(name: str) -> None:
    detector = DETECTORS[name]()
    _feed(detector, _stream(1, 500))
    detector.rebaseline()
    _feed(detector, _stream(2, 20, start=500))
    restored = _restored(detector)
    assert _feed(restored, _stream(3, 200, start=520)) == _feed(detector,
                                                                _stream(3, 200, start=520))


def test_a_state_is_restored_only_as_its_own_kind() -> None:
    state = DETECTORS["cusum"]().to_state()
    with pytest.raises(StateError, match="not a RobustZScore"):
        RobustZScore.from_state(state)
    with pytest.raises(StateError, match="'pickle' is not a Detector"):
        Detector.from_state({**state, "kind": "pickle"})
    with pytest.raises(StateError, match=r"detector.window: -1 is out of range"):
        Detector.from_state({**DETECTORS["robust_zscore"]().to_state(), "window": -1})
    with pytest.raises(StateError, match="threshold must be > 0"):
        Detector.from_state({**state, "threshold": 0.0})


def test_half_space_trees_of_another_river_version_are_refused() -> None:
    """The trees are rebuilt from the seed: a snapshot whose splits differ (another
    River, another seed) would put masses on the wrong nodes, so it is refused."""
    detector = DETECTORS["half_space_trees"]()
    _feed(detector, _stream(1, 300))
    state = detector.to_state()
    node = state["trees"][0][0]
    state["trees"][0][0] = [node[0], node[1] + 1e-3, *node[2:]]
    with pytest.raises(StateError, match="split differs"):
        Detector.from_state(state)


@given(alpha=st.sampled_from([0.5, 0.1, 0.01, 0.001]),
       values=st.lists(st.floats(-1e9, 1e9), max_size=200))
def test_running_stats_are_rivers_to_the_bit(alpha: float, values: list[float]) -> None:
    ours, rivers = (EWMean(alpha), EWVar(alpha)), (stats.EWMean(alpha), stats.EWVar(alpha))
    for value in values:
        for stat in (*ours, *rivers):
            stat.update(value)
        assert [s.get() for s in ours] == [s.get() for s in rivers]


def test_deterministic(name: str) -> None:
    one, two = DETECTORS[name](), DETECTORS[name]()
    assert _feed(one, _stream(3, 1500)) == _feed(two, _stream(3, 1500))


def test_missing_and_new_features(name: str) -> None:
    detector = DETECTORS[name]()
    _feed(detector, _stream(4, 1000))
    learned = detector.n_learned
    for x in ({}, {"t": T0}, {"value": math.nan, "t": T0}, {"other": 1.0, "t": T0}):
        assert detector.score_one(x) == 0.0
        detector.learn_one(x)
    assert detector.n_learned == learned  # nothing to learn
    x = next(_stream(5, 1, start=1000))
    assert detector.score_one({**x, "new": 1e9}) == detector.score_one(x)  # ignored
    detector.learn_one({**x, "new": 1e9})
    assert detector.n_learned == learned + 1


def test_no_score_before_warm_up(name: str) -> None:
    detector = DETECTORS[name]()
    extreme = {"value": 1e6, "t": T0}
    for x in _stream(6, detector.warmup):
        assert detector.score_one(x) == 0.0
        assert detector.score_one({**extreme, "t": x["t"]}) == 0.0
        detector.learn_one(x)


def test_does_not_learn_what_it_flags(name: str) -> None:
    detector = DETECTORS[name]()
    carried = sum(detector.calibrated(s) >= 0.5 for s in _feed(detector, _stream(7, 1000)))
    learned = detector.n_learned
    extreme = list(_stream(8, FLAGGED_FOR[name] + 1, level=1000.0, start=1000))
    for x in extreme[:FLAGGED_FOR[name] - carried]:  # flags on the baseline count a while
        assert _flagged(detector, x)
        detector.learn_one(x)
        assert detector.n_learned == learned  # flagged: not learned
    for x in extreme[FLAGGED_FOR[name] - carried:]:  # ... until it is the new normal
        detector.learn_one(x)
    assert detector.n_learned > learned


def test_rebaseline_learns_a_new_level(name: str) -> None:
    detector = DETECTORS[name]()
    _feed(detector, _stream(9, 1000))
    detector.rebaseline()
    assert detector.n_learned == 0
    new = list(_stream(10, RELEARNED_IN[name] + 50, level=40.0, start=1000, daily=0.0))
    _feed(detector, iter(new[:RELEARNED_IN[name]]))
    flags = [_flagged(detector, x) for x in new[RELEARNED_IN[name]:]]
    assert sum(flags) <= 2


def test_calibrated_is_in_unit_interval_and_half_at_threshold(name: str) -> None:
    detector = DETECTORS[name]()
    scores = _feed(detector, _stream(11, 1000))
    for score in [*scores, 0.0, 1e-300, 1e300, math.inf, detector.threshold]:
        assert 0.0 <= detector.calibrated(score) <= 1.0
    assert detector.calibrated(detector.threshold) == pytest.approx(0.5)


def test_state_fits_the_per_function_budget(name: str) -> None:
    detector = DETECTORS[name]()
    scores = _feed(detector, _stream(12, 10_000))
    assert len(orjson.dumps(detector.to_state())) <= STATE_BUDGET
    assert sum(detector.calibrated(s) >= 0.5 for s in scores) < 50  # quiet on normal data


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


@pytest.mark.parametrize("make", [
    lambda d: RobustZScore("value", warmup=5, direction=d),
    lambda d: EWMAZScore("value", warmup=5, direction=d),
    lambda d: RollingQuantileScore("value", warmup=5, direction=d),
], ids=["robust_zscore", "ewma_zscore", "rolling_quantile"])
def test_direction(make: Callable[[str], Detector]) -> None:
    up, both = make("up"), make("both")
    for x in _stream(13, 200):
        up.learn_one(x)
        both.learn_one(x)
    drop = {"value": -50.0, "t": T0}
    assert up.score_one(drop) == 0.0 < both.threshold < both.score_one(drop)
    with pytest.raises(ValueError, match="direction"):
        make("down")


def test_rolling_quantile_remembers_bursts_beyond_its_window() -> None:
    d = RollingQuantileScore("value", window=50, q=1.0, blocks=4, warmup=10)
    for i in range(200):  # a burst while warming up, 4 windows ago
        d.learn_one({"value": 100.0 if i == 5 else 1.0 + i % 3})
    assert d.score_one({"value": 90.0}) == 0.0  # remembered by the blocks
    for i in range(50):
        d.learn_one({"value": 1.0 + i % 3})
    assert d.score_one({"value": 90.0}) > d.threshold  # forgotten after (blocks + 1) windows


def test_seasonal_stays_quiet_without_a_daily_pattern() -> None:
    d = SeasonalProfile("value", slot=3600, direction="both")
    rnd = random.Random(14)
    for i in range(288 * 4):  # noise: every slot looks alike
        d.learn_one({"value": rnd.gauss(10, 1), "t": T0 + STEP * i})
    assert d.strength() < 0.2
    assert d.score_one({"value": 14.0, "t": T0}) < d.threshold


def test_half_space_trees_uses_every_numeric_feature_but_time() -> None:
    d = HalfSpaceScore(window=50)
    rnd = random.Random(15)
    for i in range(300):
        rps = rnd.uniform(10, 20)
        d.learn_one({"rps": rps, "cost": rps / 10, "t": float(i)})
    assert d.score_one({"rps": 15.0, "cost": 1.5, "t": 1e12}) < d.threshold
    assert d.score_one({"rps": 15.0, "cost": 6.0, "t": 0.0}) > d.threshold  # cost alone
    assert d.score_one({"rps": 15.0}) == 0.0  # a feature missing


def test_combiner_reports_its_highest_child() -> None:
    children = [RobustZScore("value", warmup=5), EWMAZScore("value", warmup=5)]
    d = Combiner(children)
    for x in _stream(16, 100):
        d.learn_one(x)
    x = {"value": 16.0, "t": T0}
    expected = max(c.calibrated(c.score_one(x)) for c in children)
    assert d.calibrated(d.score_one(x)) == pytest.approx(expected)
    mean_of_two = Combiner(children, top_k=2)
    assert mean_of_two.calibrated(mean_of_two.score_one(x)) <= expected
    with pytest.raises(ValueError, match="top_k"):
        Combiner(children, top_k=3)


def test_window_knn_flags_a_new_shape_within_the_old_range() -> None:
    d = WindowKNN(length=10)
    spiky = [{"value": 20.0 if i % 40 == 0 else 0.0} for i in range(1501)]
    assert max(_feed(d, iter(spiky))[-1000:]) < d.threshold  # a spike every 40 points
    denser = [{"value": 20.0 if i % 2 else 0.0} for i in range(10)]  # every 2: a new shape
    assert max(_feed(d, iter(denser))) > d.threshold


def test_onset_alert_ranks_an_episode_start_above_its_remainder() -> None:
    d = OnsetAlert(EWMAZScore("value", warmup=5, direction="both", patience=5), alarm=0.4,
                   hold=20)
    for x in _stream(17, 100, daily=0.0):
        d.learn_one(x)
    reported = []
    for x in _stream(18, 30, level=100.0, start=100, daily=0.0):
        reported.append(d.calibrated(d.score_one(x)))
        d.learn_one(x)
    assert reported[0] >= 0.75  # the onset
    assert all(0.5 <= r < 0.75 for r in reported[1:4])  # flagged, held, not re-alerted
    assert max(reported[1:21]) < 0.75 and d.child.n_learned > 100  # learned after patience
    with pytest.raises(ValueError, match="alarm"):
        OnsetAlert(EWMAZScore("value"), alarm=1.5)


def test_onset_alert_does_not_report_a_daily_routine() -> None:
    d = OnsetAlert(EWMAZScore("value", warmup=5, direction="both", patience=None), alarm=0.4,
                   hold=5, routine=2, length=3)
    spikes = {day * 288 + 36 for day in range(1, 5)} | {4 * 288 + 180}  # daily; once
    onsets = []
    for i in range(5 * 288):
        x = {"value": 10.0 + (50.0 if i in spikes else 0.0) + 0.1 * (i % 3), "t": T0 + STEP * i}
        if d.calibrated(d.score_one(x)) >= 0.75:
            onsets.append(i)
        d.learn_one(x)
    # the daily spike is new on days 1 and 2, a routine from day 3; the other one is new
    assert onsets == [288 + 36, 2 * 288 + 36, 4 * 288 + 180]
    with pytest.raises(ValueError, match="routine"):
        OnsetAlert(EWMAZScore("value"), routine=-1)


extreme = st.one_of(st.floats(min_value=-1e300, max_value=1e300, allow_nan=False),
                    st.sampled_from([0.0, 1e-300, 1e300, -1e300, 1.7e308, math.inf, math.nan]))


@settings(max_examples=25, deadline=None)
@given(values=st.lists(extreme, min_size=1, max_size=40))
def test_extreme_inputs_never_break_a_detector(values: list[float]) -> None:
    """Absurd values (1e300, the largest float, infinities, NaN) anywhere in a stream:
    every detector keeps scoring, its scores are never NaN, and once ordinary values
    come back it scores them as numbers in [0, 1] when calibrated."""
    for factory in DETECTORS.values():
        detector = factory()
        _feed(detector, _stream(3, 120))
        for i, v in enumerate(values):
            x = {"value": v, "t": T0 + STEP * (120 + i)}
            assert not math.isnan(detector.score_one(x))
            detector.learn_one(x)
        after = _feed(detector, _stream(4, 30, start=120 + len(values)))
        assert all(not math.isnan(s) and 0.0 <= detector.calibrated(s) <= 1.0 for s in after)
