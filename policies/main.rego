# The entry point the worker evaluates: every decision of every policy.
#
# Each policy is a package under governor.policies with a `decisions` set of
# {"policy", "decision", "rate_rps", "reason", "severity"} objects (and optionally
# "inputs", the figures it compared). A new policy package is added to the list
# below; the unit tests fail when one is left out. (The list is explicit because
# iterating data.governor.policies[_] makes regorus build every rule of every
# package, about a third slower.)
package governor

import data.governor.lib
import rego.v1

decisions := (((((data.governor.policies.budget.decisions
	| data.governor.policies.cost_guard.decisions)
	| data.governor.policies.egress.decisions)
	| data.governor.policies.data_access.decisions)
	| data.governor.policies.responsible_ai.decisions)
	| data.governor.policies.resources.decisions)
	| deploy_decisions

# The deploy package speaks only at the deploy stages; the workers (stage "runtime")
# skip building it, a third of a window's evaluation.
default deploy_decisions := set()

deploy_decisions := data.governor.policies.deploy.decisions if lib.deploying(0)
