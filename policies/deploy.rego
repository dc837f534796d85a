# Deploy time: what `governor gate` checks before a function is deployed.
#
# Active only when input.stage is "pre-commit" or "pre-deploy"; the workers
# (stage "runtime", or no stage) never see these decisions. At deploy time
# "isolate" means deny (the change must not ship) and "warn" is a warning.
#
#   deploy.cost_risk       the prediction's score > cost_risk_max (0.8) and its
#                          predicted monthly cost > monthly_cap_usd: deny
#   deploy.monthly_cost    predicted monthly cost > monthly_cap_usd, risk not over the
#                          maximum: warn (the prediction says it costs that already)
#   deploy.memory,         over the team's maximum: deny, the reason names the limit
#   deploy.timeout,
#   deploy.concurrency
#   deploy.responsible_ai  model-serving function without model card, explanation,
#                          fairness report or data provenance: deny at pre-deploy,
#                          warn at pre-commit (a fairness disparity over the maximum
#                          is denied by responsible_ai.fairness at every stage)
#   deploy.egress          a declared destination outside the team's egress allow-list:
#                          deny; a new function that declares no egress: warn
#
# Limits come from input.thresholds (governor gate --threshold KEY=VALUE), else the
# team's entry of data.deploy.limits, else its "*" entry (policies/deploy.json).
package governor.policies.deploy

import data.governor.lib
import rego.v1

fn := object.get(input, "function", {})

name := object.get(fn, "name", "")

team := object.get(fn, "team", "")

# (data.deploy by its full path: reading `data` as a whole would evaluate the
# entry rule that gathers this package's decisions.)
default default_limits := {}

default_limits := data.deploy.limits["*"]

default team_limits := {}

team_limits := data.deploy.limits[team]

limits := object.union(default_limits, team_limits)

# A limit: the threshold when set, else the team's, else the default entry's.
limit(key) := n if {
	n := lib.number(key)
} else := n if {
	n := limits[key]
	is_number(n)
}

risk_max := n if {
	n := limit("cost_risk_max")
} else := 0.8

prediction := p if {
	lib.deploying(0)
	p := input.ai_predictions[name]
	is_number(p.predicted_monthly_cost)
}

interval := sprintf("%s–%s", [
	lib.usd(prediction.interval[0]), lib.usd(prediction.interval[1]),
]) if count(prediction.interval) == 2
else := "no interval"

cost_words := sprintf("function %s is predicted to cost %s a month (80 %% interval %s, risk %s), over the %s monthly cap of team %s; basis: %s", [
	name, lib.usd(prediction.predicted_monthly_cost), interval, lib.fixed(prediction.score),
	lib.usd(limit("monthly_cap_usd")), team, prediction.basis,
])

over_cap if prediction.predicted_monthly_cost > limit("monthly_cap_usd")

risky if prediction.score > risk_max

cost_figures := {
	"predicted_monthly_cost": prediction.predicted_monthly_cost,
	"score": prediction.score,
	"monthly_cap_usd": limit("monthly_cap_usd"),
	"cost_risk_max": risk_max,
}

decisions contains decision if {
	over_cap
	risky
	decision := deny("deploy.cost_risk", sprintf("%s; its risk score is over %s: denied", [cost_words, lib.fixed(risk_max)]), cost_figures)
}

decisions contains decision if {
	over_cap
	not risky
	decision := warn("deploy.monthly_cost", sprintf("%s; the risk score is within %s, so this is a warning", [cost_words, lib.fixed(risk_max)]), cost_figures)
}

guardrails := [
	{"policy": "deploy.memory", "field": "memory_mb", "key": "max_memory_mb", "what": "memory", "unit": " MB"},
	{"policy": "deploy.timeout", "field": "timeout_s", "key": "max_timeout_s", "what": "timeout", "unit": " s"},
	{"policy": "deploy.concurrency", "field": "concurrency", "key": "max_concurrency", "what": "concurrency", "unit": ""},
]

decisions contains decision if {
	lib.deploying(0)
	some g in guardrails
	value := fn[g.field]
	is_number(value)
	max_value := limit(g.key)
	value > max_value
	decision := deny(g.policy, sprintf("function %s of team %s asks for a %s of %v%s, over the team's %v%s maximum: denied; deploy with at most %v%s or raise %s for the team", [
		name, team, g.what, value, g.unit, max_value, g.unit, max_value, g.unit, g.key,
	]), {g.field: value, g.key: max_value})
}

documents := ["model_card", "explanation", "fairness_report", "data_provenance"]

ai := object.get(input, "ai", {})

present(value) if {
	is_string(value)
	trim_space(value) != ""
}

undocumented := [key | some key in documents; not present(object.get(ai, key, null))]

documentation_words := sprintf("model-serving function %s does not reference %s in its manifest (governor.model-card, governor.explanation, governor.fairness-report, governor.data-provenance)", [
	name, concat(", ", undocumented),
])

decisions contains decision if {
	lib.stage(0) == "pre-deploy"
	fn.model_serving == true
	count(undocumented) > 0
	decision := deny("deploy.responsible_ai", sprintf("%s: denied", [documentation_words]), {"missing": concat(", ", undocumented)})
}

decisions contains decision if {
	lib.stage(0) == "pre-commit"
	fn.model_serving == true
	count(undocumented) > 0
	decision := warn("deploy.responsible_ai", sprintf("%s; pre-deploy will deny it", [documentation_words]), {"missing": concat(", ", undocumented)})
}

declared := {lower(h) | some h in object.get(input, ["egress", "hosts"], [])}

allowed := {lower(trim_space(e)) | some e in split(limits.egress_allow, ","); trim_space(e) != ""}

permitted(_) if "*" in allowed

permitted(host) if host in allowed

permitted(host) if {
	some e in allowed
	startswith(e, "*.")
	endswith(host, substring(e, 1, count(e) - 1))
}

outside := {h | some h in declared; not permitted(h)}

decisions contains decision if {
	lib.deploying(0)
	is_string(limits.egress_allow)
	count(outside) > 0
	decision := deny("deploy.egress", sprintf("function %s declares egress to %s, outside team %s's allow-list (%s): denied", [
		name, lib.listing(outside), team, lib.listing(allowed),
	]), {"denied_hosts": lib.listing(outside), "egress_allow": lib.listing(allowed)})
}

decisions contains decision if {
	lib.deploying(0)
	input.change.kind == "new"
	count(declared) == 0
	decision := warn("deploy.egress", sprintf("new function %s declares no egress (governor.egress); declare the destinations it contacts so the egress policy can check them", [name]), {})
}

deny(policy, reason, figures) := {
	"policy": policy, "decision": "isolate", "rate_rps": null, "severity": "critical",
	"reason": reason, "inputs": figures,
}

warn(policy, reason, figures) := {
	"policy": policy, "decision": "warn", "rate_rps": null, "severity": "warning",
	"reason": reason, "inputs": figures,
}
