# Responsible AI: what a model-serving function must carry, and a fairness limit.
#
#   model_serving and any of model_card, fairness_report, explanation,
#   data_provenance missing
#       warn (warning) naming what is missing, every window until it is attached;
#       this is the documentation step, nothing is enforced yet
#   fairness_disparity > fairness_disparity_max (default 0.2)
#       isolate (critical): the model is denied service until it is fixed or the
#       limit is changed; this is the escalation, and it applies whatever the
#       documentation says (a measured disparity is enough)
package governor.policies.responsible_ai

import data.governor.lib
import rego.v1

required := ["model_card", "fairness_report", "explanation", "data_provenance"]

ai := object.get(input, "ai", {})

name := object.get(input, ["function", "name"], "")

serving if input.function.model_serving == true

present(value) if {
	is_string(value)
	trim_space(value) != ""
}

missing := [key | some key in required; not present(object.get(ai, key, null))]

disparity_max := lib.number_or("fairness_disparity_max", 0.2)

decisions contains decision if {
	serving
	count(missing) > 0
	not lib.deploying(0) # deploy.responsible_ai speaks for the deploy stages
	decision := {
		"policy": "responsible_ai.documentation",
		"decision": "warn",
		"rate_rps": null,
		"severity": "warning",
		"reason": sprintf(
			"model-serving function %s is missing %s; attach them to its spans (a warning each window until then; a fairness disparity over %s isolates it)",
			[name, concat(", ", missing), lib.fixed(disparity_max)],
		),
		"inputs": {"missing": concat(", ", missing)},
	}
}

decisions contains decision if {
	disparity := ai.fairness_disparity
	is_number(disparity)
	disparity > disparity_max
	decision := {
		"policy": "responsible_ai.fairness",
		"decision": "isolate",
		"rate_rps": null,
		"severity": "critical",
		"reason": sprintf(
			"function %s has a fairness disparity of %s, over the %s maximum (report: %s); denied until the model is fixed or the maximum is changed",
			[name, lib.fixed(disparity), lib.fixed(disparity_max), report],
		),
		"inputs": {"fairness_disparity": disparity, "fairness_disparity_max": disparity_max},
	}
}

report := ai.fairness_report if present(ai.fairness_report)
else := "none"
