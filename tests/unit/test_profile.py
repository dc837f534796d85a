"""Function profiles from spans, and rolling spend."""

from __future__ import annotations

import pytest

from schemas import Span
from streams.decisions.profiles import HOUR_NS, MAX_NAMES, MINUTE_NS, Profiles, Spend


def span(attributes: dict[str, object], resource: dict[str, object] | None = None) -> Span:
    return Span(function="scorer", trace_id="a" * 32, span_id="b" * 16, name="scorer",
                start_time_unix_nano=1, end_time_unix_nano=2, attributes=attributes,  # type: ignore[arg-type]
                resource=resource or {"governor.team": "ml", "faas.version": "7",  # type: ignore[arg-type]
                                      "faas.max_memory": 512 * 1024 * 1024})


def test_profile_collects_metadata_and_this_windows_destinations() -> None:
    profiles = Profiles()
    profiles.on_span(span({"governor.datasets": "customers, orders", "db.name": "billing",
                           "governor.egress.hosts": "api.example.com",
                           "governor.model_serving": True, "governor.ai.model_card": "mc-1",
                           "governor.ai.fairness_disparity": "0.31",
                           "governor.label.tier": "gold", "governor.timeout_s": 30,
                           "governor.concurrency": 50}))
    got = profiles.get("scorer").policy_input("scorer")
    assert got["function"] == {"name": "scorer", "team": "ml", "version": "7", "memory_mb": 512,
                               "timeout_s": 30.0, "concurrency": 50, "labels": {"tier": "gold"},
                               "model_serving": True, "attributes": {}}
    assert got["data"] == {"datasets": ["billing", "customers", "orders"]}
    assert got["egress"] == {"hosts": ["api.example.com"]}
    assert got["ai"] == {"model_card": "mc-1", "fairness_report": None, "explanation": None,
                         "data_provenance": None, "fairness_disparity": 0.31}
    profiles.end_window("scorer")
    after = profiles.get("scorer").policy_input("scorer")
    assert after["data"]["datasets"] == [] and after["egress"]["hosts"] == []
    assert after["function"]["team"] == "ml"  # metadata stays


def test_labels_are_the_deployments_as_declared_now_and_bounded() -> None:
    """A function that declares new labels every window once grew its profile (and
    every policy evaluation) without end: 450,000 labels in 150 s."""
    profiles = Profiles()
    for window in range(100):
        profiles.on_span(span({f"governor.label.w{window}k{i}": "x" for i in range(200)}
                              | {"governor.ai.w{window}": "x", "governor.ai.model_card": "mc"}))
        profiles.end_window("scorer")
    profile = profiles.get("scorer")
    assert len(profile.labels) == MAX_NAMES
    assert all(key.startswith("w99k") for key in profile.labels)  # the latest window's
    assert profile.ai == {"model_card": "mc"}  # only what the policies read
    profiles.on_span(span({"governor.label.tier": "gold"}))
    assert profiles.get("scorer").policy_input("scorer")["function"]["labels"] == {"tier": "gold"}


def test_spend_rolls_over_the_hour_and_day_and_forecasts_the_month() -> None:
    spend = Spend()
    t0 = 10 * 24 * HOUR_NS
    for minute in range(120):  # two hours at $0.01 a minute
        spend.add("a", "pay", t0 + minute * MINUTE_NS, 0.01, 30)
    spend.add("b", "pay", t0, 1.0, 1)
    now = t0 + 119 * MINUTE_NS
    got = spend.policy_input("a", "pay", now)
    assert got["function_hour_usd"] == pytest.approx(0.60)
    assert got["function_day_usd"] == pytest.approx(1.20)
    assert got["team_hour_usd"] == pytest.approx(0.60)
    assert got["team_day_usd"] == pytest.approx(2.20)
    assert got["predicted_month_usd"] == pytest.approx(0.60 * 730)
    assert got["function_hour_attempts_per_s"] == pytest.approx(0.5)  # 30 calls a minute
    young = Spend()
    young.add("c", "", t0, 0.05, 3)
    assert young.policy_input("c", "", t0 + 6 * MINUTE_NS)["predicted_month_usd"] == (
        pytest.approx(0.05 * 10 * 730))  # $0.05 in 6 minutes: $0.50 an hour
    assert spend.policy_input("unknown", "", now)["function_hour_usd"] == 0.0
