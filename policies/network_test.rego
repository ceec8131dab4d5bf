package verdict_test

test_tor_denied_on_signup_and_checkout if {
	every a in ["signup", "checkout"] {
		effect_of(with_dp({"type": a}, {"ip": {"tor": true}}), "tor_exit") == "deny"
	}
}

test_tor_challenged_elsewhere if {
	every a in ["login", "browse", "password_reset"] {
		effect_of(with_dp({"type": a}, {"ip": {"tor": true}}), "tor_exit") == "challenge"
	}
}

test_blocklisted_denied if {
	effect_of(with_dp({"type": "browse"}, {"ip": {"blocklisted": true}}), "ip_blocklisted") == "deny"
}

test_vpn_challenged_on_signup if {
	effect_of(with_dp({"type": "signup"}, {"ip": {"vpn": true}}), "anonymizing_proxy") == "challenge"
}

test_proxy_challenged_on_signup if {
	effect_of(with_dp({"type": "signup"}, {"ip": {"proxy": true}}), "anonymizing_proxy") == "challenge"
}

# Either signal, or both, or one of them not a boolean: one reason.
test_vpn_and_proxy_either_or_both if {
	every ip in [
		{"proxy": true, "vpn": false},
		{"proxy": true, "vpn": "yes"},
		{"proxy": true, "vpn": true},
		{"proxy": false, "vpn": true},
	] {
		count([r | some r in reasons_for(with_dp({"type": "signup"}, {"ip": ip})); r.code == "anonymizing_proxy"]) == 1
	}
}

test_vpn_ignored_on_login if {
	not "anonymizing_proxy" in codes_for(with_dp({"type": "login"}, {"ip": {"vpn": true}}))
}

test_vpn_on_checkout_at_threshold if {
	inp := with_dp({"type": "checkout", "amount": 500, "currency": "EUR"}, {"ip": {"vpn": true}})
	some r in reasons_for(inp)
	r.code == "anonymizing_proxy"
	r.message == "VPN or proxy on checkout of 500 EUR"
}

test_vpn_on_checkout_message_without_currency if {
	some r in reasons_for(with_dp({"type": "checkout", "amount": 900.5}, {"ip": {"vpn": true}}))
	r.message == "VPN or proxy on checkout of 900.5"
}

test_vpn_on_small_checkout_ignored if {
	not "anonymizing_proxy" in codes_for(with_dp({"type": "checkout", "amount": 499.99}, {"ip": {"vpn": true}}))
}

test_vpn_on_checkout_without_numeric_amount_ignored if {
	not "anonymizing_proxy" in codes_for(with_dp({"type": "checkout", "amount": "900"}, {"ip": {"vpn": true}}))
	not "anonymizing_proxy" in codes_for(with_dp({"type": "checkout"}, {"ip": {"vpn": true}}))
}

test_threshold_comes_from_data if {
	inp := with_dp({"type": "checkout", "amount": 100}, {"ip": {"vpn": true}})
	not "anonymizing_proxy" in codes_for(inp)
	"anonymizing_proxy" in codes_for(inp) with data.verdict_config.anonymizing_proxy.checkout_min_amount as 50
}
