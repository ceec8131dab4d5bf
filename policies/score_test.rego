package verdict_test

test_score_below_challenge_threshold if {
	not "high_suspect_score" in codes_for(with_dp({"type": "login"}, {"suspectScore": 19}))
}

test_score_challenged_from_20 if {
	effect_of(with_dp({"type": "login"}, {"suspectScore": 20}), "high_suspect_score") == "challenge"
	effect_of(with_dp({"type": "login"}, {"suspectScore": 79.9}), "high_suspect_score") == "challenge"
}

test_score_denied_from_80 if {
	effect_of(with_dp({"type": "login"}, {"suspectScore": 80}), "high_suspect_score") == "deny"
	effect_of(with_dp({"type": "login"}, {"suspectScore": 100}), "high_suspect_score") == "deny"
}
