"""The threshold registry: keys, parsing, validation messages and scope resolution."""

from __future__ import annotations

import re

import pytest

from schemas import ControlKind, ControlUpdate
from streams.decisions.thresholds import (
    DEFAULT_SOURCE,
    REGISTRY,
    ThresholdError,
    Thresholds,
    parse_assignments,
    spec_for,
    split_list,
    validate_scope,
    validate_values,
)
from streams.errors import StreamsError
from streams.settings import Settings


def update(scope: str, **values: float | int | str) -> ControlUpdate:
    return ControlUpdate(function=scope, kind=ControlKind.THRESHOLDS, values=values)


def test_registry_has_the_documented_keys() -> None:
    assert set(REGISTRY) == {
        "zscore_threshold", "min_ratio", "enforce_ratio", "fast_path_factor", "hold_seconds",
        "release_after_seconds", "cooldown_seconds", "verdict_ttl_seconds", "min_rps",
        "budget_usd_per_hour", "budget_usd_per_day", "hard_cap_usd_per_day",
        "team_budget_usd_per_hour", "team_budget_usd_per_day", "monthly_cap_usd",
        "anomaly_score_cap", "max_memory_mb", "max_timeout_s", "max_concurrency",
        "egress_allow", "datasets_allowed", "fairness_disparity_max", "page_rate_per_hour",
        "runbook_url"}
    for spec in REGISTRY.values():
        assert spec.type in (float, int, str) and spec.doc and spec.group


def test_every_default_is_valid_for_its_key() -> None:
    settings = Settings()
    for key, spec in REGISTRY.items():
        default = spec.default_for(settings)
        if default is not None:
            assert spec.validate(default) == default, key


def test_defaults_come_from_settings() -> None:
    settings = Settings(zscore_threshold=9.0, hold_seconds=5.0, min_rps=1.5,
                        verdict_ttl_seconds=60.0, runbook_url="https://wiki/runbook")
    effective = Thresholds(settings).effective("f")
    assert effective["zscore_threshold"] == 9.0
    assert effective["hold_seconds"] == 5.0
    assert effective["min_rps"] == 1.5
    assert effective["verdict_ttl_seconds"] == 60.0
    assert effective["runbook_url"] == "https://wiki/runbook"
    assert effective["min_ratio"] == 2.0
    assert effective["fast_path_factor"] == 20.0
    assert effective["anomaly_score_cap"] == 0.5
    assert effective["fairness_disparity_max"] == 0.2
    assert effective["page_rate_per_hour"] == 6
    assert effective["budget_usd_per_hour"] is None  # unset: no limit
    assert effective["egress_allow"] is None


def test_parse_assignments_converts_to_the_key_type() -> None:
    parsed = parse_assignments(["zscore_threshold=8", "page_rate_per_hour=3",
                                "runbook_url=https://wiki/x", " budget_usd_per_day = 12.5 "])
    assert parsed == {"zscore_threshold": 8.0, "page_rate_per_hour": 3,
                      "runbook_url": "https://wiki/x", "budget_usd_per_day": 12.5}
    assert isinstance(parsed["zscore_threshold"], float)
    assert isinstance(parsed["page_rate_per_hour"], int)


def test_empty_value_means_unset() -> None:
    assert parse_assignments(["egress_allow=", "hold_seconds= "]) == {
        "egress_allow": None, "hold_seconds": None}


def test_unknown_key_lists_the_valid_keys() -> None:
    with pytest.raises(ThresholdError) as caught:
        parse_assignments(["zscore=3"])
    message = str(caught.value)
    assert "unknown threshold key 'zscore'" in message
    assert all(key in message for key in REGISTRY)
    assert isinstance(caught.value, StreamsError)


@pytest.mark.parametrize(("assignment", "expected"), [
    ("zscore_threshold=0", "zscore_threshold='0': expected a number > 0"),
    ("zscore_threshold=abc", "expected a number > 0"),
    ("zscore_threshold=inf", "expected a number > 0"),
    ("min_ratio=0.5", "min_ratio='0.5': expected a number >= 1"),
    ("anomaly_score_cap=1.5", "expected a number >= 0 and <= 1"),
    ("fairness_disparity_max=-0.1", "expected a number >= 0 and <= 1"),
    ("page_rate_per_hour=0", "expected an integer >= 1"),
    ("page_rate_per_hour=2.5", "expected an integer >= 1"),
    ("max_memory_mb=lots", "expected an integer >= 1"),
    ("budget_usd_per_hour=0", "expected a number > 0"),
    ("egress_allow=api.example.com,,x.com", "an item is empty"),
    ("egress_allow=not a host", "'not a host' is not one"),
    ("datasets_allowed=ok,bad name", "'bad name' is not one"),
    ("runbook_url=two words", "expected text"),
])
def test_bad_values_say_what_is_expected(assignment: str, expected: str) -> None:
    with pytest.raises(ThresholdError, match=re.escape(expected)):
        parse_assignments([assignment])


@pytest.mark.parametrize("assignment", ["zscore_threshold", "=3", ""])
def test_assignment_needs_key_and_equals(assignment: str) -> None:
    with pytest.raises(ThresholdError, match="expected key=value"):
        parse_assignments([assignment])


def test_key_given_twice_is_refused() -> None:
    with pytest.raises(ThresholdError, match="given twice"):
        parse_assignments(["min_ratio=2", "min_ratio=3"])


def test_host_lists_are_normalised() -> None:
    parsed = parse_assignments(["egress_allow=API.Stripe.com, *.amazonaws.com,10.1.2.3,"
                                "10.0.0.0/8,192.168.1.7/24,::1,api.stripe.com"])
    assert parsed["egress_allow"] == ("api.stripe.com,*.amazonaws.com,10.1.2.3,10.0.0.0/8,"
                                      "192.168.1.0/24,::1")
    assert split_list(parsed["egress_allow"]) == [
        "api.stripe.com", "*.amazonaws.com", "10.1.2.3", "10.0.0.0/8", "192.168.1.0/24", "::1"]
    assert split_list(None) is None
    assert parse_assignments(["datasets_allowed=s3://bucket/a, crm.customers"]) == {
        "datasets_allowed": "s3://bucket/a,crm.customers"}


def test_json_values_are_coerced_but_bools_refused() -> None:
    assert spec_for("zscore_threshold").validate(6) == 6.0
    assert spec_for("page_rate_per_hour").validate(4.0) == 4
    with pytest.raises(ThresholdError):
        spec_for("page_rate_per_hour").validate(True)
    with pytest.raises(ThresholdError):
        spec_for("runbook_url").validate(3)
    assert validate_values({"min_ratio": 3}) == {"min_ratio": 3.0}


@pytest.mark.parametrize("scope", ["checkout", "team:payments", "*", "a" * 256])
def test_valid_scopes(scope: str) -> None:
    assert validate_scope(scope) == scope


@pytest.mark.parametrize("scope", ["", "team:", " checkout", "a" * 257])
def test_invalid_scopes(scope: str) -> None:
    with pytest.raises(ThresholdError, match="scope"):
        validate_scope(scope)


def test_resolution_function_over_team_over_all_over_default() -> None:
    t = Thresholds(Settings())
    t.apply(update("*", zscore_threshold=8.0, min_ratio=3.0, budget_usd_per_hour=10.0))
    t.apply(update("team:payments", zscore_threshold=7.0, min_ratio=4.0))
    t.apply(update("checkout", zscore_threshold=5.0))
    resolved = t.resolve("checkout", "payments")
    assert resolved["zscore_threshold"] == (5.0, "checkout")
    assert resolved["min_ratio"] == (4.0, "team:payments")
    assert resolved["budget_usd_per_hour"] == (10.0, "*")
    assert resolved["hold_seconds"] == (30.0, DEFAULT_SOURCE)
    assert t.effective("refund", "payments")["zscore_threshold"] == 7.0
    assert t.effective("checkout", "")["min_ratio"] == 3.0  # no team: skip team scopes
    assert t.effective("search", "web")["zscore_threshold"] == 8.0
    assert t.effective("search", "web")["fast_path_factor"] == 20.0


def test_apply_replaces_the_whole_scope_and_empty_clears_it() -> None:
    t = Thresholds(Settings())
    t.apply(update("checkout", zscore_threshold=5.0, min_ratio=3.0))
    t.apply(update("checkout", min_ratio=4.0))
    assert t.values("checkout") == {"min_ratio": 4.0}
    assert t.effective("checkout")["zscore_threshold"] == 6.0  # back to the default
    last = t.last_update("checkout")
    assert last is not None and last.values == {"min_ratio": 4.0}
    t.apply(update("checkout"))
    assert t.scopes() == {}
    assert t.last_update("checkout") is None


def test_scopes_lists_all_then_teams_then_functions() -> None:
    t = Thresholds()
    for scope in ("zeta", "team:b", "*", "alpha", "team:a"):
        t.apply(update(scope, min_ratio=3.0))
    assert list(t.scopes()) == ["*", "team:a", "team:b", "alpha", "zeta"]
    scopes = t.scopes()
    scopes["*"]["min_ratio"] = 99.0  # a copy: callers cannot change what is in force
    assert t.values("*") == {"min_ratio": 3.0}


def test_a_control_record_with_any_bad_value_is_rejected_whole() -> None:
    """A record whose only value is invalid once cleared the scope and lifted a budget
    throttle within seconds; now the scope keeps its last valid values."""
    t = Thresholds()
    assert t.apply(update("checkout", budget_usd_per_hour=2.0, zscore_threshold=5.0)) == []
    for bad in ({"budget_usd_per_hour": "abc"}, {"budget_usd_per_hour": -1},
                {"zscore_threshold": 4.0, "from_future": 1}):
        problems = t.apply(update("checkout", **bad))
        assert problems and all("rejected whole, nothing changed" in p for p in problems)
        assert t.values("checkout") == {"budget_usd_per_hour": 2.0, "zscore_threshold": 5.0}
    problems = t.apply(update("checkout", min_ratio=0.5, zscore_threshold=5.0, from_future=1))
    assert len(problems) == 2
    assert any("min_ratio" in p for p in problems)
    assert any("from_future" in p for p in problems)
    assert t.apply(update("", min_ratio=3.0)) != []
    assert t.scopes() == {"checkout": {"budget_usd_per_hour": 2.0, "zscore_threshold": 5.0}}


def test_apply_ignores_other_control_kinds() -> None:
    t = Thresholds()
    bundle = ControlUpdate(function="*", kind=ControlKind.POLICY_BUNDLE,
                           values={"digest": "abc"})
    assert t.apply(bundle) == []
    assert t.scopes() == {}


def test_cli_lists_every_key(capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli import main

    assert main(["thresholds", "keys"]) == 0
    out = capsys.readouterr().out
    assert all(key in out for key in REGISTRY)
    assert "a number >= 1" in out


def test_cli_refuses_bad_assignments_before_any_broker(
        capsys: pytest.CaptureFixture[str]) -> None:
    from streams.cli import main

    assert main(["thresholds", "set", "checkout", "min_ratio=0.5"]) == 2
    assert "min_ratio='0.5': expected a number >= 1" in capsys.readouterr().err


@pytest.mark.parametrize(("text", "seconds"), [
    ("30s", 30.0), ("10m", 600.0), ("2h", 7200.0), ("1d", 86400.0), ("90", 90.0),
    ("1.5m", 90.0), ("500ms", 0.5)])
def test_durations(text: str, seconds: float) -> None:
    from streams.control.commands import parse_duration

    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["", "0s", "10x", "-5m", "m"])
def test_bad_durations(text: str) -> None:
    from streams.control.commands import ControlError, parse_duration

    with pytest.raises(ControlError, match="30s, 10m, 2h"):
        parse_duration(text)
