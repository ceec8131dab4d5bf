package verdict

# stale_datapoints: cside is unavailable and the decision rests on cached
# datapoints past their TTL (input.upstream.source == "stale"). Older than
# cfg.stale_datapoints.max_age_seconds[action], they are not trusted for that
# action: challenge. Actions without a limit accept stale data of any age
# within the cache's grace window.
reasons contains {
	"code": "stale_datapoints",
	"effect": "challenge",
	"message": sprintf("datapoints %v s old on %s (limit %v s)", [input.upstream.age_seconds, action, limit]),
} if {
	input.upstream.source == "stale"
	limit := cfg.stale_datapoints.max_age_seconds[action]
	input.upstream.age_seconds > limit
}
