package governor.main_test

import data.governor
import data.governor.fixtures
import rego.v1

test_quiet_function_gets_no_decision if {
	count(governor.decisions) == 0 with input as fixtures.quiet
}

test_decisions_of_every_policy_are_gathered if {
	ds := governor.decisions with input as fixtures.with_changes({
		"function": {"memory_mb": 4096},
		"spend": {"function_hour_usd": 12.5},
		"egress": {"hosts": ["exfil.example.net"]},
	})
	{d.policy | some d in ds} == {"resources.memory", "budget.function_hour", "egress.allow_list"}
}

test_every_decision_has_the_output_contract if {
	ds := governor.decisions with input as fixtures.with_changes({
		"function": {"memory_mb": 4096, "model_serving": true},
		"spend": {"function_hour_usd": 9, "team_day_usd": 5000, "predicted_month_usd": 9000},
		"egress": {"hosts": ["exfil.example.net"]},
		"data": {"datasets": ["hr.salaries"]},
		"ai": {"fairness_disparity": 0.4},
	})
	count(ds) >= 7
	every d in ds {
		is_string(d.policy)
		d.decision in {"warn", "throttle", "isolate"}
		d.severity in {"info", "warning", "critical"}
		is_string(d.reason)
		d.reason != ""
		valid_rate(d)
	}
}

valid_rate(d) if {
	d.decision == "throttle"
	d.rate_rps >= 0.2
}

valid_rate(d) if {
	d.decision != "throttle"
	d.rate_rps == null
}

test_an_empty_input_is_harmless if {
	count(governor.decisions) == 0 with input as {}
}
