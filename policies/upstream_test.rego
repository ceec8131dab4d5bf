package verdict_test

test_unavailable_allows_login if {
	inp := without_dp({"type": "login"}, "unavailable")
	effect_of(inp, "datapoints_unavailable") == "allow"
	decision_for(inp) == "allow"
}

test_unavailable_challenges_other_actions if {
	every a in ["signup", "checkout", "password_reset", "browse"] {
		effect_of(without_dp({"type": a}, "unavailable"), "datapoints_unavailable") == "challenge"
		decision_for(without_dp({"type": a}, "unavailable")) == "challenge"
	}
}

test_rejected_uses_the_same_fallback if {
	effect_of(without_dp({"type": "login"}, "rejected"), "datapoints_unavailable") == "allow"
	effect_of(without_dp({"type": "checkout"}, "rejected"), "datapoints_unavailable") == "challenge"
}

test_fallback_comes_from_data if {
	inp := without_dp({"type": "checkout"}, "unavailable")
	effect_of(inp, "datapoints_unavailable") == "deny" with data.verdict_config.datapoints_unavailable.actions as {"checkout": "deny"}
}

test_ok_and_not_found_do_not_fire if {
	not "datapoints_unavailable" in codes_for(with_dp({"type": "login"}, {}))
	not "datapoints_unavailable" in codes_for(without_dp({"type": "login"}, "not_found"))
}
