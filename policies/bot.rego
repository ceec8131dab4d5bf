package verdict

# bot_detected: cside classified the browser as a bad bot (automation,
# headless browsers, scrapers). Always denied.
reasons contains {
	"code": "bot_detected",
	"effect": "deny",
	"message": sprintf("bad bot detected (%s)", [bot_type]),
} if {
	input.datapoints.bot.result == "bad"
}

# known_bot: a well-behaved crawler (e.g. googlebot) has no business logging
# in, signing up or paying; challenge it on those actions.
reasons contains {
	"code": "known_bot",
	"effect": "challenge",
	"message": sprintf("known bot (%s) on %s", [bot_type, action]),
} if {
	input.datapoints.bot.result == "good"
	action in cfg.known_bot.actions
}

# bot_type is the bot's type when cside names one. It reads only the
# datapoints, so its fallback is a default rather than an else: optimized
# full evaluation can then inline it (docs/policies.md).
default bot_type := "unknown type"

bot_type := t if {
	t := input.datapoints.bot.type
	is_string(t)
}
