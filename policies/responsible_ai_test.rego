package governor.policies.responsible_ai_test

import data.governor.fixtures
import data.governor.policies.responsible_ai
import rego.v1

documented := {
	"model_card": "s3://models/summarise-v3/card.md",
	"fairness_report": "s3://models/summarise-v3/fairness.html",
	"explanation": "SHAP summary attached",
	"data_provenance": "datasets: ml.training-raw@2026-10",
	"fairness_disparity": 0.05,
}

decisions_for(changes) := ds if {
	ds := responsible_ai.decisions with input as fixtures.with_changes(changes)
}

one(ds) := d if {
	count(ds) == 1
	some d in ds
}

test_functions_not_serving_models_need_no_documents if {
	count(responsible_ai.decisions) == 0 with input as fixtures.quiet
}

test_documented_fair_model_is_allowed if {
	count(decisions_for({"function": {"model_serving": true}, "ai": documented})) == 0
}

test_missing_documents_warn_listing_them if {
	ai := object.union(documented, {"model_card": null, "explanation": "  "})
	d := one(decisions_for({"function": {"model_serving": true}, "ai": ai}))
	d.policy == "responsible_ai.documentation"
	d.decision == "warn"
	d.severity == "warning"
	contains(d.reason, "missing model_card, explanation;")
	contains(d.reason, "over 0.20 isolates")
}

test_all_documents_missing if {
	d := one(decisions_for({"function": {"model_serving": true}}))
	contains(d.reason, "model_card, fairness_report, explanation, data_provenance")
}

test_unfair_model_is_denied if {
	ai := object.union(documented, {"fairness_disparity": 0.31})
	d := one(decisions_for({"function": {"model_serving": true}, "ai": ai}))
	d.policy == "responsible_ai.fairness"
	d.decision == "isolate"
	d.severity == "critical"
	contains(d.reason, "0.31, over the 0.20 maximum")
	contains(d.reason, "fairness.html")
}

test_disparity_limit_is_a_threshold if {
	ai := object.union(documented, {"fairness_disparity": 0.31})
	count(decisions_for({"function": {"model_serving": true}, "ai": ai, "thresholds": {"fairness_disparity_max": 0.4}})) == 0
}

test_undocumented_and_unfair_gives_both if {
	ds := decisions_for({"function": {"model_serving": true}, "ai": {"fairness_disparity": 0.5}})
	{d.policy | some d in ds} == {"responsible_ai.documentation", "responsible_ai.fairness"}
}
