package verdict

# high_suspect_score: cside's overall suspect score is high. Challenged from
# cfg.high_suspect_score.challenge_at, denied from deny_at.
reasons contains {
	"code": "high_suspect_score",
	"effect": suspect_effect(score),
	"message": sprintf("suspect score %v", [score]),
} if {
	score := input.datapoints.suspectScore
	is_number(score)
	score >= cfg.high_suspect_score.challenge_at
}

# suspect_effect reads only the datapoints: a default, as bot_type's.
default suspect_effect(_) := "challenge"

suspect_effect(score) := "deny" if {
	score >= cfg.high_suspect_score.deny_at
}
