package verdict

# browser_tampering: the browser lies about itself (tampered APIs or an
# anti-detect browser). Challenged; denied on the actions in
# cfg.browser_tampering.deny_actions when the anomaly score reaches
# cfg.browser_tampering.deny_anomaly_score.
reasons contains {
	"code": "browser_tampering",
	"effect": tampering_effect,
	"message": sprintf("browser tampering (anomaly score %v) on %s", [anomaly_score, action]),
} if {
	tampered
}

# tampered: either signal. The bodies exclude each other, as anonymized's
# do (network.rego).
tampered if input.datapoints.environment.tampering == true

tampered if {
	input.datapoints.environment.antiDetectBrowser == true
	not input.datapoints.environment.tampering == true
}

anomaly_score := s if {
	s := input.datapoints.environment.anomalyScore
	is_number(s)
} else := 0

tampering_effect := "deny" if {
	action in cfg.browser_tampering.deny_actions
	anomaly_score >= cfg.browser_tampering.deny_anomaly_score
} else := "challenge"
