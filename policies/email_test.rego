package verdict_test

test_throwaway_denied_on_signup if {
	effect_of(with_dp({"type": "signup"}, {"signals": {"throwawayEmail": true}}), "throwaway_email") == "deny"
}

test_throwaway_challenged_elsewhere if {
	every a in ["login", "checkout", "password_reset"] {
		effect_of(with_dp({"type": a}, {"signals": {"throwawayEmail": true}}), "throwaway_email") == "challenge"
	}
}

test_throwaway_absent_does_not_fire if {
	not "throwaway_email" in codes_for(with_dp({"type": "signup"}, {"signals": {}}))
}
