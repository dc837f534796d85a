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

host_pattern := `^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$`

hosts_pattern := `^(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*(,(\*\.)?[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*)*$`

# net.cidr_is_valid is much cheaper than a regex in regorus, and net.cidr_contains
# fails (rather than being false) on anything that is not an address.
valid_cidr(e) if {
	not contains(e, ":")
	contains(e, "/")
	net.cidr_is_valid(e)
}

valid_ipv4(h) if {
	not contains(h, ":")
	net.cidr_is_valid(concat("", [h, "/32"]))
}

# Entries that are neither "*", a CIDR, nor a host or *.domain: one regex over all
# of them in the common case, one per entry only when something is wrong.
names := {e | some e in entries; e != "*"; not valid_cidr(e)}

invalid := set() if regex.match(hosts_pattern, concat(",", names))
else := {e | some e in names; not regex.match(host_pattern, e)}

# A contacted host without its port ("host:443" → "host"; IPv6 literals untouched).
bare(h) := split(lower(h), ":")[0] if count(split(h, ":")) == 2
else := trim(lower(h), "[]")

# The allow-list split by kind, so each host is checked with one lookup per kind.
any_host if "*" in entries

suffixes := {substring(e, 1, count(e) - 1) | some e in entries; startswith(e, "*.")}

cidrs := {e | some e in entries; contains(e, "/"); valid_cidr(e)}

hosts := {bare(raw) | some raw in object.get(input, ["egress", "hosts"], [])}

not_listed := {h | some h in hosts; not h in entries}

not_suffixed := {h | some h in not_listed; not strings.any_suffix_match(h, suffixes)}

in_cidr(h) if {
	valid_ipv4(h)
	some e in cidrs
	net.cidr_contains(e, h)
}

denied := set() if any_host
else := {h | some h in not_suffixed; not in_cidr(h)}

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
