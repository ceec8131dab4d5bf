-- A cold /decide: a new token on every request (a cache miss each).
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
	n = n + 1
	return wrk.format(nil, nil, nil, string.format(
		'{"token":"demo-human-cold%d","action":{"type":"checkout","amount":%d,"currency":"USD"}}', n, n % 1000))
end
