package governor.policies.deploy_test

import data.governor.decisions as gathered
import data.governor.fixtures
import data.governor.policies.deploy
import rego.v1

# A new function of team payments as `governor gate` sees it before a deploy.
change := {
	"stage": "pre-deploy",
	"function": {
		"name": "checkout", "team": "payments", "version": "", "memory_mb": 512,
		"timeout_s": 10, "concurrency": 20, "labels": {}, "model_serving": false,
		"attributes": {}, "provider": "aws", "runtime": "python3.12",
	},
	"change": {"kind": "changed", "fields": {}},
	"egress": {"hosts": ["api.stripe.com"]},
	"data": {"datasets": []},
	"ai": {},
	"ai_predictions": {"checkout": {
		"score": 0.1, "predicted_monthly_cost": 120.5, "interval": [100, 150],
		"basis": "checkout's own history",
	}},
	"thresholds": {},
}

with_change(changes) := object.union(change, changes)

ids(ds) := {d.policy | some d in ds}

test_a_modest_change_passes if {
	count(deploy.decisions) == 0 with input as change
}

test_the_runtime_never_sees_deploy_decisions if {
	count(deploy.decisions) == 0 with input as object.union(change, {"stage": "runtime"})
	count(deploy.decisions) == 0 with input as object.remove(change, ["stage"])
	count(deploy.decisions) == 0 with input as fixtures.quiet
}

test_risky_prediction_over_the_cap_is_denied if {
	ds := deploy.decisions with input as with_change({"ai_predictions": {"checkout": {
		"score": 0.93, "predicted_monthly_cost": 7400, "interval": [5100, 9800], "basis": "b",
	}}})
	some d in ds
	d.policy == "deploy.cost_risk"
	d.decision == "isolate"
	contains(d.reason, "$7400.00 a month")
	contains(d.reason, "over the $5000.00 monthly cap of team payments")
	d.inputs.score == 0.93
}

test_over_the_cap_with_low_risk_warns if {
	ds := deploy.decisions with input as with_change({"ai_predictions": {"checkout": {
		"score": 0.3, "predicted_monthly_cost": 7400, "interval": [7000, 7800], "basis": "b",
	}}})
	ids(ds) == {"deploy.monthly_cost"}
	some d in ds
	d.decision == "warn"
}

test_a_threshold_overrides_the_team_cap if {
	ds := deploy.decisions with input as with_change({
		"thresholds": {"monthly_cap_usd": "100", "cost_risk_max": 0.05},
	})
	ids(ds) == {"deploy.cost_risk"}
}

test_unknown_team_gets_the_default_limits if {
	ds := deploy.decisions with input as with_change({"function": {"team": "growth", "memory_mb": 4096}})
	ids(ds) == {"deploy.memory"}
	some d in ds
	contains(d.reason, "over the team's 3008 MB maximum")
}

test_guardrails_by_team if {
	ds := deploy.decisions with input as with_change({"function": {"memory_mb": 3008, "timeout_s": 60, "concurrency": 500}})
	ids(ds) == {"deploy.memory", "deploy.timeout", "deploy.concurrency"}
	every d in ds {
		d.decision == "isolate"
		d.severity == "critical"
	}
	ml := deploy.decisions with input as with_change({"function": {"team": "ml-platform", "memory_mb": 8192, "timeout_s": 600, "concurrency": 10}})
	count(ml) == 0
}

serving := with_change({
	"function": {"model_serving": true},
	"ai": {"model_card": "s3://cards/checkout.md", "explanation": "docs/shap.html"},
})

test_undocumented_model_is_denied_before_deploy if {
	ds := deploy.decisions with input as serving
	some d in ds
	d.policy == "deploy.responsible_ai"
	d.decision == "isolate"
	d.inputs.missing == "fairness_report, data_provenance"
}

test_undocumented_model_warns_at_pre_commit if {
	ds := deploy.decisions with input as object.union(serving, {"stage": "pre-commit"})
	some d in ds
	d.policy == "deploy.responsible_ai"
	d.decision == "warn"
}

test_documented_model_passes_and_runtime_warning_stays_quiet if {
	documented := object.union(serving, {"ai": {
		"fairness_report": "reports/fairness.json", "data_provenance": "datasheets/v3.md",
	}})
	count(gathered) == 0 with input as documented
	runtime := gathered with input as object.union(serving, {"stage": "runtime"})
	ids(runtime) == {"responsible_ai.documentation"}
}

test_fairness_over_the_limit_is_denied_at_every_stage if {
	ds := gathered with input as with_change({"ai": {"fairness_disparity": 0.35}})
	some d in ds
	d.policy == "responsible_ai.fairness"
	d.decision == "isolate"
}

test_egress_outside_the_team_list_is_denied if {
	ds := deploy.decisions with input as with_change({"egress": {"hosts": ["api.stripe.com", "sqs.us-east-1.amazonaws.com", "paste.example.net"]}})
	some d in ds
	d.policy == "deploy.egress"
	d.decision == "isolate"
	d.inputs.denied_hosts == "paste.example.net"
}

test_a_new_function_without_declared_egress_warns if {
	ds := deploy.decisions with input as with_change({"change": {"kind": "new"}, "egress": {"hosts": []}})
	some d in ds
	d.policy == "deploy.egress"
	d.decision == "warn"
}
