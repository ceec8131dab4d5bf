-- Fills Verdict's cache: POST /decide with demo-human-<n> tokens, n counting
-- up from FILL_FROM (default 0) and cycling through FILL_TOKENS distinct ones
-- (each a cache miss the first time, with a payload of its own; the fake
-- cside answers any demo-human-* token). A run of wrk starts its count
-- afresh: a run that goes on filling passes FILL_FROM (bench/lib.sh's
-- fill_cache). VERDICT_KEY, if set, is sent as the API key.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local key = os.getenv("VERDICT_KEY")
if key then wrk.headers["Authorization"] = "Bearer " .. key end
local tokens = tonumber(os.getenv("FILL_TOKENS") or "10000")
local n = tonumber(os.getenv("FILL_FROM") or "0")
request = function()
	n = n + 1
	return wrk.format(nil, nil, nil, string.format('{"token":"demo-human-%d","action":{"type":"login"}}', n % tokens))
end
