"""Pages against a real Alertmanager (Debian's ``prometheus-alertmanager``, installed by
``.ci/run``): an episode that escalates from warning to critical stays one alert, and
its resolve ends it; while open, each re-assertion renews its ``endsAt``."""

from __future__ import annotations

import time

import pytest

from schemas import Action, Anomaly, Severity, Verdict
from streams.paging.incidents import IncidentTracker, PageRules
from streams.paging.transports import AlertmanagerPager
from tests.integration.conftest import alerts_of, wait_for

pytestmark = pytest.mark.integration

S = 1_000_000_000


def test_an_escalating_episode_is_one_alert_until_it_resolves(alertmanager: str) -> None:
    function = f"checkout-{time.time_ns()}"
    now = time.time_ns()
    tracker = IncidentTracker(PageRules(runbook_url="https://wiki.example/governor"))
    pager = AlertmanagerPager(alertmanager)
    warning = Anomaly(function=function, detector="robust_zscore", score=9.0, threshold=6.0,
                      severity=Severity.WARNING, features={"cost_per_s": 0.003},
                      baseline={"cost_per_s": 0.001}, cost_impact_usd_per_hour=2.0)
    throttle = Verdict(function=function, action=Action.THROTTLE, rate_rps=3, sequence=1,
                       expires_at_unix_nano=now + 300 * S)
    [opened] = tracker.on_verdict(throttle, warning, "payments", now)
    assert opened.severity is Severity.WARNING
    assert pager.send(opened).ok
    isolate = Verdict(function=function, action=Action.ISOLATE, sequence=2,
                      expires_at_unix_nano=now + 300 * S)
    [escalated] = tracker.on_verdict(isolate, None, "payments", now + 10 * S)
    assert escalated.severity is Severity.CRITICAL
    assert escalated.incident_id == opened.incident_id
    assert pager.send(escalated).ok
    [alert] = wait_for(lambda: alerts_of(alertmanager, function), 10)
    assert alert["annotations"]["severity"] == "critical"  # the same alert, escalated
    assert alert["labels"]["incident_id"] == opened.incident_id
    assert alert["status"]["state"] == "active"
    release = Verdict(function=function, action=Action.RELEASE, sequence=3,
                      expires_at_unix_nano=now + 300 * S, reason="released after isolated")
    [resolved] = tracker.on_verdict(release, None, "payments", time.time_ns())
    assert pager.send(resolved).ok
    wait_for(lambda: not alerts_of(alertmanager, function), 10)  # ended: no longer active


def test_an_open_alert_ends_a_lease_ahead_and_each_refresh_renews_it(
        alertmanager: str) -> None:
    """What keeps a page true while its incident is open: each re-assertion moves
    Alertmanager's ``endsAt`` on, so the alert neither times out while the function is
    held nor lingers once no worker asserts it."""
    function = f"renewed-{time.time_ns()}"
    now = [time.time_ns()]
    tracker = IncidentTracker(PageRules(runbook_url="https://wiki.example/governor"))
    pager = AlertmanagerPager(alertmanager, lease_seconds=180, clock=lambda: now[0],
                              incidents_url="https://governor.example/incidents")
    throttle = Verdict(function=function, action=Action.THROTTLE, rate_rps=3, sequence=1,
                       expires_at_unix_nano=now[0] + 300 * S)
    [opened] = tracker.on_verdict(throttle, None, "payments", now[0])
    assert pager.send(opened).ok
    [first] = wait_for(lambda: alerts_of(alertmanager, function), 10)
    assert first["generatorURL"] == f"https://governor.example/incidents/{opened.incident_id}"
    now[0] += 60 * S
    refreshed = pager.refresh()
    assert refreshed is not None and refreshed.ok
    [renewed] = wait_for(lambda: [a for a in alerts_of(alertmanager, function)
                                  if a["endsAt"] > first["endsAt"]], 10)
    assert renewed["status"]["state"] == "active"
    assert renewed["labels"]["incident_id"] == opened.incident_id
