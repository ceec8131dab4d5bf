package verdict

import future.keywords.or

# tor_exit: traffic from a Tor exit node. Denied on the actions listed in
# cfg.tor_exit.deny_actions, challenged otherwise.
reasons contains {
	"code": "tor_exit",
	"effect": effect_for(cfg.tor_exit.deny_actions),
	"message": sprintf("Tor exit node on %s", [action]),
} if {
	input.datapoints.ip.tor == true
}

# ip_blocklisted: the IP address is on a blocklist. Always denied.
reasons contains {
	"code": "ip_blocklisted",
	"effect": "deny",
	"message": "IP address is blocklisted",
} if {
	input.datapoints.ip.blocklisted == true
}

# anonymizing_proxy: a VPN or proxy hides the visitor's network, on the
# actions in cfg.anonymizing_proxy.actions ...
reasons contains {
	"code": "anonymizing_proxy",
	"effect": "challenge",
	"message": sprintf("VPN or proxy on %s", [action]),
} if {
	anonymized
	action in cfg.anonymizing_proxy.actions
}

# ... and on a checkout of at least cfg.anonymizing_proxy.checkout_min_amount.
reasons contains {
	"code": "anonymizing_proxy",
	"effect": "challenge",
	"message": trim_space(sprintf("VPN or proxy on checkout of %v %s", [input.action.amount, currency])),
} if {
	anonymized
	action == "checkout"
	is_number(input.action.amount)
	input.action.amount >= cfg.anonymizing_proxy.checkout_min_amount
}

# anonymized: a VPN, a proxy, or both (one body with `or`: docs/policies.md).
anonymized if input.datapoints.ip.vpn == true or input.datapoints.ip.proxy == true

currency := c if {
	c := input.action.currency
	is_string(c)
} else := ""

# effect_for is "deny" when the request's action is in deny_actions,
# "challenge" when it is not. Two bodies that exclude each other, not an
# else: partial evaluation inlines them, into full evaluation and staging
# alike (docs/policies.md).
effect_for(deny_actions) := "deny" if action in deny_actions

effect_for(deny_actions) := "challenge" if not action in deny_actions
