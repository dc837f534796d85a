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

# The calls per second the function attempts (refused ones included): the window's, or
# the last hour's mean when that is higher (a sparse function's window may hold none).
attempts_per_s := max([
	object.get(input, ["window", "attempts_per_s"], 0),
	object.get(input, ["spend", "function_hour_attempts_per_s"], 0),
])

# The fraction of a budget at which a warning is raised.
warn_fraction := 0.8

spend := object.get(input, "spend", {})

# Each budget: its threshold, the rolling spend it limits, and words for the reason.
budgets := [
	["budget.function_hour", "budget_usd_per_hour", "function_hour_usd", "function", "hourly", "in the last hour"],
	["budget.function_day", "budget_usd_per_day", "function_day_usd", "function", "daily", "in the last 24 hours"],
	["budget.team_hour", "team_budget_usd_per_hour", "team_hour_usd", "team", "hourly", "in the last hour"],
	["budget.team_day", "team_budget_usd_per_day", "team_day_usd", "team", "daily", "in the last 24 hours"],
]

# The budgets that are set, with the spend against them: [policy, budget, spent, words].
limited contains [policy, budget, spent, [scope, per, when]] if {
	some [policy, key, figure, scope, per, when] in budgets
	budget := lib.number(key)
	spent := object.get(spend, figure, 0)
	spent >= warn_fraction * budget
}

who("function") := sprintf("function %s", [object.get(input, ["function", "name"], "")])

who("team") := sprintf("team %s", [object.get(input, ["function", "team"], "")])

# Near a budget: warn.
decisions contains decision if {
	some [policy, budget, spent, [scope, per, when]] in limited
	budget > 0
	spent <= budget
	decision := {
		"policy": policy,
		"decision": "warn",
		"rate_rps": null,
		"severity": "info",
		"reason": sprintf("%s spent %s %s, %s of its %s %s budget", [
			who(scope), lib.usd(spent), when,
			lib.percent(spent / budget), lib.usd(budget), per,
		]),
		"inputs": {"spend_usd": spent, "budget_usd": budget},
	}
}

# Over a budget: throttle in proportion (or isolate when the rate would be too low).
decisions contains decision if {
	some [policy, budget, spent, [scope, per, when]] in limited
	spent > budget
	rate := (attempts_per_s * budget) / spent
	why := sprintf("%s spent %s %s, over its %s %s budget (%s); its %s scaled by budget/spend", [
		who(scope), lib.usd(spent), when, lib.usd(budget), per,
		lib.percent(spent / budget), lib.rps(attempts_per_s),
	])
	decision := lib.limit(policy, rate, why, {
		"spend_usd": spent, "budget_usd": budget, "attempts_per_s": attempts_per_s,
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
			[object.get(input, ["function", "name"], ""), lib.usd(spent), lib.usd(cap)],
		),
		"inputs": {"spend_usd": spent, "hard_cap_usd": cap},
	}
}
