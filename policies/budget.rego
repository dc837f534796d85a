# Budgets: what a function, and the team that owns it, may spend per hour and per day.
#
#   spend >= 80 % of a budget   warn (info): a heads-up before anything happens
#   spend >  a budget           throttle to attempts/s x budget/spend, so the call
#                               rate comes down in proportion to the overshoot
#                               (isolate when that rate is below min_rps)
#   day spend > hard cap        isolate (critical), whatever the rate
#
# Thresholds: budget_usd_per_hour, budget_usd_per_day, team_budget_usd_per_hour,
# team_budget_usd_per_day, hard_cap_usd_per_day, min_rps. An absent budget is no limit.
# Spend figures are rolling (last 60 minutes, last 24 hours), computed by the worker.
# A team budget throttles every function of the team by the same factor.
package governor.policies.budget

import data.governor.lib
import rego.v1

# The fraction of a budget at which a warning is raised.
warn_fraction := 0.8

spend := object.get(input, "spend", {})

team := object.get(input, ["function", "team"], "")

name := object.get(input, ["function", "name"], "")

budgets := [
	{
		"policy": "budget.function_hour", "key": "budget_usd_per_hour",
		"spent": object.get(spend, "function_hour_usd", 0),
		"who": sprintf("function %s", [name]), "per": "hourly", "when": "in the last hour",
	},
	{
		"policy": "budget.function_day", "key": "budget_usd_per_day",
		"spent": object.get(spend, "function_day_usd", 0),
		"who": sprintf("function %s", [name]), "per": "daily", "when": "in the last 24 hours",
	},
	{
		"policy": "budget.team_hour", "key": "team_budget_usd_per_hour",
		"spent": object.get(spend, "team_hour_usd", 0),
		"who": sprintf("team %s", [team]), "per": "hourly", "when": "in the last hour",
	},
	{
		"policy": "budget.team_day", "key": "team_budget_usd_per_day",
		"spent": object.get(spend, "team_day_usd", 0),
		"who": sprintf("team %s", [team]), "per": "daily", "when": "in the last 24 hours",
	},
]

# Near a budget: warn.
decisions contains decision if {
	some b in budgets
	budget := lib.number(b.key)
	budget > 0
	b.spent >= warn_fraction * budget
	b.spent <= budget
	decision := {
		"policy": b.policy,
		"decision": "warn",
		"rate_rps": null,
		"severity": "info",
		"reason": sprintf("%s spent %s %s, %s of its %s %s budget", [
			b.who, lib.usd(b.spent), b.when,
			lib.percent(b.spent / budget), lib.usd(budget), b.per,
		]),
		"inputs": {"spend_usd": b.spent, "budget_usd": budget},
	}
}

# Over a budget: throttle in proportion (or isolate when the rate would be too low).
decisions contains decision if {
	some b in budgets
	budget := lib.number(b.key)
	b.spent > budget
	rate := (lib.attempts_per_s * budget) / b.spent
	why := sprintf("%s spent %s %s, over its %s %s budget (%s); its %s scaled by budget/spend", [
		b.who, lib.usd(b.spent), b.when, lib.usd(budget), b.per,
		lib.percent(b.spent / budget), lib.rps(lib.attempts_per_s),
	])
	decision := lib.limit(b.policy, rate, why, {
		"spend_usd": b.spent, "budget_usd": budget, "attempts_per_s": lib.attempts_per_s,
	})
}

# Over the hard cap: isolate.
decisions contains decision if {
	cap := lib.number("hard_cap_usd_per_day")
	spent := object.get(spend, "function_day_usd", 0)
	spent > cap
	decision := {
		"policy": "budget.hard_cap",
		"decision": "isolate",
		"rate_rps": null,
		"severity": "critical",
		"reason": sprintf(
			"function %s spent %s in the last 24 hours, over its hard cap of %s a day; isolated until the spend falls under the cap or the cap is raised",
			[name, lib.usd(spent), lib.usd(cap)],
		),
		"inputs": {"spend_usd": spent, "hard_cap_usd": cap},
	}
}
