package csidetest_test

import (
	"encoding/json"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/verdict-engine/verdict/csideclient/csidetest"
)

// documented is the scenario table of cside-api.md: the status each token
// gets from /token/v1/client and from /token/v1/clientId.
var documented = map[string]struct{ client, clientID int }{
	"demo-human":     {http.StatusOK, http.StatusOK},
	"demo-bot":       {http.StatusOK, http.StatusOK},
	"demo-goodbot":   {http.StatusOK, http.StatusOK},
	"demo-vpn":       {http.StatusOK, http.StatusOK},
	"demo-tor":       {http.StatusOK, http.StatusOK},
	"demo-incognito": {http.StatusOK, http.StatusOK},
	"demo-throwaway": {http.StatusOK, http.StatusOK},
	"demo-tamper":    {http.StatusOK, http.StatusOK},
	"demo-noid":      {http.StatusOK, http.StatusNotFound},
	"demo-slow":      {http.StatusOK, http.StatusOK},
	"demo-error":     {http.StatusServiceUnavailable, http.StatusServiceUnavailable},
	"demo-garbage":   {http.StatusOK, http.StatusOK},
	"demo-truncated": {http.StatusOK, http.StatusOK},
	"demo-huge":      {http.StatusOK, http.StatusOK},
}

// httpClient bounds every request so that a broken fake fails, not hangs.
var httpClient = &http.Client{Timeout: 5 * time.Second}

// newServer starts a fake that is closed when the test ends.
func newServer(t *testing.T) *csidetest.Server {
	t.Helper()
	s := csidetest.NewServer()
	t.Cleanup(s.Close)
	return s
}

// answer is what the fake said to one request.
type answer struct {
	status int
	header http.Header
	body   []byte
}

// do sends one request to the fake and reads the whole answer. Extra
// header name/value pairs are set on the request.
func do(t *testing.T, method, url, contentType, body string, header ...string) answer {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatalf("http.NewRequest(%q, %q) error = %v", method, url, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s error = %v, want an answer", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return answer{resp.StatusCode, resp.Header, b}
}

// post sends token the way cside expects it.
func post(t *testing.T, url, token string, header ...string) answer {
	t.Helper()
	return do(t, http.MethodPost, url, "text/plain", token, header...)
}

// decodeID returns identification.fingerprintId and whether the key exists.
func decodeID(t *testing.T, token string, payload []byte) (string, bool) {
	t.Helper()
	var v struct {
		Identification map[string]json.RawMessage `json:"identification"`
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		t.Fatalf("Payload(%q): json.Unmarshal error = %v", token, err)
	}
	raw, ok := v.Identification["fingerprintId"]
	if !ok {
		return "", false
	}
	var id string
	if err := json.Unmarshal(raw, &id); err != nil {
		t.Fatalf("Payload(%q): fingerprintId = %s, want a string", token, raw)
	}
	return id, true
}

func TestTokensAreDocumented(t *testing.T) {
	got := csidetest.Tokens()
	slices.Sort(got)
	want := slices.Sorted(maps.Keys(documented))
	if !slices.Equal(got, want) {
		t.Errorf("Tokens() = %v, want %v", got, want)
	}
}

func TestScenarios(t *testing.T) {
	s := newServer(t)
	s.SetSlowDelay(time.Millisecond)

	tokens := slices.DeleteFunc(slices.Sorted(maps.Keys(documented)), func(t string) bool {
		return t == "demo-huge" // TestHugeBody reads a bounded part of it
	})
	tokens = append(tokens, "demo-unknown", "some-other-token", "demo-human-")
	for _, token := range tokens {
		t.Run(token, func(t *testing.T) {
			want, ok := documented[token]
			if !ok {
				want.client, want.clientID = http.StatusNotFound, http.StatusNotFound
			}
			payload, hasPayload := csidetest.Payload(token)

			got := post(t, s.URL+csidetest.ClientPath, token)
			if got.status != want.client {
				t.Errorf("POST %s %q status = %d, want %d", csidetest.ClientPath, token, got.status, want.client)
			}
			switch {
			case got.status != http.StatusOK:
			case token == "demo-garbage" || token == "demo-truncated":
				if json.Valid(got.body) {
					t.Errorf("POST %s %q body = %q, want invalid JSON", csidetest.ClientPath, token, got.body)
				}
			case !hasPayload:
				t.Errorf("Payload(%q) = false, want the payload the fake serves", token)
			default:
				if string(got.body) != string(payload) {
					t.Errorf("POST %s %q body = %d bytes, want Payload(%q) (%d bytes)", csidetest.ClientPath, token, len(got.body), token, len(payload))
				}
				if ct := got.header.Get("Content-Type"); ct != "application/json" {
					t.Errorf("POST %s %q Content-Type = %q, want %q", csidetest.ClientPath, token, ct, "application/json")
				}
			}

			got = post(t, s.URL+csidetest.ClientIDPath, token)
			if got.status != want.clientID {
				t.Errorf("POST %s %q status = %d, want %d", csidetest.ClientIDPath, token, got.status, want.clientID)
			}
			if got.status == http.StatusOK && hasPayload {
				id, _ := decodeID(t, token, payload)
				if string(got.body) != id {
					t.Errorf("POST %s %q body = %q, want fingerprintId %q", csidetest.ClientIDPath, token, got.body, id)
				}
			}
			if got.status != http.StatusOK && !json.Valid(got.body) {
				t.Errorf("POST %s %q error body = %q, want JSON", csidetest.ClientIDPath, token, got.body)
			}
		})
	}
}

func TestPayloads(t *testing.T) {
	owner := map[string]string{} // fingerprintId -> token
	for _, token := range slices.Sorted(maps.Keys(documented)) {
		payload, ok := csidetest.Payload(token)
		wantOK := !slices.Contains([]string{"demo-error", "demo-garbage", "demo-truncated", "demo-huge"}, token)
		if ok != wantOK {
			t.Errorf("Payload(%q) ok = %v, want %v", token, ok, wantOK)
		}
		if !ok {
			continue
		}
		var obj map[string]any
		if err := json.Unmarshal(payload, &obj); err != nil {
			t.Errorf("Payload(%q) = invalid JSON object: %v", token, err)
			continue
		}
		id, hasID := decodeID(t, token, payload)
		switch {
		case token == "demo-noid":
			if hasID {
				t.Errorf("Payload(%q) fingerprintId = %q, want none", token, id)
			}
			continue
		case id == "":
			t.Errorf("Payload(%q) fingerprintId = %q, want one", token, id)
			continue
		}
		if token == "demo-slow" {
			continue // shares demo-human's payload, checked below
		}
		if prev, dup := owner[id]; dup {
			t.Errorf("Payload(%q) fingerprintId = %q, same as Payload(%q)", token, id, prev)
		}
		owner[id] = token
	}
	human, _ := csidetest.Payload("demo-human")
	slow, _ := csidetest.Payload("demo-slow")
	if string(human) != string(slow) {
		t.Errorf("Payload(%q) differs from Payload(%q), want the same payload", "demo-slow", "demo-human")
	}
	for _, token := range []string{"demo-unknown", "", "demo-HUMAN"} {
		if p, ok := csidetest.Payload(token); ok {
			t.Errorf("Payload(%q) = %d bytes, true, want nil, false", token, len(p))
		}
	}
}

func TestCounters(t *testing.T) {
	s := newServer(t)
	for range 3 {
		post(t, s.URL+csidetest.ClientPath, "demo-human")
	}
	for range 2 {
		post(t, s.URL+csidetest.ClientIDPath, "demo-unknown")
	}
	post(t, s.URL+"/token/v1/other", "demo-human")

	if got := s.ClientRequests(); got != 3 {
		t.Errorf("ClientRequests() = %d, want 3", got)
	}
	if got := s.ClientIDRequests(); got != 2 {
		t.Errorf("ClientIDRequests() = %d, want 2", got)
	}
	s.ResetCounts()
	if got := s.ClientRequests(); got != 0 {
		t.Errorf("ClientRequests() after ResetCounts = %d, want 0", got)
	}
	if got := s.ClientIDRequests(); got != 0 {
		t.Errorf("ClientIDRequests() after ResetCounts = %d, want 0", got)
	}
	post(t, s.URL+csidetest.ClientIDPath, "demo-human")
	if got := s.ClientIDRequests(); got != 1 {
		t.Errorf("ClientIDRequests() after one more request = %d, want 1", got)
	}
}

func TestBadRequests(t *testing.T) {
	s := newServer(t)
	tests := []struct {
		name        string
		method      string
		path        string
		contentType string
		body        string
		want        int
	}{
		{"GET", http.MethodGet, csidetest.ClientPath, "text/plain", "", http.StatusMethodNotAllowed},
		{"PUT", http.MethodPut, csidetest.ClientIDPath, "text/plain", "demo-human", http.StatusMethodNotAllowed},
		{"JSON content type", http.MethodPost, csidetest.ClientPath, "application/json", `"demo-human"`, http.StatusBadRequest},
		{"no content type", http.MethodPost, csidetest.ClientIDPath, "", "demo-human", http.StatusBadRequest},
		{"text/plain with charset", http.MethodPost, csidetest.ClientPath, "text/plain; charset=utf-8", "demo-human", http.StatusOK},
		{"unknown path", http.MethodPost, "/token/v2/verify", "text/plain", "demo-human", http.StatusNotFound},
		{"root", http.MethodPost, "/", "text/plain", "demo-human", http.StatusNotFound},
		{"empty token", http.MethodPost, csidetest.ClientPath, "text/plain", "", http.StatusBadRequest},
		{"blank token", http.MethodPost, csidetest.ClientPath, "text/plain", " \n", http.StatusBadRequest},
		{"token with newline", http.MethodPost, csidetest.ClientPath, "text/plain", "demo-human\n", http.StatusOK},
		{"token too long", http.MethodPost, csidetest.ClientPath, "text/plain", strings.Repeat("a", 16<<10+1), http.StatusBadRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := do(t, tt.method, s.URL+tt.path, tt.contentType, tt.body)
			if got.status != tt.want {
				t.Errorf("%s %s (%s) status = %d, want %d", tt.method, tt.path, tt.contentType, got.status, tt.want)
			}
			if tt.want == http.StatusMethodNotAllowed {
				if allow := got.header.Get("Allow"); allow != http.MethodPost {
					t.Errorf("%s %s Allow = %q, want %q", tt.method, tt.path, allow, http.MethodPost)
				}
			}
			if tt.want != http.StatusOK {
				var e struct{ Error string }
				if err := json.Unmarshal(got.body, &e); err != nil || e.Error == "" {
					t.Errorf("%s %s body = %q, want a JSON error object", tt.method, tt.path, got.body)
				}
			}
		})
	}
}

func TestSlowDelay(t *testing.T) {
	s := newServer(t)
	const delay = 100 * time.Millisecond
	s.SetSlowDelay(delay)

	start := time.Now()
	got := post(t, s.URL+csidetest.ClientPath, "demo-slow")
	elapsed := time.Since(start)
	if got.status != http.StatusOK {
		t.Errorf("POST %s %q status = %d, want %d", csidetest.ClientPath, "demo-slow", got.status, http.StatusOK)
	}
	if elapsed < delay {
		t.Errorf("POST %s %q took %v, want >= %v", csidetest.ClientPath, "demo-slow", elapsed, delay)
	}
}

func TestLatency(t *testing.T) {
	s := newServer(t)
	const latency = 50 * time.Millisecond
	s.SetLatency(latency)

	for _, path := range []string{csidetest.ClientPath, csidetest.ClientIDPath} {
		start := time.Now()
		got := post(t, s.URL+path, "demo-human")
		if elapsed := time.Since(start); elapsed < latency {
			t.Errorf("POST %s took %v, want >= %v", path, elapsed, latency)
		}
		if got.status != http.StatusOK {
			t.Errorf("POST %s status = %d, want %d", path, got.status, http.StatusOK)
		}
	}
}

// TestLatencyAbandoned checks that a delayed request whose client goes away
// is abandoned: Close, which waits for outstanding requests, returns at once.
func TestLatencyAbandoned(t *testing.T) {
	s := csidetest.NewServer()
	s.SetLatency(10 * time.Second)
	impatient := &http.Client{Timeout: 50 * time.Millisecond}
	resp, err := impatient.Post(s.URL+csidetest.ClientPath, "text/plain", strings.NewReader("demo-human"))
	if err == nil {
		resp.Body.Close()
		t.Fatalf("POST %s with SetLatency(10s) error = nil, want a client timeout", csidetest.ClientPath)
	}

	start := time.Now()
	s.Close()
	if elapsed := time.Since(start); elapsed >= 5*time.Second {
		t.Errorf("Close() after an abandoned delayed request took %v, want < 5s", elapsed)
	}
}

func TestRequireHeader(t *testing.T) {
	s := newServer(t)
	s.RequireHeader("Authorization", "Bearer k1")

	tests := []struct {
		name   string
		header []string
		want   int
	}{
		{"missing", nil, http.StatusUnauthorized},
		{"wrong value", []string{"Authorization", "Bearer k2"}, http.StatusUnauthorized},
		{"other header", []string{"X-Api-Key", "Bearer k1"}, http.StatusUnauthorized},
		{"right", []string{"Authorization", "Bearer k1"}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, path := range []string{csidetest.ClientPath, csidetest.ClientIDPath} {
				if got := post(t, s.URL+path, "demo-human", tt.header...); got.status != tt.want {
					t.Errorf("POST %s with header %v status = %d, want %d", path, tt.header, got.status, tt.want)
				}
			}
		})
	}

	s.RequireHeader("", "")
	if got := post(t, s.URL+csidetest.ClientPath, "demo-human"); got.status != http.StatusOK {
		t.Errorf("POST %s after RequireHeader(\"\", \"\") status = %d, want %d", csidetest.ClientPath, got.status, http.StatusOK)
	}
}

func TestForcedStatus(t *testing.T) {
	s := newServer(t)
	for _, status := range []int{http.StatusTeapot, http.StatusTooManyRequests, http.StatusNotFound} {
		s.SetForcedStatus(status)
		for _, path := range []string{csidetest.ClientPath, csidetest.ClientIDPath} {
			if got := post(t, s.URL+path, "demo-human"); got.status != status {
				t.Errorf("POST %s with SetForcedStatus(%d) status = %d, want %d", path, status, got.status, status)
			}
		}
	}
	s.SetForcedStatus(0)
	if got := post(t, s.URL+csidetest.ClientPath, "demo-human"); got.status != http.StatusOK {
		t.Errorf("POST %s after SetForcedStatus(0) status = %d, want %d", csidetest.ClientPath, got.status, http.StatusOK)
	}
}

func TestErrorRate(t *testing.T) {
	statuses := func(rate float64) []int {
		s := newServer(t)
		s.SetErrorRate(rate)
		var out []int
		for range 20 {
			out = append(out, post(t, s.URL+csidetest.ClientPath, "demo-human").status)
		}
		return out
	}

	for _, tt := range []struct {
		rate float64
		want int
	}{{0, http.StatusOK}, {1, http.StatusServiceUnavailable}} {
		for i, got := range statuses(tt.rate) {
			if got != tt.want {
				t.Errorf("SetErrorRate(%v): request %d status = %d, want %d", tt.rate, i, got, tt.want)
			}
		}
	}

	first, second := statuses(0.5), statuses(0.5)
	if !slices.Equal(first, second) {
		t.Errorf("SetErrorRate(0.5) statuses = %v, then %v, want the same sequence", first, second)
	}
	if !slices.Contains(first, http.StatusOK) || !slices.Contains(first, http.StatusServiceUnavailable) {
		t.Errorf("SetErrorRate(0.5) statuses = %v, want both 200 and 503", first)
	}
}

func TestOutage(t *testing.T) {
	s := newServer(t)
	s.SetOutage(time.Minute)
	resp, err := httpClient.Post(s.URL+csidetest.ClientPath, "text/plain", strings.NewReader("demo-human"))
	if err == nil {
		resp.Body.Close()
		t.Errorf("POST %s during an outage status = %d, want a dropped connection", csidetest.ClientPath, resp.StatusCode)
	}
	s.SetOutage(0)
	if got := post(t, s.URL+csidetest.ClientPath, "demo-human"); got.status != http.StatusOK {
		t.Errorf("POST %s after SetOutage(0) status = %d, want %d", csidetest.ClientPath, got.status, http.StatusOK)
	}
}

func TestHugeBody(t *testing.T) {
	s := newServer(t)
	resp, err := httpClient.Post(s.URL+csidetest.ClientPath, "text/plain", strings.NewReader("demo-huge"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ContentLength != csidetest.HugeBodyBytes {
		t.Errorf("demo-huge = %d with Content-Length %d, want 200 and %d", resp.StatusCode, resp.ContentLength, csidetest.HugeBodyBytes)
	}
	n, err := io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<20))
	if n != 4<<20 || err != nil {
		t.Errorf("read %d bytes of demo-huge (err %v), want at least 4 MiB streamed", n, err)
	}
}

func TestHumanFamily(t *testing.T) {
	s := newServer(t)
	human, _ := csidetest.Payload("demo-human")
	ids := map[string]bool{}
	for _, token := range []string{"demo-human-1", "demo-human-2", "demo-human-x7"} {
		payload, ok := csidetest.Payload(token)
		if !ok || len(payload) != len(human) {
			t.Fatalf("Payload(%q) = %d bytes, ok %v; want the human payload's size", token, len(payload), ok)
		}
		id, _ := decodeID(t, token, payload)
		if ids[id] || id == "fp_8Zq2kL0vXr7tN4mWb1Yc" {
			t.Errorf("Payload(%q) fingerprintId = %q: want one of its own", token, id)
		}
		ids[id] = true
		if got := post(t, s.URL+csidetest.ClientIDPath, token); string(got.body) != id {
			t.Errorf("clientId(%q) = %q, want %q", token, got.body, id)
		}
	}
	if _, ok := csidetest.Payload("demo-human-"); ok {
		t.Errorf(`Payload("demo-human-") = ok, want an unknown token`)
	}
}
