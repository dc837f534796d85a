# Inputs shared by the policy tests (no test_ rules here).
package governor.fixtures

import rego.v1

# A realistic window of a well-behaved function: no policy should say anything.
quiet := {
	"function": {
		"name": "checkout", "team": "payments", "version": "42",
		"memory_mb": 512, "timeout_s": 30, "concurrency": 50,
		"labels": {"env": "prod"}, "model_serving": false, "attributes": {},
	},
	"window": {
		"start_unix_nano": 1764150000000000000, "seconds": 10, "invocations": 100,
		"attempts_per_s": 10, "cost_usd": 0.02, "cost_per_s": 0.002,
		"cost_per_invocation": 0.0002, "cost_per_invocation_p95": 0.0003,
		"duration_ms_p95": 180, "error_rate": 0.01, "cold_start_rate": 0.02,
		"egress_bytes_per_s": 2048,
	},
	"spend": {
		"function_hour_usd": 4, "function_day_usd": 60,
		"team_hour_usd": 20, "team_day_usd": 300, "predicted_month_usd": 1500,
	},
	"anomaly": null,
	"egress": {"hosts": ["api.stripe.com", "sqs.eu-west-1.amazonaws.com", "10.0.3.7"]},
	"data": {"datasets": ["orders"]},
	"ai": {
		"model_card": null, "fairness_report": null, "explanation": null,
		"data_provenance": null, "fairness_disparity": null,
	},
	"baseline": {"attempts_per_s": 10, "cost_per_s": 0.002, "cost_per_invocation": 0.0002},
	"thresholds": {
		"budget_usd_per_hour": 10, "budget_usd_per_day": 200, "hard_cap_usd_per_day": 500,
		"team_budget_usd_per_hour": 50, "team_budget_usd_per_day": 1000,
		"monthly_cap_usd": 5000, "anomaly_score_cap": 0.5,
		"max_memory_mb": 2048, "max_timeout_s": 60, "max_concurrency": 100,
		"egress_allow": "api.stripe.com, *.amazonaws.com, 10.0.0.0/16",
		"min_rps": 0.2,
	},
}

# `quiet` with some figures changed (a deep merge).
with_changes(changes) := object.union(quiet, changes)
