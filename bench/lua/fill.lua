-- Fills Verdict's cache: POST /decide with demo-human-<n> tokens, n cycling
-- through FILL_TOKENS distinct ones (each a cache miss the first time, with a
-- payload of its own; the fake cside answers any demo-human-* token).
-- VERDICT_KEY, if set, is sent as the API key.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("VERDICT_KEY")
if key then wrk.headers["Authorization"] = "Bearer " .. key end
local tokens = tonumber(os.getenv("FILL_TOKENS") or "10000")
local n = 0
request = function()
	n = n + 1
	return wrk.format(nil, nil, nil, string.format('{"token":"demo-human-%d","action":{"type":"login"}}', n % tokens))
end
