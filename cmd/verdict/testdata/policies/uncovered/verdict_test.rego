package verdict_test

import data.verdict

test_bot_denied if {
	verdict.decision == "deny" with input as {"datapoints": {"bot": {"result": "bad"}}}
}

test_human_allowed if {
	print("deciding on a clean payload")
	verdict.decision == "allow" with input as {"datapoints": {"bot": {"result": "notDetected"}}}
}
