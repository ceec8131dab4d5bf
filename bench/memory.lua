-- wrk script: POST /decide with a new demo-human-<n> token on every request,
-- so every request is a cache miss with a payload of its own.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local n = 0
request = function()
	n = n + 1
	return wrk.format(nil, nil, nil,
		'{"token":"demo-human-' .. n .. '","action":{"type":"login"}}')
end
