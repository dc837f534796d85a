"""The incident tracker: episodes, materiality, severity, rate limit, quiet resolve."""

from __future__ import annotations

import dataclasses

import orjson
import pytest

from schemas import (
    Action,
    Anomaly,
    Driver,
    Hold,
    Incident,
    IncidentStatus,
    Severity,
    Verdict,
    decode,
    encode,
)
from streams.paging.incidents import (
    FOLDED,
    SUMMARY_FUNCTION,
    IncidentTracker,
    PageRules,
    incident_kind,
    is_paged,
    severity_of,
)
from streams.settings import Settings

S = 1_000_000_000
T0 = 1_700_000_000 * S
RULES = PageRules(runbook_url="https://wiki.example/governor", pages_per_hour=6,
                  quiet_seconds=300, page_usd_per_hour=1.0, critical_usd_per_hour=10.0)


def _cost_anomaly(function: str = "checkout", ratio: float = 22.0, impact: float = 5.0,
                  severity: Severity = Severity.CRITICAL) -> Anomaly:
    base = 0.001
    return Anomaly(
        function=function, detector="robust_zscore", score=40.0, threshold=6.0,
        severity=severity, features={"cost_per_s": base * ratio, "attempts_per_s": 5.0,
                                     "cost_per_invocation": base * ratio / 5},
        baseline={"cost_per_s": base, "attempts_per_s": 5.0, "cost_per_invocation": base / 5},
        explanation=(f"cost/s {ratio:.1f}x baseline; invocations 1.0x, cost per invocation "
                     f"{ratio:.1f}x; driver: cost per invocation"),
        cost_impact_usd_per_hour=impact, driver=Driver.COST_PER_INVOCATION)


def _behaviour(function: str = "checkout", severity: Severity = Severity.WARNING) -> Anomaly:
    return Anomaly(function=function, detector="behaviour.error_rate", score=9.0,
                   threshold=6.0, severity=severity,
                   features={"error_rate": 0.45}, baseline={"error_rate": 0.02},
                   explanation="error rate 45% vs baseline 2%", driver=Driver.ERROR_RATE)


def _verdict(action: Action, sequence: int, function: str = "checkout",
             rate: float | None = None, anomaly: Anomaly | None = None,
             reason: str = "") -> Verdict:
    return Verdict(function=function, action=action, rate_rps=rate, sequence=sequence,
                   expires_at_unix_nano=T0 + 300 * S, reason=reason,
                   anomaly_id=anomaly.event_id if anomaly else "")


def _tracker(**changes: object) -> IncidentTracker:
    rules = dataclasses.replace(RULES, **changes)  # type: ignore[arg-type]
    return IncidentTracker(rules)


def test_episode_opens_updates_and_resolves_under_one_id() -> None:
    t = _tracker()
    anomaly = _cost_anomaly()
    [opened] = t.on_verdict(_verdict(Action.THROTTLE, 1, rate=3, anomaly=anomaly), anomaly,
                            "payments", T0)
    assert opened.status is IncidentStatus.OPEN and opened.updates == 0
    assert opened.title == "checkout: cost 22× baseline, throttled to 3 rps"
    assert opened.severity is Severity.CRITICAL and opened.team == "payments"
    assert opened.runbook_url == "https://wiki.example/governor#cost-anomaly"
    assert opened.driver == "cost per invocation"
    assert opened.cost_impact_usd_per_hour == 5.0
    assert opened.opened_at_unix_nano == T0 and opened.resolved_at_unix_nano == 0
    for text in ("cost/s 22.0x baseline", "cost_per_s 0.022 vs 0.001 (22×)",
                 "Likely driver: cost per invocation", "$5.00/h", "throttled to 3 rps",
                 "#cost-anomaly"):
        assert text in opened.summary, text
    assert is_paged(opened)

    [updated] = t.on_verdict(_verdict(Action.ISOLATE, 2), None, "payments", T0 + 60 * S)
    assert updated.status is IncidentStatus.UPDATED and updated.updates == 1
    assert updated.incident_id == opened.incident_id
    assert updated.title == "checkout: cost 22× baseline, isolated"
    assert [a.split(" (")[0] for a in updated.actions] == ["throttled to 3 rps", "isolated"]
    assert incident_kind(updated) == "isolated"

    [resolved] = t.on_verdict(_verdict(Action.RELEASE, 3, reason="released after isolated: "
                                       "demand 5.00 rps vs baseline 5.00"), None, "payments",
                              T0 + 600 * S)
    assert resolved.status is IncidentStatus.RESOLVED
    assert resolved.incident_id == opened.incident_id
    assert resolved.resolved_at_unix_nano == T0 + 600 * S
    assert resolved.actions[-1].startswith(
        "released after isolated: demand 5.00 rps vs baseline 5.00 (")
    assert len({opened.event_id, updated.event_id, resolved.event_id}) == 3
    assert t.open_incidents(T0 + 601 * S) == []  # resolved episodes are dropped
    assert t.on_verdict(_verdict(Action.RELEASE, 4), None, "payments", T0 + 602 * S) == []

    [again] = t.on_verdict(_verdict(Action.THROTTLE, 5, rate=2), None, "payments",
                           T0 + 900 * S)
    assert again.status is IncidentStatus.OPEN and again.incident_id != opened.incident_id


def test_nothing_is_resent_unless_something_material_changed() -> None:
    t = _tracker()
    anomaly = _cost_anomaly(impact=4.0, ratio=5, severity=Severity.WARNING)
    [opened] = t.on_verdict(_verdict(Action.THROTTLE, 10, rate=3), anomaly, "p", T0)
    assert opened.severity is Severity.WARNING
    # the same verdict again, a re-issue with the same rate, a stale one: nothing
    assert t.on_verdict(_verdict(Action.THROTTLE, 10, rate=3), None, "p", T0 + S) == []
    assert t.on_verdict(_verdict(Action.THROTTLE, 11, rate=3), None, "p", T0 + 2 * S) == []
    assert t.on_verdict(_verdict(Action.THROTTLE, 9, rate=1), None, "p", T0 + 3 * S) == []
    # cost impact moving less than 50 %: nothing; the same anomaly twice: nothing
    small = _cost_anomaly(impact=5.5, ratio=5, severity=Severity.WARNING)
    assert t.on_anomaly(small, "p", T0 + 4 * S) == []
    assert t.on_anomaly(small, "p", T0 + 5 * S) == []
    # a behaviour anomaly on top, warning: not material either
    assert t.on_anomaly(_behaviour(), "p", T0 + 6 * S) == []
    # ≥ 50 % more than the last page: an update
    [moved] = t.on_anomaly(_cost_anomaly(impact=6.0, ratio=6, severity=Severity.WARNING),
                           "p", T0 + 7 * S)
    assert moved.updates == 1 and moved.cost_impact_usd_per_hour == 6.0
    assert "Also seen: error rate 45% vs baseline 2%" in moved.summary
    # a new rate is a new action
    [rate] = t.on_verdict(_verdict(Action.THROTTLE, 12, rate=1.5), None, "p", T0 + 8 * S)
    assert rate.updates == 2 and rate.title.endswith("throttled to 1.5 rps")
    # severity rising is material
    [worse] = t.on_anomaly(_cost_anomaly(impact=6.0, ratio=30), "p", T0 + 9 * S)
    assert worse.severity is Severity.CRITICAL and worse.updates == 3
    # and it never goes down again
    assert t.on_anomaly(_cost_anomaly(impact=6.5, ratio=5, severity=Severity.WARNING),
                        "p", T0 + 10 * S) == []


@pytest.mark.parametrize(("anomaly", "action", "expected"), [
    (None, Action.ISOLATE, Severity.CRITICAL),
    (None, Action.THROTTLE, Severity.WARNING),
    (_cost_anomaly(ratio=3, impact=0.5, severity=Severity.WARNING), Action.THROTTLE,
     Severity.WARNING),
    (_cost_anomaly(ratio=3, impact=12.0, severity=Severity.WARNING), None, Severity.CRITICAL),
    (_cost_anomaly(ratio=3, impact=0.5, severity=Severity.CRITICAL), None, Severity.CRITICAL),
    (_cost_anomaly(ratio=11, impact=0.5, severity=Severity.WARNING), None, Severity.CRITICAL),
    (_behaviour(severity=Severity.CRITICAL), None, Severity.WARNING),
    (_behaviour(severity=Severity.CRITICAL), Action.ISOLATE, Severity.CRITICAL),
    # no baseline: the calibrated score (score / threshold) is the magnitude
    (Anomaly(function="f", detector="hst", score=0.95, threshold=0.9), None, Severity.WARNING),
    (Anomaly(function="f", detector="hst", score=70.0, threshold=6.0), None, Severity.CRITICAL),
])
def test_severity_rule(anomaly: Anomaly | None, action: Action | None,
                       expected: Severity) -> None:
    assert severity_of(anomaly, action, RULES) is expected


def test_which_anomalies_open_an_incident_without_a_verdict() -> None:
    t = _tracker()
    low = _cost_anomaly(function="a", ratio=3, impact=0.5, severity=Severity.WARNING)
    assert t.on_anomaly(low, "p", T0) == []
    [by_cost] = t.on_anomaly(_cost_anomaly(function="b", ratio=3, impact=2.0,
                                           severity=Severity.WARNING), "p", T0)
    assert by_cost.severity is Severity.WARNING
    assert by_cost.title == "b: cost 3.0× baseline, reported, not enforced"
    [by_severity] = t.on_anomaly(_cost_anomaly(function="c", impact=0.0), "p", T0)
    assert by_severity.severity is Severity.CRITICAL
    assert t.on_anomaly(_behaviour(function="d"), "p", T0) == []
    [storm] = t.on_anomaly(_behaviour(function="e", severity=Severity.CRITICAL), "p", T0)
    assert storm.severity is Severity.WARNING
    assert storm.title == "e: error rate 45% vs baseline 2%, reported, not enforced"
    assert incident_kind(storm) == "error-storm" and storm.driver == "error rate"
    assert "Governor did: nothing yet" in storm.summary


@pytest.mark.parametrize("held", [Hold.LEARNING, Hold.BELOW_RATIO, Hold.ROUTINE])
def test_a_held_back_anomaly_never_opens_nor_escalates_an_incident(held: Hold) -> None:
    t = _tracker()
    surge = dataclasses.replace(_cost_anomaly(impact=500.0), held=held)
    assert surge.severity is Severity.CRITICAL and t.on_anomaly(surge, "p", T0) == []
    [opened] = t.on_anomaly(_cost_anomaly(ratio=3, impact=2.0, severity=Severity.WARNING),
                            "p", T0)
    assert opened.severity is Severity.WARNING
    later = dataclasses.replace(surge, event_id="later")
    assert all(i.severity is Severity.WARNING for i in t.on_anomaly(later, "p", T0 + 1))


def test_anomaly_only_incidents_resolve_after_quiet_time_verdict_ones_do_not() -> None:
    t = _tracker(quiet_seconds=120)
    [opened] = t.on_anomaly(_cost_anomaly(function="a"), "p", T0)
    t.on_verdict(_verdict(Action.THROTTLE, 1, function="b", rate=2), None, "p", T0)
    assert t.on_quiet("a", T0 + 60 * S) == []
    assert t.on_anomaly(_cost_anomaly(function="a", impact=5.2), "p", T0 + 100 * S) == []
    assert t.on_quiet("a", T0 + 200 * S) == []  # the last anomaly restarted the clock
    [resolved] = t.on_quiet("a", T0 + 220 * S)
    assert resolved.status is IncidentStatus.RESOLVED
    assert resolved.incident_id == opened.incident_id
    assert resolved.actions[-1].startswith("auto-resolved")
    assert t.sweep(T0 + 10_000 * S) == []  # b is throttled: only a release resolves it
    assert [i.function for i in t.open_incidents(T0)] == ["b"]


def test_an_anomaly_only_incident_is_upgraded_by_a_verdict_then_released() -> None:
    t = _tracker(quiet_seconds=1)
    [opened] = t.on_anomaly(_cost_anomaly(), "p", T0)
    [upgraded] = t.on_verdict(_verdict(Action.THROTTLE, 1, rate=3), None, "p", T0 + S)
    assert upgraded.incident_id == opened.incident_id and upgraded.updates == 1
    assert upgraded.title == "checkout: cost 22× baseline, throttled to 3 rps"
    assert t.on_quiet("checkout", T0 + 3600 * S) == []


def test_page_rate_limit_folds_opens_into_a_team_summary() -> None:
    t = _tracker(pages_per_hour=2)
    opens = [t.on_verdict(_verdict(Action.THROTTLE, 1, function=f"f{i}", rate=1), None,
                          "payments", T0 + i * S) for i in range(5)]
    assert [len(o) for o in opens[:2]] == [1, 1] and all(is_paged(o[0]) for o in opens[:2])
    folded, summary = opens[2]
    assert not is_paged(folded) and folded.status is IncidentStatus.OPEN
    assert folded.actions[-1].startswith(f"{FOLDED} {summary.incident_id}")
    assert summary.function == SUMMARY_FUNCTION and summary.team == "payments"
    assert is_paged(summary) and summary.status is IncidentStatus.OPEN
    assert summary.runbook_url.endswith("#rate-limited")
    assert "f2: throttled to 1 rps" in summary.summary
    # the 4th doubles the count folded (1 -> 2): the summary is updated; the 5th is not
    _, summary4 = opens[3]
    assert summary4.status is IncidentStatus.UPDATED and "2 incidents" in summary4.title
    assert len(opens[4]) == 1 and not is_paged(opens[4][0])
    assert t.folded == {"payments": 3} and t.counts["folded"] == 3
    # another team has its own bucket
    [other] = t.on_verdict(_verdict(Action.THROTTLE, 1, function="g", rate=1), None, "search",
                           T0 + 10 * S)
    assert is_paged(other)
    # resolves are never limited; the summary resolves with its last member
    [r0] = t.on_verdict(_verdict(Action.RELEASE, 2, function="f0"), None, "payments",
                        T0 + 20 * S)
    assert is_paged(r0) and r0.status is IncidentStatus.RESOLVED
    for i in (2, 3):
        [member] = t.on_verdict(_verdict(Action.RELEASE, 2, function=f"f{i}"), None,
                                "payments", T0 + 30 * S)
        assert not is_paged(member)
    member, summary_resolved = t.on_verdict(_verdict(Action.RELEASE, 2, function="f4"), None,
                                            "payments", T0 + 40 * S)
    assert summary_resolved.incident_id == summary.incident_id
    assert summary_resolved.status is IncidentStatus.RESOLVED and is_paged(summary_resolved)
    # tokens come back with time: half an hour refills one of two
    [later] = t.on_verdict(_verdict(Action.THROTTLE, 3, function="f2", rate=1), None,
                           "payments", T0 + 1900 * S)
    assert is_paged(later)


def test_rate_limit_zero_means_unlimited() -> None:
    t = _tracker(pages_per_hour=0)
    events = [e for i in range(50) for e in
              t.on_verdict(_verdict(Action.THROTTLE, 1, function=f"f{i}", rate=1), None, "p",
                           T0)]
    assert len(events) == 50 and all(is_paged(e) for e in events)


def test_an_episode_survives_a_round_trip_as_plain_data() -> None:
    t = _tracker(pages_per_hour=1)
    [opened] = t.on_verdict(_verdict(Action.THROTTLE, 1, rate=3), _cost_anomaly(), "p", T0)
    state = orjson.loads(orjson.dumps(t.export("checkout")))
    assert t.export("nothing-open") is None
    restored = _tracker(pages_per_hour=1)
    restored.restore("checkout", IncidentTracker.read(state))
    assert restored.open_incidents(T0) == t.open_incidents(T0)
    assert restored.on_verdict(_verdict(Action.THROTTLE, 1, rate=3), None, "p", T0 + S) == []
    [resolved] = restored.on_verdict(_verdict(Action.RELEASE, 2), None, "p", T0 + 60 * S)
    assert resolved.incident_id == opened.incident_id
    assert resolved.actions[:-1] == opened.actions


def test_incidents_pass_the_codec() -> None:
    t = _tracker()
    events = t.on_verdict(_verdict(Action.THROTTLE, 1, rate=3), _cost_anomaly(), "p", T0)
    events += t.on_verdict(_verdict(Action.RELEASE, 2), None, "p", T0 + S)
    for event in events:
        assert decode(encode(event), Incident) == event


def test_rules_from_settings() -> None:
    rules = PageRules.from_settings(Settings(runbook_url="https://wiki/x"))
    assert rules.runbook_url == "https://wiki/x" and rules.pages_per_hour == 6.0
    rules = PageRules.from_settings(Settings.from_env({
        "GOVERNOR_INCIDENT_QUIET_SECONDS": "60", "GOVERNOR_PAGE_USD_PER_HOUR": "2.5",
        "GOVERNOR_PAGE_CRITICAL_USD_PER_HOUR": "50"}))
    assert (rules.quiet_seconds, rules.page_usd_per_hour, rules.critical_usd_per_hour) == (
        60.0, 2.5, 50.0)
    defaults = PageRules.from_settings(Settings())
    assert defaults == PageRules(public_url="http://127.0.0.1:6066")  # the same defaults


def test_page_links_are_absolute_from_the_public_url() -> None:
    rules = PageRules.from_settings(Settings(public_url="https://governor.example/"))
    [opened] = IncidentTracker(rules).on_verdict(
        _verdict(Action.THROTTLE, 1, rate=3), None, "p", T0)
    assert opened.runbook_url == "https://governor.example/docs/runbook.md#cost-anomaly"
    t = IncidentTracker(rules)
    limits = {"runbook_url": "https://wiki/payments"}  # absolute: kept as it is
    [opened] = t.on_verdict(_verdict(Action.THROTTLE, 1, rate=3), None, "p", T0, limits)
    assert opened.runbook_url == "https://wiki/payments#cost-anomaly"
    local = PageRules.from_settings(Settings(query_port=7000))
    assert local.link("docs/runbook.md") == "http://127.0.0.1:7000/docs/runbook.md"
    every = Settings(query_host="0.0.0.0", query_token="t" * 32)  # every interface
    assert every.public_base == "http://localhost:6066"


def test_live_thresholds_override_runbook_and_page_rate() -> None:
    t = _tracker(pages_per_hour=100)
    limits = {"page_rate_per_hour": 1, "runbook_url": "https://wiki/payments"}
    [first] = t.on_verdict(_verdict(Action.THROTTLE, 1, function="a", rate=1), None,
                           "payments", T0, limits)
    assert first.runbook_url == "https://wiki/payments#cost-anomaly"
    folded, summary = t.on_verdict(_verdict(Action.THROTTLE, 1, function="b", rate=1), None,
                                   "payments", T0, limits)
    assert not is_paged(folded) and "over 1 pages/h" in folded.actions[-1]
    assert summary.runbook_url == "https://wiki/payments#rate-limited"
    [other] = t.on_verdict(_verdict(Action.THROTTLE, 1, function="c", rate=1), None,
                           "search", T0)  # no limits: the rules' defaults
    assert is_paged(other) and other.runbook_url.startswith(RULES.runbook_url)


def test_every_kind_has_a_runbook_section() -> None:
    from pathlib import Path

    from streams.paging.incidents import Kind

    runbook = (Path(__file__).parents[2] / "docs" / "runbook.md").read_text()
    for kind in Kind:
        assert f'<a id="{kind.value}"></a>' in runbook, kind
