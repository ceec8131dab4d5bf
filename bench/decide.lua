-- wrk script: a cached /decide (demo-vpn, checkout of 900 USD) on every request.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"token":"demo-vpn","action":{"type":"checkout","amount":900,"currency":"USD"},"external_ids":{"accountId":"1234567890"}}'
