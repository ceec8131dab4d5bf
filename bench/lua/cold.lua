-- A cold /decide: a new token on every request (a cache miss each), new in
-- every run too: the run's start time is in the token.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
local run = os.time()
request = function()
	n = n + 1
	return wrk.format(nil, nil, nil, string.format(
		'{"token":"demo-human-cold%d-%d","action":{"type":"checkout","amount":%d,"currency":"USD"}}', run, n, n % 1000))
end
