package verdict_test

stale(action, age) := object.union(with_dp(action, {}), {"upstream": {"status": "ok", "source": "stale", "age_seconds": age}})

test_stale_checkout_past_the_limit_challenged if {
	some r in reasons_for(stale({"type": "checkout", "amount": 10}, 601))
	r.code == "stale_datapoints"
	r.effect == "challenge"
	r.message == "datapoints 601 s old on checkout (limit 600 s)"
}

test_stale_checkout_within_the_limit_allowed if {
	inp := stale({"type": "checkout", "amount": 10}, 600)
	not "stale_datapoints" in codes_for(inp)
	decision_for(inp) == "allow"
}

test_stale_login_of_any_age_allowed if {
	not "stale_datapoints" in codes_for(stale({"type": "login"}, 3900))
}

test_fresh_and_cached_data_never_stale if {
	not "stale_datapoints" in codes_for(object.union(with_dp({"type": "checkout"}, {}), {"upstream": {"status": "ok", "source": "cache", "age_seconds": 9999}}))
}

test_stale_limits_come_from_data if {
	inp := stale({"type": "login"}, 100)
	"stale_datapoints" in codes_for(inp) with data.verdict_config.stale_datapoints.max_age_seconds as {"login": 60}
}
