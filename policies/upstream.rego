package verdict

# datapoints_unavailable: the decision is made without datapoints because
# cside could not be reached or refused our request. The effect is the
# per-action fallback in cfg.datapoints_unavailable (login: allow, so an
# upstream outage does not lock users out; everything else: challenge).
reasons contains {
	"code": "datapoints_unavailable",
	"effect": fallback_effect,
	"message": sprintf("datapoints %s on %s; fallback %s", [input.upstream.status, action, fallback_effect]),
} if {
	input.upstream.status in {"unavailable", "rejected"}
}

fallback_effect := e if {
	e := cfg.datapoints_unavailable.actions[action]
} else := cfg.datapoints_unavailable.default_effect
