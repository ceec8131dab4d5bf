package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/verdict-engine/verdict/api"
	"github.com/verdict-engine/verdict/cache"
	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
	"github.com/verdict-engine/verdict/engine/decisionlog"
	"github.com/verdict-engine/verdict/policies"
)

// TestMetricsOverAScriptedMix drives a known mix of requests through the
// real pipeline and checks that every metric moved by exactly the expected
// amount.
func TestMetricsOverAScriptedMix(t *testing.T) {
	fake := csidetest.NewServer()
	defer fake.Close()
	var metrics *api.Metrics
	client, err := csideclient.New(csideclient.Config{
		BaseURL:      fake.URL,
		RetryBackoff: time.Millisecond,
		OnAttempt:    func(endpoint, outcome string, d time.Duration) { metrics.ObserveUpstream(endpoint, outcome, d) },
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(cache.Config{}, client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	eng, err := engine.New(context.Background(), engine.Config{Policies: policies.FS(), Source: c})
	if err != nil {
		t.Fatal(err)
	}
	metrics = api.NewMetrics(api.MetricSources{
		CacheLookups:     func() (uint64, uint64, uint64) { return c.Hits(), c.Misses() - c.StaleServed(), c.StaleServed() },
		Coalesced:        c.Coalesced,
		BreakerState:     client.BreakerState,
		PolicyRevision:   eng.Revision,
		CacheHotPayloads: c.HotPayloads,
		GCSweepPolls:     func() uint64 { return 42 },
	}, nil)
	h := api.New(api.Config{Metrics: metrics}, eng)

	mix := []struct {
		token, action string
		times         int
	}{
		{"demo-vpn", `{"type":"checkout","amount":900,"currency":"USD"}`, 3},
		{"demo-human", `{"type":"login"}`, 2},
		{"demo-error", `{"type":"login"}`, 1},
		{"demo-unknown", `{"type":"signup"}`, 1},
		{"demo-bot", `{"type":"weird_action"}`, 1},
	}
	for _, m := range mix {
		for range m.times {
			rec := httptest.NewRecorder()
			req := httptest.NewRequest(http.MethodPost, "/decide", strings.NewReader(`{"token":"`+m.token+`","action":`+m.action+`}`))
			req.Header.Set("Content-Type", "application/json")
			h.ServeHTTP(rec, req)
			c.Wait()
			if rec.Code != 200 {
				t.Fatalf("POST /decide %s: %d %s", m.token, rec.Code, rec.Body)
			}
		}
	}

	expected := `
# HELP verdict_decisions_total Decisions made, by decision and action type (unlisted types: other).
# TYPE verdict_decisions_total counter
verdict_decisions_total{action="checkout",decision="challenge"} 3
verdict_decisions_total{action="login",decision="allow"} 3
verdict_decisions_total{action="other",decision="deny"} 1
verdict_decisions_total{action="signup",decision="challenge"} 1
# HELP verdict_upstream_requests_total Requests to cside (attempts, retries included), by endpoint and outcome.
# TYPE verdict_upstream_requests_total counter
verdict_upstream_requests_total{endpoint="client",outcome="http_error"} 2
verdict_upstream_requests_total{endpoint="client",outcome="not_found"} 1
verdict_upstream_requests_total{endpoint="client",outcome="ok"} 3
# HELP verdict_cache_lookups_total Datapoint cache lookups, by result: hit (fresh), miss (asked cside), stale (served stale data).
# TYPE verdict_cache_lookups_total counter
verdict_cache_lookups_total{result="hit"} 3
verdict_cache_lookups_total{result="miss"} 5
verdict_cache_lookups_total{result="stale"} 0
# HELP verdict_breaker_state State of the cside circuit breaker: 0 closed, 1 half-open, 2 open.
# TYPE verdict_breaker_state gauge
verdict_breaker_state 0
# HELP verdict_policy_info The serving policy revision, as a label; the value is always 1.
# TYPE verdict_policy_info gauge
verdict_policy_info{revision="` + eng.Revision() + `"} 1
# HELP verdict_cache_hot_payloads Tokens served from the datapoint cache whose parsed and staged state it keeps (bounded by --cache-hot-payloads).
# TYPE verdict_cache_hot_payloads gauge
verdict_cache_hot_payloads 2
# HELP verdict_upstream_coalesced_total Lookups that shared another caller's cside call instead of making their own.
# TYPE verdict_upstream_coalesced_total counter
verdict_upstream_coalesced_total 0
# HELP verdict_gc_sweep_polls_total Network polls made while the garbage collector's background sweeper ran (--gc-sweep-poll; one-CPU processes only).
# TYPE verdict_gc_sweep_polls_total counter
verdict_gc_sweep_polls_total 42
`
	if err := testutil.GatherAndCompare(metrics.Registry(), strings.NewReader(expected),
		"verdict_decisions_total", "verdict_upstream_requests_total", "verdict_cache_lookups_total",
		"verdict_breaker_state", "verdict_policy_info", "verdict_upstream_coalesced_total", "verdict_cache_hot_payloads",
		"verdict_gc_sweep_polls_total"); err != nil {
		t.Error(err)
	}
	counts := map[string]uint64{}
	mfs, err := metrics.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			if h := m.GetHistogram(); h != nil {
				key := mf.GetName()
				for _, l := range m.GetLabel() {
					key += "/" + l.GetValue()
				}
				counts[key] = h.GetSampleCount()
			}
		}
	}
	want := map[string]uint64{
		"verdict_decide_duration_seconds/cache": 3, "verdict_decide_duration_seconds/upstream": 4,
		"verdict_decide_duration_seconds/none": 1, "verdict_policy_eval_duration_seconds/full": 7,
		"verdict_policy_eval_duration_seconds/residual": 1, // demo-vpn's third decision: its second from the cache
		"verdict_upstream_duration_seconds/client":      6,
	}
	for k, v := range want {
		if counts[k] != v {
			t.Errorf("%s observations = %d, want %d", k, counts[k], v)
		}
	}

	rec := httptest.NewRecorder()
	api.NewAdmin(api.AdminConfig{Metrics: metrics}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	for _, want := range []string{"go_goroutines", "process_resident_memory_bytes", "verdict_decide_duration_seconds_bucket{source=\"cache\",le=\"0.0001\"}"} {
		if !strings.Contains(rec.Body.String(), want) {
			t.Errorf("GET /metrics lacks %s", want)
		}
	}
}

func TestRequestIDAndAccessLog(t *testing.T) {
	s := newStack(t, nil)
	tests := []struct {
		sent     string
		wantSame bool
	}{
		{"req-abc-123", true},
		{"", false},
		{"has space", false},
		{strings.Repeat("x", 129), false},
	}
	for _, tt := range tests {
		req := httptest.NewRequest(http.MethodPost, "/decide", strings.NewReader(`{"token":"demo-error","action":{"type":"login","secret_note":"do-not-log"}}`))
		req.Header.Set("Content-Type", "application/json")
		if tt.sent != "" {
			req.Header.Set(api.RequestIDHeader, tt.sent)
		}
		rec := httptest.NewRecorder()
		s.handler.ServeHTTP(rec, req)
		got := rec.Header().Get(api.RequestIDHeader)
		if (got == tt.sent) != tt.wantSame || got == "" {
			t.Errorf("X-Request-ID sent %q, echoed %q; want it kept: %v", tt.sent, got, tt.wantSame)
		}
		if !strings.Contains(s.logs.String(), `"request_id":"`+got+`"`) {
			t.Errorf("no log line carries request_id %s", got)
		}
	}
	var access int
	for _, line := range strings.Split(strings.TrimSpace(s.logs.String()), "\n") {
		var entry map[string]any
		if err := json.Unmarshal([]byte(line), &entry); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		if entry["msg"] == "request" {
			access++
			if entry["method"] != "POST" || entry["route"] != "/decide" || entry["status"] != 200.0 || entry["latency_ms"] == nil {
				t.Errorf("access log line = %v", entry)
			}
		}
	}
	if access != len(tests) {
		t.Errorf("%d access log lines, want %d", access, len(tests))
	}
	for _, secret := range []string{"demo-error", "do-not-log", "secret_note"} {
		if strings.Contains(s.logs.String(), secret) {
			t.Errorf("logs contain %q", secret)
		}
	}
}

// blockedWriter never returns from Write until released.
type blockedWriter chan struct{}

func (w blockedWriter) Write(p []byte) (int, error) { <-w; return len(p), nil }

// TestDecisionLogNeverDelaysDecide blocks the decision log's sink: decisions
// are dropped and counted, and /decide is as fast as without a log.
func TestDecisionLogNeverDelaysDecide(t *testing.T) {
	s := newStack(t, nil)
	sink := make(blockedWriter)
	dl, err := decisionlog.New(decisionlog.Config{Stdout: sink, Buffer: 4})
	if err != nil {
		t.Fatal(err)
	}
	withLog := api.New(api.Config{DecisionLog: dl}, s.engine)
	without := api.New(api.Config{}, s.engine)
	median := func(h http.Handler) time.Duration {
		var ds []time.Duration
		for range 201 {
			req := httptest.NewRequest(http.MethodPost, "/decide", strings.NewReader(`{"token":"demo-human","action":{"type":"login"}}`))
			req.Header.Set("Content-Type", "application/json")
			rec := httptest.NewRecorder()
			start := time.Now()
			h.ServeHTTP(rec, req)
			ds = append(ds, time.Since(start))
			if rec.Code != 200 {
				t.Fatalf("POST /decide = %d", rec.Code)
			}
		}
		slices.Sort(ds)
		return ds[len(ds)/2]
	}
	median(without) // warm the cache
	base, blocked := median(without), median(withLog)
	close(sink)
	if err := dl.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("median /decide: %v without a decision log, %v with its sink blocked; %d dropped", base, blocked, dl.Dropped())
	// Written: the lines that fit the log's 64 KiB write buffer (about 150 of
	// these ~420-byte lines) before a flush reached the blocked sink, and the
	// queue of 4. The rest are dropped, not waited for.
	if dl.Dropped() == 0 || dl.Written()+dl.Dropped() != 201 {
		t.Errorf("dropped %d, written %d: want some of the 201 dropped and every one accounted for", dl.Dropped(), dl.Written())
	}
	if blocked > 2*base+200*time.Microsecond {
		t.Errorf("median /decide %v with the log's sink blocked, %v without: want no delay", blocked, base)
	}
}
