package verdict

# throwaway_email: the email sent as an external ID belongs to a disposable
# mail service. Denied on the actions in cfg.throwaway_email.deny_actions,
# challenged otherwise.
reasons contains {
	"code": "throwaway_email",
	"effect": effect_for(cfg.throwaway_email.deny_actions),
	"message": sprintf("throwaway email address on %s", [action]),
} if {
	input.datapoints.signals.throwawayEmail == true
}
