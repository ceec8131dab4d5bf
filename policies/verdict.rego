# Package verdict is the entry point Verdict queries: data.verdict.decision and
# data.verdict.reasons. Every rule file of this package adds to reasons with
#
#	reasons contains {"code": ..., "effect": ..., "message": ...} if { ... }
#
# and this file folds their effects into one decision: any deny wins, then
# any challenge, else allow. Thresholds live in data.json (data.verdict_config).
package verdict

# action is the request's action type ("login", "checkout", ...).
action := input.action.type

# cfg is the tunable configuration of the shipped rules.
cfg := data.verdict_config

# effects collects the effect of every reason that fired.
effects contains r.effect if some r in reasons

default decision := "allow"

decision := "deny" if {
	"deny" in effects
} else := "challenge" if {
	"challenge" in effects
}
