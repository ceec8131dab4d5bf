package api_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/verdict-engine/verdict/api"
)

func TestParseKeys(t *testing.T) {
	f, err := os.Open("testdata/keys.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	keys, err := api.ParseKeys(f)
	if err != nil || len(keys) != 2 || keys[0].Name != "checkout-service" || keys[1].Secret != "bo_live_1a2b3c4d5e6f7a8b9c0d" {
		t.Fatalf("ParseKeys(testdata/keys.txt) = %+v, %v", keys, err)
	}
	secret := "s3cret_value_0123456789"
	tests := []struct{ name, text, wantErr string }{
		{"no colon", "justakey0123456789", "line 1: want name:key"},
		{"bad name", "bad name:" + secret, "line 1: key name"},
		{"short key", "a:short", "shorter than 16"},
		{"key with space", "a:has a space 0123456789", "printable"},
		{"duplicate name", "a:" + secret + "\na:" + secret + "x", "line 2: key name a already used on line 1"},
		{"duplicate key", "a:" + secret + "\nb:" + secret, "line 2 (b): same key as line 1"},
		{"empty", "# only a comment\n\n", "no keys"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := api.ParseKeys(strings.NewReader(tt.text))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("ParseKeys(%q) error = %v, want %q", tt.text, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows the key", err)
			}
		})
	}
}

func TestAuthentication(t *testing.T) {
	s := newStack(t, nil)
	keys := api.NewKeys([]api.Key{{Name: "checkout-service", Secret: "ck_live_8f3b2a91c4d7e6f0a1b2c3d4"}})
	h := api.New(api.Config{Keys: keys}, s.engine)
	body := `{"token":"demo-human","action":{"type":"login"}}`
	tests := []struct {
		name, auth    string
		wantStatus    int
		wantChallenge string
	}{
		{"no header", "", 401, `Bearer realm="verdict"`},
		{"wrong scheme", "Basic Y2s6eA==", 401, `Bearer realm="verdict"`},
		{"wrong key", "Bearer ck_live_wrong_key_0000000000", 401, `error="invalid_token"`},
		{"prefix of the key", "Bearer ck_live_8f3b2a91", 401, `error="invalid_token"`},
		{"right key", "Bearer ck_live_8f3b2a91c4d7e6f0a1b2c3d4", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest(http.MethodPost, "/decide", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if tt.auth != "" {
				req.Header.Set("Authorization", tt.auth)
			}
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			if rec.Code != tt.wantStatus || !strings.Contains(rec.Header().Get("WWW-Authenticate"), tt.wantChallenge) {
				t.Errorf("POST /decide = %d (WWW-Authenticate %q), want %d with %q", rec.Code, rec.Header().Get("WWW-Authenticate"), tt.wantStatus, tt.wantChallenge)
			}
			if rec.Code == 401 && !strings.Contains(rec.Body.String(), `"code":"unauthorized"`) {
				t.Errorf("401 body = %s, want a JSON error", rec.Body)
			}
		})
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/healthz", nil))
	if rec.Code != 200 {
		t.Errorf("GET /healthz without a key = %d, want 200: probes carry no keys", rec.Code)
	}

	// Rotation: the new set replaces the old one atomically.
	keys.Replace([]api.Key{{Name: "rotated", Secret: "new_key_0123456789abcdef"}})
	for auth, want := range map[string]int{"Bearer ck_live_8f3b2a91c4d7e6f0a1b2c3d4": 401, "Bearer new_key_0123456789abcdef": 200} {
		req := httptest.NewRequest(http.MethodPost, "/decide", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != want {
			t.Errorf("after rotation, %s... = %d, want %d", auth[:12], rec.Code, want)
		}
	}
}

func TestAdminIsolation(t *testing.T) {
	s := newStack(t, nil)
	public := api.New(api.Config{}, s.engine)
	for _, path := range []string{"/admin/policies", "/admin/shadow", "/metrics", "/debug/pprof/"} {
		rec := httptest.NewRecorder()
		public.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
		if rec.Code != 404 {
			t.Errorf("public GET %s = %d, want 404: admin routes live on the admin listener only", path, rec.Code)
		}
	}
	admin := api.NewAdmin(api.AdminConfig{Admin: s.engine, Keys: api.NewKeys([]api.Key{{Name: "ops", Secret: "ops_key_0123456789abcdef"}}),
		Metrics: api.NewMetrics(api.MetricSources{}, nil), Pprof: true})
	for _, tt := range []struct {
		method, path, auth string
		want               int
	}{
		{"GET", "/admin/policies", "", 401},
		{"POST", "/admin/policies/reload", "Bearer wrong_key_0123456789ab", 401},
		{"GET", "/metrics", "", 401},
		{"GET", "/admin/policies", "Bearer ops_key_0123456789abcdef", 200},
		{"GET", "/metrics", "Bearer ops_key_0123456789abcdef", 200},
		{"GET", "/debug/pprof/heap", "", 401},
		{"GET", "/debug/pprof/", "Bearer ops_key_0123456789abcdef", 200},
		{"GET", "/debug/pprof/goroutine?debug=1", "Bearer ops_key_0123456789abcdef", 200},
		{"GET", "/debug/pprof/cmdline", "Bearer ops_key_0123456789abcdef", 200},
	} {
		req := httptest.NewRequest(tt.method, tt.path, nil)
		if tt.auth != "" {
			req.Header.Set("Authorization", tt.auth)
		}
		rec := httptest.NewRecorder()
		admin.ServeHTTP(rec, req)
		if rec.Code != tt.want {
			t.Errorf("admin %s %s (%q) = %d, want %d", tt.method, tt.path, tt.auth, rec.Code, tt.want)
		}
	}
}

func TestRateLimitPerKey(t *testing.T) {
	s := newStack(t, nil)
	keys := api.NewKeys([]api.Key{{Name: "noisy", Secret: "noisy_key_0123456789ab"}, {Name: "quiet", Secret: "quiet_key_0123456789ab"}})
	h := api.New(api.Config{Keys: keys, RateLimit: api.RateLimit{Rate: 0.5, Burst: 3}}, s.engine)
	call := func(key string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPost, "/decide", strings.NewReader(`{"token":"demo-human","action":{"type":"login"}}`))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+key)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req.WithContext(context.Background()))
		return rec
	}
	for i := range 3 {
		if rec := call("noisy_key_0123456789ab"); rec.Code != 200 {
			t.Fatalf("noisy call %d within the burst = %d", i, rec.Code)
		}
	}
	rec := call("noisy_key_0123456789ab")
	if rec.Code != 429 || rec.Header().Get("Retry-After") != "2" || !strings.Contains(rec.Body.String(), `"code":"rate_limited"`) {
		t.Errorf("noisy call past the burst = %d, Retry-After %q, %s; want 429 with Retry-After 2", rec.Code, rec.Header().Get("Retry-After"), rec.Body)
	}
	if rec := call("quiet_key_0123456789ab"); rec.Code != 200 {
		t.Errorf("quiet key = %d, want 200: one key's limit does not starve another", rec.Code)
	}
}
