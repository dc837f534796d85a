"""Windows, and detection's anomalies and proposals, on synthetic windows."""

from __future__ import annotations

import dataclasses
import math
import random

import orjson
import pytest

from schemas import Action, Anomaly, CostEvent, Driver, Hold, Outcome, Severity
from streams.decisions.detection import Decider
from streams.decisions.proposal import Proposal
from streams.decisions.windows import Window, WindowAggregator
from streams.settings import Settings
from streams.state import StateError

S = 1_000_000_000


def _window(calls: int, cost_per_call: float, blocked: int = 0, start: int = 0,
            version: str = "") -> Window:
    w = Window(start, start + 10 * S)
    for i in range(calls):
        w.add(CostEvent(function="f", invocation_id=str(i), cost_usd=cost_per_call,
                        version=version))
    for i in range(blocked):
        w.add(CostEvent(function="f", invocation_id=f"b{i}", outcome=Outcome.THROTTLED))
    return w


def _decider(**changes: object) -> Decider:
    settings = Settings(**{"warmup_windows": 5, "hold_seconds": 0, "learning_windows": 0,
                           **changes})  # type: ignore[arg-type]
    return Decider(settings)


def _on(d: Decider, w: Window) -> list[Anomaly | Proposal]:
    """The window's anomalies, and the proposal it made (if it made one)."""
    detection = d.on_window("f", w, w.end_ns)
    return [*detection.anomalies, *([detection.proposal] if detection.proposal and
                                    detection.new else [])]


def _warm(d: Decider, calls: int = 100, cost: float = 0.001) -> None:
    for i in range(8):
        assert _on(d, _window(calls + i % 3, cost)) == []


def test_window_features() -> None:
    w = _window(20, 0.5, blocked=5)
    x = w.features()
    assert (w.attempts, w.invocations, w.blocked) == (25, 20, 5)
    assert x["attempts"] == 25 and x["attempts_per_s"] == 2.5 and x["invocations_per_s"] == 2.0
    assert x["cost_per_s"] == 1.0 and x["cost_per_invocation"] == 0.5


def test_aggregator_closes_windows_and_emits_idle_ones() -> None:
    agg = WindowAggregator(window_ns=10 * S, lateness_ns=0)
    agg.add(CostEvent(function="f", invocation_id="1", time_unix_nano=15 * S, cost_usd=1))
    assert agg.close_due(19 * S) == []
    [(name, first)] = agg.close_due(20 * S)
    assert (name, first.start_ns, first.attempts, first.cost_usd) == ("f", 10 * S, 1, 1.0)
    [(_, idle)] = agg.close_due(30 * S)
    assert (idle.start_ns, idle.attempts) == (20 * S, 0)


def test_runaway_loop_is_throttled_to_the_baseline_rate_then_released() -> None:
    d = _decider()
    _warm(d)
    events = _on(d, _window(2500, 0.001))
    anomaly, proposal = events
    assert isinstance(anomaly, Anomaly) and isinstance(proposal, Proposal)
    assert anomaly.driver is Driver.INVOCATIONS and proposal.driver is Driver.INVOCATIONS
    assert "driver: invocations" in anomaly.explanation  # for people
    assert "driver" not in proposal.explanation  # for policies: the figures only
    assert anomaly.cost_impact_usd_per_hour > 0
    assert proposal.action is Action.THROTTLE and proposal.anomaly_id == anomaly.event_id
    assert proposal.rate_rps is not None and 9 <= proposal.rate_rps <= 11
    assert d.proposal("f") is proposal
    assert _on(d, _window(100, 0.001, blocked=2400)) == []  # demand still high
    standing = d.proposal("f")
    assert standing is not None and standing.anomaly_id == proposal.anomaly_id
    assert _on(d, _window(100, 0.001)) == []
    assert d.proposal("f") is None  # back to normal: the proposal ends


def test_cost_per_call_jump_isolates_when_the_allowed_rate_is_tiny() -> None:
    d = _decider(min_rps=0.5)
    _warm(d)
    anomaly, proposal = _on(d, _window(100, 0.1))
    assert isinstance(proposal, Proposal) and proposal.action is Action.ISOLATE
    assert isinstance(anomaly, Anomaly) and anomaly.driver is Driver.COST_PER_INVOCATION


def test_nothing_is_flagged_before_warm_up_or_for_noise() -> None:
    d = _decider()
    assert _on(d, _window(100, 0.001)) == []
    assert _on(d, _window(5000, 0.001)) == []  # 2nd window: still warming up
    d = _decider()
    _warm(d)
    assert _on(d, _window(130, 0.001)) == []  # 1.3×: below min_ratio


def test_window_quantiles_come_from_a_bounded_sample() -> None:
    w = Window(0, 10 * S)
    for i in range(1, 2001):
        w.add(CostEvent(function="f", invocation_id=str(i), cost_usd=i / 1000,
                        duration_ms=float(i), cold_start=i <= 20, egress_bytes=100))
    x = w.features()
    assert len(w.samples) == 256
    assert 0.8 < x["cost_per_invocation_p50"] < 1.2  # true median 1.0005
    assert 1.7 < x["cost_per_invocation_p95"] < 2.0  # true p95 1.9
    assert 1700 < x["duration_ms_p95"] < 2000
    assert x["cold_start_rate"] == 0.01 and x["egress_bytes_per_s"] == 20_000
    replay = Window(0, 10 * S)
    for i in range(1, 2001):
        replay.add(CostEvent(function="f", invocation_id=str(i), cost_usd=i / 1000,
                             duration_ms=float(i), cold_start=i <= 20, egress_bytes=100))
    assert replay.features() == x  # deterministic for the same window


def test_one_extreme_invocation_is_reported_at_once_but_not_throttled() -> None:
    d = _decider(fast_path_factor=20)
    expensive = CostEvent(function="f", invocation_id="big", cost_usd=0.5, time_unix_nano=5 * S)
    assert d.on_event(expensive, 10 * S) == []  # no baseline yet
    _warm(d)
    assert d.on_event(CostEvent(function="f", invocation_id="ok", cost_usd=0.002), 10 * S) == []
    [anomaly] = d.on_event(expensive, 10 * S)
    assert isinstance(anomaly, Anomaly) and anomaly.detector == "single_invocation"
    assert "500x the baseline" in anomaly.explanation
    assert d.on_event(expensive, 10 * S) == []  # once per window
    assert d.proposal("f") is None


def _through_json(d: Decider) -> Decider:
    restored = Decider(d.settings)
    restored.restore("f", orjson.loads(orjson.dumps(d.state("f"))))
    return restored


def test_state_resumes_without_warm_up() -> None:
    d = _decider()
    _warm(d)
    assert len(orjson.dumps(d.state("f"))) < 128 * 1024
    restored = _through_json(d)
    _, proposal = _on(restored, _window(2500, 0.001))  # no new warm-up
    assert isinstance(proposal, Proposal) and proposal.action is Action.THROTTLE
    assert Decider(d.settings).state("f") is None


def test_restored_state_decides_the_next_windows_as_the_original() -> None:
    """Mid-episode (a standing proposal, held-back windows, remembered bursts) the
    restored function's next windows give the same anomalies, proposals and state."""
    d = _decider(hold_seconds=30, enforce_ratio=4.0)
    _warm(d)
    windows = [_window(100, 0.001 * f, start=(8 + i) * 10 * S)
               for i, f in enumerate((1, 2.5, 2.5, 1, 9, 9, 9, 1, 1, 1, 1, 1))]
    def same(state: dict[str, object] | None) -> dict[str, object] | None:
        """The state but a new anomaly's own id and clock (each made afresh)."""
        proposal = (state or {}).get("proposal")
        if isinstance(proposal, dict):
            proposal["anomaly"] = {**proposal["anomaly"], "event_id": "", "time_unix_nano": 0}
        return state

    proposed = 0
    for i, w in enumerate(windows):
        restored = _through_json(d)
        assert same(restored.state("f")) == same(d.state("f"))
        now = w.end_ns
        one, two = d.on_window("f", w, now), restored.on_window("f", w, now)
        assert [(a.detector, a.score, a.held, a.explanation) for a in one.anomalies] == [
            (a.detector, a.score, a.held, a.explanation) for a in two.anomalies], i
        assert one.new == two.new and (one.proposal is None) == (two.proposal is None)
        if one.proposal and two.proposal:
            assert dataclasses.replace(one.proposal, anomaly=two.proposal.anomaly) == two.proposal
            proposed += 1
        assert same(restored.state("f")) == same(d.state("f"))
    assert proposed >= 3  # the windows restored held a standing proposal


def test_a_state_of_another_layout_is_refused() -> None:
    d = _decider()
    _warm(d)
    state = d.state("f")
    assert state is not None
    with pytest.raises(StateError, match="layout") as refused:
        Decider(d.settings).restore("f", {**state, "layout": 4})
    assert refused.value.reason == "format"


def test_a_deploy_re_baselines_instead_of_paging_for_a_legitimate_step() -> None:
    d = _decider()
    for i in range(8):
        assert _on(d, _window(100 + i % 3, 0.001, version="v1")) == []
    # v2 costs 3x per call: a step that would page on the v1 baseline ...
    assert _decider_flags_on_old_baseline(d.settings)
    for i in range(8):
        assert _on(d, _window(100 + i % 3, 0.003, version="v2")) == []
    # ... and the new baseline still catches a runaway loop
    _, proposal = _on(d, _window(2500, 0.003, version="v2"))
    assert isinstance(proposal, Proposal) and proposal.action is Action.THROTTLE


def _decider_flags_on_old_baseline(settings: Settings) -> bool:
    d = Decider(settings)
    for i in range(8):
        _on(d, _window(100 + i % 3, 0.001))
    return bool(_on(d, _window(100, 0.003)))


def test_an_error_storm_is_reported_once_without_a_verdict() -> None:
    d = _decider()

    def window(errors: int) -> Window:
        w = Window(0, 10 * S)
        for i in range(100):
            w.add(CostEvent(function="f", invocation_id=str(i), cost_usd=0.001,
                            outcome=Outcome.ERROR if i < errors else Outcome.OK))
        return w

    for i in range(8):
        assert _on(d, window(i % 2)) == []  # 0–1 % errors: no page for one error
    [storm] = _on(d, window(60))
    assert isinstance(storm, Anomaly) and storm.detector == "behaviour.error_rate"
    assert storm.driver is Driver.ERROR_RATE
    assert "error rate 60% vs baseline" in storm.explanation
    assert _on(d, window(70)) == []  # same episode: not repeated
    assert d.proposal("f") is None


def _calls(costs: list[float], *, cold: int = 0, errors: int = 0, egress: int = 0,
           start: int = 0) -> Window:
    """A window of calls costing ``costs``; the first ``cold`` are cold starts, the last
    ``errors`` fail."""
    w = Window(start, start + 10 * S)
    for i, cost in enumerate(costs):
        w.add(CostEvent(function="f", invocation_id=str(i), cost_usd=cost, cold_start=i < cold,
                        egress_bytes=egress,
                        outcome=Outcome.ERROR if i >= len(costs) - errors else Outcome.OK))
    return w


def test_window_prices_cold_starts_as_warm_calls_for_the_cost_signal() -> None:
    w = _calls([0.05, 0.001, 0.001, 0.002], cold=1, errors=1)
    x = w.features()
    assert (w.cold_cost_usd, w.warm_ok, w.warm_ok_cost_usd) == (0.05, 2, 0.002)
    assert x["cost_per_warm_call"] == 0.001
    assert abs(x["cost_per_s_warm"] - 4 * 0.004 / 3 / 10) < 1e-12  # 4 calls at the warm mean
    assert "cost_per_warm_call" not in _calls([0.05], cold=1).features()


def test_a_cold_start_on_a_sparse_function_is_not_a_runaway() -> None:
    d = _decider()
    for i in range(40):
        assert _on(d, _calls([0.001] * (2 + i % 3))) == []
    assert _on(d, _calls([0.08, 0.001, 0.001], cold=1)) == []  # init: 80 warm calls


def test_a_few_extra_calls_on_a_sparse_function_are_noise_but_a_sustained_runaway_is_not() \
        -> None:
    d = _decider()
    for i in range(40):
        assert _on(d, _calls([0.001] * (i % 2))) == []  # 0.05 rps
    assert _on(d, _calls([0.001] * 3)) == []  # 3 calls where 0.5 are usual: chance
    # 7 calls: p ~ 1e-6 alone, but 10 calls in 2 windows where 1 is usual: p ~ 1e-7 —
    # an anomaly, but 10 calls do not show 3x beyond chance: reported, not enforced
    [anomaly] = _on(d, _calls([0.001] * 7))
    assert isinstance(anomaly, Anomaly) and "not enforced" in anomaly.explanation
    # it goes on: the episode's windows together show it, and it is enforced
    found = [_on(d, _calls([0.001] * 7)) for _ in range(3)]
    proposals = [e for events in found for e in events if isinstance(e, Proposal)]
    assert proposals and proposals[0].action is Action.ISOLATE  # < min_rps


def test_a_slow_leak_is_caught_against_the_long_run_reference() -> None:
    d = _decider()
    for i in range(60):
        assert _on(d, _window(100 + i % 3, 0.001 * (1 + 0.02 * (i % 3 - 1)))) == []
    found = {}
    for n in range(1, 60):  # +3 % a window: each window is within noise of the last
        events = [e for e in _on(d, _window(100, 0.001 * 1.03 ** n))
                  if not isinstance(e, Anomaly) or e.severity is not Severity.INFO]
        if events:
            found[n] = events
        if any(isinstance(e, Proposal) for e in events):
            break
    first = min(found)
    [anomaly] = found[first]  # seen early, below the enforcement ratio: reported
    assert isinstance(anomaly, Anomaly) and anomaly.detector == "cusum"
    assert anomaly.driver is Driver.COST_PER_INVOCATION
    assert 1.03 ** first <= 2.0 and "long-run reference" in anomaly.explanation
    assert "not enforced" in anomaly.explanation
    proposal = found[n][-1]  # enforced once it is 3x
    assert isinstance(proposal, Proposal) and proposal.action is Action.THROTTLE
    assert 3.0 <= 1.03 ** n <= 3.3 and list(found) == [first, n]


def test_an_error_storm_on_a_sparse_function_is_found_over_pooled_windows() -> None:
    d = _decider()
    for _ in range(40):
        assert _on(d, _calls([0.001] * 3)) == []
    found = [_on(d, _calls([0.001] * 3, errors=3)) for _ in range(4)]
    assert [len(events) for events in found][:1] == [0]  # 3 failed calls: not yet
    storm = next(e for events in found for e in events)
    assert isinstance(storm, Anomaly) and storm.detector == "behaviour.error_rate"
    assert d.proposal("f") is None


def test_egress_is_judged_per_call_so_busy_windows_are_not_bursts() -> None:
    d = _decider()
    for i in range(40):
        assert _on(d, _calls([0.001] * (20 + i % 5), egress=5000)) == []
    assert _on(d, _calls([0.001] * 35, egress=5000)) == []
    [burst] = _on(d, _calls([0.001] * 22, egress=250_000))
    assert isinstance(burst, Anomaly) and burst.detector == "behaviour.egress_bytes_per_call"


def test_a_proposal_stands_at_least_hold_seconds_on_the_step_clock() -> None:
    d = Decider(Settings(warmup_windows=5, hold_seconds=30, learning_windows=0))
    for i in range(8):
        assert d.on_window("f", _window(100 + i % 3, 0.001), (i + 1) * 10 * S).proposal is None
    flagged = d.on_window("f", _window(2500, 0.001), 90 * S)
    assert flagged.new and flagged.proposal is not None
    normal = _window(100, 0.001)
    held = d.on_window("f", normal, 110 * S).proposal  # 20 s < 30 s
    assert held is not None and held.anomaly_id == flagged.proposal.anomaly_id
    ended = d.on_window("f", normal, 120 * S)  # 30 s, and back to normal
    assert ended.proposal is None and not ended.new


def test_a_sparse_function_whose_median_window_is_empty_is_caught_when_flooded() -> None:
    """One call every 5 s in 2 s windows: most windows are empty, so the median
    baseline is 0; the means still are the baseline, and a flood is enforced."""
    d = Decider(Settings(window_seconds=2, warmup_windows=5, hold_seconds=0,
                         learning_windows=0))

    def window(index: int, calls: int) -> Window:
        w = Window(index * 2 * S, (index + 1) * 2 * S)
        for i in range(calls):
            w.add(CostEvent(function="f", invocation_id=f"{index}-{i}", cost_usd=0.001,
                            time_unix_nano=w.start_ns + i))
        return w

    for i in range(60):
        detection = d.on_window("f", window(i, 1 if i % 5 in (0, 2) else 0), (i + 1) * 2 * S)
        assert detection.proposal is None
    flood = d.on_window("f", window(60, 40), 61 * 2 * S)  # 20 calls/s
    assert flood.new and flood.proposal is not None
    assert flood.proposal.driver is Driver.INVOCATIONS
    proposal = flood.proposal  # capped at the mean: about 0.2 calls/s, or isolated below it
    assert proposal.action is Action.ISOLATE or (proposal.rate_rps or 0) <= 0.25
    standing = d.on_window("f", window(61, 40), 62 * 2 * S).proposal
    assert standing is not None and standing.anomaly_id == proposal.anomaly_id  # flood on


def _open_window(calls: int, cost: float, seconds: float, start: int = 100 * S) -> Window:
    """The first ``seconds`` of a 10 s window, with ``calls`` spread over them."""
    w = Window(start, start + 10 * S)
    for i in range(calls):
        w.add(CostEvent(function="f", invocation_id=f"o{i}", cost_usd=cost,
                        time_unix_nano=start + int(i * seconds * S / max(calls, 1))))
    return w


def test_the_fast_path_proposes_within_seconds_of_a_runaway() -> None:
    d = _decider()
    _warm(d)  # ~10 calls/s
    runaway = d.on_partial("f", _open_window(250, 0.001, 2), 102 * S)  # 125 calls/s
    assert runaway.new and runaway.proposal is not None
    assert runaway.proposal.action is Action.THROTTLE
    assert runaway.proposal.driver is Driver.INVOCATIONS
    [anomaly] = runaway.anomalies
    assert anomaly.window_end_unix_nano == 102 * S  # what it judged: the first 2 s
    # at the close, the standing proposal carries on: no second anomaly
    assert _on(d, _open_window(1250, 0.001, 10)) == []
    assert d.proposal("f") is not None


def test_the_fast_path_finds_a_cost_per_call_jump_on_a_few_calls() -> None:
    d = _decider(min_rps=0.5)
    _warm(d)
    jump = d.on_partial("f", _open_window(20, 0.04, 2), 102 * S)  # 40x per call
    assert jump.new and jump.proposal is not None
    assert jump.proposal.driver is Driver.COST_PER_INVOCATION


def test_the_fast_path_says_nothing_of_noise_or_of_a_window_just_begun() -> None:
    d = _decider()
    _warm(d)
    assert not d.on_partial("f", _open_window(30, 0.001, 2), 102 * S).new  # 1.5x
    assert not d.on_partial("f", _open_window(400, 0.001, 0.5), 100 * S + S // 2).new
    assert d.proposal("f") is None
    cold = _decider()
    assert not cold.on_partial("f", _open_window(250, 0.001, 2), 102 * S).new  # no baseline


def _bursty(d: Decider, windows: int, bursts: dict[int, int], calls: int = 50
            ) -> dict[int, list[Anomaly | Proposal]]:
    """``windows`` windows of ``calls`` calls, ``bursts[i]`` calls in window ``i``; what
    each window raised."""
    raised = {}
    for i in range(windows):
        w = _window(bursts.get(i, calls + i % 3), 0.001, start=i * 10 * S)
        found = [*(detection := d.on_window("f", w, w.end_ns)).anomalies,
                 *([detection.proposal] if detection.new and detection.proposal else [])]
        if found:
            raised[i] = found
    return raised


def test_a_regular_batch_burst_becomes_routine_after_the_third() -> None:
    d = _decider()
    raised = _bursty(d, 40, {10: 500, 16: 520, 22: 480, 28: 510, 34: 500})
    enforced = [i for i, found in raised.items() if any(isinstance(e, Proposal) for e in found)]
    assert enforced == [10, 16]  # the first two are throttled ...
    for i in (22, 28, 34):  # ... then the same burst every 60 s is reported, not enforced
        [anomaly] = raised[i]
        assert isinstance(anomaly, Anomaly) and anomaly.severity is Severity.INFO
        assert "routine: the same burst every 60 s" in anomaly.explanation


def test_a_missed_burst_does_not_break_the_routine_but_a_sustained_surge_is_no_burst(
        ) -> None:
    d = _decider()
    # the burst at 28 was too small to flag: 34 is still two periods after 22
    raised = _bursty(d, 40, {10: 500, 16: 500, 22: 500, 28: 60, 34: 500})
    assert [i for i, f in raised.items() if any(isinstance(e, Proposal) for e in f)] == [10, 16]
    assert all(a.severity is Severity.INFO for i in (22, 34) for a in raised[i])
    d = _decider()  # a surge lasting from window 10 on is not a burst every window
    raised = _bursty(d, 20, dict.fromkeys(range(10, 20), 140))  # 2.8x: held back
    assert list(raised) == [10]  # reported once, as the episode starts
    [anomaly] = raised[10]
    assert anomaly.severity is Severity.WARNING and "not enforced" in anomaly.explanation


def test_a_function_being_learned_is_reported_not_enforced_and_learns_its_bursts() -> None:
    """A batch job newly seen: its bursts in the learning windows are reported, not
    enforced, and remembered, so that after them they are routine, never throttled."""
    d = _decider(learning_windows=30)
    bursts = {i: 500 for i in range(2, 60, 6)}
    raised = _bursty(d, 60, bursts)
    assert not any(isinstance(e, Proposal) for found in raised.values() for e in found)
    warned = [i for i, found in raised.items()
              if any(a.severity is not Severity.INFO for a in found)]
    assert warned and max(warned) < 30  # after learning: routine (info) only
    assert all("learning" in a.explanation and a.held is Hold.LEARNING
               for i in warned for a in raised[i])
    assert all(a.held is Hold.ROUTINE for i, found in raised.items() if i >= 30
               for a in found if isinstance(a, Anomaly))
    d = _decider(learning_windows=30)  # a runaway is enforced once learning is over
    raised = _bursty(d, 40, dict.fromkeys(range(25, 40), 1000))
    enforced = [i for i, f in raised.items() if any(isinstance(e, Proposal) for e in f)]
    assert enforced == [29]  # the 30th window seen


def test_a_launch_below_the_enforcement_ratio_is_reported_once_then_learned() -> None:
    """A step to 2.5x that stays: one warning, no proposal, and after adapt_windows it is
    the new normal (a further 2.5x from there is a new episode)."""
    d = _decider(adapt_windows=10)
    raised = _bursty(d, 40, dict.fromkeys(range(10, 40), 125))
    assert list(raised) == [10] and not any(isinstance(e, Proposal) for e in raised[10])
    assert [a.held for a in raised[10]] == [Hold.BELOW_RATIO]
    for i in range(40, 50):  # 125 calls a window is normal now
        w = _window(125 + i % 3, 0.001, start=i * 10 * S)
        assert d.on_window("f", w, w.end_ns).anomalies == []


def test_the_cost_rate_also_runs_through_the_detector_nab_scores() -> None:
    """`onset`, the default of `governor bench nab`, watches each function's cost rate:
    a departure too small to be a surge is reported at info severity (never paged or
    enforced), once per episode."""
    d = _decider()
    for i in range(80):
        assert _on(d, _window(100 + i % 3, 0.001, start=i * 10 * S)) == []
    raised = [_on(d, _window(170, 0.001, start=i * 10 * S)) for i in range(80, 84)]
    [shape] = raised[0]
    assert isinstance(shape, Anomaly) and shape.detector == "onset"
    assert shape.severity is Severity.INFO and "not enforced" in shape.explanation
    assert raised[1:] == [[], [], []]


def test_an_irregular_or_growing_burst_is_not_routine() -> None:
    d = _decider()
    raised = _bursty(d, 40, {10: 500, 16: 500, 22: 500, 31: 500})
    assert any(isinstance(e, Proposal) for e in raised[31])  # off the period
    d = _decider()
    raised = _bursty(d, 40, {10: 500, 16: 500, 22: 2500})
    assert any(isinstance(e, Proposal) for e in raised[22])  # 5x the earlier bursts


def test_a_standing_proposal_never_hides_a_stronger_surge() -> None:
    """A compounding creep: enforced at 4x, then 9x and 25x. Each doubling makes a new
    proposal with a tighter rate, so the decision step can tighten the throttle."""
    d = Decider(Settings(warmup_windows=5, hold_seconds=60, learning_windows=0))
    for i in range(8):
        assert d.on_window("f", _window(100 + i % 3, 0.001, start=i * 10 * S),
                           (i + 1) * 10 * S).proposal is None
    rates = []
    for i, factor in enumerate((4, 5, 9, 10, 25), start=8):
        detection = d.on_window("f", _window(100, 0.001 * factor, start=i * 10 * S),
                                (i + 1) * 10 * S)
        assert detection.proposal is not None
        if detection.new:
            rates.append((factor, detection.proposal.rate_rps))
    assert [f for f, _ in rates] == [4, 9, 25]  # 5x and 10x are not twice the last
    assert rates[0][1] > rates[1][1] > rates[2][1]  # each caps spend tighter


def test_a_cost_that_moves_window_to_window_is_not_enforced_on_one_wild_window() -> None:
    """Every call of a window shares its level (σ 0.4 in log from window to window, 300
    calls a window): one window 5.7× its baseline is chance for such a function (the
    calls do not average the shared level away), not a runaway shown to be 3×. The same
    cost held for a while is."""
    d = _decider()
    rng = random.Random(7)
    levels = [math.exp(0.4 * rng.gauss(0, 1)) for _ in range(60)]
    for i, level in enumerate(levels):
        _on(d, _window(300, 0.001 * level, start=i * 10 * S))
    wild = _on(d, _window(300, 0.0057, start=60 * 10 * S))
    assert not any(isinstance(e, Proposal) for e in wild)
    proposals = [isinstance(e, Proposal) for i in range(61, 75)
                 for e in _on(d, _window(300, 0.0057, start=i * 10 * S))]
    assert any(proposals)
