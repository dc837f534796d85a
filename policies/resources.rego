# Resource guardrails: memory, timeout and concurrency limits.
#
#   memory_mb > max_memory_mb       warn: memory is fixed at deploy time and the
#   timeout_s > max_timeout_s       agent cannot change it (nor the timeout), so the
#                                   reason says what to redeploy with
#   concurrency > max_concurrency   warn: the configured limit is too high
#   calls in flight > max_concurrency
#       throttle: in flight is estimated as attempts/s x p95 duration (Little's law
#       with the p95, so on the safe side); the rate is max_concurrency / p95
#       duration, never below min_rps (a guardrail slows a function, it does not
#       stop it)
package governor.policies.resources

import data.governor.lib
import rego.v1

# The calls per second the function attempted in the window (refused ones included).
attempts_per_s := object.get(input, ["window", "attempts_per_s"], 0)

fn := object.get(input, "function", {})

name := object.get(fn, "name", "")

configured := [
	{
		"policy": "resources.memory", "field": "memory_mb", "key": "max_memory_mb",
		"what": "memory", "unit": " MB",
		"advice": "memory is set at deploy time and Governor cannot change it at runtime: redeploy with",
	},
	{
		"policy": "resources.timeout", "field": "timeout_s", "key": "max_timeout_s",
		"what": "timeout", "unit": " s",
		"advice": "the timeout is set at deploy time: redeploy with",
	},
	{
		"policy": "resources.concurrency", "field": "concurrency", "key": "max_concurrency",
		"what": "concurrency limit", "unit": "",
		"advice": "lower the function's concurrency setting to",
	},
]

decisions contains decision if {
	some c in configured
	value := fn[c.field]
	is_number(value)
	limit := lib.number(c.key)
	value > limit
	decision := {
		"policy": c.policy,
		"decision": "warn",
		"rate_rps": null,
		"severity": "warning",
		"reason": sprintf("function %s has a %s of %v%s, over the %v%s maximum; %s at most %v%s", [
			name, c.what, value, c.unit, limit, c.unit, c.advice, limit, c.unit,
		]),
		"inputs": {c.field: value, c.key: limit},
	}
}

p95_s := object.get(input, ["window", "duration_ms_p95"], 0) / 1000

in_flight := attempts_per_s * p95_s

decisions contains decision if {
	limit := lib.number("max_concurrency")
	p95_s > 0
	in_flight > limit
	rate := max([limit / p95_s, lib.min_rps(0)])
	decision := {
		"policy": "resources.in_flight",
		"decision": "throttle",
		"rate_rps": rate,
		"severity": "warning",
		"reason": sprintf("function %s has about %s calls in flight (%s x %s s p95), over the %v maximum; throttled to %s", [
			name, lib.fixed(in_flight), lib.rps(attempts_per_s), lib.fixed(p95_s), limit, lib.rps(rate),
		]),
		"inputs": {"in_flight": in_flight, "max_concurrency": limit, "duration_ms_p95": p95_s * 1000},
	}
}
