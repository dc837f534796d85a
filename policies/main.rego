# The entry point the worker evaluates: every decision of every policy.
#
# Each policy is a package under governor.policies with a `decisions` set of
# {"policy", "decision", "rate_rps", "reason", "severity"} objects (and optionally
# "inputs", the figures it compared). Adding a policy is adding a file: nothing
# here needs to change.
package governor

import rego.v1

decisions contains decision if {
	some decision in data.governor.policies[_].decisions
}
