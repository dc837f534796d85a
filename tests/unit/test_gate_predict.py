"""Predictions from history: the forecast, the fleet's scaling, the three bases."""

from __future__ import annotations

import math

import pytest

from agents import load_prices
from streams.bench.predict import bench
from streams.errors import BenchmarkError
from streams.gate.history import History
from streams.gate.predict import Assumptions, Predictor, forecast_calls, score
from streams.gate.spec import FunctionSpec, Source
from streams.sim.history import SimFunction, aggregates, cost, simulate

PRICES = load_prices()
START = 20_000 * 24
WEEKS = 8


def _spec(name: str, memory_mb: int, team: str = "payments", arch: str = "x86_64"
          ) -> FunctionSpec:
    return FunctionSpec(name=name, provider="aws", kind="test", source=Source("t.yaml", 1),
                        memory_mb=memory_mb, team=team, architecture=arch)


def _fleet() -> list[SimFunction]:
    return [
        SimFunction("checkout", "payments", "aws", 512, 300.0, 120.0, elasticity=-0.6,
                    growth_per_week=0.03),
        SimFunction("refunds", "payments", "aws", 256, 40.0, 80.0, elasticity=-0.4),
        SimFunction("resize", "media", "aws", 1024, 200.0, 400.0, elasticity=-0.8,
                    deploy_hour=START + 24 * 21, deploy_memory_mb=2048),
        SimFunction("search", "search", "aws", 1024, 150.0, 90.0, elasticity=-0.5,
                    deploy_hour=START + 24 * 30, deploy_memory_mb=512),
        SimFunction("ledger", "payments", "aws", 512, 120.0, 60.0, elasticity=-0.3,
                    deploy_hour=START + 24 * 10, deploy_memory_mb=1024),
    ]


def test_a_flat_rate_forecasts_itself() -> None:
    hourly = {h: 10 for h in range(1000 - 24 * 28 + 1, 1001)}
    calls, spread, weeks = forecast_calls(hourly, 1000)
    assert (round(calls), weeks) == (7200, 4)
    assert spread == 0.05  # the floor: a perfectly steady past is not a certain future


def test_growth_and_the_weekly_pattern_carry_into_the_forecast() -> None:
    growing = SimFunction("g", "t", "aws", 512, 100.0, 100.0, growth_per_week=0.05, noise=0.0)
    past = list(simulate([growing], START, WEEKS * 168, seed=3))
    future = list(simulate([growing], START, WEEKS * 168 + 720, seed=3))[len(past):]
    calls, _, _ = forecast_calls({h.hour: h.calls for h in past}, START + WEEKS * 168 - 1)
    actual = sum(h.calls for h in future)
    assert abs(calls - actual) / actual < 0.03
    flat_guess = sum(h.calls for h in past[-720:])
    assert abs(flat_guess - actual) / actual > 0.05  # what ignoring the growth would miss


def _weeks(*totals: int, end: int = 10_000) -> dict[int, int]:
    """Calls per hour whose weekly totals are ``totals`` (spread evenly), up to ``end``."""
    first = end - 168 * len(totals) + 1
    return {first + 168 * w + h: total // 168 for w, total in enumerate(totals)
            for h in range(168)}


def test_a_trend_drawn_by_scatter_is_not_carried_a_month_ahead() -> None:
    """Three weeks whose rise is no larger than their scatter: the forecast stays near
    their level, not on the fitted line; a steady rise is kept."""
    scatter, _, _ = forecast_calls(_weeks(1_680, 2_184, 2_016), 10_000)
    level = (1_680 + 2_184 + 2_016) / 3 / 168 * 720
    fitted = 2_016 * 1.1 ** 2.6 / 168 * 720  # the least-squares slope, ~10 % a week
    assert abs(scatter - level) < abs(scatter - fitted)
    steady, _, _ = forecast_calls(_weeks(1_680, 1_848, 2_016, 2_184, 2_352, 2_520), 10_000)
    assert steady > 2_520 / 168 * 720 * 1.2  # the rise goes on


def test_fewer_weeks_give_a_wider_interval() -> None:
    """The same weekly scatter on three weeks and on eight: three tell less."""
    _, short, _ = forecast_calls(_weeks(1_848, 2_184, 2_016), 10_000)
    _, long, _ = forecast_calls(_weeks(1_848, 2_184, 2_016, 1_848, 2_184, 2_016, 1_848,
                                       2_184), 10_000)
    assert short > 2 * long


def test_the_benchmark_takes_a_history_of_a_week_to_eight() -> None:
    with pytest.raises(BenchmarkError, match="--days must be 7 to 56"):
        bench(functions=5, days=6)


def test_the_fleet_scaling_is_learned_from_memory_changes() -> None:
    history = History.build(*aggregates(simulate(_fleet(), START, WEEKS * 168), PRICES))
    scaling = history.scaling
    assert scaling.elasticity is not None
    assert -0.8 <= scaling.elasticity <= -0.3  # the three that changed: -0.8, -0.5, -0.3
    assert scaling.arm64_factor is None
    assert "learned across the fleet" in scaling.words()


def test_own_history_predicts_a_memory_change_within_its_interval() -> None:
    fleet = _fleet()
    hours = list(simulate(fleet, START, WEEKS * 168 + 720))
    past = [h for h in hours if h.hour < START + WEEKS * 168]
    history = History.build(*aggregates(past, PRICES))
    doubled = SimFunction("checkout", "payments", "aws", 512, 300.0, 120.0, elasticity=-0.6,
                          growth_per_week=0.03, deploy_hour=START + WEEKS * 168,
                          deploy_memory_mb=1024)
    future = list(simulate([doubled], START, WEEKS * 168 + 720))
    actual = cost([h for h in future if h.hour >= START + WEEKS * 168], PRICES)
    p = Predictor(history, PRICES).predict(_spec("checkout", 1024))
    assert p is not None and p.method == "history"
    assert p.low_usd <= actual <= p.high_usd
    assert abs(p.monthly_usd - actual) / actual < 0.15
    assert "own history of checkout: 8 weeks of calls" in p.basis
    assert "at 1024 MB (was" in p.basis
    same = Predictor(history, PRICES).predict(_spec("checkout", 512))
    assert same is not None and same.score < 0.1 < p.score


def test_without_own_history_similar_functions_give_a_wider_interval() -> None:
    history = History.build(*aggregates(simulate(_fleet(), START, WEEKS * 168), PRICES))
    predictor = Predictor(history, PRICES)
    new = predictor.predict(_spec("payouts", 512))
    own = predictor.predict(_spec("refunds", 256))
    assert new is not None and own is not None
    assert new.method == "similar"
    assert "no history for payouts" in new.basis and "team payments" in new.basis
    assert new.high_usd / new.low_usd > own.high_usd / own.low_usd


def test_without_any_history_the_catalogue_and_stated_assumptions() -> None:
    predictor = Predictor(History.empty(), PRICES, Assumptions(calls_per_month=2_000_000,
                                                               duration_ms=100))
    p = predictor.predict(_spec("fresh", 1024, arch="arm64"))
    assert p is not None and p.method == "catalogue"
    bill = PRICES["aws-arm64"].invocation(duration_ms=100, memory_mb=1024)
    assert p.monthly_usd == pytest.approx(2e6 * (bill.compute_usd + bill.request_usd))
    assert (p.low_usd, p.high_usd) == pytest.approx((p.monthly_usd / 10, p.monthly_usd * 10))
    assert p.score == 0.5
    assert "assumed 2,000,000 calls a month of 100 ms at 1024 MB" in p.basis


def test_a_container_platform_without_history_has_no_prediction() -> None:
    spec = FunctionSpec(name="relay", provider="kubernetes", kind="apps/v1/Deployment",
                        source=Source("k.yaml", 1), memory_mb=256)
    assert Predictor(History.empty(), PRICES).predict(spec) is None


def test_the_risk_score() -> None:
    assert score(100.0, 100.0) == 0.0
    assert score(420.0, 100.0) == pytest.approx(0.8, abs=0.01)
    assert score(50.0, 100.0) == 0.0
    assert score(1e9, 1.0) == pytest.approx(1.0)
    assert score(1.0, None) == 0.5
    assert all(0 <= score(x, 10.0) <= 1 for x in (0.0, 5.0, 10.0, 1e3, math.inf))


def test_the_benchmark_meets_its_targets_on_a_small_fleet() -> None:
    existing, _, new, catalogue, _ = bench(functions=20, seed=5)
    assert existing.mape <= 0.15
    assert existing.coverage is not None and 0.6 <= existing.coverage <= 1.0
    assert existing.mape < catalogue.mape / 5
    assert new.mape < catalogue.mape
