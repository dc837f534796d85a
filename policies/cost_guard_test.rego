package governor.policies.cost_guard_test

import data.governor.fixtures
import data.governor.policies.cost_guard
import rego.v1

anomaly := {
	"id": "an-7", "detector": "hst", "score": 3.2, "calibrated": 0.93,
	"severity": "critical", "explanation": "cost/s 3.0x baseline", "driver": "invocations",
	"cost_impact_usd_per_hour": 1.2, "proposed": {"action": "throttle", "rate_rps": 3.5},
}

decisions_for(changes) := ds if {
	ds := cost_guard.decisions with input as fixtures.with_changes(changes)
}

only(ds, policy) := d if {
	matching := [x | some x in ds; x.policy == policy]
	count(matching) == 1
	d := matching[0]
}

test_quiet_function_has_no_cost_decision if {
	count(cost_guard.decisions) == 0 with input as fixtures.quiet
}

test_applies_the_proposed_throttle if {
	d := only(decisions_for({"anomaly": anomaly}), "cost_guard.anomaly")
	d.decision == "throttle"
	d.rate_rps == 3.5
	d.severity == "critical"
	contains(d.reason, "an-7")
	contains(d.reason, "0.93")
	contains(d.reason, "cost/s 3.0x baseline")
	contains(d.reason, "driver: invocations")
	contains(d.reason, "$1.20")
	contains(d.reason, "throttled to 3.50 rps")
}

test_applies_the_proposed_isolation if {
	isolating := json.patch(anomaly, [{"op": "replace", "path": "/proposed", "value": {"action": "isolate", "rate_rps": null}}])
	d := only(decisions_for({"anomaly": isolating}), "cost_guard.anomaly")
	d.decision == "isolate"
	d.severity == "critical"
	d.rate_rps == null
}

test_without_a_proposed_rate_brings_cost_back_to_baseline if {
	# 10 rps at $0.006/s against a $0.002/s baseline: 10 x 0.002/0.006 = 3.33 rps
	no_rate := json.patch(anomaly, [{"op": "replace", "path": "/proposed/rate_rps", "value": null}])
	d := only(decisions_for({"anomaly": no_rate, "window": {"cost_per_s": 0.006}}), "cost_guard.anomaly")
	d.decision == "throttle"
	d.rate_rps > 3.33
	d.rate_rps < 3.34
}

test_a_proposed_rate_below_min_rps_isolates if {
	slow := json.patch(anomaly, [{"op": "replace", "path": "/proposed/rate_rps", "value": 0.1}])
	d := only(decisions_for({"anomaly": slow}), "cost_guard.anomaly")
	d.decision == "isolate"
	d.severity == "critical"
}

test_a_low_score_is_recorded_not_enforced if {
	low := object.union(anomaly, {"calibrated": 0.31})
	d := only(decisions_for({"anomaly": low}), "cost_guard.anomaly")
	d.decision == "warn"
	d.severity == "info"
	contains(d.reason, "cap 0.50")
}

test_the_score_cap_is_a_threshold if {
	d := only(decisions_for({"anomaly": anomaly, "thresholds": {"anomaly_score_cap": 0.95}}), "cost_guard.anomaly")
	d.decision == "warn"
}

test_forecast_over_cap_without_anomaly_warns if {
	d := only(decisions_for({"spend": {"predicted_month_usd": 6000}}), "cost_guard.monthly_forecast")
	d.decision == "warn"
	d.severity == "warning"
	contains(d.reason, "$6000.00")
	contains(d.reason, "$5000.00 monthly cap (120%)")
}

test_forecast_over_cap_with_anomaly_throttles if {
	low := object.union(anomaly, {"calibrated": 0.2})
	d := only(decisions_for({"spend": {"predicted_month_usd": 8000}, "anomaly": low}), "cost_guard.monthly_forecast")
	d.decision == "throttle"
	d.rate_rps == 6.25
}

test_no_monthly_cap_no_forecast_decision if {
	changed := fixtures.with_changes({"spend": {"predicted_month_usd": 1000000}})
	ds := cost_guard.decisions with input as json.remove(changed, ["thresholds/monthly_cap_usd"])
	count(ds) == 0
}
