-- A cached /decide: demo tokens (warm in the cache), checkout amounts varying.
-- VERDICT_KEY, if set, is sent as the API key.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("VERDICT_KEY")
if key then wrk.headers["Authorization"] = "Bearer " .. key end
local tokens = {"demo-vpn", "demo-human", "demo-bot", "demo-tor", "demo-tamper"}
local n = 0
request = function()
	n = n + 1
	return wrk.format(nil, nil, nil, string.format(
		'{"token":"%s","action":{"type":"checkout","amount":%d,"currency":"USD"},"external_ids":{"accountId":"1234567890"}}',
		tokens[n % #tokens + 1], n % 1000))
end
