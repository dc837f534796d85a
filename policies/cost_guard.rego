# Cost guard: act on the anomaly detectors' findings and on the monthly forecast.
#
#   anomaly, calibrated >= anomaly_score_cap (default 0.5)
#       apply the detector's proposal: isolate, or throttle to its rate
#       (when it proposes no rate: the rate that brings cost/s back to the baseline;
#       isolate when the rate is below min_rps)
#   anomaly, calibrated below the cap
#       warn (info): recorded, nothing enforced
#   predicted_month_usd > monthly_cap_usd
#       with an anomaly in the window: throttle to attempts/s x cap/forecast, the
#       spike is what is pushing the month over
#       without one: warn (warning) only; steady growth is a planning question, and
#       throttling normal traffic on a forecast would hurt users for a guess
package governor.policies.cost_guard

import data.governor.lib
import rego.v1

# The calls per second the function attempted in the window (refused ones included).
attempts_per_s := object.get(input, ["window", "attempts_per_s"], 0)

anomaly := input.anomaly if is_object(input.anomaly)

score_cap := lib.number_or("anomaly_score_cap", 0.5)

window := object.get(input, "window", {})

baseline := object.get(input, "baseline", {})

name := object.get(input, ["function", "name"], "")

acts if anomaly.calibrated >= score_cap

# "anomaly a-1 (hst, calibrated score 0.93, cap 0.50): <explanation>; driver: x; ~$1.20/h over normal"
summary := sprintf("anomaly %s (%s, calibrated score %s, cap %s): %s; driver: %s; about %s an hour over normal", [
	object.get(anomaly, "id", "?"), object.get(anomaly, "detector", "?"),
	lib.fixed(anomaly.calibrated), lib.fixed(score_cap),
	object.get(anomaly, "explanation", ""), object.get(anomaly, "driver", "unknown"),
	lib.usd(object.get(anomaly, "cost_impact_usd_per_hour", 0)),
])

figures := {
	"anomaly_id": object.get(anomaly, "id", ""),
	"calibrated": anomaly.calibrated,
	"anomaly_score_cap": score_cap,
	"cost_impact_usd_per_hour": object.get(anomaly, "cost_impact_usd_per_hour", 0),
}

# The rate the detector proposes, or the one that brings cost/s back to the baseline.
proposed_rate := anomaly.proposed.rate_rps if {
	is_number(anomaly.proposed.rate_rps)
} else := (attempts_per_s * baseline.cost_per_s) / window.cost_per_s if {
	window.cost_per_s > 0
	is_number(baseline.cost_per_s)
} else := object.get(baseline, "attempts_per_s", 0)

decisions contains decision if {
	acts
	anomaly.proposed.action == "isolate"
	decision := {
		"policy": "cost_guard.anomaly",
		"decision": "isolate",
		"rate_rps": null,
		"severity": "critical",
		"reason": sprintf("%s; isolated as the detector proposed", [summary]),
		"inputs": figures,
	}
}

decisions contains decision if {
	acts
	anomaly.proposed.action == "throttle"
	found := lib.limit("cost_guard.anomaly", proposed_rate, summary, figures)
	# the anomaly's own severity, unless the limit turned into an isolation
	decision := object.union(found, {"severity": severity(found.decision)})
}

severity("throttle") := object.get(anomaly, "severity", "warning")

severity("isolate") := "critical"

decisions contains decision if {
	not acts
	anomaly.calibrated < score_cap
	decision := {
		"policy": "cost_guard.anomaly",
		"decision": "warn",
		"rate_rps": null,
		"severity": "info",
		"reason": sprintf("%s; below the cap, recorded only", [summary]),
		"inputs": figures,
	}
}

predicted := object.get(input, ["spend", "predicted_month_usd"], 0)

forecast_why := sprintf("function %s is forecast to spend %s this month, over its %s monthly cap (%s)", [
	name, lib.usd(predicted), lib.usd(lib.number("monthly_cap_usd")),
	lib.percent(predicted / lib.number("monthly_cap_usd")),
])

over_forecast if predicted > lib.number("monthly_cap_usd")

forecast_figures := {"predicted_month_usd": predicted, "monthly_cap_usd": lib.number("monthly_cap_usd")}

decisions contains decision if {
	over_forecast
	anomaly
	cap := lib.number("monthly_cap_usd")
	rate := (attempts_per_s * cap) / predicted
	decision := lib.limit(
		"cost_guard.monthly_forecast", rate,
		sprintf("%s while an anomaly is open; its %s scaled by cap/forecast", [
			forecast_why, lib.rps(attempts_per_s),
		]),
		forecast_figures,
	)
}

decisions contains decision if {
	over_forecast
	not anomaly
	decision := {
		"policy": "cost_guard.monthly_forecast",
		"decision": "warn",
		"rate_rps": null,
		"severity": "warning",
		"reason": sprintf("%s; no anomaly, so this is steady growth: raise the cap or cut the cost, Governor does not throttle normal traffic on a forecast", [forecast_why]),
		"inputs": forecast_figures,
	}
}
