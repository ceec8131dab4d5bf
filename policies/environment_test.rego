package verdict_test

test_tampering_challenged if {
	effect_of(with_dp({"type": "login"}, {"environment": {"tampering": true, "anomalyScore": 0.95}}), "browser_tampering") == "challenge"
}

test_anti_detect_browser_challenged if {
	effect_of(with_dp({"type": "signup"}, {"environment": {"antiDetectBrowser": true}}), "browser_tampering") == "challenge"
}

# Either signal, or both, or one of them not a boolean: one reason.
test_tampering_signals_either_or_both if {
	every env in [
		{"antiDetectBrowser": true, "tampering": false},
		{"antiDetectBrowser": true, "tampering": "yes"},
		{"antiDetectBrowser": true, "tampering": true},
		{"antiDetectBrowser": false, "tampering": true},
	] {
		count([r | some r in reasons_for(with_dp({"type": "login"}, {"environment": env})); r.code == "browser_tampering"]) == 1
	}
}

test_tampering_denied_on_checkout_with_high_anomaly if {
	effect_of(with_dp({"type": "checkout"}, {"environment": {"tampering": true, "anomalyScore": 0.9}}), "browser_tampering") == "deny"
}

test_tampering_challenged_on_checkout_with_low_anomaly if {
	effect_of(with_dp({"type": "checkout"}, {"environment": {"tampering": true, "anomalyScore": 0.89}}), "browser_tampering") == "challenge"
}

test_tampering_with_non_numeric_anomaly_is_challenged if {
	effect_of(with_dp({"type": "checkout"}, {"environment": {"tampering": true, "anomalyScore": "high"}}), "browser_tampering") == "challenge"
}

# Every action and anomaly score: exactly one reason, denied only on a deny
# action at the threshold or above (the three rules exclude each other).
test_tampering_one_reason_per_action_and_score if {
	every a in ["login", "signup", "checkout", "password_reset"] {
		every score in [0, 0.5, 0.89, 0.9, 0.95, "high", null] {
			rs := [r |
				some r in reasons_for(with_dp({"type": a}, {"environment": {"tampering": true, "anomalyScore": score}}))
				r.code == "browser_tampering"
			]
			count(rs) == 1
			rs[0].effect == tampering_effect_want(a, score)
		}
	}
}

tampering_effect_want(a, score) := "deny" if {
	a == "checkout"
	is_number(score)
	score >= 0.9
} else := "challenge"

test_no_tampering_does_not_fire if {
	not "browser_tampering" in codes_for(with_dp({"type": "checkout"}, {"environment": {"anomalyScore": 0.99}}))
}
