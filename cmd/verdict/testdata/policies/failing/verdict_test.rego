package verdict_test

import data.verdict

test_bot_denied if {
	verdict.decision == "deny" with input as {"datapoints": {"bot": {"result": "bad"}}}
}

test_goodbot_denied if {
	print("a good bot is not a bad bot")
	verdict.decision == "deny" with input as {"datapoints": {"bot": {"result": "good"}}}
}
