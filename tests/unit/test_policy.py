"""The policy engine with the real regorus engine and the shipped policies."""

from __future__ import annotations

import copy
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from schemas import Decision, Severity
from streams.decisions.policy import (
    Finding,
    PolicyBundle,
    PolicyEngine,
    PolicyError,
    run_rego_tests,
    strongest,
)
from streams.errors import StreamsError

POLICIES = Path(__file__).resolve().parents[2] / "policies"

QUIET: dict[str, Any] = {
    "function": {"name": "checkout", "team": "payments", "version": "42", "memory_mb": 512,
                 "timeout_s": 30.0, "concurrency": 50, "labels": {"env": "prod"},
                 "model_serving": False, "attributes": {"faas.trigger": "http"}},
    "window": {"start_unix_nano": 1_764_150_000_000_000_000, "seconds": 10.0,
               "invocations": 100, "attempts_per_s": 10.0, "cost_usd": 0.02,
               "cost_per_s": 0.002, "cost_per_invocation": 0.0002,
               "cost_per_invocation_p95": 0.0003, "duration_ms_p95": 180.0,
               "error_rate": 0.01, "cold_start_rate": 0.02, "egress_bytes_per_s": 2048.0},
    "spend": {"function_hour_usd": 4.0, "function_day_usd": 60.0, "team_hour_usd": 20.0,
              "team_day_usd": 300.0, "predicted_month_usd": 1500.0},
    "anomaly": None,
    "egress": {"hosts": ["api.stripe.com", "sqs.eu-west-1.amazonaws.com", "10.0.3.7"]},
    "data": {"datasets": ["orders"]},
    "ai": {"model_card": None, "fairness_report": None, "explanation": None,
           "data_provenance": None, "fairness_disparity": None},
    "baseline": {"attempts_per_s": 10.0, "cost_per_s": 0.002, "cost_per_invocation": 0.0002},
    "thresholds": {"budget_usd_per_hour": 10.0, "budget_usd_per_day": 200.0,
                   "hard_cap_usd_per_day": 500.0, "team_budget_usd_per_hour": 50.0,
                   "team_budget_usd_per_day": 1000.0, "monthly_cap_usd": 5000.0,
                   "anomaly_score_cap": 0.5, "max_memory_mb": 2048, "max_timeout_s": 60.0,
                   "max_concurrency": 100,
                   "egress_allow": "api.stripe.com, *.amazonaws.com, 10.0.0.0/16",
                   "min_rps": 0.2},
}

ANOMALY: dict[str, Any] = {
    "id": "an-7", "detector": "hst", "score": 3.2, "calibrated": 0.93, "severity": "critical",
    "explanation": "cost/s 3.0x baseline", "driver": "invocations",
    "cost_impact_usd_per_hour": 1.2, "proposed": {"action": "throttle", "rate_rps": 3.5},
}


def window(**sections: dict[str, Any] | None) -> dict[str, Any]:
    """QUIET with some sections' fields changed (None replaces a section)."""
    doc = copy.deepcopy(QUIET)
    for name, changes in sections.items():
        if changes is None or not isinstance(doc.get(name), dict):
            doc[name] = changes
        else:
            doc[name].update(changes)
    return doc


@pytest.fixture(scope="module")
def engine() -> PolicyEngine:
    return PolicyEngine(POLICIES)


@pytest.fixture
def bundle_dir(tmp_path: Path) -> Path:
    """A copy of the shipped policies that a test may change."""
    return Path(shutil.copytree(POLICIES, tmp_path / "policies"))


def only(findings: list[Finding], policy: str) -> Finding:
    matching = [f for f in findings if f.policy == policy]
    assert len(matching) == 1, findings
    return matching[0]


def touch(path: Path, text: str) -> None:
    """Write and move the mtime on, so a change is seen even within one clock tick."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


# --- the shipped policies through the engine ---------------------------------------


def test_a_quiet_window_is_allowed(engine: PolicyEngine) -> None:
    assert engine.evaluate(QUIET) == []
    assert strongest(engine.evaluate(QUIET)) is None


def test_budget_warning_then_throttle_then_isolation(engine: PolicyEngine) -> None:
    warn = only(engine.evaluate(window(spend={"function_hour_usd": 8.5})),
                "budget.function_hour")
    assert (warn.decision, warn.severity, warn.rate_rps) == (Decision.WARN, Severity.INFO, None)
    assert warn.reason == ("function checkout spent $8.50 in the last hour, 85% of its "
                           "$10.00 hourly budget")

    throttle = only(engine.evaluate(window(spend={"function_hour_usd": 12.5})),
                    "budget.function_hour")
    assert throttle.decision is Decision.THROTTLE
    assert throttle.rate_rps == pytest.approx(8.0)  # 10 rps x 10 / 12.5
    assert "$12.50" in throttle.reason and "125%" in throttle.reason
    assert throttle.reason.endswith("throttled to 8.00 rps")
    assert throttle.inputs["budget_usd"] == 10.0

    isolate = only(engine.evaluate(window(spend={"function_hour_usd": 12.5},
                                          window={"attempts_per_s": 0.2})),
                   "budget.function_hour")
    assert (isolate.decision, isolate.severity) == (Decision.ISOLATE, Severity.CRITICAL)
    assert "0.16 rps" in isolate.reason and "below the 0.20 rps minimum" in isolate.reason


def test_team_budget_and_hard_cap(engine: PolicyEngine) -> None:
    findings = engine.evaluate(window(spend={"team_hour_usd": 80.0, "function_day_usd": 750.0}))
    team = only(findings, "budget.team_hour")
    assert team.rate_rps == pytest.approx(6.25) and "team payments" in team.reason
    cap = only(findings, "budget.hard_cap")
    assert cap.decision is Decision.ISOLATE
    assert "$750.00" in cap.reason and "hard cap of $500.00" in cap.reason
    assert strongest(findings) == cap


def test_cost_guard_applies_the_detectors_proposal(engine: PolicyEngine) -> None:
    found = only(engine.evaluate(window(anomaly=ANOMALY)), "cost_guard.anomaly")
    assert (found.decision, found.rate_rps, found.severity) == (
        Decision.THROTTLE, 3.5, Severity.CRITICAL)
    for figure in ("an-7", "hst", "0.93", "cost/s 3.0x baseline", "driver: invocations",
                   "$1.20"):
        assert figure in found.reason
    assert found.inputs["anomaly_id"] == "an-7"

    isolating = {**ANOMALY, "proposed": {"action": "isolate", "rate_rps": None}}
    found = only(engine.evaluate(window(anomaly=isolating)), "cost_guard.anomaly")
    assert found.decision is Decision.ISOLATE

    low = {**ANOMALY, "calibrated": 0.3}
    found = only(engine.evaluate(window(anomaly=low)), "cost_guard.anomaly")
    assert (found.decision, found.severity) == (Decision.WARN, Severity.INFO)


def test_cost_guard_forecast(engine: PolicyEngine) -> None:
    steady = only(engine.evaluate(window(spend={"predicted_month_usd": 7500.0})),
                  "cost_guard.monthly_forecast")
    assert steady.decision is Decision.WARN
    assert "$7500.00" in steady.reason and "$5000.00 monthly cap (150%)" in steady.reason

    spiking = engine.evaluate(window(spend={"predicted_month_usd": 7500.0},
                                     anomaly={**ANOMALY, "calibrated": 0.1}))
    found = only(spiking, "cost_guard.monthly_forecast")
    assert found.decision is Decision.THROTTLE
    assert found.rate_rps == pytest.approx(10 * 5000 / 7500)


def test_egress_outside_the_allow_list_isolates(engine: PolicyEngine) -> None:
    hosts = ["api.stripe.com:443", "s3.amazonaws.com", "10.0.9.9", "exfil.example.net",
             "203.0.113.9"]
    found = only(engine.evaluate(window(egress={"hosts": hosts})), "egress.allow_list")
    assert (found.decision, found.severity) == (Decision.ISOLATE, Severity.CRITICAL)
    assert "2 host(s)" in found.reason
    assert "203.0.113.9, exfil.example.net" in found.reason
    assert "allowed: *.amazonaws.com, 10.0.0.0/16, api.stripe.com" in found.reason
    assert found.inputs["egress_allow"] == "*.amazonaws.com, 10.0.0.0/16, api.stripe.com"


def test_egress_without_an_allow_list_is_unrestricted(engine: PolicyEngine) -> None:
    doc = window(egress={"hosts": ["anything.example"]})
    del doc["thresholds"]["egress_allow"]
    assert engine.evaluate(doc) == []


def test_data_access_from_policy_data_and_threshold(engine: PolicyEngine) -> None:
    found = only(engine.evaluate(window(data={"datasets": ["orders", "hr.salaries"]})),
                 "data_access.datasets")
    assert found.decision is Decision.ISOLATE
    assert "hr.salaries (allowed: teams [people], functions [])" in found.reason
    allowed = window(data={"datasets": ["hr.salaries"]},
                     thresholds={**QUIET["thresholds"], "datasets_allowed": "orders, hr.*"})
    assert engine.evaluate(allowed) == []


def test_responsible_ai(engine: PolicyEngine) -> None:
    serving = {**QUIET["function"], "model_serving": True}
    docs = engine.evaluate(window(function=serving, ai={"model_card": "card.md",
                                                        "data_provenance": "lineage.json"}))
    found = only(docs, "responsible_ai.documentation")
    assert found.decision is Decision.WARN
    assert "missing fairness_report, explanation;" in found.reason

    unfair = engine.evaluate(window(function=serving, ai={
        "model_card": "c", "fairness_report": "f.html", "explanation": "e",
        "data_provenance": "p", "fairness_disparity": 0.35}))
    found = only(unfair, "responsible_ai.fairness")
    assert found.decision is Decision.ISOLATE
    assert "0.35, over the 0.20 maximum" in found.reason


def test_resource_guardrails(engine: PolicyEngine) -> None:
    memory = only(engine.evaluate(window(function={"memory_mb": 3008})), "resources.memory")
    assert memory.decision is Decision.WARN
    assert "3008 MB, over the 2048 MB maximum" in memory.reason
    assert "cannot change it at runtime" in memory.reason

    busy = only(engine.evaluate(window(window={"attempts_per_s": 400.0,
                                               "duration_ms_p95": 500.0})),
                "resources.in_flight")
    assert busy.decision is Decision.THROTTLE
    assert busy.rate_rps == pytest.approx(200.0)  # 100 in flight / 0.5 s


def test_partial_input_is_harmless(engine: PolicyEngine) -> None:
    assert engine.evaluate({}) == []
    assert engine.evaluate({"function": {"name": "f"}, "thresholds": {}}) == []


def test_strongest() -> None:
    warn = Finding(policy="w", decision=Decision.WARN, reason="w", severity=Severity.INFO)
    slow = Finding(policy="s", decision=Decision.THROTTLE, rate_rps=2.0, reason="s")
    fast = Finding(policy="f", decision=Decision.THROTTLE, rate_rps=9.0, reason="f")
    iso = Finding(policy="i", decision=Decision.ISOLATE, reason="i",
                  severity=Severity.CRITICAL)
    assert strongest([warn, fast, slow]) == slow
    assert strongest([fast, iso, slow, warn]) == iso
    assert strongest([warn]) == warn
    assert strongest([]) is None


def test_main_rego_gathers_every_policy_package() -> None:
    bundle = PolicyBundle(POLICIES)
    main = (POLICIES / "main.rego").read_text()
    for package in bundle.packages:
        if package.startswith("data.governor.policies."):
            assert f"{package}.decisions" in main, f"main.rego does not gather {package}"


# --- bundles ------------------------------------------------------------------------


def test_bundle_loads_policies_and_data_not_tests() -> None:
    bundle = PolicyBundle(POLICIES)
    names = {p.name for p in bundle.files}
    assert {"main.rego", "budget.rego", "data.json"} <= names
    assert not any(n.endswith("_test.rego") for n in names)
    assert re.fullmatch(r"[0-9a-f]{16}", bundle.digest)
    assert PolicyBundle(POLICIES).digest == bundle.digest


def test_digest_follows_policies_not_tests(bundle_dir: Path) -> None:
    before = PolicyBundle(bundle_dir).digest
    (bundle_dir / "budget_test.rego").write_text("package governor.x_test\n")
    assert PolicyBundle(bundle_dir).digest == before
    (bundle_dir / "budget.rego").write_text(
        (bundle_dir / "budget.rego").read_text().replace("0.8", "0.9"))
    assert PolicyBundle(bundle_dir).digest != before


def test_malformed_policy_names_file_and_line(bundle_dir: Path) -> None:
    path = bundle_dir / "egress.rego"
    lines = path.read_text().splitlines()
    lines.insert(20, "broken if {")
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(PolicyError) as caught:
        PolicyBundle(bundle_dir)
    message = str(caught.value)
    assert re.match(rf"{re.escape(str(path))}:\d+: ", message), message
    assert "Stack backtrace" not in message
    assert len(message.splitlines()) <= 2
    assert "last good bundle" in message
    assert isinstance(caught.value, StreamsError)


def test_unsafe_variable_is_refused_at_load(bundle_dir: Path) -> None:
    # regorus only notices this when the rule is evaluated: the sample window does it.
    path = bundle_dir / "resources.rego"
    path.write_text(path.read_text() + "\nextra := unknown_var\n")
    with pytest.raises(PolicyError, match=rf"{re.escape(str(path))}:\d+: var unknown_var"):
        PolicyBundle(bundle_dir)


def test_malformed_data_names_file_and_line(bundle_dir: Path) -> None:
    (bundle_dir / "data.json").write_text('{\n  "data_access": {\n    oops\n}\n')
    with pytest.raises(PolicyError, match=r"data\.json:3: invalid JSON"):
        PolicyBundle(bundle_dir)


def test_bundle_without_entry_rule_is_refused(bundle_dir: Path) -> None:
    (bundle_dir / "main.rego").unlink()
    with pytest.raises(PolicyError, match=r"main\.rego"):
        PolicyBundle(bundle_dir)


def test_missing_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="not a directory"):
        PolicyEngine(tmp_path / "nowhere")


# --- live reload --------------------------------------------------------------------


def test_reload_picks_up_a_change(bundle_dir: Path) -> None:
    engine = PolicyEngine(bundle_dir)
    assert engine.reload_if_changed() is False
    before = engine.digest
    doc = window(spend={"function_hour_usd": 7.0})  # 70 %: no warning yet
    assert engine.evaluate(doc) == []

    budget = bundle_dir / "budget.rego"
    touch(budget, budget.read_text().replace("warn_fraction := 0.8", "warn_fraction := 0.5"))
    assert engine.reload_if_changed() is True
    assert engine.digest != before
    assert only(engine.evaluate(doc), "budget.function_hour").decision is Decision.WARN
    assert engine.reload_if_changed() is False


def test_bad_reload_keeps_the_last_good_bundle(bundle_dir: Path,
                                               caplog: pytest.LogCaptureFixture) -> None:
    engine = PolicyEngine(bundle_dir)
    good = engine.digest
    budget = bundle_dir / "budget.rego"
    text = budget.read_text()
    with caplog.at_level(logging.ERROR, logger="governor.policy"):
        touch(budget, text.replace("decisions contains decision if {", "decisions contains {", 1))
        assert engine.reload_if_changed() is False
    assert engine.digest == good
    assert engine.last_error is not None and str(budget) in engine.last_error
    assert "refused" in caplog.text
    throttle = engine.evaluate(window(spend={"function_hour_usd": 12.5}))
    assert only(throttle, "budget.function_hour").rate_rps == pytest.approx(8.0)
    assert engine.reload_if_changed() is False  # reported once, not on every call

    touch(budget, text.replace("warn_fraction := 0.8", "warn_fraction := 0.7"))
    assert engine.reload_if_changed() is True
    assert engine.last_error is None
    assert engine.digest != good


def test_reload_sees_added_and_removed_files(bundle_dir: Path) -> None:
    engine = PolicyEngine(bundle_dir)
    extra = bundle_dir / "extra.json"
    extra.write_text('{"extra": {"x": 1}}')
    assert engine.reload_if_changed() is True
    extra.unlink()
    assert engine.reload_if_changed() is True


# --- policies that misbehave --------------------------------------------------------



def test_bad_decisions_are_skipped_with_a_warning(bundle_dir: Path,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    (bundle_dir / "rogue.rego").write_text("""package governor.policies.rogue

import rego.v1

decisions contains {"policy": "rogue.unknown", "decision": "obliterate", "rate_rps": null,
	"reason": "x", "severity": "critical"} if input.rogue
decisions contains {"policy": "rogue.no_reason", "decision": "warn",
	"severity": "info"} if input.rogue
decisions contains {"policy": "rogue.no_rate", "decision": "throttle", "reason": "r",
	"severity": "warning"} if input.rogue
decisions contains {"policy": "rogue.negative", "decision": "throttle", "rate_rps": -1,
	"reason": "r", "severity": "warning"} if input.rogue
decisions contains {"policy": "rogue.allow", "decision": "allow", "reason": "fine",
	"severity": "info"} if input.rogue
decisions contains "not an object" if input.rogue
decisions contains {"policy": "rogue.ok", "decision": "warn", "rate_rps": null,
	"reason": "kept", "severity": "info", "inputs": {"n": 1, "nested": {"x": 1}}} if input.rogue
""")
    main = bundle_dir / "main.rego"
    main.write_text(main.read_text().replace(
        "decisions := (", "decisions := data.governor.policies.rogue.decisions | (", 1))
    engine = PolicyEngine(bundle_dir)
    with caplog.at_level(logging.WARNING, logger="governor.policy"):
        findings = engine.evaluate({**QUIET, "rogue": True})
    assert [(f.policy, dict(f.inputs)) for f in findings] == [("rogue.ok", {"n": 1})]
    for policy in ("rogue.unknown", "rogue.no_reason", "rogue.no_rate", "rogue.negative"):
        assert policy in caplog.text
    assert "'obliterate'" in caplog.text
    assert "not an object" in caplog.text


def test_a_failing_policy_does_not_silence_the_others(bundle_dir: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    (bundle_dir / "fragile.rego").write_text("""package governor.policies.fragile

import rego.v1

decisions contains {"policy": "fragile", "decision": "warn", "rate_rps": null,
	"reason": "inside", "severity": "info"} if {
	net.cidr_contains("10.0.0.0/8", input.function.attributes.peer)
}
""")
    main = bundle_dir / "main.rego"
    main.write_text(main.read_text().replace(
        "decisions := (", "decisions := data.governor.policies.fragile.decisions | (", 1))
    engine = PolicyEngine(bundle_dir)
    doc = window(spend={"function_hour_usd": 12.5},
                 function={"attributes": {"peer": "not-an-address"}})
    with caplog.at_level(logging.WARNING, logger="governor.policy"):
        findings = engine.evaluate(doc)
    assert [f.policy for f in findings] == ["budget.function_hour"]
    assert "governor.policies.fragile failed" in caplog.text
    ok = window(function={"attributes": {"peer": "10.1.2.3"}})
    assert [f.policy for f in engine.evaluate(ok)] == ["fragile"]


def test_input_that_is_not_json_is_refused(engine: PolicyEngine) -> None:
    with pytest.raises(PolicyError, match="not a JSON document"):
        engine.evaluate({"function": {"name": object()}})


# --- the Rego test runner -----------------------------------------------------------


def test_rego_runner_reports_failures_and_parse_errors(bundle_dir: Path) -> None:
    (bundle_dir / "extra_test.rego").write_text("""package governor.extra_test

import rego.v1

test_passes if true
test_fails if false
test_undefined if input.nothing
""")
    results = {r.name: r for r in run_rego_tests(bundle_dir)}
    assert results["governor.extra_test.test_passes"].passed
    assert not results["governor.extra_test.test_fails"].passed
    assert "undefined" in results["governor.extra_test.test_undefined"].message

    (bundle_dir / "extra_test.rego").write_text("package governor.extra_test\ntest_x if {\n")
    [broken] = run_rego_tests(bundle_dir)
    assert not broken.passed and "extra_test.rego:" in broken.message
