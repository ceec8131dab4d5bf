package csideclient_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/csideclient/csidetest"
)

// sentinels are the three errors every Client error wraps exactly one of.
var sentinels = []error{csideclient.ErrNotFound, csideclient.ErrRejected, csideclient.ErrUnavailable}

// newFake starts a fake cside that is closed when the test ends.
func newFake(t *testing.T) *csidetest.Server {
	t.Helper()
	fake := csidetest.NewServer()
	t.Cleanup(fake.Close)
	return fake
}

// newClient builds a Client from cfg or fails the test.
func newClient(t *testing.T, cfg csideclient.Config) *csideclient.Client {
	t.Helper()
	c, err := csideclient.New(cfg)
	if err != nil {
		t.Fatalf("New(%+v) error = %v, want nil", cfg, err)
	}
	return c
}

// newPlainServer starts an httptest server for answers the fake cannot give.
func newPlainServer(t *testing.T, h http.HandlerFunc) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// checkErr reports unless err is nil when want is nil, or wraps want and
// none of the other sentinels.
func checkErr(t *testing.T, call string, err, want error) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Errorf("%s error = %v, want nil", call, err)
		}
		return
	}
	if !errors.Is(err, want) {
		t.Errorf("%s error = %v, want %v", call, err, want)
		return
	}
	for _, s := range sentinels {
		if s != want && errors.Is(err, s) {
			t.Errorf("%s error = %v, wraps %v besides %v", call, err, s, want)
		}
	}
}

// fingerprintID decodes identification.fingerprintId from a fixture.
func fingerprintID(t *testing.T, payload []byte) string {
	t.Helper()
	var v struct {
		Identification struct {
			FingerprintID string `json:"fingerprintId"`
		} `json:"identification"`
	}
	if err := json.Unmarshal(payload, &v); err != nil {
		t.Fatalf("json.Unmarshal(fixture) error = %v", err)
	}
	return v.Identification.FingerprintID
}

// stateRecorder collects OnStateChange transitions.
type stateRecorder struct {
	mu          sync.Mutex
	transitions []string
}

func (r *stateRecorder) record(from, to string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.transitions = append(r.transitions, from+"->"+to)
}

func (r *stateRecorder) get() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.transitions)
}

func TestScenarioTokens(t *testing.T) {
	fake := newFake(t)
	fake.SetSlowDelay(time.Millisecond)

	tokens := csidetest.Tokens()
	slices.Sort(tokens)
	tokens = append(tokens, "demo-unknown", "an-arbitrary-token", "demo-human-7")
	for _, token := range tokens {
		t.Run(token, func(t *testing.T) {
			ctx := context.Background()
			c := newClient(t, csideclient.Config{BaseURL: fake.URL})

			var wantDataErr, wantIDErr error
			var wantID string
			payload, hasPayload := csidetest.Payload(token)
			switch {
			case hasPayload:
				wantID = fingerprintID(t, payload)
				if wantID == "" {
					wantIDErr = csideclient.ErrNotFound
				}
			case token == "demo-error", token == "demo-garbage", token == "demo-truncated", token == "demo-huge":
				wantDataErr, wantIDErr = csideclient.ErrUnavailable, csideclient.ErrUnavailable
			default:
				wantDataErr, wantIDErr = csideclient.ErrNotFound, csideclient.ErrNotFound
			}

			got, err := c.Datapoints(ctx, token)
			checkErr(t, fmt.Sprintf("Datapoints(%q)", token), err, wantDataErr)
			if !bytes.Equal(got, payload) {
				t.Errorf("Datapoints(%q) = %d bytes, want the %d-byte fixture", token, len(got), len(payload))
			}

			id, err := c.ClientID(ctx, token)
			checkErr(t, fmt.Sprintf("ClientID(%q)", token), err, wantIDErr)
			if id != wantID {
				t.Errorf("ClientID(%q) = %q, want %q", token, id, wantID)
			}
		})
	}

	// demo-noid must be the one fixture whose ID is missing, so the table above
	// really exercised "Datapoints ok, ClientID not found".
	payload, ok := csidetest.Payload("demo-noid")
	if !ok || fingerprintID(t, payload) != "" {
		t.Errorf("Payload(%q) = %v with an ID, want a payload without fingerprintId", "demo-noid", ok)
	}
}

func TestStatusMapping(t *testing.T) {
	tests := []struct {
		status int
		want   error
	}{
		{http.StatusBadRequest, csideclient.ErrRejected},
		{http.StatusUnauthorized, csideclient.ErrRejected},
		{http.StatusForbidden, csideclient.ErrRejected},
		{http.StatusUnprocessableEntity, csideclient.ErrRejected},
		{http.StatusMethodNotAllowed, csideclient.ErrRejected},
		{http.StatusNotFound, csideclient.ErrNotFound},
		{http.StatusRequestTimeout, csideclient.ErrUnavailable},
		{http.StatusTooManyRequests, csideclient.ErrUnavailable},
		{http.StatusInternalServerError, csideclient.ErrUnavailable},
		{http.StatusBadGateway, csideclient.ErrUnavailable},
		{http.StatusServiceUnavailable, csideclient.ErrUnavailable},
		{http.StatusGatewayTimeout, csideclient.ErrUnavailable},
		{http.StatusCreated, csideclient.ErrUnavailable}, // not the documented 200
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			fake := newFake(t)
			fake.SetForcedStatus(tt.status)
			c := newClient(t, csideclient.Config{BaseURL: fake.URL})
			ctx := context.Background()

			got, err := c.Datapoints(ctx, "demo-human")
			checkErr(t, fmt.Sprintf("Datapoints(%q) with status %d", "demo-human", tt.status), err, tt.want)
			if got != nil {
				t.Errorf("Datapoints(%q) with status %d = %q, want nil", "demo-human", tt.status, got)
			}
			id, err := c.ClientID(ctx, "demo-human")
			checkErr(t, fmt.Sprintf("ClientID(%q) with status %d", "demo-human", tt.status), err, tt.want)
			if id != "" {
				t.Errorf("ClientID(%q) with status %d = %q, want \"\"", "demo-human", tt.status, id)
			}
		})
	}
}

func TestRedirectNotFollowed(t *testing.T) {
	var mu sync.Mutex
	followed := 0
	srv := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/elsewhere" {
			mu.Lock()
			followed++
			mu.Unlock()
			_, _ = io.WriteString(w, `{"ok":true}`)
			return
		}
		http.Redirect(w, r, "/elsewhere", http.StatusFound)
	})
	c := newClient(t, csideclient.Config{BaseURL: srv.URL})

	_, err := c.Datapoints(context.Background(), "demo-human")
	checkErr(t, fmt.Sprintf("Datapoints(%q) after a 302", "demo-human"), err, csideclient.ErrUnavailable)
	_, err = c.ClientID(context.Background(), "demo-human")
	checkErr(t, fmt.Sprintf("ClientID(%q) after a 302", "demo-human"), err, csideclient.ErrUnavailable)
	mu.Lock()
	defer mu.Unlock()
	if followed != 0 {
		t.Errorf("redirect target reached %d times, want 0", followed)
	}
}

func TestBodyCap(t *testing.T) {
	payload, _ := csidetest.Payload("demo-human")
	size := int64(len(payload))

	t.Run("fake", func(t *testing.T) {
		fake := newFake(t)
		tests := []struct {
			name string
			max  int64
			want error
		}{
			{"small cap", 1024, csideclient.ErrUnavailable},
			{"one byte short", size - 1, csideclient.ErrUnavailable},
			{"exactly at cap", size, nil},
			{"default cap", 0, nil},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				c := newClient(t, csideclient.Config{BaseURL: fake.URL, MaxBodyBytes: tt.max})
				got, err := c.Datapoints(context.Background(), "demo-human")
				checkErr(t, fmt.Sprintf("Datapoints(%q) with MaxBodyBytes %d", "demo-human", tt.max), err, tt.want)
				if tt.want == nil && !bytes.Equal(got, payload) {
					t.Errorf("Datapoints(%q) with MaxBodyBytes %d = %d bytes, want %d", "demo-human", tt.max, len(got), size)
				}
			})
		}
	})

	// jsonObject returns a valid JSON object of exactly n bytes.
	jsonObject := func(n int) []byte {
		const head, tail = `{"pad":"`, `"}`
		return []byte(head + strings.Repeat("x", n-len(head)-len(tail)) + tail)
	}
	tests := []struct {
		name string
		body []byte
		want error
	}{
		{"2 MiB", jsonObject(2 << 20), csideclient.ErrUnavailable},
		{"default cap plus one", jsonObject(csideclient.DefaultMaxBodyBytes + 1), csideclient.ErrUnavailable},
		{"exactly the default cap", jsonObject(csideclient.DefaultMaxBodyBytes), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newPlainServer(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = w.Write(tt.body)
			})
			c := newClient(t, csideclient.Config{BaseURL: srv.URL})
			got, err := c.Datapoints(context.Background(), "demo-human")
			checkErr(t, fmt.Sprintf("Datapoints(%q) of %d bytes", "demo-human", len(tt.body)), err, tt.want)
			if tt.want == nil && !bytes.Equal(got, tt.body) {
				t.Errorf("Datapoints(%q) = %d bytes, want %d", "demo-human", len(got), len(tt.body))
			}
		})
	}
}

func TestPayloadValidation(t *testing.T) {
	tests := []struct {
		name string
		body string
		want error
	}{
		{"object", `{"a":1}`, nil},
		{"object with surrounding whitespace", " \n{\"a\":[1,2]}\n", nil},
		{"not JSON", `<html>oops</html>`, csideclient.ErrUnavailable},
		{"truncated", `{"identification":{"fingerprintId":"fp_`, csideclient.ErrUnavailable},
		{"array", `[{"a":1}]`, csideclient.ErrUnavailable},
		{"string", `"fp_8Zq2kL0vXr7tN4mWb1Yc"`, csideclient.ErrUnavailable},
		{"number", `42`, csideclient.ErrUnavailable},
		{"null", `null`, csideclient.ErrUnavailable},
		{"empty", ``, csideclient.ErrUnavailable},
		{"whitespace only", " \n\t", csideclient.ErrUnavailable},
		{"trailing garbage", `{"a":1} trailing`, csideclient.ErrUnavailable},
		{"two objects", `{"a":1}{"b":2}`, csideclient.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newPlainServer(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				_, _ = io.WriteString(w, tt.body)
			})
			c := newClient(t, csideclient.Config{BaseURL: srv.URL})
			got, err := c.Datapoints(context.Background(), "demo-human")
			checkErr(t, fmt.Sprintf("Datapoints(%q) answered %q", "demo-human", tt.body), err, tt.want)
			if tt.want == nil && string(got) != tt.body {
				t.Errorf("Datapoints(%q) = %q, want %q", "demo-human", got, tt.body)
			}
			if tt.want != nil && got != nil {
				t.Errorf("Datapoints(%q) = %q, want nil", "demo-human", got)
			}
		})
	}
}

func TestClientIDValidation(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		wantID string
		want   error
	}{
		{"plain", "fp_8Zq2kL0vXr7tN4mWb1Yc", "fp_8Zq2kL0vXr7tN4mWb1Yc", nil},
		{"trailing newline trimmed", "fp_abc\r\n", "fp_abc", nil},
		{"uuid", "0b0f5a43-0e0d-4a8e-9d6b-3f3c1f7a2e11", "0b0f5a43-0e0d-4a8e-9d6b-3f3c1f7a2e11", nil},
		{"256 bytes", strings.Repeat("a", 256), strings.Repeat("a", 256), nil},
		{"empty", "", "", csideclient.ErrUnavailable},
		{"whitespace only", " \n", "", csideclient.ErrUnavailable},
		{"300 bytes", strings.Repeat("a", 300), "", csideclient.ErrUnavailable},
		{"257 bytes", strings.Repeat("a", 257), "", csideclient.ErrUnavailable},
		{"control character", "fp_\x01abc", "", csideclient.ErrUnavailable},
		{"NUL", "fp_\x00abc", "", csideclient.ErrUnavailable},
		{"DEL", "fp_\x7fabc", "", csideclient.ErrUnavailable},
		{"inner newline", "fp_a\nfp_b", "", csideclient.ErrUnavailable},
		{"invalid UTF-8", "fp_\xffabc", "", csideclient.ErrUnavailable},
		{"HTML error page", "<html><body>502 Bad Gateway</body></html>", "", csideclient.ErrUnavailable},
		{"JSON object", `{"error":"oops"}`, "", csideclient.ErrUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newPlainServer(t, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				_, _ = io.WriteString(w, tt.body)
			})
			c := newClient(t, csideclient.Config{BaseURL: srv.URL})
			id, err := c.ClientID(context.Background(), "demo-human")
			checkErr(t, fmt.Sprintf("ClientID(%q) answered %q", "demo-human", tt.body), err, tt.want)
			if id != tt.wantID {
				t.Errorf("ClientID(%q) answered %q = %q, want %q", "demo-human", tt.body, id, tt.wantID)
			}
		})
	}
}

func TestTimeout(t *testing.T) {
	fake := newFake(t)
	fake.SetLatency(2 * time.Second)
	c := newClient(t, csideclient.Config{BaseURL: fake.URL, Timeout: 50 * time.Millisecond})

	calls := []struct {
		name string
		call func(context.Context) error
	}{
		{"Datapoints", func(ctx context.Context) error { _, err := c.Datapoints(ctx, "demo-human"); return err }},
		{"ClientID", func(ctx context.Context) error { _, err := c.ClientID(ctx, "demo-human"); return err }},
	}
	for _, tc := range calls {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			err := tc.call(context.Background())
			elapsed := time.Since(start)
			checkErr(t, fmt.Sprintf("%s(%q) against a 2s upstream", tc.name, "demo-human"), err, csideclient.ErrUnavailable)
			if errors.Is(err, context.Canceled) {
				t.Errorf("%s(%q) error = %v, want no context.Canceled (the caller did not give up)", tc.name, "demo-human", err)
			}
			if elapsed >= time.Second {
				t.Errorf("%s(%q) took %v, want < 1s with Timeout 50ms", tc.name, "demo-human", elapsed)
			}
		})
	}
}

// cancelOnWrite returns a context that is cancelled as soon as the request
// has been written to the wire, so the call is abandoned mid-flight.
func cancelOnWrite(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(httptrace.WroteRequestInfo) { cancel() },
	})
}

func TestCallerCancellation(t *testing.T) {
	t.Run("mid-flight", func(t *testing.T) {
		fake := newFake(t)
		fake.SetLatency(2 * time.Second)
		c := newClient(t, csideclient.Config{BaseURL: fake.URL})

		start := time.Now()
		_, err := c.Datapoints(cancelOnWrite(t), "demo-human")
		checkErr(t, fmt.Sprintf("Datapoints(%q) cancelled", "demo-human"), err, csideclient.ErrUnavailable)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Datapoints(%q) cancelled error = %v, want %v", "demo-human", err, context.Canceled)
		}
		if elapsed := time.Since(start); elapsed >= time.Second {
			t.Errorf("Datapoints(%q) cancelled took %v, want < 1s", "demo-human", elapsed)
		}

		_, err = c.ClientID(cancelOnWrite(t), "demo-human")
		checkErr(t, fmt.Sprintf("ClientID(%q) cancelled", "demo-human"), err, csideclient.ErrUnavailable)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("ClientID(%q) cancelled error = %v, want %v", "demo-human", err, context.Canceled)
		}
	})

	t.Run("already cancelled", func(t *testing.T) {
		fake := newFake(t)
		c := newClient(t, csideclient.Config{BaseURL: fake.URL})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		_, err := c.Datapoints(ctx, "demo-human")
		checkErr(t, fmt.Sprintf("Datapoints(%q) with a cancelled context", "demo-human"), err, csideclient.ErrUnavailable)
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Datapoints(%q) with a cancelled context error = %v, want %v", "demo-human", err, context.Canceled)
		}
	})

	t.Run("abandoned calls do not trip the breaker", func(t *testing.T) {
		fake := newFake(t)
		fake.SetLatency(2 * time.Second)
		var rec stateRecorder
		c := newClient(t, csideclient.Config{
			BaseURL: fake.URL,
			Breaker: csideclient.BreakerConfig{ConsecutiveFailures: 2, MinRequests: 2, OnStateChange: rec.record},
		})
		for i := range 10 {
			_, err := c.Datapoints(cancelOnWrite(t), "demo-human")
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("Datapoints(%q) call %d error = %v, want %v", "demo-human", i, err, context.Canceled)
			}
		}
		if got := c.BreakerState(); got != "closed" {
			t.Errorf("BreakerState() after 10 abandoned calls = %q, want %q", got, "closed")
		}
		if got := rec.get(); len(got) != 0 {
			t.Errorf("OnStateChange calls = %v, want none", got)
		}
	})
}

// TestAbandonedCallsOutsideRatio checks that abandoned calls make up neither
// the volume (MinRequests) nor the denominator of FailureRatio.
func TestAbandonedCallsOutsideRatio(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()

	tests := []struct {
		name      string
		abandoned int
		ok, fail  int
		want      string
	}{
		// 5 failures in 5 real calls: below MinRequests 10.
		{"abandoned calls are no volume", 5, 0, 5, "closed"},
		// 6 failures in 10 real calls: above FailureRatio 0.5.
		{"abandoned calls do not dilute", 20, 4, 6, "open"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake(t)
			c := newClient(t, csideclient.Config{
				BaseURL: fake.URL,
				Breaker: csideclient.BreakerConfig{ConsecutiveFailures: 100, MinRequests: 10, FailureRatio: 0.5, OpenFor: time.Hour},
			})
			for range tt.abandoned {
				if _, err := c.Datapoints(cancelled, "demo-human"); !errors.Is(err, context.Canceled) {
					t.Fatalf("Datapoints(%q) with a cancelled context error = %v, want %v", "demo-human", err, context.Canceled)
				}
			}
			for range tt.ok {
				if _, err := c.Datapoints(context.Background(), "demo-human"); err != nil {
					t.Fatalf("Datapoints(%q) error = %v, want nil", "demo-human", err)
				}
			}
			for range tt.fail {
				if _, err := c.Datapoints(context.Background(), "demo-error"); !errors.Is(err, csideclient.ErrUnavailable) {
					t.Fatalf("Datapoints(%q) error = %v, want %v", "demo-error", err, csideclient.ErrUnavailable)
				}
			}
			if got := c.BreakerState(); got != tt.want {
				t.Errorf("BreakerState() after %d abandoned, %d ok and %d failed calls = %q, want %q",
					tt.abandoned, tt.ok, tt.fail, got, tt.want)
			}
		})
	}
}

func TestBreakerOpensOnConsecutiveFailures(t *testing.T) {
	fake := newFake(t)
	fake.SetForcedStatus(http.StatusServiceUnavailable)
	var rec stateRecorder
	c := newClient(t, csideclient.Config{
		BaseURL: fake.URL,
		Breaker: csideclient.BreakerConfig{ConsecutiveFailures: 3, OpenFor: time.Hour, OnStateChange: rec.record},
	})
	ctx := context.Background()

	for i := range 3 {
		if got := c.BreakerState(); got != "closed" {
			t.Fatalf("BreakerState() after %d failures = %q, want %q", i, got, "closed")
		}
		_, err := c.Datapoints(ctx, "demo-human")
		checkErr(t, fmt.Sprintf("Datapoints(%q) call %d", "demo-human", i), err, csideclient.ErrUnavailable)
	}
	if got := c.BreakerState(); got != "open" {
		t.Fatalf("BreakerState() after 3 failures = %q, want %q", got, "open")
	}
	if got, want := rec.get(), []string{"closed->open"}; !slices.Equal(got, want) {
		t.Errorf("OnStateChange calls = %v, want %v", got, want)
	}

	// The open breaker answers both endpoints without asking the fake.
	before := fake.ClientRequests() + fake.ClientIDRequests()
	_, err := c.Datapoints(ctx, "demo-human")
	checkErr(t, fmt.Sprintf("Datapoints(%q) with an open breaker", "demo-human"), err, csideclient.ErrUnavailable)
	if err != nil && !strings.Contains(err.Error(), "breaker") {
		t.Errorf("Datapoints(%q) with an open breaker error = %q, want it to mention the breaker", "demo-human", err)
	}
	_, err = c.ClientID(ctx, "demo-human")
	checkErr(t, fmt.Sprintf("ClientID(%q) with an open breaker", "demo-human"), err, csideclient.ErrUnavailable)
	if err != nil && !strings.Contains(err.Error(), "breaker") {
		t.Errorf("ClientID(%q) with an open breaker error = %q, want it to mention the breaker", "demo-human", err)
	}
	if after := fake.ClientRequests() + fake.ClientIDRequests(); after != before {
		t.Errorf("requests reaching the fake with an open breaker = %d, want 0", after-before)
	}
}

func TestBreakerSharedByEndpoints(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, csideclient.Config{
		BaseURL: fake.URL,
		Breaker: csideclient.BreakerConfig{ConsecutiveFailures: 2, OpenFor: time.Hour},
	})
	ctx := context.Background()
	for range 2 {
		_, err := c.ClientID(ctx, "demo-error")
		checkErr(t, fmt.Sprintf("ClientID(%q)", "demo-error"), err, csideclient.ErrUnavailable)
	}
	before := fake.ClientRequests()
	_, err := c.Datapoints(ctx, "demo-human")
	checkErr(t, fmt.Sprintf("Datapoints(%q) after ClientID failures", "demo-human"), err, csideclient.ErrUnavailable)
	if got := fake.ClientRequests(); got != before {
		t.Errorf("ClientRequests() = %d, want %d (breaker open)", got, before)
	}
}

func TestBreakerOpensOnFailureRatio(t *testing.T) {
	fake := newFake(t)
	fake.SetErrorRate(0.6)
	var rec stateRecorder
	c := newClient(t, csideclient.Config{
		BaseURL: fake.URL,
		NoRetry: true, // every attempt is a call: the ratio is the fake's
		Breaker: csideclient.BreakerConfig{
			ConsecutiveFailures: 100, MinRequests: 10, FailureRatio: 0.5, OpenFor: time.Hour,
			OnStateChange: rec.record,
		},
	})
	const calls = 20
	for i := range calls {
		_, err := c.Datapoints(context.Background(), "demo-human")
		if err != nil && !errors.Is(err, csideclient.ErrUnavailable) {
			t.Fatalf("Datapoints(%q) call %d error = %v, want nil or %v", "demo-human", i, err, csideclient.ErrUnavailable)
		}
	}
	if got := c.BreakerState(); got != "open" {
		t.Errorf("BreakerState() after %d calls at error rate 0.6 = %q, want %q", calls, got, "open")
	}
	if got := fake.ClientRequests(); got >= calls {
		t.Errorf("ClientRequests() = %d, want fewer than %d (breaker open)", got, calls)
	}
	if got, want := rec.get(), []string{"closed->open"}; !slices.Equal(got, want) {
		t.Errorf("OnStateChange calls = %v, want %v", got, want)
	}
}

func TestBreakerIgnoresAnswers(t *testing.T) {
	tests := []struct {
		name   string
		status int    // forced status; 0 for none
		token  string // token sent
		want   error
	}{
		{"404 unknown token", 0, "demo-unknown", csideclient.ErrNotFound},
		{"404 noid", 0, "demo-noid", csideclient.ErrNotFound},
		{"401", http.StatusUnauthorized, "demo-human", csideclient.ErrRejected},
		{"400", http.StatusBadRequest, "demo-human", csideclient.ErrRejected},
		{"403", http.StatusForbidden, "demo-human", csideclient.ErrRejected},
		{"422", http.StatusUnprocessableEntity, "demo-human", csideclient.ErrRejected},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := newFake(t)
			fake.SetForcedStatus(tt.status)
			var rec stateRecorder
			c := newClient(t, csideclient.Config{
				BaseURL: fake.URL,
				Breaker: csideclient.BreakerConfig{ConsecutiveFailures: 2, MinRequests: 2, OnStateChange: rec.record},
			})
			for i := range 20 {
				_, err := c.ClientID(context.Background(), tt.token)
				checkErr(t, fmt.Sprintf("ClientID(%q) call %d", tt.token, i), err, tt.want)
			}
			if got := c.BreakerState(); got != "closed" {
				t.Errorf("BreakerState() after 20 %s answers = %q, want %q", tt.name, got, "closed")
			}
			if got := fake.ClientIDRequests(); got != 20 {
				t.Errorf("ClientIDRequests() = %d, want 20", got)
			}
			if got := rec.get(); len(got) != 0 {
				t.Errorf("OnStateChange calls = %v, want none", got)
			}
		})
	}
}

func TestBreakerHalfOpenRecovery(t *testing.T) {
	fake := newFake(t)
	fake.SetForcedStatus(http.StatusServiceUnavailable)
	var rec stateRecorder
	c := newClient(t, csideclient.Config{
		BaseURL: fake.URL,
		Breaker: csideclient.BreakerConfig{
			ConsecutiveFailures: 1, OpenFor: 50 * time.Millisecond, HalfOpenProbes: 1,
			OnStateChange: rec.record,
		},
	})
	ctx := context.Background()

	_, err := c.Datapoints(ctx, "demo-human")
	checkErr(t, fmt.Sprintf("Datapoints(%q)", "demo-human"), err, csideclient.ErrUnavailable)
	if got := c.BreakerState(); got != "open" {
		t.Fatalf("BreakerState() after 1 failure = %q, want %q", got, "open")
	}
	fake.SetForcedStatus(0)

	// OpenFor is a real timer inside gobreaker: poll for the transition.
	deadline := time.Now().Add(2 * time.Second)
	for c.BreakerState() != "half-open" {
		if time.Now().After(deadline) {
			t.Fatalf("BreakerState() = %q 2s after tripping, want %q", c.BreakerState(), "half-open")
		}
		time.Sleep(5 * time.Millisecond)
	}

	payload, _ := csidetest.Payload("demo-human")
	got, err := c.Datapoints(ctx, "demo-human")
	checkErr(t, fmt.Sprintf("Datapoints(%q) half-open", "demo-human"), err, nil)
	if !bytes.Equal(got, payload) {
		t.Errorf("Datapoints(%q) half-open = %d bytes, want the %d-byte fixture", "demo-human", len(got), len(payload))
	}
	if got := c.BreakerState(); got != "closed" {
		t.Errorf("BreakerState() after a successful probe = %q, want %q", got, "closed")
	}
	want := []string{"closed->open", "open->half-open", "half-open->closed"}
	if got := rec.get(); !slices.Equal(got, want) {
		t.Errorf("OnStateChange calls = %v, want %v", got, want)
	}
}

func TestAuthHeader(t *testing.T) {
	fake := newFake(t)
	fake.RequireHeader("Authorization", "Bearer k1")

	tests := []struct {
		name          string
		header, value string
		want          error
		wantPayload   bool
	}{
		{"no header", "", "", csideclient.ErrRejected, false},
		{"wrong value", "Authorization", "Bearer k2", csideclient.ErrRejected, false},
		{"right header", "Authorization", "Bearer k1", nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClient(t, csideclient.Config{BaseURL: fake.URL, HeaderName: tt.header, HeaderValue: tt.value})
			got, err := c.Datapoints(context.Background(), "demo-human")
			checkErr(t, fmt.Sprintf("Datapoints(%q) with header %q", "demo-human", tt.header), err, tt.want)
			if (got != nil) != tt.wantPayload {
				t.Errorf("Datapoints(%q) with header %q = %d bytes, want payload %v", "demo-human", tt.header, len(got), tt.wantPayload)
			}
			id, err := c.ClientID(context.Background(), "demo-human")
			checkErr(t, fmt.Sprintf("ClientID(%q) with header %q", "demo-human", tt.header), err, tt.want)
			if (id != "") != tt.wantPayload {
				t.Errorf("ClientID(%q) with header %q = %q, want an ID %v", "demo-human", tt.header, id, tt.wantPayload)
			}
		})
	}
}

func TestRequestShape(t *testing.T) {
	type seen struct {
		method, path, contentType, body, header string
	}
	requests := make(chan seen, 1)
	srv := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		requests <- seen{r.Method, r.URL.Path, r.Header.Get("Content-Type"), string(body), r.Header.Get("X-Api-Key")}
		if strings.HasSuffix(r.URL.Path, "/id") {
			_, _ = io.WriteString(w, "fp_abc")
			return
		}
		_, _ = io.WriteString(w, `{}`)
	})
	c := newClient(t, csideclient.Config{
		BaseURL:      srv.URL + "/", // a trailing slash is trimmed
		ClientPath:   "/v9/data",
		ClientIDPath: "/v9/id",
		HeaderName:   "X-Api-Key",
		HeaderValue:  "k1",
	})
	const token = "eyJhbGciOiJIUzI1NiJ9.e30.sig"

	tests := []struct {
		name     string
		call     func() error
		wantPath string
	}{
		{"Datapoints", func() error { _, err := c.Datapoints(context.Background(), token); return err }, "/v9/data"},
		{"ClientID", func() error { _, err := c.ClientID(context.Background(), token); return err }, "/v9/id"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.call(); err != nil {
				t.Fatalf("%s(%q) error = %v, want nil", tt.name, token, err)
			}
			got := <-requests
			if got.method != http.MethodPost {
				t.Errorf("%s(%q) method = %q, want %q", tt.name, token, got.method, http.MethodPost)
			}
			if got.path != tt.wantPath {
				t.Errorf("%s(%q) path = %q, want %q", tt.name, token, got.path, tt.wantPath)
			}
			if mt, _, err := mime.ParseMediaType(got.contentType); err != nil || mt != "text/plain" {
				t.Errorf("%s(%q) Content-Type = %q, want text/plain", tt.name, token, got.contentType)
			}
			if got.body != token {
				t.Errorf("%s(%q) body = %q, want the raw token", tt.name, token, got.body)
			}
			if got.header != "k1" {
				t.Errorf("%s(%q) X-Api-Key = %q, want %q", tt.name, token, got.header, "k1")
			}
		})
	}
}

func TestConnectionRefused(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := newClient(t, csideclient.Config{BaseURL: url})

	_, err := c.Datapoints(context.Background(), "demo-human")
	checkErr(t, fmt.Sprintf("Datapoints(%q) against a closed port", "demo-human"), err, csideclient.ErrUnavailable)
	_, err = c.ClientID(context.Background(), "demo-human")
	checkErr(t, fmt.Sprintf("ClientID(%q) against a closed port", "demo-human"), err, csideclient.ErrUnavailable)
}

func TestOutage(t *testing.T) {
	fake := newFake(t)
	fake.SetOutage(time.Minute)
	c := newClient(t, csideclient.Config{BaseURL: fake.URL})

	_, err := c.Datapoints(context.Background(), "demo-human")
	checkErr(t, fmt.Sprintf("Datapoints(%q) during an outage", "demo-human"), err, csideclient.ErrUnavailable)
	_, err = c.ClientID(context.Background(), "demo-human")
	checkErr(t, fmt.Sprintf("ClientID(%q) during an outage", "demo-human"), err, csideclient.ErrUnavailable)

	fake.SetOutage(0)
	_, err = c.Datapoints(context.Background(), "demo-human")
	checkErr(t, fmt.Sprintf("Datapoints(%q) after the outage", "demo-human"), err, nil)
}

func TestEmptyToken(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, csideclient.Config{BaseURL: fake.URL, Breaker: csideclient.BreakerConfig{ConsecutiveFailures: 1}})

	for range 3 {
		got, err := c.Datapoints(context.Background(), "")
		checkErr(t, "Datapoints(\"\")", err, csideclient.ErrRejected)
		if got != nil {
			t.Errorf("Datapoints(\"\") = %q, want nil", got)
		}
		id, err := c.ClientID(context.Background(), "")
		checkErr(t, "ClientID(\"\")", err, csideclient.ErrRejected)
		if id != "" {
			t.Errorf("ClientID(\"\") = %q, want \"\"", id)
		}
	}
	if n := fake.ClientRequests() + fake.ClientIDRequests(); n != 0 {
		t.Errorf("requests reaching the fake = %d, want 0", n)
	}
	if got := c.BreakerState(); got != "closed" {
		t.Errorf("BreakerState() after empty tokens = %q, want %q", got, "closed")
	}
}

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		cfg     csideclient.Config
		wantErr bool
	}{
		{"zero config", csideclient.Config{}, false},
		{"full config", csideclient.Config{
			BaseURL: "http://127.0.0.1:8080/", ClientPath: "/a", ClientIDPath: "/b",
			HeaderName: "Authorization", HeaderValue: "Bearer\tk1",
			Timeout: time.Second, MaxBodyBytes: 10,
			Breaker: csideclient.BreakerConfig{FailureRatio: 1, Window: time.Second, OpenFor: time.Second},
		}, false},
		{"ftp scheme", csideclient.Config{BaseURL: "ftp://x"}, true},
		{"no host", csideclient.Config{BaseURL: "http://"}, true},
		{"query", csideclient.Config{BaseURL: "http://x?q=1"}, true},
		{"fragment", csideclient.Config{BaseURL: "http://x#f"}, true},
		{"unparsable URL", csideclient.Config{BaseURL: "http://x:badport"}, true},
		{"relative client path", csideclient.Config{ClientPath: "nope"}, true},
		{"client path with query", csideclient.Config{ClientPath: "/a?b=c"}, true},
		{"relative clientId path", csideclient.Config{ClientIDPath: "nope"}, true},
		{"both paths equal", csideclient.Config{ClientPath: "/same", ClientIDPath: "/same"}, true},
		{"header value without name", csideclient.Config{HeaderValue: "Bearer k1"}, true},
		{"header name with space", csideclient.Config{HeaderName: "Bad Header", HeaderValue: "v"}, true},
		{"header name with colon", csideclient.Config{HeaderName: "Bad:Header", HeaderValue: "v"}, true},
		{"header value with CRLF", csideclient.Config{HeaderName: "Authorization", HeaderValue: "k\r\nX: y"}, true},
		{"header value with control character", csideclient.Config{HeaderName: "Authorization", HeaderValue: "Bearer \x01k1"}, true},
		{"header value with DEL", csideclient.Config{HeaderName: "Authorization", HeaderValue: "Bearer k1\x7f"}, true},
		{"negative timeout", csideclient.Config{Timeout: -time.Second}, true},
		{"negative max body", csideclient.Config{MaxBodyBytes: -1}, true},
		{"failure ratio above 1", csideclient.Config{Breaker: csideclient.BreakerConfig{FailureRatio: 1.5}}, true},
		{"negative failure ratio", csideclient.Config{Breaker: csideclient.BreakerConfig{FailureRatio: -0.1}}, true},
		{"negative window", csideclient.Config{Breaker: csideclient.BreakerConfig{Window: -time.Second}}, true},
		{"negative open for", csideclient.Config{Breaker: csideclient.BreakerConfig{OpenFor: -time.Second}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := csideclient.New(tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("New(%+v) error = %v, want error %v", tt.cfg, err, tt.wantErr)
			}
			if err == nil && c == nil {
				t.Errorf("New(%+v) = nil, nil, want a Client", tt.cfg)
			}
			if err == nil && c.BreakerState() != "closed" {
				t.Errorf("New(%+v).BreakerState() = %q, want %q", tt.cfg, c.BreakerState(), "closed")
			}
		})
	}

	t.Run("reports every problem", func(t *testing.T) {
		cfg := csideclient.Config{BaseURL: "ftp://x", ClientPath: "nope", MaxBodyBytes: -1}
		_, err := csideclient.New(cfg)
		if err == nil {
			t.Fatalf("New(%+v) error = nil, want an error", cfg)
		}
		for _, want := range []string{"ftp://x", "nope", "max body"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("New(%+v) error = %q, want it to mention %q", cfg, err, want)
			}
		}
	})
}
