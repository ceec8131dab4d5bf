package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/verdict-engine/verdict/api"
	"github.com/verdict-engine/verdict/cache"
	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
	"github.com/verdict-engine/verdict/policies"
)

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

type stack struct {
	handler http.Handler
	fake    *csidetest.Server
	cache   *cache.Cache
	engine  *engine.Engine
	logs    *syncBuffer
}

// newStack wires the real pipeline: fake cside, cside client, cache, engine
// over policyFS (nil: the shipped policies) and the HTTP handler.
func newStack(t testing.TB, policyFS fstest.MapFS) *stack {
	t.Helper()
	fake := csidetest.NewServer()
	t.Cleanup(fake.Close)
	client, err := csideclient.New(csideclient.Config{BaseURL: fake.URL})
	if err != nil {
		t.Fatalf("csideclient.New: %v", err)
	}
	c, err := cache.New(cache.Config{}, client)
	if err != nil {
		t.Fatalf("cache.New: %v", err)
	}
	t.Cleanup(c.Close)
	cfg := engine.Config{Policies: policies.FS(), Source: c}
	if policyFS != nil {
		cfg.Policies = policyFS
	}
	eng, err := engine.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("engine.New: %v", err)
	}
	logs := &syncBuffer{}
	h := api.New(api.Config{Logger: slog.New(api.LogHandler(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))}, eng)
	return &stack{handler: h, fake: fake, cache: c, engine: eng, logs: logs}
}

func (s *stack) do(method, path, contentType, body string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	rec := httptest.NewRecorder()
	s.handler.ServeHTTP(rec, req)
	return rec
}

type decideResponse struct {
	DecisionID    string          `json:"decision_id"`
	Decision      string          `json:"decision"`
	Reasons       []engine.Reason `json:"reasons"`
	FingerprintID *string         `json:"fingerprint_id"`
	Datapoints    struct {
		Status string `json:"status"`
		Source string `json:"source"`
	} `json:"datapoints"`
	Policy struct {
		Revision string `json:"revision"`
	} `json:"policy"`
	Degraded  bool     `json:"degraded"`
	ElapsedMS *float64 `json:"elapsed_ms"`
}

type errorResponse struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
}

func decode[T any](t *testing.T, rec *httptest.ResponseRecorder) T {
	t.Helper()
	if ct := rec.Header().Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var v T
	dec := json.NewDecoder(rec.Body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decoding %T: %v", v, err)
	}
	return v
}

var uuidV7 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestDecide(t *testing.T) {
	s := newStack(t, nil)
	s.fake.SetSlowDelay(0)
	tests := []struct {
		name         string
		body         string
		wantDecision string
		wantReasons  []engine.Reason
		wantFP       string // "" means null
		wantStatus   string
		wantSource   string
		wantDegraded bool
	}{
		{
			name:         "vpn on a large checkout",
			body:         `{"token": "demo-vpn", "action": {"type": "checkout", "amount": 900, "currency": "USD"}, "external_ids": {"accountId": "1234567890"}}`,
			wantDecision: "challenge",
			wantReasons:  []engine.Reason{{Code: "anonymizing_proxy", Effect: "challenge", Message: "VPN or proxy on checkout of 900 USD"}},
			wantFP:       "fp_VpnUser00000000001", wantStatus: "ok", wantSource: "upstream",
		},
		{
			name:         "same token again is served from the cache",
			body:         `{"token": "demo-vpn", "action": {"type": "login"}}`,
			wantDecision: "allow", wantReasons: []engine.Reason{},
			wantFP: "fp_VpnUser00000000001", wantStatus: "ok", wantSource: "cache",
		},
		{
			name:         "clean human with null external_ids",
			body:         `{"token": "demo-human", "action": {"type": "signup"}, "external_ids": null}`,
			wantDecision: "allow", wantReasons: []engine.Reason{},
			wantFP: "fp_8Zq2kL0vXr7tN4mWb1Yc", wantStatus: "ok", wantSource: "upstream",
		},
		{
			name:         "bad bot",
			body:         `{"token": "demo-bot", "action": {"type": "login"}}`,
			wantDecision: "deny",
			wantReasons: []engine.Reason{
				{Code: "bot_detected", Effect: "deny", Message: "bad bot detected (headlessChrome)"},
				{Code: "high_suspect_score", Effect: "deny", Message: "suspect score 90"},
			},
			wantFP: "fp_B0tHeadless00000001", wantStatus: "ok", wantSource: "upstream",
		},
		{
			name:         "payload without fingerprint",
			body:         `{"token": "demo-noid", "action": {"type": "checkout", "amount": 5}}`,
			wantDecision: "challenge",
			wantReasons:  []engine.Reason{{Code: "unknown_fingerprint", Effect: "challenge", Message: "no known fingerprint on checkout"}},
			wantStatus:   "ok", wantSource: "upstream",
		},
		{
			name:         "unknown token",
			body:         `{"token": "tok_never_seen", "action": {"type": "signup"}}`,
			wantDecision: "challenge",
			wantReasons:  []engine.Reason{{Code: "unknown_fingerprint", Effect: "challenge", Message: "no known fingerprint on signup"}},
			wantStatus:   "not_found", wantSource: "upstream",
		},
		{
			name:         "unknown token again is a cached not_found",
			body:         `{"token": "tok_never_seen", "action": {"type": "login"}}`,
			wantDecision: "allow", wantReasons: []engine.Reason{},
			wantStatus: "not_found", wantSource: "cache",
		},
		{
			name:         "upstream error degrades",
			body:         `{"token": "demo-error", "action": {"type": "checkout", "amount": 5}}`,
			wantDecision: "challenge",
			wantReasons:  []engine.Reason{{Code: "datapoints_unavailable", Effect: "challenge", Message: "datapoints unavailable on checkout; fallback challenge"}},
			wantStatus:   "unavailable", wantSource: "none", wantDegraded: true,
		},
		{
			name:         "upstream garbage degrades",
			body:         `{"token": "demo-garbage", "action": {"type": "login"}}`,
			wantDecision: "allow",
			wantReasons:  []engine.Reason{{Code: "datapoints_unavailable", Effect: "allow", Message: "datapoints unavailable on login; fallback allow"}},
			wantStatus:   "unavailable", wantSource: "none", wantDegraded: true,
		},
	}
	seen := map[string]bool{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := s.do(http.MethodPost, "/decide", "application/json; charset=utf-8", tt.body)
			s.cache.Wait()
			if rec.Code != http.StatusOK {
				t.Fatalf("POST /decide %s = %d %s, want 200", tt.body, rec.Code, rec.Body)
			}
			if tt.wantReasons != nil && len(tt.wantReasons) == 0 && !strings.Contains(rec.Body.String(), `"reasons":[]`) {
				t.Errorf("body %s: want reasons as an empty array", rec.Body)
			}
			got := decode[decideResponse](t, rec)
			if got.Decision != tt.wantDecision {
				t.Errorf("decision = %s, want %s", got.Decision, tt.wantDecision)
			}
			if !equalReasons(got.Reasons, tt.wantReasons) {
				t.Errorf("reasons = %+v, want %+v", got.Reasons, tt.wantReasons)
			}
			if fp := deref(got.FingerprintID); fp != tt.wantFP || (tt.wantFP == "" && got.FingerprintID != nil) {
				t.Errorf("fingerprint_id = %v, want %q (null if empty)", got.FingerprintID, tt.wantFP)
			}
			if got.Datapoints.Status != tt.wantStatus || got.Datapoints.Source != tt.wantSource {
				t.Errorf("datapoints = %+v, want %s/%s", got.Datapoints, tt.wantStatus, tt.wantSource)
			}
			if got.Degraded != tt.wantDegraded {
				t.Errorf("degraded = %v, want %v", got.Degraded, tt.wantDegraded)
			}
			if got.Policy.Revision != s.engine.Revision() || len(got.Policy.Revision) != 12 {
				t.Errorf("policy.revision = %q, want %q", got.Policy.Revision, s.engine.Revision())
			}
			if !uuidV7.MatchString(got.DecisionID) || seen[got.DecisionID] {
				t.Errorf("decision_id = %q: want a fresh UUIDv7", got.DecisionID)
			}
			seen[got.DecisionID] = true
			if got.ElapsedMS == nil || *got.ElapsedMS < 0 {
				t.Errorf("elapsed_ms = %v, want a non-negative number", got.ElapsedMS)
			}
		})
	}
	if logs := s.logs.String(); strings.Contains(logs, "demo-error") || strings.Contains(logs, "demo-garbage") {
		t.Errorf("logs contain a raw token:\n%s", logs)
	}
	if !strings.Contains(s.logs.String(), api.TokenHash("demo-error")) {
		t.Errorf("logs do not identify the degraded decision's token by its hash:\n%s", s.logs)
	}
}

func TestDecideRejectedUpstreamDegrades(t *testing.T) {
	s := newStack(t, nil)
	s.fake.RequireHeader("Authorization", "Bearer right-key")
	rec := s.do(http.MethodPost, "/decide", "application/json", `{"token": "demo-human", "action": {"type": "checkout", "amount": 1}}`)
	got := decode[decideResponse](t, rec)
	if got.Datapoints.Status != "rejected" || got.Datapoints.Source != "upstream" || !got.Degraded || got.Decision != "challenge" {
		t.Errorf("POST /decide with rejected upstream = %+v, want rejected/upstream, degraded, challenge", got)
	}
}

func TestDecideErrors(t *testing.T) {
	s := newStack(t, nil)
	huge := `{"token": "demo-human", "action": {"type": "login", "pad": "` + strings.Repeat("x", 70<<10) + `"}}`
	tests := []struct {
		name        string
		contentType string
		body        string
		chunked     bool
		wantStatus  int
		wantCode    string
		wantMsg     string
	}{
		{"no content type", "", `{"token": "demo-human", "action": {"type": "login"}}`, false, 415, "unsupported_media_type", "application/json"},
		{"text/plain", "text/plain", `{"token": "demo-human", "action": {"type": "login"}}`, false, 415, "unsupported_media_type", "text/plain"},
		{"415 before 413", "text/plain", huge, false, 415, "unsupported_media_type", ""},
		{"415 before invalid JSON", "application/xml", `<x/>`, false, 415, "unsupported_media_type", ""},
		{"body over 64 KiB", "application/json", huge, false, 413, "body_too_large", "65536"},
		{"body over 64 KiB, chunked", "application/json", huge, true, 413, "body_too_large", ""},
		{"413 before invalid JSON", "application/json", strings.Repeat("{", 70<<10), true, 413, "body_too_large", ""},
		{"empty body", "application/json", ``, false, 400, "invalid_json", "empty"},
		{"truncated JSON", "application/json", `{"token": "demo-human"`, false, 400, "invalid_json", "not valid JSON"},
		{"trailing comma", "application/json", `{"token": "demo-human",}`, false, 400, "invalid_json", ""},
		{"two documents", "application/json", `{} {}`, false, 400, "invalid_json", ""},
		{"array body", "application/json", `[]`, false, 400, "invalid_request", "JSON object"},
		{"string body", "application/json", `"demo-human"`, false, 400, "invalid_request", "JSON object"},
		{"null body", "application/json", `null`, false, 400, "invalid_request", "JSON object"},
		{"missing token", "application/json", `{"action": {"type": "login"}}`, false, 400, "invalid_request", "token is required"},
		{"null token", "application/json", `{"token": null, "action": {"type": "login"}}`, false, 400, "invalid_request", "token is required"},
		{"numeric token", "application/json", `{"token": 12, "action": {"type": "login"}}`, false, 400, "invalid_request", "token must be a string"},
		{"empty token", "application/json", `{"token": "", "action": {"type": "login"}}`, false, 400, "invalid_request", "token must not be empty"},
		{"token over 4096 bytes", "application/json", `{"token": "` + strings.Repeat("a", 4097) + `", "action": {"type": "login"}}`, false, 400, "invalid_request", "4096"},
		{"token with a space", "application/json", `{"token": "demo human", "action": {"type": "login"}}`, false, 400, "invalid_request", "printable ASCII"},
		{"token with non-ASCII", "application/json", `{"token": "démo", "action": {"type": "login"}}`, false, 400, "invalid_request", "printable ASCII"},
		{"token with a control byte", "application/json", `{"token": "demo\u0000", "action": {"type": "login"}}`, false, 400, "invalid_request", "token"},
		{"missing action", "application/json", `{"token": "demo-human"}`, false, 400, "invalid_request", "action is required"},
		{"null action", "application/json", `{"token": "demo-human", "action": null}`, false, 400, "invalid_request", "action is required"},
		{"array action", "application/json", `{"token": "demo-human", "action": ["login"]}`, false, 400, "invalid_request", "action must be a JSON object"},
		{"missing action.type", "application/json", `{"token": "demo-human", "action": {"amount": 5}}`, false, 400, "invalid_request", "action.type is required"},
		{"numeric action.type", "application/json", `{"token": "demo-human", "action": {"type": 5}}`, false, 400, "invalid_request", "action.type must be a string"},
		{"uppercase action.type", "application/json", `{"token": "demo-human", "action": {"type": "Login"}}`, false, 400, "invalid_request", "action.type"},
		{"action.type over 64 chars", "application/json", `{"token": "demo-human", "action": {"type": "a` + strings.Repeat("b", 64) + `"}}`, false, 400, "invalid_request", "action.type"},
		{"action.type with a space", "application/json", `{"token": "demo-human", "action": {"type": "log in"}}`, false, 400, "invalid_request", "action.type"},
		{"external_ids array", "application/json", `{"token": "demo-human", "action": {"type": "login"}, "external_ids": ["a"]}`, false, 400, "invalid_request", "external_ids"},
		{"external_ids number value", "application/json", `{"token": "demo-human", "action": {"type": "login"}, "external_ids": {"accountId": 12}}`, false, 400, "invalid_request", `external_ids["accountId"]`},
		{"unknown field", "application/json", `{"token": "demo-human", "action": {"type": "login"}, "tokn": "x"}`, false, 400, "invalid_request", `"tokn"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var body io.Reader = strings.NewReader(tt.body)
			if tt.chunked {
				body = io.MultiReader(body) // hides the length: no Content-Length
			}
			req := httptest.NewRequest(http.MethodPost, "/decide", body)
			if tt.chunked {
				req.ContentLength = -1
			}
			if tt.contentType != "" {
				req.Header.Set("Content-Type", tt.contentType)
			}
			rec := httptest.NewRecorder()
			s.handler.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus {
				t.Fatalf("POST /decide = %d %s, want %d", rec.Code, rec.Body, tt.wantStatus)
			}
			got := decode[errorResponse](t, rec)
			if got.Error.Code != tt.wantCode || !strings.Contains(got.Error.Message, tt.wantMsg) || got.Error.Message == "" {
				t.Errorf("error = %+v, want code %s with a message mentioning %q", got.Error, tt.wantCode, tt.wantMsg)
			}
		})
	}
	if n := s.fake.ClientRequests(); n != 0 {
		t.Errorf("invalid requests reached the upstream %d times, want 0", n)
	}
}

func TestRoutes(t *testing.T) {
	s := newStack(t, nil)
	tests := []struct {
		method, path string
		wantStatus   int
		wantBody     string
	}{
		{http.MethodGet, "/healthz", 200, `"status":"ok"`},
		{http.MethodGet, "/readyz", 200, `"revision":"` + s.engine.Revision() + `"`},
		{http.MethodGet, "/nope", 404, `"code":"not_found"`},
		{http.MethodPost, "/decide/extra", 404, `"code":"not_found"`},
		{http.MethodGet, "/decide", 405, `"code":"method_not_allowed"`},
		{http.MethodDelete, "/healthz", 405, `"code":"method_not_allowed"`},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			rec := s.do(tt.method, tt.path, "", "")
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantBody) {
				t.Errorf("%s %s = %d %s, want %d with %s", tt.method, tt.path, rec.Code, rec.Body, tt.wantStatus, tt.wantBody)
			}
			if !strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
				t.Errorf("Content-Type = %q, want JSON", rec.Header().Get("Content-Type"))
			}
			if rec.Code == 405 && rec.Header().Get("Allow") == "" {
				t.Errorf("405 without an Allow header")
			}
		})
	}
}

func TestHealthzReportsBreakerWithoutFailingReadiness(t *testing.T) {
	s := newStack(t, nil)
	client, err := csideclient.New(csideclient.Config{BaseURL: s.fake.URL, Breaker: csideclient.BreakerConfig{ConsecutiveFailures: 1, OpenFor: time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	h := api.New(api.Config{BreakerState: client.BreakerState}, s.engine)
	get := func(path string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		return rec
	}
	if rec := get("/healthz"); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"upstream":{"breaker":"closed"}`) {
		t.Errorf("GET /healthz = %d %s, want 200 with the closed breaker", rec.Code, rec.Body)
	}
	s.fake.SetForcedStatus(http.StatusServiceUnavailable)
	_, _ = client.Datapoints(context.Background(), "demo-human")
	if rec := get("/healthz"); rec.Code != 200 || !strings.Contains(rec.Body.String(), `"upstream":{"breaker":"open"}`) {
		t.Errorf("GET /healthz = %d %s, want 200 with the open breaker", rec.Code, rec.Body)
	}
	if rec := get("/readyz"); rec.Code != 200 {
		t.Errorf("GET /readyz with the breaker open = %d, want 200: an upstream outage must not flip readiness", rec.Code)
	}
}

func TestNotReady(t *testing.T) {
	h := api.New(api.Config{}, nil)
	for _, tt := range []struct{ method, path string }{{"GET", "/readyz"}, {"POST", "/decide"}, {"POST", "/identify"}} {
		req := httptest.NewRequest(tt.method, tt.path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusServiceUnavailable || !strings.Contains(rec.Body.String(), `"not_ready"`) {
			t.Errorf("%s %s without a decider = %d %s, want 503 not_ready", tt.method, tt.path, rec.Code, rec.Body)
		}
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/healthz", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("GET /healthz without a decider = %d, want 200", rec.Code)
	}
}

func TestPolicyError(t *testing.T) {
	// Passes the load-time contract check (the decision is computed), breaks
	// the contract at evaluation.
	broken := fstest.MapFS{"p.rego": {Data: []byte("package verdict\n\ndecision := input.action.type\n\nreasons := set()\n")}}
	s := newStack(t, broken)
	rec := s.do(http.MethodPost, "/decide", "application/json", `{"token": "demo-human", "action": {"type": "login"}}`)
	if rec.Code != http.StatusInternalServerError {
		t.Fatalf("POST /decide = %d %s, want 500", rec.Code, rec.Body)
	}
	got := decode[errorResponse](t, rec)
	if got.Error.Code != "policy_error" || !strings.Contains(got.Error.Message, "login") {
		t.Errorf("error = %+v, want policy_error naming the bad value", got.Error)
	}
	if !strings.Contains(s.logs.String(), "decision failed") || strings.Contains(s.logs.String(), "demo-human") {
		t.Errorf("want the failure logged with a token hash only:\n%s", s.logs)
	}
}

func TestIdentify(t *testing.T) {
	s := newStack(t, nil)
	type identifyResponse struct {
		FingerprintID *string `json:"fingerprint_id"`
		Datapoints    struct {
			Status string `json:"status"`
			Source string `json:"source"`
		} `json:"datapoints"`
	}
	tests := []struct {
		name, body         string
		wantFP             string
		wantStatus, wantSr string
		wantClientID       int64
	}{
		{"from clientId", `{"token": "demo-tor"}`, "fp_TorExit00000000001", "ok", "upstream", 1},
		{"clientId cached", `{"token": "demo-tor"}`, "fp_TorExit00000000001", "ok", "cache", 1},
		{"unknown", `{"token": "demo-unknown"}`, "", "not_found", "upstream", 2},
		{"no fingerprint", `{"token": "demo-noid"}`, "", "not_found", "upstream", 3},
		{"upstream error, retried once", `{"token": "demo-error"}`, "", "unavailable", "none", 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := s.do(http.MethodPost, "/identify", "application/json", tt.body)
			s.cache.Wait()
			if rec.Code != http.StatusOK {
				t.Fatalf("POST /identify = %d %s", rec.Code, rec.Body)
			}
			got := decode[identifyResponse](t, rec)
			if deref(got.FingerprintID) != tt.wantFP || got.Datapoints.Status != tt.wantStatus || got.Datapoints.Source != tt.wantSr {
				t.Errorf("POST /identify %s = %v %+v, want %q %s/%s", tt.body, got.FingerprintID, got.Datapoints, tt.wantFP, tt.wantStatus, tt.wantSr)
			}
			if n := s.fake.ClientIDRequests(); n != tt.wantClientID {
				t.Errorf("clientId requests = %d, want %d", n, tt.wantClientID)
			}
		})
	}

	t.Run("from datapoints cached by /decide", func(t *testing.T) {
		s.do(http.MethodPost, "/decide", "application/json", `{"token": "demo-human", "action": {"type": "login"}}`)
		s.cache.Wait()
		before := s.fake.ClientIDRequests()
		got := decode[identifyResponse](t, s.do(http.MethodPost, "/identify", "application/json", `{"token": "demo-human"}`))
		if deref(got.FingerprintID) != "fp_8Zq2kL0vXr7tN4mWb1Yc" || got.Datapoints.Source != "cache" || s.fake.ClientIDRequests() != before {
			t.Errorf("POST /identify after /decide = %v %+v, want the cached payload's ID without a clientId call", got.FingerprintID, got.Datapoints)
		}
	})

	for _, tt := range []struct{ name, ct, body, code string }{
		{"not JSON", "text/plain", `{"token": "demo-human"}`, "unsupported_media_type"},
		{"missing token", "application/json", `{}`, "invalid_request"},
		{"extra field", "application/json", `{"token": "demo-human", "action": {"type": "login"}}`, "invalid_request"},
		{"bad token", "application/json", `{"token": "a b"}`, "invalid_request"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := decode[errorResponse](t, s.do(http.MethodPost, "/identify", tt.ct, tt.body))
			if got.Error.Code != tt.code {
				t.Errorf("POST /identify %s = %+v, want %s", tt.body, got.Error, tt.code)
			}
		})
	}
}

func equalReasons(a, b []engine.Reason) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

// benchLogger formats log lines as production does (JSON, access log on)
// but throws them away: a test's growing log buffer would be measured
// instead.
func benchLogger() *slog.Logger {
	return slog.New(api.LogHandler(slog.NewJSONHandler(io.Discard, nil)))
}

// BenchmarkDecideCachedWithKey is BenchmarkDecideCached behind an API key
// and a (never reached) per-key rate limit: the cost of authentication.
func BenchmarkDecideCachedWithKey(b *testing.B) {
	s := newStack(b, nil)
	keys := api.NewKeys([]api.Key{{Name: "a", Secret: "key_a_0123456789abcdef"}, {Name: "b", Secret: "key_b_0123456789abcdef"}})
	h := api.New(api.Config{Logger: benchLogger(), Keys: keys, RateLimit: api.RateLimit{Rate: 1e9, Burst: 1e9}}, s.engine)
	body := `{"token": "demo-vpn", "action": {"type": "checkout", "amount": 900, "currency": "USD"}, "external_ids": {"accountId": "1234567890"}}`
	s.do(http.MethodPost, "/decide", "application/json", body)
	s.cache.Wait()
	b.ReportAllocs()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/decide", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer key_b_0123456789abcdef")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("POST /decide = %d", rec.Code)
		}
	}
}

// BenchmarkDecideCached measures a cached /decide through the Gin router
// with the shipped policies: request decoding, cache hit, policy evaluation
// and response encoding; no network.
func BenchmarkDecideCached(b *testing.B) {
	s := newStack(b, nil)
	s.handler = api.New(api.Config{Logger: benchLogger()}, s.engine)
	body := `{"token": "demo-vpn", "action": {"type": "checkout", "amount": 900, "currency": "USD"}, "external_ids": {"accountId": "1234567890"}}`
	if rec := s.do(http.MethodPost, "/decide", "application/json", body); rec.Code != 200 {
		b.Fatalf("warm-up: %d %s", rec.Code, rec.Body)
	}
	s.cache.Wait()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		req := httptest.NewRequest(http.MethodPost, "/decide", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, req)
		if rec.Code != 200 {
			b.Fatalf("POST /decide = %d", rec.Code)
		}
	}
	if s.fake.ClientRequests() != 1 {
		b.Fatalf("upstream requests = %d, want 1 (every decision but the first from the cache)", s.fake.ClientRequests())
	}
}

func TestDecideRejectsUnsafeJSON(t *testing.T) {
	s := newStack(t, nil)
	// body and action are two levels: 30 arrays make 32, 31 make 33.
	deep := `{"token": "demo-human", "action": {"type": "login", "x": ` + strings.Repeat("[", 30) + strings.Repeat("]", 30) + `}}`
	deeper := `{"token": "demo-human", "action": {"type": "login", "x": ` + strings.Repeat("[", 31) + strings.Repeat("]", 31) + `}}`
	tests := []struct {
		name, body, wantMsg string
		wantStatus          int
	}{
		{"duplicate top-level key", `{"token": "demo-human", "token": "demo-bot", "action": {"type": "login"}}`, `token: duplicate key`, 400},
		{"duplicate nested key", `{"token": "demo-human", "action": {"type": "login", "type": "checkout"}}`, `action.type: duplicate key`, 400},
		{"same key in sibling objects is fine", `{"token": "demo-human", "action": {"type": "login", "a": {"k": 1}, "b": {"k": 2}}}`, "", 200},
		{"nesting at the limit", deep, "", 200},
		{"nesting past the limit", deeper, "nested deeper than 32 levels", 400},
		{"huge integer", `{"token": "demo-human", "action": {"type": "checkout", "amount": 1` + strings.Repeat("0", 40) + `}}`, "action.amount: number", 400},
		{"number beyond float64", `{"token": "demo-human", "action": {"type": "checkout", "amount": 1e400}}`, "action.amount: number", 400},
		{"huge number in an array", `{"token": "demo-human", "action": {"type": "checkout", "items": [1, 2, 9e999]}}`, "action.items[2]: number", 400},
		{"ordinary numbers", `{"token": "demo-human", "action": {"type": "checkout", "amount": 129.99, "n": -3, "e": 1.5e3}}`, "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := s.do(http.MethodPost, "/decide", "application/json", tt.body)
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Body.String(), tt.wantMsg) {
				t.Errorf("POST /decide = %d %s, want %d mentioning %q", rec.Code, rec.Body, tt.wantStatus, tt.wantMsg)
			}
		})
	}
}
