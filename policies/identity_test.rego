package verdict_test

new_incognito := {"browser": {"incognito": true}, "identification": {"fingerprintId": "fp_test", "visitorFound": false}}

test_new_incognito_challenged_on_signup_and_checkout if {
	every a in ["signup", "checkout"] {
		effect_of(with_dp({"type": a}, new_incognito), "new_incognito_visitor") == "challenge"
	}
}

test_new_incognito_ignored_on_login if {
	not "new_incognito_visitor" in codes_for(with_dp({"type": "login"}, new_incognito))
}

test_known_incognito_visitor_ignored if {
	inp := with_dp({"type": "signup"}, {"browser": {"incognito": true}})
	not "new_incognito_visitor" in codes_for(inp)
}

test_incognito_with_visitor_found_missing_ignored if {
	inp := with_dp({"type": "signup"}, {"browser": {"incognito": true}, "identification": {}})
	not "new_incognito_visitor" in codes_for(inp)
}

test_not_found_challenged_on_signup_and_checkout if {
	every a in ["signup", "checkout"] {
		effect_of(without_dp({"type": a}, "not_found"), "unknown_fingerprint") == "challenge"
	}
}

test_not_found_allowed_on_login if {
	inp := without_dp({"type": "login"}, "not_found")
	count(reasons_for(inp)) == 0
	decision_for(inp) == "allow"
}

test_payload_without_fingerprint_challenged if {
	inp := object.union(with_dp({"type": "checkout"}, {}), {"fingerprint_id": null})
	effect_of(inp, "unknown_fingerprint") == "challenge"
}

test_unavailable_is_not_unknown_fingerprint if {
	not "unknown_fingerprint" in codes_for(without_dp({"type": "signup"}, "unavailable"))
}
