# Data access: which functions and teams may touch which datasets.
#
# The rules are policy data (policies/data.json):
#   data_access.datasets.<name> = {"teams": [...], "functions": [...]}
#       a listed dataset may be touched only by those teams or functions
#   data_access.unlisted = "allow" | "deny"
#       what happens to datasets the file does not list (default: allow)
# Threshold datasets_allowed (comma-separated names; "prefix.*" and "*" allowed)
# overrides the file for one function: it is then the complete list of what that
# function may touch. Touching anything else isolates the function (critical).
# Datasets come from the span attribute governor.datasets.
package governor.policies.data_access

import data.governor.lib
import rego.v1

default rules := {}

rules := data.data_access

datasets := object.get(rules, "datasets", {})

unlisted_denied if object.get(rules, "unlisted", "allow") == "deny"

name := object.get(input, ["function", "name"], "")

team := object.get(input, ["function", "team"], "")

touched := {d | some d in object.get(input, ["data", "datasets"], [])}

overridden if is_string(input.thresholds.datasets_allowed)

# With the threshold: its patterns decide.
matches(pattern, _) if pattern == "*"

matches(pattern, dataset) if pattern == dataset

matches(pattern, dataset) if {
	endswith(pattern, ".*")
	startswith(dataset, trim_suffix(pattern, "*"))
}

permitted(dataset) if {
	overridden
	some pattern in lib.items("datasets_allowed")
	matches(pattern, dataset)
}

# Without it: the policy data decides.
permitted(dataset) if {
	not overridden
	rule := datasets[dataset]
	team in object.get(rule, "teams", [])
}

permitted(dataset) if {
	not overridden
	rule := datasets[dataset]
	name in object.get(rule, "functions", [])
}

permitted(dataset) if {
	not overridden
	not datasets[dataset]
	not unlisted_denied
}

# Who may touch a dataset, for the reason.
holders(dataset) := sprintf("datasets_allowed of %s: %s", [name, lib.text("datasets_allowed")]) if {
	overridden
} else := sprintf("teams [%s], functions [%s]", [
	lib.listing(object.get(datasets[dataset], "teams", [])),
	lib.listing(object.get(datasets[dataset], "functions", [])),
]) if {
	datasets[dataset]
} else := "nobody (unlisted datasets are denied)"

violations := {dataset | some dataset in touched; not permitted(dataset)}

decisions contains decision if {
	count(violations) > 0
	decision := {
		"policy": "data_access.datasets",
		"decision": "isolate",
		"rate_rps": null,
		"severity": "critical",
		"reason": sprintf("function %s (team %s) touched dataset(s) it may not access: %s", [
			name, team,
			concat("; ", [sprintf("%s (allowed: %s)", [d, holders(d)]) | some d in sort(violations)]),
		]),
		"inputs": {"datasets": lib.listing(violations)},
	}
}
