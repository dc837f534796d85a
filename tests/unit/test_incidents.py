"""The incident suite: generator, labels, the runner on the real Decider, the report line."""

from __future__ import annotations

import dataclasses
import re

import pytest

from agents import load_prices
from streams.bench.incident_runs import run_scenario
from streams.bench.incidents import bench, time_to_detect
from streams.cli import main
from streams.decisions.windows import Window
from streams.errors import BenchmarkError
from streams.settings import Settings
from streams.sim.scenarios import (
    CONTROLS,
    DEPLOY_FACTOR,
    INCIDENTS,
    Effects,
    Kind,
    Label,
    Profile,
    Scenario,
    SimWindow,
    incident_scenarios,
    simulate,
)

STEADY = Profile(name="steady", team="t", provider="aws", memory_mb=512, rps=20.0,
                 duration_ms=50.0, duration_sigma=0.2, error_rate=0.0, fail_fast=0.2,
                 instance_lifetime_s=3600.0, init_ms=200.0, egress_bytes=5000.0, tokens=0.0,
                 seasonality=0.0, phase_h=0.0)


def _scenario(label: Label, windows: int = 200, seed: int = 1, **profile: object) -> Scenario:
    return Scenario(0, dataclasses.replace(STEADY, **profile), label, windows, 10.0, seed)


def _summary(scenario: Scenario) -> list[tuple[int, float, int, str]]:
    return [(w.window.attempts, w.window.cost_usd, w.window.egress_bytes, w.window.version)
            for w in simulate(scenario)]


def test_the_generator_is_deterministic_under_a_seed() -> None:
    first, again = incident_scenarios(7, seed=5), incident_scenarios(7, seed=5)
    assert first == again
    assert [_summary(s) for s in first[:3]] == [_summary(s) for s in again[:3]]
    other = incident_scenarios(7, seed=6)
    assert [s.profile for s in other] != [s.profile for s in first]
    assert sorted(s.label.kind for s in first) == sorted((*INCIDENTS, *CONTROLS))  # once each


def test_labels_are_where_the_incidents_are() -> None:
    for scenario in incident_scenarios(14, seed=2):
        label, windows = scenario.label, [w.window for w in simulate(scenario)]
        effects = Effects.of(label, scenario.profile, scenario.windows)
        if label.kind is Kind.SEASONALITY:
            assert label.start == -1 and {w.version for w in windows} == {"v1"}
            assert set(effects.cost) == set(effects.rate) == set(effects.egress) == {1.0}
            continue
        if label.kind is Kind.DEPLOY:
            assert {w.version for w in windows[:label.start]} == {"v1"}
            assert {w.version for w in windows[label.start:]} == {"v2"}
            assert set(effects.cost[label.start:]) == {DEPLOY_FACTOR}
            continue
        outside = [*range(label.start), *range(label.end, scenario.windows)]
        assert {effects.cost[k] * effects.rate[k] * effects.egress[k] for k in outside} == {1.0}
        before, inside = windows[label.start - 60:label.start], windows[label.onset:label.end]

        def per(windows: list[Window], what: str, by: str = "invocations") -> float:
            return (sum(getattr(w, what) for w in windows)
                    / max(1, sum(getattr(w, by) for w in windows)))

        if label.kind is Kind.RUNAWAY:
            rate = [sum(w.attempts for w in ws) / len(ws) for ws in (inside, before)]
            assert rate[0] > 3 * rate[1]
        elif label.kind in (Kind.COST_JUMP, Kind.SLOW_LEAK):
            assert per(inside, "cost_usd") > 2 * per(before, "cost_usd")
        elif label.kind is Kind.EGRESS:
            assert per(inside, "egress_bytes") > 20 * per(before, "egress_bytes")
        elif label.kind is Kind.ERROR_STORM:
            assert per(inside, "errors") > 0.4 > per(before, "errors")
        if label.kind is Kind.SLOW_LEAK:  # onset: the first window above 2x
            assert effects.cost[label.onset] > 2.0 >= effects.cost[label.onset - 1]
            assert effects.cost[label.start] == pytest.approx(1 + label.growth)


def test_a_window_equals_the_one_window_add_builds_from_its_cost_events() -> None:
    scenario = _scenario(Label(Kind.ERROR_STORM, 5, 8, 5, 0.7), windows=10, rps=3.0,
                         error_rate=0.05, tokens=300.0)
    sims: list[SimWindow] = list(simulate(scenario))
    assert any(s.window.errors for s in sims)
    for sim in sims:
        built = Window(sim.window.start_ns, sim.window.end_ns, version=sim.window.version,
                       team=sim.window.team)
        events = sim.events()
        assert all(built.start_ns <= e.time_unix_nano < built.end_ns for e in events)
        for event in events:
            built.add(event)
        assert built == sim.window
        assert built.features() == sim.window.features()


def test_calls_are_priced_like_the_agent_prices_them() -> None:
    price = load_prices()["aws"]
    for event in next(iter(simulate(_scenario(Label(Kind.SEASONALITY), windows=1)))).events():
        bill = price.invocation(duration_ms=event.duration_ms, memory_mb=event.memory_mb,
                                egress_bytes=event.egress_bytes)
        assert event.billed_duration_ms == bill.billed_duration_ms
        assert event.compute_usd == pytest.approx(bill.compute_usd)
        assert event.egress_usd == pytest.approx(bill.egress_usd)
        assert event.cost_usd == pytest.approx(bill.compute_usd + bill.request_usd
                                               + bill.egress_usd)


def test_a_runaway_loop_in_a_steady_function_is_caught_within_two_windows() -> None:
    run = run_scenario(_scenario(Label(Kind.RUNAWAY, 100, 130, 100, 20.0)), Settings())
    ttd = time_to_detect(run)
    assert ttd is not None and 1 <= ttd <= 2
    assert all(w >= 100 for w in run.alarm_windows)
    assert "verdict" in dict(run.alarms)[100 + ttd - 1]


def test_controls_raise_no_alarm_on_a_short_horizon() -> None:
    seasonal = _scenario(Label(Kind.SEASONALITY), windows=400, seasonality=0.8, phase_h=3.0)
    deploy = _scenario(Label(Kind.DEPLOY, 150, 400, 150, DEPLOY_FACTOR), windows=400,
                       error_rate=0.01)
    for scenario in (seasonal, deploy):
        assert run_scenario(scenario, Settings()).alarms == ()


def test_the_costliest_call_decides_the_fast_path_as_all_calls_would() -> None:
    scenario = _scenario(Label(Kind.COST_JUMP, 60, 70, 60, 30.0), windows=90, rps=2.0)
    fast, full = (run_scenario(scenario, Settings(), events=events) for events in (False, True))
    assert fast.alarms == full.alarms
    assert any("single_invocation" in sources for _, sources in fast.alarms)


def test_the_cli_prints_the_table_and_ends_with_the_summary_line(
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "incidents", "--functions", "7", "--days", "0.05", "--seed", "3",
            "--workers", "1"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    progress = [re.fullmatch(r"bench incidents: (\d+)/(\d+) scenarios \((\d+) %\), \d+ s", line)
                for line in err.splitlines()]
    assert all(progress), err  # on stderr, so the report on stdout stays clean
    done = [int(m[1]) for m in progress if m]
    total = int(progress[0][2]) if progress[0] else 0
    assert done[0] == 0 and done[-1] == total and done == sorted(set(done))
    assert 5 <= len(done) <= 11  # about every tenth of the scenarios, not each one
    assert re.fullmatch(r"incidents: \d+\.\d% detected, median (\d+(\.\d+)?|n/a) windows to "
                        r"detect, \d+\.\d\d false alarms per 100 function-days", lines[-1])
    assert all(any(line.startswith(kind.value) for line in lines)
               for kind in (*INCIDENTS, *CONTROLS))


def test_bad_sizes_are_refused_with_the_flag_named() -> None:
    with pytest.raises(BenchmarkError, match="--functions 0"):
        bench(0, 1.0)
    assert main(["bench", "incidents", "--days", "0"]) == 2


def test_the_hard_suite_counts_false_enforcements_of_benign_changes(
        capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["bench", "incidents", "--suite", "hard", "--functions", "6", "--seed", "3",
            "--workers", "1"]
    assert main(argv) == 0
    lines = capsys.readouterr().out.splitlines()
    for kind in ("runaway 1.5-3x", "cost jump 1.5-3x", "traffic ramp x3", "batch bursts x8",
                 "launch step x2.5", "noisy cost"):
        assert any(line.startswith(kind) for line in lines), kind
    assert re.fullmatch(r"false enforcements: \d+ of 4 benign functions", lines[-4])
    assert lines[-3].startswith("incidents whose cost rose >= 3x")
    assert lines[-2].startswith("false pages (the worker's paging rules; both passes)")
