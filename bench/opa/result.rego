# Added to the shipped policies for OPA's server only: one rule that yields
# decision and reasons together, so OPA answers a decision in one query, as
# Verdict does.
package verdict

result := {"decision": decision, "reasons": reasons}
