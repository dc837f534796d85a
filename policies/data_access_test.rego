package governor.policies.data_access_test

import data.governor.fixtures
import data.governor.policies.data_access
import rego.v1

rules := {
	"unlisted": "allow",
	"datasets": {
		"payments.cards": {"teams": ["payments"], "functions": []},
		"customers.pii": {"teams": ["crm"], "functions": ["checkout"]},
		"hr.salaries": {"teams": ["people"], "functions": []},
	},
}

decisions_for(changes) := ds if {
	ds := data_access.decisions with input as fixtures.with_changes(changes) with data.data_access as rules
}

one(ds) := d if {
	count(ds) == 1
	some d in ds
}

test_quiet_function_has_no_data_decision if {
	count(data_access.decisions) == 0 with input as fixtures.quiet with data.data_access as rules
}

test_team_may_use_its_datasets if {
	count(decisions_for({"data": {"datasets": ["payments.cards", "orders"]}})) == 0
}

test_named_function_may_use_another_teams_dataset if {
	count(decisions_for({"data": {"datasets": ["customers.pii"]}})) == 0
}

test_other_teams_dataset_isolates if {
	d := one(decisions_for({"data": {"datasets": ["payments.cards", "hr.salaries"]}}))
	d.policy == "data_access.datasets"
	d.decision == "isolate"
	d.severity == "critical"
	contains(d.reason, "function checkout (team payments)")
	contains(d.reason, "hr.salaries (allowed: teams [people], functions [])")
	not contains(d.reason, "payments.cards")
}

test_unlisted_datasets_can_be_denied if {
	strict := object.union(rules, {"unlisted": "deny"})
	ds := data_access.decisions with input as fixtures.quiet with data.data_access as strict
	d := one(ds)
	contains(d.reason, "orders (allowed: nobody")
}

test_threshold_overrides_the_policy_data if {
	# the threshold lets checkout read hr.* but no longer payments.cards
	ds := decisions_for({
		"data": {"datasets": ["hr.salaries", "payments.cards"]},
		"thresholds": {"datasets_allowed": "orders, hr.*"},
	})
	d := one(ds)
	contains(d.reason, "payments.cards (allowed: datasets_allowed of checkout: orders, hr.*)")
	not contains(d.reason, "hr.salaries (")
}

test_star_threshold_allows_everything if {
	count(decisions_for({"data": {"datasets": ["hr.salaries"]}, "thresholds": {"datasets_allowed": "*"}})) == 0
}

test_shipped_policy_data_is_used if {
	ds := data_access.decisions with input as fixtures.with_changes({"data": {"datasets": ["hr.salaries"]}})
	count(ds) == 1
}

test_without_policy_data_everything_is_allowed if {
	ds := data_access.decisions with input as fixtures.with_changes({"data": {"datasets": ["hr.salaries"]}})
		with data.data_access as {}
	count(ds) == 0
}
