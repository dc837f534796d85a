package governor.policies.egress_test

import data.governor.fixtures
import data.governor.policies.egress
import rego.v1

decisions_for(hosts, allow) := ds if {
	ds := egress.decisions with input as fixtures.with_changes({
		"egress": {"hosts": hosts},
		"thresholds": {"egress_allow": allow},
	})
}

isolated(ds) := [d | some d in ds; d.policy == "egress.allow_list"; d.decision == "isolate"]

test_quiet_function_has_no_egress_decision if {
	count(egress.decisions) == 0 with input as fixtures.quiet
}

test_exact_host_match_is_case_insensitive if {
	count(decisions_for(["API.Stripe.com"], "api.stripe.com")) == 0
}

test_ports_are_ignored if {
	count(decisions_for(["api.stripe.com:443"], "api.stripe.com")) == 0
}

test_wildcard_matches_subdomains_only if {
	count(decisions_for(["s3.eu-west-1.amazonaws.com"], "*.amazonaws.com")) == 0
	ds := decisions_for(["amazonaws.com", "evilamazonaws.com"], "*.amazonaws.com")
	[d] := isolated(ds)
	contains(d.reason, "2 host(s)")
	contains(d.reason, "amazonaws.com, evilamazonaws.com")
}

test_cidr_matches_ipv4_addresses if {
	count(decisions_for(["10.0.3.7", "10.0.255.1"], "10.0.0.0/16")) == 0
	[d] := isolated(decisions_for(["10.1.0.1"], "10.0.0.0/16"))
	contains(d.reason, "10.1.0.1")
}

test_cidr_does_not_match_hostnames if {
	[_] := isolated(decisions_for(["internal.example"], "10.0.0.0/8"))
}

test_unlisted_hosts_isolate_with_names_and_the_allow_list if {
	ds := decisions_for(["api.stripe.com", "exfil.example.net", "203.0.113.9"], "api.stripe.com, 10.0.0.0/16")
	[d] := isolated(ds)
	d.severity == "critical"
	d.rate_rps == null
	contains(d.reason, "203.0.113.9, exfil.example.net")
	contains(d.reason, "allowed: 10.0.0.0/16, api.stripe.com")
	d.inputs.denied_hosts == "203.0.113.9, exfil.example.net"
}

test_absent_allow_list_is_unrestricted if {
	changed := fixtures.with_changes({"egress": {"hosts": ["anything.example"]}})
	count(egress.decisions) == 0 with input as json.remove(changed, ["thresholds/egress_allow"])
}

test_empty_allow_list_allows_nothing if {
	[d] := isolated(decisions_for(["api.stripe.com"], ""))
	contains(d.reason, "allowed: (none)")
}

test_star_allows_everything if {
	count(decisions_for(["a.example", "192.0.2.1"], "*")) == 0
}

test_malformed_entries_warn_and_do_not_crash if {
	ds := decisions_for(["10.0.0.1"], "10.0.0.0/99, 300.1.1.1/8, bad host!, api.stripe.com")
	[w] := [d | some d in ds; d.policy == "egress.allow_list_entries"]
	w.decision == "warn"
	contains(w.reason, "10.0.0.0/99")
	contains(w.reason, "bad host!")
	count(isolated(ds)) == 1
}

test_no_hosts_no_decision if {
	count(decisions_for([], "api.stripe.com")) == 0
}
