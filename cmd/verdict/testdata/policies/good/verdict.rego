package verdict

default decision := "allow"

decision := "deny" if some r in reasons

reasons contains {
	"code": "bot_detected",
	"effect": "deny",
	"message": "bad bot",
} if {
	input.datapoints.bot.result == "bad"
}
