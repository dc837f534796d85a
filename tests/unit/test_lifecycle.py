"""The verdict lifecycle: transitions, hysteresis, hold, cooldown, renewal, overrides."""

from __future__ import annotations

import orjson
import pytest

from schemas import Action, Verdict, sign_verdict, verify_verdict
from streams.decisions.lifecycle import Lifecycle, Order, Phase, Timing, VerdictIssuer

KEY = b"k" * 32
S = 1_000_000_000
TIMING = Timing(hold_seconds=30, release_after_seconds=20, cooldown_seconds=120,
                verdict_ttl_seconds=300)
THROTTLE = Order(Action.THROTTLE, "cost 9x baseline", policy="cost_guard.anomaly", rate_rps=5.0,
                 anomaly_id="a1")
ISOLATE = Order(Action.ISOLATE, "egress to evil.example", policy="egress.allow_list",
                egress_allow=["api.example.com"])


@pytest.fixture
def life() -> Lifecycle:
    return Lifecycle(VerdictIssuer(KEY, 300 * S, "governor-worker"))


def run(life: Lifecycle, orders: list[Order | None], start: int = 0,
        step: int = 10 * S) -> list[tuple[int, Verdict]]:
    """Step one function through ``orders``, one window each; (second, verdict) pairs."""
    out = []
    for i, order in enumerate(orders):
        now = start + i * step
        out += [(now // S, v) for v in life.step("f", order, TIMING, now)]
    return out


def test_quiet_function_gets_no_verdicts(life: Lifecycle) -> None:
    assert run(life, [None] * 10) == []
    assert life.phase("f") is Phase.NORMAL


def test_throttle_holds_then_releases_after_quiet_time(life: Lifecycle) -> None:
    verdicts = run(life, [THROTTLE, THROTTLE, None, None, None, None, None])
    actions = [(t, v.action) for t, v in verdicts]
    # order at 0 and 10 s; quiet from 10 s; hold 30 s ends at 30 s, 20 s quiet at 30 s
    assert actions == [(0, Action.THROTTLE), (30, Action.RELEASE)]
    throttle, release = verdicts[0][1], verdicts[1][1]
    assert throttle.rate_rps == 5.0 and throttle.anomaly_id == "a1"
    assert release.sequence > throttle.sequence
    assert "released after throttled" in release.reason
    verify_verdict(release, KEY)  # raises if the signature does not match
    assert life.phase("f") is Phase.NORMAL


def test_throttle_escalates_to_isolate_but_never_loosens(life: Lifecycle) -> None:
    looser = Order(Action.THROTTLE, "r", rate_rps=9.0)
    slightly = Order(Action.THROTTLE, "r", rate_rps=4.5)  # within 20 %: keep 5
    tighter = Order(Action.THROTTLE, "r", rate_rps=2.0)
    verdicts = run(life, [THROTTLE, looser, slightly, tighter, ISOLATE, THROTTLE])
    assert [(v.action, v.rate_rps) for _, v in verdicts] == [
        (Action.THROTTLE, 5.0), (Action.THROTTLE, 2.0), (Action.ISOLATE, None)]
    assert verdicts[-1][1].egress_allow == ["api.example.com"]
    assert life.phase("f") is Phase.ISOLATED


def test_reoffending_within_cooldown_holds_twice_as_long(life: Lifecycle) -> None:
    first = run(life, [THROTTLE] + [None] * 3)
    assert [v.action for _, v in first] == [Action.THROTTLE, Action.RELEASE]  # at 0 and 30 s
    again = run(life, [THROTTLE] + [None] * 8, start=40 * S)
    # hold doubles to 60 s: released at 100 s, not at 70 s
    assert [(t, v.action) for t, v in again] == [(40, Action.THROTTLE), (100, Action.RELEASE)]
    later = run(life, [THROTTLE] + [None] * 4, start=1000 * S)  # after the cooldown
    assert [(t, v.action) for t, v in later] == [(1000, Action.THROTTLE), (1030, Action.RELEASE)]


def test_verdicts_are_renewed_before_they_expire(life: Lifecycle) -> None:
    timing = Timing(hold_seconds=30, release_after_seconds=20, verdict_ttl_seconds=40)
    out = []
    for i in range(6):
        out += [(i * 10, v) for v in life.step("f", THROTTLE, timing, i * 10 * S)]
    assert [t for t, _ in out] == [0, 20, 40]  # renewed at half its 40 s life
    assert all(v.expires_at_unix_nano - v.issued_at_unix_nano == 40 * S for _, v in out)
    sequences = [v.sequence for _, v in out]
    assert sequences == sorted(set(sequences))


def operator(action: Action, seconds: float, rate: float | None = None) -> Verdict:
    now = 5 * S
    verdict = Verdict(function="f", action=action, rate_rps=rate, sequence=1,
                      issued_at_unix_nano=now, expires_at_unix_nano=now + int(seconds * S),
                      issuer="operator:ana", reason="manual")
    return sign_verdict(verdict, KEY)


def test_manual_release_suppresses_automation_until_it_expires(life: Lifecycle) -> None:
    run(life, [THROTTLE])
    assert life.observe(operator(Action.RELEASE, 60), 5 * S)
    assert life.phase("f") is Phase.NORMAL
    assert run(life, [THROTTLE] * 6, start=10 * S) == []  # 10..60 s, manual until 65 s
    assert [v.action for _, v in run(life, [THROTTLE], start=70 * S)] == [Action.THROTTLE]


def test_manual_isolate_is_not_released_automatically(life: Lifecycle) -> None:
    assert life.observe(operator(Action.ISOLATE, 100), 5 * S)
    assert life.phase("f") is Phase.ISOLATED
    assert run(life, [None] * 9, start=10 * S) == []
    assert life.phase("f") is Phase.ISOLATED
    [(_, release)] = run(life, [None], start=200 * S)  # expired: agents dropped it already
    assert release.action is Action.RELEASE and "operator's isolate expired" in release.reason
    assert life.phase("f") is Phase.NORMAL


def test_expired_or_replayed_operator_verdicts_change_nothing(life: Lifecycle) -> None:
    run(life, [THROTTLE])
    assert not life.observe(operator(Action.RELEASE, 60), 100 * S)  # expired at 65 s
    assert life.phase("f") is Phase.THROTTLED
    assert life.observe(operator(Action.RELEASE, 60), 5 * S)
    assert not life.observe(operator(Action.ISOLATE, 60), 6 * S)  # same sequence: a replay
    assert life.phase("f") is Phase.NORMAL


def test_own_verdicts_on_the_topic_change_nothing(life: Lifecycle) -> None:
    [(_, verdict)] = run(life, [THROTTLE])
    assert not life.observe(verdict, 0)
    assert life.phase("f") is Phase.THROTTLED


def test_state_survives_a_round_trip_as_plain_data(life: Lifecycle) -> None:
    run(life, [THROTTLE])
    fresh = Lifecycle(life.issuer)
    fresh.restore("f", Lifecycle.read(orjson.loads(orjson.dumps(life.export("f")))))
    assert fresh.phase("f") is Phase.THROTTLED
    assert [v.action for v in fresh.step("f", None, TIMING, 40 * S)] == [Action.RELEASE]


def test_the_issuer_numbers_after_an_operators_verdict(life: Lifecycle) -> None:
    ahead = sign_verdict(Verdict(function="f", action=Action.RELEASE, sequence=10**18,
                                 expires_at_unix_nano=1, issuer="operator:ana"), KEY)
    life.issuer.follow(ahead)
    [(_, verdict)] = run(life, [THROTTLE])
    assert verdict.sequence == 10**18 + 1


def _detector_isolate(evidence_s: int) -> Order:
    """A detector's isolation (cost guard), its evidence last seen at ``evidence_s``."""
    return Order(Action.ISOLATE, "cost per call 40x", policy="cost_guard.anomaly",
                 anomaly_id="a2", probe=True, evidence_ns=evidence_s * S)


def test_a_detector_isolation_is_probed_before_release(life: Lifecycle) -> None:
    # isolated at 0 s; its calls refused, the proposal stands on evidence from 0 s
    orders: list[Order | None] = [_detector_isolate(0)] * 6 + [None] * 3
    verdicts = run(life, orders)
    actions = [(t, v.action, v.rate_rps) for t, v in verdicts]
    assert actions[0] == (0, Action.ISOLATE, None)
    assert actions[1] == (30, Action.THROTTLE, TIMING.probe_rps)  # held: probe
    assert "probing after isolation" in verdicts[1][1].reason
    assert actions[2][:2] == (50, Action.RELEASE)  # stale orders unheeded, 20 s quiet
    assert "released after probing" in verdicts[2][1].reason


def test_a_probe_that_bears_the_anomaly_out_isolates_again_in_the_same_episode(
        life: Lifecycle) -> None:
    orders: list[Order | None] = [_detector_isolate(0)] * 4 + [_detector_isolate(40)] * 2
    verdicts = run(life, orders)
    assert [(t, v.action) for t, v in verdicts] == [
        (0, Action.ISOLATE), (30, Action.THROTTLE), (40, Action.ISOLATE)]
    assert life.phase("f") is Phase.ISOLATED
    # twice the hold: no new probe before 60 s after the relapse
    later = run(life, [_detector_isolate(40)] * 12, start=50 * S)
    assert [(t, v.action) for t, v in later] == [(100, Action.THROTTLE), (120, Action.RELEASE)]


def test_a_policy_isolation_is_not_probed(life: Lifecycle) -> None:
    verdicts = run(life, [ISOLATE] * 6 + [None] * 3)
    assert [v.action for _, v in verdicts] == [Action.ISOLATE, Action.RELEASE]
