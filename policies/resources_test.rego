package governor.policies.resources_test

import data.governor.fixtures
import data.governor.policies.resources
import rego.v1

decisions_for(changes) := ds if {
	ds := resources.decisions with input as fixtures.with_changes(changes)
}

one(ds) := d if {
	count(ds) == 1
	some d in ds
}

test_quiet_function_has_no_resource_decision if {
	count(resources.decisions) == 0 with input as fixtures.quiet
}

test_memory_over_max_warns_with_advice if {
	d := one(decisions_for({"function": {"memory_mb": 3008}}))
	d.policy == "resources.memory"
	d.decision == "warn"
	d.severity == "warning"
	contains(d.reason, "memory of 3008 MB, over the 2048 MB maximum")
	contains(d.reason, "cannot change it at runtime")
}

test_timeout_over_max_warns if {
	d := one(decisions_for({"function": {"timeout_s": 900}}))
	d.policy == "resources.timeout"
	contains(d.reason, "900 s")
}

test_null_timeout_and_concurrency_are_ignored if {
	count(decisions_for({"function": {"timeout_s": null, "concurrency": null}})) == 0
}

test_configured_concurrency_over_max_warns if {
	d := one(decisions_for({"function": {"concurrency": 500}}))
	d.policy == "resources.concurrency"
	d.decision == "warn"
}

test_calls_in_flight_over_max_throttle if {
	# 200 rps x 1 s p95 = 200 in flight > 100: 100 / 1 s = 100 rps
	d := one(decisions_for({"window": {"attempts_per_s": 200, "duration_ms_p95": 1000}}))
	d.policy == "resources.in_flight"
	d.decision == "throttle"
	d.rate_rps == 100
	contains(d.reason, "200.00 calls in flight")
	contains(d.reason, "throttled to 100.00 rps")
}

test_in_flight_throttle_never_goes_below_min_rps if {
	d := one(decisions_for({
		"window": {"attempts_per_s": 5, "duration_ms_p95": 900000},
		"function": {"timeout_s": 30},
	}))
	d.rate_rps == 0.2
	d.decision == "throttle"
}

test_no_limits_no_decisions if {
	ds := resources.decisions with input as json.remove(
		fixtures.with_changes({"function": {"memory_mb": 10240}}),
		["thresholds/max_memory_mb", "thresholds/max_timeout_s", "thresholds/max_concurrency"],
	)
	count(ds) == 0
}
