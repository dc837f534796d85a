# Helpers shared by every Governor policy: thresholds with defaults, figures
# formatted for humans, and the one rule that turns a rate limit into a
# throttle (or an isolation when the rate would be too low to be useful).
package governor.lib

import rego.v1

# A threshold as a number, undefined when it is absent, null or not numeric.
# Thresholds arrive from the control topic and may be numbers or numeric strings.
number(key) := n if {
	v := input.thresholds[key]
	is_number(v)
	n := v
}

number(key) := n if {
	v := input.thresholds[key]
	is_string(v)
	regex.match(`^\s*-?[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?\s*$`, v)
	n := to_number(trim_space(v))
}

# A threshold as a number, or the default when it is not set.
number_or(key, default_value) := n if {
	n := number(key)
} else := default_value

# A threshold as a trimmed string, undefined when absent or not a string.
text(key) := trim_space(input.thresholds[key]) if is_string(input.thresholds[key])

# The items of a comma-separated threshold, trimmed, empty items dropped.
items(key) := {trim_space(item) | some item in split(text(key), ","); trim_space(item) != ""}

# Only functions live here: regorus resolves `lib.<rule>` through an import by
# evaluating the whole package, which costs tens of microseconds per reference,
# while `lib.<function>(...)` is a plain call. Each policy reads the input itself.

# The lowest rate a throttle may set; below it a function is isolated instead.
min_rps(_) := number_or("min_rps", 0.2)

# A number that formats as a float: whole numbers computed in Rego are integers,
# which %f would print without decimals (regorus) or refuse (OPA).
float(x) := x + 0.000000001

# Dollars: cents for amounts of a dollar or more, four decimals below.
usd(x) := sprintf("$%.2f", [float(x)]) if x >= 1
else := sprintf("$%.4f", [float(x)])

# A rate in calls per second, two decimals.
rps(x) := sprintf("%.2f rps", [float(x)])

# A plain figure with two decimals.
fixed(x) := sprintf("%.2f", [float(x)])

# A ratio as a whole percentage.
percent(x) := sprintf("%.0f%%", [float(x * 100)])

# A sorted, comma-separated list.
listing(values) := concat(", ", sort([v | some v in values]))

# A throttle to `rate`, or an isolation when `rate` is below min_rps.
# `why` is the sentence that explains the limit; `figures` are the inputs compared.
limit(policy, rate, why, figures) := {
	"policy": policy,
	"decision": "throttle",
	"rate_rps": rate,
	"severity": "warning",
	"reason": sprintf("%s; throttled to %s", [why, rps(rate)]),
	"inputs": object.union(figures, {"rate_rps": rate}),
} if {
	rate >= min_rps(0)
} else := {
	"policy": policy,
	"decision": "isolate",
	"rate_rps": null,
	"severity": "critical",
	"reason": sprintf(
		"%s; the throttle it needs (%s) is below the %s minimum, so the function is isolated",
		[why, rps(rate), rps(min_rps(0))],
	),
	"inputs": object.union(figures, {"rate_rps": rate}),
}

# The stage the input comes from: "pre-commit", "pre-deploy" (governor gate) or
# "runtime" (the workers; also when the input has no stage).
stage(_) := s if {
	s := input.stage
	is_string(s)
} else := "runtime"

# Whether the input describes a deployment rather than a running window.
deploying(_) if stage(0) in {"pre-commit", "pre-deploy"}
