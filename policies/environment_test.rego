package verdict_test

test_tampering_challenged if {
	effect_of(with_dp({"type": "login"}, {"environment": {"tampering": true, "anomalyScore": 0.95}}), "browser_tampering") == "challenge"
}

test_anti_detect_browser_challenged if {
	effect_of(with_dp({"type": "signup"}, {"environment": {"antiDetectBrowser": true}}), "browser_tampering") == "challenge"
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

test_no_tampering_does_not_fire if {
	not "browser_tampering" in codes_for(with_dp({"type": "checkout"}, {"environment": {"anomalyScore": 0.99}}))
}
