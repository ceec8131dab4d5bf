// Package csidetest provides a fake cside datapoints API for tests and for
// `verdict serve --demo`, the way net/http/httptest serves net/http.
//
// The fake serves the scenario tokens documented in the README (demo-human,
// demo-bot, ...) from fixtures embedded from testdata/, and offers knobs that
// tests turn to make the upstream slow, failing or down, plus per-endpoint
// request counters that prove caching and coalescing.
package csidetest

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Paths the fake serves; they match cside's documented defaults.
const (
	ClientPath   = "/token/v1/client"
	ClientIDPath = "/token/v1/clientId"
)

// DefaultSlowDelay is how long the demo-slow token takes to answer unless
// SetSlowDelay says otherwise.
const DefaultSlowDelay = 2 * time.Second

// maxTokenBytes caps the request body the fake reads; cside's own limit is
// not published, and Verdict never sends more than 4096 bytes.
const maxTokenBytes = 16 << 10

//go:embed testdata/*.json
var fixtures embed.FS

// scenario is what the fake answers for one token.
type scenario struct {
	fixture   string // testdata file served by /client; "" for none
	status    int    // forced status on both endpoints; 0 for 200
	slow      bool   // answer after the slow delay
	garbage   bool   // answer 200 with a body that is not JSON
	truncated bool   // answer 200 with the human payload cut in half
	huge      bool   // answer 200 with a 1 GiB body, streamed
}

// HugeBodyBytes is the size of demo-huge's answer.
const HugeBodyBytes = 1 << 30

// HumanFamily is the prefix of tokens that get the human payload with a
// fingerprint ID of their own (demo-human-1, demo-human-2, ...): as many
// distinct tokens as a load or memory test needs.
const HumanFamily = "demo-human-"

// scenarios maps every documented demo token to its answer. Any other token
// is unknown: 404 on both endpoints.
var scenarios = map[string]scenario{
	"demo-human":     {fixture: "human.json"},
	"demo-bot":       {fixture: "bot.json"},
	"demo-goodbot":   {fixture: "goodbot.json"},
	"demo-vpn":       {fixture: "vpn.json"},
	"demo-tor":       {fixture: "tor.json"},
	"demo-incognito": {fixture: "incognito.json"},
	"demo-throwaway": {fixture: "throwaway.json"},
	"demo-tamper":    {fixture: "tamper.json"},
	"demo-noid":      {fixture: "noid.json"},
	"demo-slow":      {fixture: "human.json", slow: true},
	"demo-error":     {status: http.StatusServiceUnavailable},
	"demo-garbage":   {garbage: true},
	"demo-truncated": {truncated: true},
	"demo-huge":      {huge: true},
}

// lookup returns the scenario for token, including the human family.
func lookup(token string) (scenario, bool) {
	if sc, ok := scenarios[token]; ok {
		return sc, true
	}
	if strings.HasPrefix(token, HumanFamily) && len(token) > len(HumanFamily) {
		return scenario{fixture: "human.json"}, true
	}
	return scenario{}, false
}

// Tokens returns every scenario token the fake knows, in no particular
// order; the HumanFamily tokens are not listed.
func Tokens() []string {
	out := make([]string, 0, len(scenarios))
	for t := range scenarios {
		out = append(out, t)
	}
	return out
}

// Payload returns the JSON payload /token/v1/client serves for token, and
// false when the token has none (unknown, error, garbage, truncated or huge
// scenarios).
func Payload(token string) ([]byte, bool) {
	sc, ok := lookup(token)
	if !ok || sc.fixture == "" {
		return nil, false
	}
	b, err := fixtures.ReadFile("testdata/" + sc.fixture)
	if err != nil {
		panic(fmt.Sprintf("csidetest: embedded fixture %s missing: %v", sc.fixture, err)) // build defect, not input
	}
	if _, fixed := scenarios[token]; !fixed {
		// A HumanFamily token: its own fingerprint ID, derived from it.
		sum := sha256.Sum256([]byte(token))
		b = bytes.Replace(b, []byte(fingerprintID(b)), []byte("fp_"+hex.EncodeToString(sum[:10])), 1)
	}
	return b, true
}

// Server is a fake cside API listening on a loopback port. Its knobs are safe
// to turn from any goroutine while requests are served.
type Server struct {
	// URL is the base URL of the fake, e.g. http://127.0.0.1:41234.
	URL string

	srv *httptest.Server

	mu           sync.Mutex
	latency      time.Duration
	slowDelay    time.Duration
	forcedStatus int
	errorRate    float64
	outageUntil  time.Time
	headerName   string
	headerValue  string
	rng          *rand.Rand

	clientRequests   atomic.Int64
	clientIDRequests atomic.Int64
}

// NewServer starts a fake cside on 127.0.0.1 with a random free port. Call
// Close when done.
func NewServer() *Server {
	s := &Server{
		slowDelay: DefaultSlowDelay,
		rng:       rand.New(rand.NewPCG(1, 2)), // #nosec G404 -- a fixed seed makes injected failures repeatable; nothing secret
	}
	s.srv = httptest.NewServer(s)
	s.URL = s.srv.URL
	return s
}

// Close shuts the fake down, blocking until outstanding requests finish.
func (s *Server) Close() { s.srv.Close() }

// CloseClientConnections closes every open connection to the fake.
func (s *Server) CloseClientConnections() { s.srv.CloseClientConnections() }

// SetLatency delays every answer by d (0 for none). A delayed request whose
// client goes away is abandoned.
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latency = d
}

// SetSlowDelay sets how long demo-slow takes (default DefaultSlowDelay).
func (s *Server) SetSlowDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.slowDelay = d
}

// SetForcedStatus makes every request answer status with a small JSON error
// body; 0 turns it off.
func (s *Server) SetForcedStatus(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.forcedStatus = status
}

// SetErrorRate makes a fraction p (0..1) of requests answer 503. The choice
// is pseudo-random with a fixed seed, so runs are repeatable.
func (s *Server) SetErrorRate(p float64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errorRate = p
}

// SetOutage drops every connection without an answer for d from now, the
// way a crashed upstream behind a load balancer does; 0 ends an outage.
func (s *Server) SetOutage(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.outageUntil = time.Now().Add(d)
}

// RequireHeader makes the fake answer 401 to requests that do not carry the
// header name with exactly value, like an API key check; "" turns it off.
func (s *Server) RequireHeader(name, value string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.headerName, s.headerValue = name, value
}

// ClientRequests reports how many requests reached /token/v1/client.
func (s *Server) ClientRequests() int64 { return s.clientRequests.Load() }

// ClientIDRequests reports how many requests reached /token/v1/clientId.
func (s *Server) ClientIDRequests() int64 { return s.clientIDRequests.Load() }

// ResetCounts sets both request counters to zero.
func (s *Server) ResetCounts() {
	s.clientRequests.Store(0)
	s.clientIDRequests.Store(0)
}

// knobs is a consistent snapshot of the test knobs for one request.
type knobs struct {
	latency, slowDelay   time.Duration
	status               int
	fail, outage         bool
	headerName, headerVa string
}

func (s *Server) snapshot() knobs {
	s.mu.Lock()
	defer s.mu.Unlock()
	return knobs{
		latency:    s.latency,
		slowDelay:  s.slowDelay,
		status:     s.forcedStatus,
		fail:       s.errorRate > 0 && s.rng.Float64() < s.errorRate,
		outage:     time.Now().Before(s.outageUntil),
		headerName: s.headerName,
		headerVa:   s.headerValue,
	}
}

// ServeHTTP answers one cside API request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case ClientPath:
		s.clientRequests.Add(1)
	case ClientIDPath:
		s.clientIDRequests.Add(1)
	default:
		writeError(w, http.StatusNotFound, "no such endpoint")
		return
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "method must be POST")
		return
	}

	// Read the token before any delay: net/http notices a client that went
	// away (and cancels r.Context) only once the request body is consumed.
	body, readErr := io.ReadAll(io.LimitReader(r.Body, maxTokenBytes+1))

	k := s.snapshot()
	if k.outage {
		dropConnection(w)
		return
	}
	if !sleep(r, k.latency) {
		return
	}
	switch {
	case k.status != 0:
		writeError(w, k.status, "forced status")
		return
	case k.fail:
		writeError(w, http.StatusServiceUnavailable, "injected failure")
		return
	case k.headerName != "" && r.Header.Get(k.headerName) != k.headerVa:
		writeError(w, http.StatusUnauthorized, "missing or wrong credentials")
		return
	}

	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "text/plain" {
		writeError(w, http.StatusBadRequest, "content type must be text/plain")
		return
	}
	if readErr != nil {
		writeError(w, http.StatusBadRequest, "unreadable body")
		return
	}
	token := string(bytes.TrimSpace(body))
	switch {
	case token == "":
		writeError(w, http.StatusBadRequest, "empty token")
		return
	case len(body) > maxTokenBytes:
		writeError(w, http.StatusBadRequest, "token too long")
		return
	}

	sc, ok := lookup(token)
	if !ok {
		writeError(w, http.StatusNotFound, "token not found")
		return
	}
	if sc.slow && !sleep(r, k.slowDelay) {
		return
	}
	if sc.status != 0 {
		writeError(w, sc.status, "scenario status")
		return
	}
	switch {
	case sc.garbage:
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `<html><body>502 Bad Gateway</body></html`)
		return
	case sc.truncated:
		human, _ := Payload("demo-human")
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(human[:len(human)/2])
		return
	case sc.huge:
		writeHuge(w)
		return
	}

	payload, _ := Payload(token)
	if r.URL.Path == ClientPath {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(payload)
		return
	}
	id := fingerprintID(payload)
	if id == "" {
		writeError(w, http.StatusNotFound, "no fingerprint for this token")
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = io.WriteString(w, id)
}

// fingerprintID pulls identification.fingerprintId out of a fixture with a
// plain string scan, so that the fake does not share Verdict's JSON handling.
func fingerprintID(payload []byte) string {
	const key = `"fingerprintId": "`
	i := bytes.Index(payload, []byte(key))
	if i < 0 {
		return ""
	}
	rest := payload[i+len(key):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return ""
	}
	return string(rest[:j])
}

// writeHuge streams HugeBodyBytes of a JSON string that never ends, until
// the client stops reading.
func writeHuge(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(HugeBodyBytes))
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	copy(chunk, `{"pad": "`)
	for sent := 0; sent < HugeBodyBytes; sent += len(chunk) {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// sleep waits d or until the client goes away; it reports whether to go on.
func sleep(r *http.Request, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

func dropConnection(w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		panic(http.ErrAbortHandler) // net/http closes the connection without logging
	}
	_ = conn.Close()
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = fmt.Fprintf(w, "{\"error\":%q}\n", strings.ReplaceAll(msg, `"`, `'`))
}
