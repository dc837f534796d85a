"""The heavy-query bench's ratio: the median over pairs run in turn."""

import pytest

from streams.bench.throughput import median_ratio


def test_the_median_of_an_odd_number_of_pairs_is_the_middle_ratio() -> None:
    assert median_ratio([(100.0, 95.0), (100.0, 80.0), (50.0, 49.0)]) == 0.95


def test_the_median_of_an_even_number_of_pairs_is_the_mean_of_the_middle_two() -> None:
    assert median_ratio([(100.0, 90.0), (100.0, 80.0)]) == pytest.approx(0.85)


def test_a_pair_without_a_baseline_counts_as_zero() -> None:
    assert median_ratio([(0.0, 10.0)]) == 0.0
