"""NAB scoring against hand-computed cases and a literal transcription of NAB's sweep."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streams.bench.nab.scoring import (
    NO_DETECTION,
    PROFILES,
    REWARD_LOW_FN_RATE,
    REWARD_LOW_FP_RATE,
    STANDARD,
    Profile,
    ScoredSeries,
    evaluate,
    first_scored_row,
    normalize,
    null_score,
    optimize,
    perfect_score,
    scaled_sigmoid,
    score_at,
    sweep,
    window_rows,
)

# 100 rows: rows 0-14 are probationary; one window over rows 40-49 (length 10).
N, WINDOW = 100, (40, 49)
MAX_TP = 2.0 / (1.0 + math.exp(-5.0)) - 1.0  # σ(-1) = 0.98661...


def fired(*rows: int, n: int = N) -> list[float]:
    return [1.0 if i in rows else 0.0 for i in range(n)]


def series(*rows: int, windows: tuple[tuple[int, int], ...] = (WINDOW,)) -> list[ScoredSeries]:
    return [ScoredSeries("s.csv", fired(*rows), windows)]


def reward(row: int, first: int = 40, last: int = 49) -> float:
    """A detection's TP reward, computed by hand from NAB's formula."""
    position = -(last - row + 1) / (last - first + 1)
    return (2.0 / (1.0 + math.exp(5.0 * position)) - 1.0) / MAX_TP


def test_profiles_are_nabs() -> None:
    assert [(p.name, p.tp_weight, p.fp_weight, p.fn_weight) for p in PROFILES] == [
        ("standard", 1.0, 0.11, 1.0),
        ("reward_low_FP_rate", 1.0, 0.22, 1.0),
        ("reward_low_FN_rate", 1.0, 0.11, 2.0),
    ]


def test_scaled_sigmoid_landmarks() -> None:
    assert scaled_sigmoid(-1.0) == pytest.approx(0.98661, abs=1e-5)
    assert scaled_sigmoid(-0.5) == pytest.approx(0.84828, abs=1e-5)
    assert scaled_sigmoid(0.0) == 0.0
    assert scaled_sigmoid(1.0) == pytest.approx(-0.98661, abs=1e-5)
    assert scaled_sigmoid(3.0) > -1.0 == scaled_sigmoid(3.0001)


def test_probationary_period_is_15_percent_capped_at_750_rows() -> None:
    assert [first_scored_row(n) for n in (0, 10, 100, 4032, 5000, 22695)] == [
        0, 1, 15, 604, 750, 750]


def test_window_rows_maps_timestamps_to_first_matching_rows() -> None:
    stamps = [0, 1, 2, 2, 3, 4, 5, 6]  # a repeated stamp, as NAB's DST hours
    assert window_rows(stamps, [(5, 6), (2, 3)]) == [(2, 4), (6, 7)]
    with pytest.raises(ValueError, match="not the timestamp of any row"):
        window_rows(stamps, [(2, 9)])
    with pytest.raises(ValueError, match="overlap"):
        window_rows(stamps, [(1, 3), (2, 4)])


def test_a_perfect_detector_scores_100_and_a_null_one_0() -> None:
    perfect = evaluate(series(40))
    null = evaluate(series())
    for result in perfect:
        assert result.best.threshold == 1.0
        assert result.best.score == pytest.approx(STANDARD.tp_weight)
        assert result.score == pytest.approx(100.0)
    for result in null:
        assert result.best.threshold == NO_DETECTION
        assert result.best.score == -result.profile.fn_weight
        assert result.score == 0.0


def test_an_early_detection_beats_a_late_one() -> None:
    early, late = (score_at(series(row), STANDARD, 0.5).score for row in (40, 45))
    assert early == pytest.approx(1.0)
    assert late == pytest.approx(reward(45)) == pytest.approx(0.8597, abs=1e-4)
    assert 0 < late < early


def test_only_the_first_detection_in_a_window_counts() -> None:
    result = score_at(series(44, 41, 48), STANDARD, 0.5)
    assert result.score == pytest.approx(reward(41))
    assert (result.tp, result.fp, result.windows_detected) == (3, 0, 1)


@pytest.mark.parametrize("profile", PROFILES, ids=lambda p: p.name)
def test_a_false_positive_before_any_window_costs_the_fp_weight(profile: Profile) -> None:
    result = score_at(series(20), profile, 0.5)
    assert result.score == pytest.approx(-profile.fn_weight - profile.fp_weight)
    assert (result.tp, result.fp, result.fn, result.tn) == (0, 1, 10, 74)


def test_a_false_positive_costs_less_right_after_a_window() -> None:
    just_after = score_at(series(40, 50), STANDARD, 0.5).score - 1.0
    d = 1 / 9  # one row past the window's last row, in units of its length - 1
    assert just_after == pytest.approx(0.11 * (2.0 / (1.0 + math.exp(5 * d)) - 1.0))
    assert just_after == pytest.approx(-0.0298, abs=1e-4)
    far_after = score_at(series(40, 80), STANDARD, 0.5).score - 1.0  # 31/9 > 3 lengths
    assert far_after == pytest.approx(-0.11)
    assert score_at(series(40, 20), REWARD_LOW_FP_RATE, 0.5).score == pytest.approx(1 - 0.22)


def test_a_missed_window_costs_the_fn_weight() -> None:
    assert score_at(series(), STANDARD, 0.5).score == -1.0
    assert score_at(series(), REWARD_LOW_FN_RATE, 0.5).score == -2.0


def test_the_probationary_period_is_ignored() -> None:
    result = score_at(series(10), STANDARD, 0.5)  # row 10 < 15: no FP
    assert (result.score, result.fp, result.tp + result.fp + result.tn + result.fn) == (
        -1.0, 0, N - 15)
    early = [ScoredSeries("s.csv", fired(3), ((2, 8), WINDOW))]  # first window is probationary
    assert score_at(early, STANDARD, 0.5).score == -1.0  # only the scorable window is missed
    assert null_score(early, STANDARD) == -1.0
    assert perfect_score(early, STANDARD) == 2.0  # NAB counts every labelled window


def test_files_score_independently_and_add_up() -> None:
    one = ScoredSeries("a.csv", fired(45, 20), (WINDOW,))
    two = ScoredSeries("b.csv", fired(45, 20), (WINDOW,))
    assert score_at([one, two], STANDARD, 0.5).score == pytest.approx(
        2 * score_at([one], STANDARD, 0.5).score)


def test_ties_pick_the_highest_threshold() -> None:
    scores = fired()
    scores[40], scores[41] = 0.9, 0.8  # row 41 adds nothing once row 40 fires
    best = optimize([ScoredSeries("s.csv", scores, (WINDOW,))], STANDARD)
    assert (best.threshold, best.score) == (0.9, pytest.approx(1.0))


def test_normalisation() -> None:
    assert normalize(1.0, -1.0, 1.0) == 100.0
    assert normalize(-1.0, -1.0, 1.0) == 0.0
    assert normalize(0.0, -1.0, 1.0) == 50.0
    assert math.isnan(normalize(-0.5, 0.0, 0.0))


def test_scores_outside_0_1_are_refused() -> None:
    with pytest.raises(ValueError, match=r"s\.csv: anomaly scores must lie in \[0, 1\]"):
        score_at([ScoredSeries("s.csv", [0.5, math.nan])], STANDARD, 0.5)


# A literal transcription of NAB's Sweeper.calcSweepScore + calcScoreByThreshold, one
# row at a time, to hold the vectorised sweep to.
def nab_sweep(corpus: list[ScoredSeries], profile: Profile) -> list[tuple[float, float]]:
    points: list[tuple[float, float, str | None]] = []
    for s in corpus:
        start = {first: last for first, last in s.windows}
        probation = min(math.floor(0.15 * len(s.scores)), 0.15 * 5000)
        current: tuple[int, int] | None = None
        previous: tuple[int, int] | None = None
        for i, score in enumerate(s.scores):
            if i in start:
                current = (i, start[i])
            if current is not None:
                length = current[1] - current[0] + 1
                weight = scaled_sigmoid(-(current[1] - i + 1) / length) * profile.tp_weight
                weight /= scaled_sigmoid(-1.0)
            elif previous is None or previous[1] == previous[0]:
                weight = -profile.fp_weight
            else:
                d = abs(previous[1] - i) / (previous[1] - previous[0])
                weight = scaled_sigmoid(d) * profile.fp_weight
            name = None if current is None else f"{s.name}|{current[0]}"
            points.append((score, weight, name if i >= probation else "probationary"))
            if current is not None and i == current[1]:
                previous, current = current, None
    scorable = sorted((p for p in points if p[2] != "probationary"), key=lambda p: -p[0])
    parts: dict[str | None, float] = {"fp": 0.0}
    parts.update({p[2]: -profile.fn_weight for p in scorable if p[2] is not None})
    table, threshold = [], NO_DETECTION
    for score, weight, name in scorable:
        if score != threshold:
            table.append((threshold, sum(parts.values())))
            threshold = score
        if name is None:
            parts["fp"] += weight
        else:
            parts[name] = max(parts[name], weight)
    table.append((threshold, sum(parts.values())))
    return table


@st.composite
def corpora(draw: st.DrawFn) -> list[ScoredSeries]:
    corpus = []
    for k in range(draw(st.integers(1, 3))):
        n = draw(st.integers(1, 60))
        scores = draw(st.lists(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.75, 0.9, 1.0]),
                               min_size=n, max_size=n))
        cuts = sorted(draw(st.sets(st.integers(0, n - 1), max_size=6)))
        single = draw(st.booleans())  # one-row windows too
        windows = tuple((a, a if single else b)
                        for a, b in zip(cuts[::2], cuts[1::2], strict=False))
        corpus.append(ScoredSeries(f"f{k}.csv", scores, windows))
    return corpus


@settings(max_examples=300, deadline=None)
@given(corpora(), st.sampled_from(PROFILES))
def test_the_sweep_matches_nabs_row_by_row_sweep(corpus: list[ScoredSeries],
                                                 profile: Profile) -> None:
    swept = sweep(corpus, profile)
    expected = nab_sweep(corpus, profile)
    assert [s.threshold for s in swept] == [t for t, _ in expected]
    assert [s.score for s in swept] == pytest.approx([v for _, v in expected], abs=1e-9)
    for s in swept:
        direct = score_at(corpus, profile, s.threshold)
        assert direct.score == pytest.approx(s.score, abs=1e-9)
        assert (direct.tp, direct.fp, direct.tn, direct.fn, direct.windows_detected) == (
            s.tp, s.fp, s.tn, s.fn, s.windows_detected)
    assert optimize(corpus, profile).score == pytest.approx(max(v for _, v in expected))
