package verdict_test

test_bad_bot_denied_on_every_action if {
	every a in ["login", "signup", "checkout", "browse", "password_reset"] {
		effect_of(with_dp({"type": a}, {"bot": {"result": "bad", "type": "selenium"}}), "bot_detected") == "deny"
	}
}

test_bad_bot_message_names_type if {
	some r in reasons_for(with_dp({"type": "login"}, {"bot": {"result": "bad", "type": "selenium"}}))
	r.message == "bad bot detected (selenium)"
}

test_bad_bot_without_type if {
	some r in reasons_for(with_dp({"type": "login"}, {"bot": {"result": "bad"}}))
	r.message == "bad bot detected (unknown type)"
}

test_bad_bot_with_a_type_not_a_string if {
	every t in [null, 42, {"name": "selenium"}] {
		some r in reasons_for(with_dp({"type": "login"}, {"bot": {"result": "bad", "type": t}}))
		r.message == "bad bot detected (unknown type)"
	}
}

test_good_bot_challenged_on_sensitive_actions if {
	every a in ["login", "signup", "checkout", "password_reset"] {
		effect_of(with_dp({"type": a}, {"bot": {"result": "good", "type": "googlebot"}}), "known_bot") == "challenge"
	}
}

test_good_bot_ignored_on_browse if {
	not "known_bot" in codes_for(with_dp({"type": "browse"}, {"bot": {"result": "good", "type": "googlebot"}}))
}

test_not_detected_does_not_fire if {
	codes := codes_for(with_dp({"type": "login"}, {"bot": {"result": "notDetected"}}))
	not "bot_detected" in codes
	not "known_bot" in codes
}
