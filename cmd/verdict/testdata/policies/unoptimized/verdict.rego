package verdict

# decision reads the action itself, not only the reasons: full evaluation
# cannot use the decision table, nor the optimized reasons.
default decision := "allow"

decision := "deny" if some r in reasons

decision := "challenge" if {
	count(reasons) == 0
	input.action.type == "payout"
}

reasons contains {
	"code": "bot_detected",
	"effect": "deny",
	"message": "bad bot",
} if {
	input.datapoints.bot.result == "bad"
}
