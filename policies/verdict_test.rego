package verdict_test

import data.verdict

# Helpers shared by every test file of this package.

# clean is a datapoint payload on which no rule fires.
clean := {
	"identification": {"fingerprintId": "fp_test", "visitorFound": true},
	"bot": {"result": "notDetected", "type": null},
	"browser": {"incognito": false},
	"ip": {"vpn": false, "proxy": false, "tor": false, "blocklisted": false},
	"environment": {"tampering": false, "antiDetectBrowser": false, "anomalyScore": 0.02},
	"signals": {"throwawayEmail": false},
	"suspectScore": 3,
}

# with_dp builds an input whose datapoints are clean patched by patch.
with_dp(action, patch) := {
	"action": action,
	"external_ids": {},
	"datapoints": object.union(clean, patch),
	"upstream": {"status": "ok", "source": "upstream"},
	"fingerprint_id": "fp_test",
}

# without_dp builds an input for an upstream answer without datapoints.
without_dp(action, status) := {
	"action": action,
	"external_ids": {},
	"datapoints": null,
	"upstream": {"status": status, "source": "none"},
	"fingerprint_id": null,
}

reasons_for(inp) := rs if {
	rs := verdict.reasons with input as inp
}

decision_for(inp) := d if {
	d := verdict.decision with input as inp
}

codes_for(inp) := {r.code | some r in reasons_for(inp)}

# effect_of is the effect of the reason with code, undefined if it did not fire.
effect_of(inp, code) := r.effect if {
	some r in reasons_for(inp)
	r.code == code
}

test_clean_payload_allows if {
	inp := with_dp({"type": "checkout", "amount": 10000}, {})
	decision_for(inp) == "allow"
	count(reasons_for(inp)) == 0
}

test_deny_wins_over_challenge if {
	# tor (challenge on login) and blocklisted (deny)
	inp := with_dp({"type": "login"}, {"ip": {"tor": true, "blocklisted": true}})
	effect_of(inp, "tor_exit") == "challenge"
	decision_for(inp) == "deny"
}

test_challenge_wins_over_allow if {
	inp := with_dp({"type": "login"}, {"ip": {"tor": true}})
	decision_for(inp) == "challenge"
}

test_allow_reason_keeps_allow if {
	inp := without_dp({"type": "login"}, "unavailable")
	effect_of(inp, "datapoints_unavailable") == "allow"
	decision_for(inp) == "allow"
}

test_empty_datapoints_do_not_fire if {
	inp := {
		"action": {"type": "checkout", "amount": 900},
		"external_ids": {},
		"datapoints": {},
		"upstream": {"status": "ok", "source": "upstream"},
		"fingerprint_id": "fp_test",
	}
	count(reasons_for(inp)) == 0
	decision_for(inp) == "allow"
}

test_wrongly_typed_datapoints_do_not_fire if {
	inp := with_dp({"type": "checkout", "amount": 900}, {
		"bot": "bad",
		"ip": {"vpn": "yes", "tor": 1},
		"suspectScore": "99",
		"environment": {"tampering": "true"},
	})
	count(reasons_for(inp)) == 0
}
