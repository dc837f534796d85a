# Egress: the destinations a function may contact.
#
# Threshold egress_allow is a comma-separated allow-list; each entry is
#   api.stripe.com       that host exactly (case-insensitive)
#   *.amazonaws.com      any subdomain (not amazonaws.com itself)
#   10.0.0.0/16          any IPv4 address in the block
#   *                    anything
# Absent: unrestricted. Present but empty: no egress allowed. A contacted host
# outside the list isolates the function (critical); the reason names the hosts and
# carries the allow-list. Ports (host:443) are ignored. An entry that is none of the
# above is ignored with a warning so a typo cannot silently widen the list.
package governor.policies.egress

import data.governor.lib
import rego.v1

restricted if is_string(input.thresholds.egress_allow)

entries := {lower(e) | some e in lib.items("egress_allow")}

ipv4_pattern := `^[0-9]{1,3}(\.[0-9]{1,3}){3}$`

cidr_pattern := `^[0-9]{1,3}(\.[0-9]{1,3}){3}/[0-9]{1,2}$`

host_pattern := `^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$`

valid_cidr(e) if {
	regex.match(cidr_pattern, e)
	every part in split(replace(e, "/", "."), ".") {
		to_number(part) <= 255
	}
	to_number(split(e, "/")[1]) <= 32
}

valid_ipv4(h) if {
	regex.match(ipv4_pattern, h)
	every part in split(h, ".") {
		to_number(part) <= 255
	}
}

valid_entry(e) if e == "*"

valid_entry(e) if regex.match(host_pattern, e)

valid_entry(e) if valid_cidr(e)

# A contacted host without its port ("host:443" → "host"; IPv6 literals untouched).
bare(h) := split(lower(h), ":")[0] if count(split(h, ":")) == 2
else := trim(lower(h), "[]")

allowed(_) if "*" in entries

allowed(h) if h in entries

allowed(h) if {
	some e in entries
	startswith(e, "*.")
	endswith(h, substring(e, 1, count(e) - 1))
}

allowed(h) if {
	valid_ipv4(h)
	some e in entries
	valid_cidr(e)
	net.cidr_contains(e, h)
}

denied := {h |
	some raw in object.get(input, ["egress", "hosts"], [])
	h := bare(raw)
	not allowed(h)
}

allow_list := "(none)" if count(entries) == 0
else := lib.listing(entries)

decisions contains decision if {
	restricted
	count(denied) > 0
	decision := {
		"policy": "egress.allow_list",
		"decision": "isolate",
		"rate_rps": null,
		"severity": "critical",
		"reason": sprintf("function %s contacted %d host(s) outside its egress allow-list: %s; allowed: %s", [
			object.get(input, ["function", "name"], ""), count(denied), lib.listing(denied), allow_list,
		]),
		"inputs": {"denied_hosts": lib.listing(denied), "egress_allow": allow_list},
	}
}

decisions contains decision if {
	restricted
	invalid := {e | some e in entries; not valid_entry(e)}
	count(invalid) > 0
	decision := {
		"policy": "egress.allow_list_entries",
		"decision": "warn",
		"rate_rps": null,
		"severity": "warning",
		"reason": sprintf("egress_allow entries ignored, not a host, *.domain or IPv4 CIDR: %s", [lib.listing(invalid)]),
		"inputs": {"invalid_entries": lib.listing(invalid)},
	}
}
