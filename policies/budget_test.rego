package governor.policies.budget_test

import data.governor.fixtures
import data.governor.policies.budget
import rego.v1

decisions_for(changes) := ds if {
	ds := budget.decisions with input as fixtures.with_changes(changes)
}

only(ds, policy) := d if {
	matching := [x | some x in ds; x.policy == policy]
	count(matching) == 1
	d := matching[0]
}

test_quiet_function_has_no_budget_decision if {
	count(budget.decisions) == 0 with input as fixtures.quiet
}

test_warns_at_80_percent_of_the_hourly_budget if {
	ds := decisions_for({"spend": {"function_hour_usd": 8}})
	d := only(ds, "budget.function_hour")
	d.decision == "warn"
	d.severity == "info"
	d.rate_rps == null
	contains(d.reason, "$8.00")
	contains(d.reason, "80%")
	contains(d.reason, "$10.00 hourly budget")
}

test_no_warning_below_80_percent if {
	ds := decisions_for({"spend": {"function_hour_usd": 7.99}})
	count([d | some d in ds; d.policy == "budget.function_hour"]) == 0
}

test_throttles_over_budget_by_budget_over_spend if {
	# 10 rps, $12.50 spent against $10: 10 x 10/12.5 = 8 rps
	ds := decisions_for({"spend": {"function_hour_usd": 12.5}})
	d := only(ds, "budget.function_hour")
	d.decision == "throttle"
	d.rate_rps == 8
	d.severity == "warning"
	contains(d.reason, "$12.50")
	contains(d.reason, "125%")
	contains(d.reason, "throttled to 8")
}

test_isolates_when_the_throttle_would_be_below_min_rps if {
	# 1 rps x 10/100 = 0.1 rps < 0.2
	ds := decisions_for({"spend": {"function_hour_usd": 100}, "window": {"attempts_per_s": 1}})
	d := only(ds, "budget.function_hour")
	d.decision == "isolate"
	d.severity == "critical"
	d.rate_rps == null
	contains(d.reason, "below the 0.20 rps minimum")
}

test_min_rps_threshold_is_honoured if {
	ds := decisions_for({
		"spend": {"function_hour_usd": 100},
		"window": {"attempts_per_s": 1},
		"thresholds": {"min_rps": 0.05},
	})
	d := only(ds, "budget.function_hour")
	d.decision == "throttle"
	d.rate_rps == 0.1
}

test_daily_budget if {
	ds := decisions_for({"spend": {"function_day_usd": 400}})
	d := only(ds, "budget.function_day")
	d.decision == "throttle"
	d.rate_rps == 5
	contains(d.reason, "in the last 24 hours")
}

test_team_budgets_throttle_the_function_by_the_team_ratio if {
	ds := decisions_for({"spend": {"team_hour_usd": 100}})
	d := only(ds, "budget.team_hour")
	d.decision == "throttle"
	d.rate_rps == 5
	contains(d.reason, "team payments")
}

test_team_daily_warning if {
	d := only(decisions_for({"spend": {"team_day_usd": 900}}), "budget.team_day")
	d.decision == "warn"
	contains(d.reason, "90%")
}

test_hard_cap_isolates if {
	ds := decisions_for({"spend": {"function_day_usd": 600}})
	d := only(ds, "budget.hard_cap")
	d.decision == "isolate"
	d.severity == "critical"
	contains(d.reason, "hard cap of $500.00")
}

test_absent_budget_is_no_limit if {
	changed := fixtures.with_changes({"spend": {"function_hour_usd": 1000}})
	ds := budget.decisions with input as json.remove(changed, ["thresholds/budget_usd_per_hour"])
	count([d | some d in ds; d.policy == "budget.function_hour"]) == 0
}

test_numeric_string_thresholds_are_accepted if {
	ds := decisions_for({"spend": {"function_hour_usd": 12.5}, "thresholds": {"budget_usd_per_hour": "10"}})
	only(ds, "budget.function_hour").rate_rps == 8
}

test_missing_spend_section_is_harmless if {
	count(budget.decisions) == 0 with input as {"thresholds": {"budget_usd_per_hour": 1}}
}

test_a_sparse_window_is_throttled_at_the_hours_mean_rate if {
	# no call in this window, 2 calls/s over the hour: 2 x 10/12.5 = 1.6 rps, not isolate
	ds := decisions_for({
		"window": {"attempts_per_s": 0},
		"spend": {"function_hour_usd": 12.5, "function_hour_attempts_per_s": 2},
	})
	d := only(ds, "budget.function_hour")
	d.decision == "throttle"
	d.rate_rps == 1.6
}
