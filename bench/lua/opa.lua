-- OPA's server: the same decision, the input (datapoints included) sent in
-- full, the action's amount varying. INPUT is the JSON body of bench/harness opa-input.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open(os.getenv("OPA_INPUT")))
local body = f:read("*a")
f:close()
local n = 0
request = function()
	n = n + 1
	return wrk.format(nil, nil, nil, (body:gsub('"amount":900', '"amount":' .. (n % 1000))))
end
