package verdict

import future.keywords.or

# browser_tampering: the browser lies about itself (tampered APIs or an
# anti-detect browser). Denied on the actions in
# cfg.browser_tampering.deny_actions when the anomaly score reaches
# cfg.browser_tampering.deny_anomaly_score; challenged otherwise. One rule
# per effect, whose conditions exclude each other, rather than an effect
# helper with else: partial evaluation inlines these, and the message is
# built only by the rule that fires (docs/policies.md).
reasons contains tampering_reason("deny") if {
	tampered
	action in cfg.browser_tampering.deny_actions
	anomaly_score >= cfg.browser_tampering.deny_anomaly_score
}

reasons contains tampering_reason("challenge") if {
	tampered
	not action in cfg.browser_tampering.deny_actions
}

reasons contains tampering_reason("challenge") if {
	tampered
	action in cfg.browser_tampering.deny_actions
	anomaly_score < cfg.browser_tampering.deny_anomaly_score
}

tampering_reason(effect) := {
	"code": "browser_tampering",
	"effect": effect,
	"message": sprintf("browser tampering (anomaly score %v) on %s", [anomaly_score, action]),
}

# tampered: either signal, or both (one body with `or`: docs/policies.md).
tampered if input.datapoints.environment.tampering == true or input.datapoints.environment.antiDetectBrowser == true

# anomaly_score reads only the datapoints: a default, as bot_type's.
default anomaly_score := 0

anomaly_score := s if {
	s := input.datapoints.environment.anomalyScore
	is_number(s)
}
