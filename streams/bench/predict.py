"""``governor bench predict``: how well the gate predicts next month's cost.

A simulated fleet (:mod:`streams.sim.history`) runs eight weeks of history and then
the 30 days to predict; some functions changed memory during the history (the fleet
learns how duration scales from them) and some are redeployed with a new memory when
the month starts (the gate's own case: predict the new configuration).

* **existing** functions: predicted from the eight weeks before, for the configuration
  they run with in the month;
* **new** functions: each held out of the history in turn and predicted from similar
  functions;
* **catalogue-only** baseline: what a list-price estimator does, catalogue price × an
  assumed traffic and duration (the gate's own fallback, same assumptions);
* **last month** reference: the function's last 30 days of cost as they were (no
  trend, no change of configuration).

Figures: MAPE (mean absolute percentage error of the monthly cost) and the share of
actual costs inside the predicted 80 % interval.
"""

from __future__ import annotations

import math
import random
import statistics
from collections.abc import Sequence
from dataclasses import dataclass

from agents import load_prices
from streams.errors import BenchmarkError
from streams.gate.history import DAYS, History
from streams.gate.predict import HOURS_PER_MONTH, Prediction, Predictor
from streams.gate.spec import FunctionSpec, Source
from streams.sim.history import HourOfCalls, SimFunction, aggregates, cost, simulate

TEAMS = ("payments", "search", "media", "ml-platform", "data")
MEMORY = (128, 256, 512, 1024, 2048, 3008)
PRICE_KEYS = ("aws", "aws", "aws-arm64", "gcp")


def fleet(functions: int, start: int, history_hours: int, seed: int) -> list[SimFunction]:
    """A fleet whose history starts at hour ``start``, with each team's own traffic
    scale; 30 % changed memory during the history, 25 % change it when the predicted
    month starts."""
    rng = random.Random(seed)
    scale = {team: rng.lognormvariate(math.log(120), 0.6) for team in TEAMS}
    found = []
    for i in range(functions):
        team = TEAMS[i % len(TEAMS)]
        memory = rng.choice(MEMORY)
        roll = rng.random()
        deploy_hour = None
        if roll < 0.30:
            deploy_hour = start + rng.randrange(history_hours // 4, history_hours * 3 // 4)
        elif roll < 0.55:
            deploy_hour = start + history_hours
        found.append(SimFunction(
            name=f"{team}-fn{i:03d}", team=team, price_key=rng.choice(PRICE_KEYS),
            memory_mb=memory, calls_per_hour=scale[team] * rng.lognormvariate(0, 0.5),
            duration_ms=rng.lognormvariate(math.log(150), 0.6),
            elasticity=rng.uniform(-0.9, -0.1), growth_per_week=rng.uniform(-0.02, 0.06),
            daily_amplitude=rng.uniform(0.2, 0.8), weekend_factor=rng.uniform(0.4, 1.0),
            noise=rng.uniform(0.05, 0.2), deploy_hour=deploy_hour,
            deploy_memory_mb=rng.choice([m for m in MEMORY if m != memory]),
            egress_usd_per_call=rng.choice((0.0, 0.0, 2e-6))))
    return found


@dataclass(frozen=True, slots=True)
class Scores:
    """MAPE and interval coverage of one kind of prediction."""

    label: str
    functions: int
    mape: float
    coverage: float | None

    def line(self) -> str:
        covered = "—" if self.coverage is None else f"{100 * self.coverage:5.1f} %"
        return (f"{self.label:<34} {self.functions:>4}  MAPE {100 * self.mape:6.1f} %  "
                f"inside the 80 % interval {covered}")


def _scores(label: str, pairs: Sequence[tuple[Prediction | float, float]]) -> Scores:
    errors, inside = [], []
    for predicted, actual in pairs:
        value = predicted.monthly_usd if isinstance(predicted, Prediction) else predicted
        errors.append(abs(value - actual) / actual)
        if isinstance(predicted, Prediction):
            inside.append(predicted.low_usd <= actual <= predicted.high_usd)
    return Scores(label, len(pairs), statistics.fmean(errors),
                  statistics.fmean(inside) if inside else None)


def _spec(f: SimFunction, memory_mb: int) -> FunctionSpec:
    arm = f.price_key == "aws-arm64"
    return FunctionSpec(name=f.name, provider="aws" if f.price_key.startswith("aws") else
                        f.price_key, kind="bench", source=Source("bench", 1),
                        architecture="arm64" if arm else "x86_64", memory_mb=memory_mb,
                        team=f.team)


def bench(functions: int = 60, seed: int = 1, days: int = DAYS) -> list[Scores]:
    """Every score of one run, predicting from ``days`` of history."""
    if not 7 <= days <= DAYS:
        raise BenchmarkError(f"--days must be 7 to {DAYS}: the gate reads at most {DAYS} "
                             "days of history, and under a week it has no trend")
    prices = load_prices()
    history_hours = days * 24
    start = 20_000 * 24  # a Monday, 00:00 UTC
    sims = fleet(functions, start, history_hours, seed)
    hours = list(simulate(sims, start, history_hours + HOURS_PER_MONTH, seed))
    past = [h for h in hours if h.hour < start + history_hours]
    by_function: dict[str, list[HourOfCalls]] = {f.name: [] for f in sims}
    for h in hours:
        if h.hour >= start + history_hours:
            by_function[h.function].append(h)
    actual = {name: cost(hs, prices) for name, hs in by_function.items()}
    last_month = {f.name: cost([h for h in past if h.function == f.name
                                and h.hour >= start + history_hours - HOURS_PER_MONTH],
                               prices) for f in sims}
    history = History.build(*aggregates(past, prices))
    predictor = Predictor(history, prices)
    existing, redeployed, new, catalogue, reference = [], [], [], [], []
    for f in sims:
        if actual[f.name] <= 0:
            continue
        spec = _spec(f, f.memory_at(start + history_hours))
        own = predictor.predict(spec)
        assert own is not None
        existing.append((own, actual[f.name]))
        if f.deploy_hour == start + history_hours:
            redeployed.append((own, actual[f.name]))
        reference.append((last_month[f.name], actual[f.name]))
        without = History.build(*aggregates([h for h in past if h.function != f.name], prices))
        held_out = Predictor(without, prices).predict(spec)
        blank = Predictor(History.empty(), prices).predict(spec)
        assert held_out is not None and blank is not None
        new.append((held_out, actual[f.name]))
        catalogue.append((blank, actual[f.name]))
    return [
        _scores("existing functions (own history)", existing),
        _scores("  of which redeployed, new memory", redeployed),
        _scores("new functions (similar functions)", new),
        _scores("catalogue-only baseline", catalogue),
        _scores("last month's cost, as it was", reference),
    ]


def format_report(scores: Sequence[Scores], functions: int, seed: int,
                  days: int = DAYS) -> list[str]:
    return [f"governor bench predict: {functions} simulated functions, seed {seed}, "
            f"{days} days of history, the next 30 days predicted",
            *(s.line() for s in scores)]
