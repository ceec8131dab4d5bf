package verdict

# new_incognito_visitor: a private window and a visitor cside has never
# seen, on the actions in cfg.new_incognito_visitor.actions.
reasons contains {
	"code": "new_incognito_visitor",
	"effect": "challenge",
	"message": sprintf("new visitor in an incognito window on %s", [action]),
} if {
	input.datapoints.browser.incognito == true
	input.datapoints.identification.visitorFound == false
	action in cfg.new_incognito_visitor.actions
}

# unknown_fingerprint: cside knows nothing of this token (not_found), or
# answered without a fingerprint ID, on the actions in
# cfg.unknown_fingerprint.actions.
reasons contains {
	"code": "unknown_fingerprint",
	"effect": "challenge",
	"message": sprintf("no known fingerprint on %s", [action]),
} if {
	no_fingerprint
	action in cfg.unknown_fingerprint.actions
}

no_fingerprint if input.upstream.status == "not_found"

no_fingerprint if {
	input.upstream.status == "ok"
	input.fingerprint_id == null
}
