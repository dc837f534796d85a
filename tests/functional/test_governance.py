"""The decision step end to end in-process: detectors → shipped Rego policies (real
regorus) → verdict lifecycle → incidents, on synthetic windows."""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest

from schemas import (
    Action,
    Anomaly,
    ControlKind,
    ControlUpdate,
    CostEvent,
    Decision,
    Event,
    Incident,
    IncidentStatus,
    Outcome,
    PolicyDecision,
    Span,
    Verdict,
    sign_verdict,
)
from streams.decisions.lifecycle import Phase, VerdictIssuer
from streams.decisions.policy import PolicyEngine
from streams.decisions.snapshots import seal
from streams.decisions.step import DecisionStep
from streams.decisions.thresholds import Thresholds
from streams.decisions.windows import Window, WindowAggregator
from streams.settings import Settings

KEY = b"g" * 32
STATE_KEY = b"s" * 32
S = 1_000_000_000
WINDOW = 10 * S
T0 = 1_800_000_000 * S
SETTINGS = Settings(hold_seconds=0, release_after_seconds=20, cooldown_seconds=60,
                    warmup_windows=6, learning_windows=0, policy_dir=Settings().policy_dir)


def window(index: int, calls: int, cost: float = 0.0001, team: str = "payments") -> Window:
    start = T0 + index * WINDOW
    w = Window(start, start + WINDOW)
    for i in range(calls):
        w.add(CostEvent(function="checkout", invocation_id=f"{index}-{i}", cost_usd=cost,
                        duration_ms=30.0, team=team, version="v1",
                        time_unix_nano=start + i * (WINDOW // max(calls, 1))))
    return w


@pytest.fixture
def gov() -> DecisionStep:
    issuer = VerdictIssuer(KEY, 300 * S, "governor-worker")
    return DecisionStep(SETTINGS, issuer, PolicyEngine(SETTINGS.policy_dir), Thresholds(SETTINGS),
                        state_key=STATE_KEY)


def step(gov: DecisionStep, index: int, calls: int, **kw: float) -> list[Event]:
    return gov.on_window("checkout", window(index, calls, **kw), T0 + (index + 1) * WINDOW)


def of(events: list[Event], cls: type) -> list:  # type: ignore[type-arg]
    return [e for e in events if isinstance(e, cls)]


def warm(gov: DecisionStep, windows: int = 12) -> None:
    for i in range(windows):
        assert of(step(gov, i, 50 + i % 3), Verdict) == []


def test_runaway_is_throttled_by_the_cost_guard_paged_then_released(gov: DecisionStep) -> None:
    warm(gov)
    burst = step(gov, 12, 1500)
    [anomaly] = of(burst, Anomaly)
    [verdict] = of(burst, Verdict)
    assert verdict.action is Action.THROTTLE and verdict.anomaly_id == anomaly.event_id
    assert "cost_guard.anomaly" in verdict.reason
    assert 3 <= (verdict.rate_rps or 0) <= 7  # the baseline ~5 calls/s
    [decision] = [d for d in of(burst, PolicyDecision) if d.policy == "cost_guard.anomaly"]
    assert decision.decision is Decision.THROTTLE and decision.bundle == gov.policies.digest
    [page] = of(burst, Incident)
    assert page.status is IncidentStatus.OPEN and page.team == "payments"
    assert "throttled" in " ".join(page.actions)
    assert gov.lifecycle.phase("checkout") is Phase.THROTTLED

    still = step(gov, 13, 1500)  # the loop goes on: no new verdict, no new page
    assert of(still, Verdict) == [] and of(still, Incident) == []

    released, pages = [], []
    for i in range(14, 22):
        events = step(gov, i, 50)
        released += of(events, Verdict)
        pages += of(events, Incident)
    assert [v.action for v in released] == [Action.RELEASE]
    assert [p.status for p in pages] == [IncidentStatus.RESOLVED]
    assert pages[0].incident_id == page.incident_id
    assert gov.lifecycle.phase("checkout") is Phase.NORMAL


def test_a_budget_cap_throttles_without_any_anomaly(gov: DecisionStep) -> None:
    gov.thresholds.apply(ControlUpdate(function="team:payments", kind=ControlKind.THRESHOLDS,
                                 values={"budget_usd_per_hour": 0.05}))
    events: list[Event] = []
    for i in range(8):  # $0.01 a window: $0.05 after five windows
        events += step(gov, i, 100)
    assert of(events, Anomaly) == []
    verdicts = of(events, Verdict)
    assert [v.action for v in verdicts] == [Action.THROTTLE] * len(verdicts)
    assert verdicts[0].reason.startswith("budget.function_hour")
    assert verdicts[0].anomaly_id == ""
    rates = [v.rate_rps or 0 for v in verdicts]
    assert rates == sorted(rates, reverse=True) and rates[0] < 10  # tightened, never loosened
    decisions = {d.policy: d.decision for d in of(events, PolicyDecision)}
    assert decisions.get("budget.function_hour") is Decision.THROTTLE
    [page] = [p for p in of(events, Incident) if p.status is IncidentStatus.OPEN]
    assert "budget" in page.title.lower() or "budget" in page.summary.lower()


def test_a_budget_incident_resolves_when_its_hour_has_passed_without_traffic(
        gov: DecisionStep) -> None:
    """A function throttled for its hourly budget that then goes quiet: its windows
    keep closing empty (the worker watches it), and once the hour that held the spend
    is over it is released and the budget incident resolved."""
    gov.thresholds.apply(ControlUpdate(function="checkout", kind=ControlKind.THRESHOLDS,
                                       values={"budget_usd_per_hour": 0.05}))
    events = [e for i in range(8) for e in step(gov, i, 100)]
    [opened] = [p for p in of(events, Incident) if p.status is IncidentStatus.OPEN]
    assert opened.kind == "budget"
    later: list[Event] = []
    hour = 3600 * S // WINDOW
    for i in range(8, 8 + hour + 10):
        later += step(gov, i, 0)
        if of(later, Verdict) and of(later, Verdict)[-1].action is Action.RELEASE:
            break
    assert of(later, Verdict)[-1].action is Action.RELEASE
    released_at = of(later, Verdict)[-1].issued_at_unix_nano
    assert released_at >= T0 + 3600 * S  # not before the hour that held the spend ended
    [resolved] = [p for p in of(later, Incident) if p.status is IncidentStatus.RESOLVED]
    assert resolved.incident_id == opened.incident_id


def test_egress_outside_the_allow_list_isolates_with_the_list(gov: DecisionStep) -> None:
    gov.thresholds.apply(ControlUpdate(function="checkout", kind=ControlKind.THRESHOLDS,
                                 values={"egress_allow": "api.stripe.com,*.amazonaws.com"}))
    gov.on_span(Span(function="checkout", trace_id="a" * 32, span_id="b" * 16, name="checkout",
                     start_time_unix_nano=T0, end_time_unix_nano=T0 + 1,
                     attributes={"governor.egress.hosts": "api.stripe.com,exfil.example"},
                     resource={"governor.team": "payments"}), WindowAggregator(WINDOW))
    [verdict] = of(step(gov, 0, 20), Verdict)
    assert verdict.action is Action.ISOLATE
    assert verdict.egress_allow == ["api.stripe.com", "*.amazonaws.com"]
    assert "exfil.example" in verdict.reason


def test_an_operator_release_takes_over(gov: DecisionStep) -> None:
    warm(gov)
    step(gov, 12, 1500)
    now = T0 + 13 * WINDOW
    manual = sign_verdict(Verdict(function="checkout", action=Action.RELEASE, sequence=10**18,
                                  issued_at_unix_nano=now, expires_at_unix_nano=now + 600 * S,
                                  issuer="operator:ana", reason="false positive: load test"),
                          KEY)
    pages = gov.on_verdict(manual, now)
    assert [p.status for p in pages] == [IncidentStatus.RESOLVED]
    assert gov.lifecycle.phase("checkout") is Phase.NORMAL
    assert of(step(gov, 13, 1500), Verdict) == []  # no automatic verdict while it holds


def test_a_function_handed_over_leaves_its_incident_to_the_new_owner(
        gov: DecisionStep) -> None:
    warm(gov)
    [opened] = [p for p in of(step(gov, 12, 1500), Incident)
                if p.status is IncidentStatus.OPEN]
    assert gov.hand_over(lambda function: False, {}) == 1
    assert gov.handed_over == [opened.incident_id]  # the pagers stop asserting it here
    assert not gov.tracker.is_open("checkout")


def test_a_restarted_worker_restores_open_incidents_when_it_gets_its_partitions(
        gov: DecisionStep) -> None:
    warm(gov)
    step(gov, 12, 1500)
    blob = gov.snapshot("checkout")
    assert blob is not None
    quiet = DecisionStep(SETTINGS, VerdictIssuer(KEY, 300 * S, "governor-worker"),
                         PolicyEngine(SETTINGS.policy_dir), Thresholds(SETTINGS),
                         state_key=STATE_KEY)
    quiet.on_window("calm", Window(T0, T0 + WINDOW), T0 + WINDOW)
    calm = quiet.snapshot("calm")  # no incident: stays a snapshot until its first event
    assert calm is not None
    fresh = DecisionStep(SETTINGS, VerdictIssuer(KEY, 300 * S, "governor-worker"),
                         PolicyEngine(SETTINGS.policy_dir), Thresholds(SETTINGS),
                         {"checkout": blob, "calm": calm}, state_key=STATE_KEY)
    fresh.hand_over(lambda function: function != "elsewhere", {})
    assert fresh.resumed == ["checkout"] and fresh.tracker.is_open("checkout")
    assert fresh.counters == {"snapshots_restored": 1}  # "calm" waits for its first event
    other = DecisionStep(SETTINGS, VerdictIssuer(KEY, 300 * S, "governor-worker"),
                         PolicyEngine(SETTINGS.policy_dir), Thresholds(SETTINGS),
                         {"checkout": blob}, state_key=STATE_KEY)
    other.hand_over(lambda function: False, {})  # not this worker's: nothing restored
    assert other.resumed == [] and not other.tracker.is_open("checkout")


def test_decision_state_survives_a_restart(gov: DecisionStep) -> None:
    warm(gov)
    step(gov, 12, 1500)
    blob = gov.snapshot("checkout")
    assert blob is not None
    issuer = VerdictIssuer(KEY, 300 * S, "governor-worker")
    fresh = DecisionStep(SETTINGS, issuer, PolicyEngine(SETTINGS.policy_dir), Thresholds(SETTINGS),
                         {"checkout": blob}, state_key=STATE_KEY)
    assert fresh.lifecycle.phase("checkout") is Phase.NORMAL  # restored on first use only
    first = fresh.on_window("checkout", window(13, 50), T0 + 14 * WINDOW)
    assert fresh.lifecycle.phase("checkout") is Phase.THROTTLED and of(first, Verdict) == []
    assert fresh.resumed == ["checkout"]  # its open incident is re-asserted to the pagers
    assert fresh.counters == {"snapshots_restored": 1}
    released = []
    for i in range(14, 22):
        released += of(fresh.on_window("checkout", window(i, 50), T0 + (i + 1) * WINDOW),
                       Verdict)
    assert [v.action for v in released] == [Action.RELEASE]


class _RunsACommand:
    """Pickles into a call of os.system: what a plain unpickler would run on load."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, (f"touch {self.marker}",))


def test_refused_snapshots_are_counted_and_the_function_starts_cold(
        gov: DecisionStep, tmp_path: Path) -> None:
    """A pickle that would run a command, a snapshot signed with another key (the
    verdict key), a well-signed one of the wrong shape and another function's are each
    refused and counted; the functions warm up again and nothing runs."""
    import hashlib
    import hmac
    import pickle

    warm(gov)
    step(gov, 12, 1500)
    genuine = gov.snapshot("checkout")
    assert genuine is not None
    marker = tmp_path / "ran"
    body = pickle.dumps({"detection": _RunsACommand(marker)})
    state = orjson.loads(genuine[32:])
    state["state"]["incident"]["function"] = "malformed"
    state["state"]["detection"]["cost"]["history"] = ["NaN"]  # read last: all or nothing

    def signed(value: dict[str, object], key: bytes = STATE_KEY) -> bytes:
        raw = orjson.dumps(value)
        return hmac.new(key, raw, hashlib.sha256).digest() + raw

    snapshots = {"pickled": hmac.new(STATE_KEY, body, hashlib.sha256).digest() + body,
                 "forged": seal("forged", orjson.loads(genuine[32:])["state"], KEY),
                 "malformed": signed({**state, "function": "malformed"}),
                 "moved": genuine, "checkout": genuine}
    fresh = DecisionStep(SETTINGS, VerdictIssuer(KEY, 300 * S, "governor-worker"),
                         PolicyEngine(SETTINGS.policy_dir), Thresholds(SETTINGS), snapshots,
                         state_key=STATE_KEY)
    assert fresh.counters == {"snapshots_refused_pickle": 1, "snapshots_refused_key": 1}
    for function in ("malformed", "moved", "checkout"):
        fresh.on_window(function, window(13, 50), T0 + 14 * WINDOW)
    assert fresh.counters == {"snapshots_refused_pickle": 1, "snapshots_refused_key": 1,
                              "snapshots_refused_shape": 1, "snapshots_refused_function": 1,
                              "snapshots_restored": 1}
    assert not marker.exists()
    assert not fresh.decider.warm("malformed") and not fresh.decider.warm("moved")
    assert fresh.lifecycle.phase("malformed") is Phase.NORMAL  # none of it restored
    assert fresh.decider.warm("checkout")


def test_detection_thresholds_are_live(gov: DecisionStep) -> None:
    warm(gov)
    gov.thresholds.apply(ControlUpdate(function="checkout", kind=ControlKind.THRESHOLDS,
                                 values={"zscore_threshold": 1e9}))
    assert of(step(gov, 12, 1500), Verdict) == []  # nothing is that far out
    gov.thresholds.apply(ControlUpdate(function="checkout", kind=ControlKind.THRESHOLDS, values={}))
    [verdict] = of(step(gov, 13, 1500), Verdict)  # back to the default: throttled
    assert verdict.action is Action.THROTTLE


def test_idle_functions_are_forgotten_only_when_nothing_holds(gov: DecisionStep) -> None:
    warm(gov)
    assert gov.retire("checkout")  # normal, no incident: forgotten, detectors kept sealed
    [verdict] = of(step(gov, 12, 1500), Verdict)  # back: no new warm-up before it is caught
    assert verdict.action is Action.THROTTLE
    assert not gov.retire("checkout")  # throttled: its window stays to release it


def test_the_aggregator_keeps_an_idle_window_while_retire_says_no() -> None:

    answers = {"busy": False, "done": True}
    agg = WindowAggregator(WINDOW, idle_windows=2, retire=answers.__getitem__)
    for name in answers:
        agg.add(CostEvent(function=name, invocation_id="1", time_unix_nano=T0))
    for i in range(1, 5):
        agg.close_due(T0 + i * WINDOW + S)
    assert [name for name, _ in agg.close_due(T0 + 5 * WINDOW + S)] == ["busy"]


def test_spend_survives_a_restart_so_budgets_hold(gov: DecisionStep) -> None:
    gov.thresholds.apply(ControlUpdate(function="checkout", kind=ControlKind.THRESHOLDS,
                                       values={"budget_usd_per_hour": 0.05}))
    throttled = [v for i in range(8) for v in of(step(gov, i, 100), Verdict)]
    assert throttled and throttled[0].action is Action.THROTTLE
    blob = gov.snapshot("checkout")
    assert blob is not None
    thresholds = Thresholds(SETTINGS)
    thresholds.apply(ControlUpdate(function="checkout", kind=ControlKind.THRESHOLDS,
                                   values={"budget_usd_per_hour": 0.05}))
    fresh = DecisionStep(SETTINGS, VerdictIssuer(KEY, 300 * S, "governor-worker"),
                         PolicyEngine(SETTINGS.policy_dir), thresholds, {"checkout": blob},
                         state_key=STATE_KEY)
    after = of(fresh.on_window("checkout", window(8, 100), T0 + 9 * WINDOW), Verdict)
    assert all(v.action is not Action.RELEASE for v in after)  # still over budget
    spend = fresh.spend.policy_input("checkout", "payments", T0 + 9 * WINDOW)
    assert spend["function_hour_usd"] == pytest.approx(0.09)  # 8 windows before, 1 after
    assert spend["team_hour_usd"] == pytest.approx(0.09)


def mixed(index: int, admitted: int, refused: int, cost: float) -> Window:
    """A window whose calls were partly refused by the verdict in force."""
    w = window(index, admitted, cost)
    for i in range(refused):
        w.add(CostEvent(function="checkout", invocation_id=f"{index}-r{i}", team="payments",
                        version="v1", outcome=Outcome.ISOLATED,
                        time_unix_nano=w.start_ns + i * (WINDOW // refused)))
    return w


def test_an_isolation_is_probed_not_released_blind_and_stays_one_incident(
        gov: DecisionStep) -> None:
    """A cost per call 40x its baseline (a token runaway) is isolated. Refused calls
    say nothing of the cost per call, so the isolation is probed: a few calls run; while
    they still cost 40x the function is isolated again, in the same incident; once
    they are back to normal it is released and the incident resolved."""
    warm(gov)
    seen: list[Event] = []

    def at(index: int, admitted: int, refused: int, cost: float) -> list[Event]:
        events = gov.on_window("checkout", mixed(index, admitted, refused, cost),
                               T0 + (index + 1) * WINDOW)
        seen.extend(events)
        return events

    [isolate] = of(at(12, 50, 0, 0.004), Verdict)
    assert isolate.action is Action.ISOLATE
    [probe] = of(at(13, 0, 50, 0.004), Verdict)  # all refused: held (hold 0 s), probed
    assert probe.action is Action.THROTTLE and probe.rate_rps == SETTINGS.min_rps
    [again] = of(at(14, 1, 49, 0.004), Verdict)  # the probe's call still costs 40x
    assert again.action is Action.ISOLATE
    verdicts = [v.action for v in of(seen, Verdict)]
    for i in range(15, 22):
        probing = verdicts[-1] is Action.THROTTLE  # 0.2 calls/s admitted: 2 a window
        at(i, 2 if probing else 0, 48 if probing else 50, 0.0001)
        verdicts = [v.action for v in of(seen, Verdict)]
    assert verdicts[-1] is Action.RELEASE
    assert Action.RELEASE not in verdicts[:-1]  # never released while it ran at 40x
    pages = of(seen, Incident)
    assert len({p.incident_id for p in pages}) == 1
    assert [p.status for p in pages if p.status is IncidentStatus.RESOLVED] == [
        IncidentStatus.RESOLVED] and pages[-1].status is IncidentStatus.RESOLVED
