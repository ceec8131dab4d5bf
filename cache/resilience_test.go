package cache_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/verdict-engine/verdict/cache"
	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
)

// newCache builds a cache over a real client to upstream with cfg, a fake
// clock and no retries or breaker trips (these tests count fetches).
func newCache(t *testing.T, upstream string, cfg cache.Config) (*cache.Cache, *clock) {
	t.Helper()
	client, err := csideclient.New(csideclient.Config{
		BaseURL: upstream,
		Timeout: 5 * time.Second,
		NoRetry: true,
		Breaker: csideclient.BreakerConfig{ConsecutiveFailures: 1000, MinRequests: 1000},
	})
	if err != nil {
		t.Fatalf("csideclient.New: %v", err)
	}
	t.Cleanup(client.Close)
	clk := &clock{now: time.Date(2026, 6, 10, 15, 20, 0, 0, time.UTC)}
	cfg.Now = clk.Now
	c, err := cache.New(cfg, client)
	if err != nil {
		t.Fatalf("cache.New: %v", err)
	}
	t.Cleanup(c.Close)
	return c, clk
}

func TestConcurrentMissesMakeOneUpstreamCall(t *testing.T) {
	fake := csidetest.NewServer()
	defer fake.Close()
	fake.SetLatency(200 * time.Millisecond)
	c, _ := newCache(t, fake.URL, cache.Config{})

	const callers = 100
	start := make(chan struct{})
	results := make(chan engine.Datapoints, callers)
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			<-start
			results <- c.Datapoints(context.Background(), "demo-bot")
		})
	}
	close(start)
	wg.Wait()
	close(results)
	for dp := range results {
		if dp.Status != engine.StatusOK || dp.Payload == nil || dp.Payload.FingerprintID() != "fp_B0tHeadless00000001" {
			t.Fatalf("a caller got %s/%s (err %v), want ok with the bot payload", dp.Status, dp.Origin, dp.Err)
		}
	}
	if got := fake.ClientRequests(); got != 1 {
		t.Errorf("upstream requests = %d for %d concurrent callers, want 1", got, callers)
	}
	if got := c.Coalesced() + c.Hits(); got != callers-1 {
		t.Errorf("coalesced %d + hits %d = %d, want %d: every caller but one shares the fetch", c.Coalesced(), c.Hits(), got, callers-1)
	}
}

// holdingUpstream answers nothing until released; it reports each request's
// arrival and whether its context was cancelled (the caller gave up).
type holdingUpstream struct {
	srv       *httptest.Server
	arrived   chan struct{}
	cancelled chan struct{}
	release   chan struct{}
}

func newHoldingUpstream(t *testing.T) *holdingUpstream {
	t.Helper()
	h := &holdingUpstream{arrived: make(chan struct{}, 10), cancelled: make(chan struct{}, 10), release: make(chan struct{})}
	payload, _ := csidetest.Payload("demo-human")
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body) // lets net/http notice a departed client
		h.arrived <- struct{}{}
		select {
		case <-h.release:
			_, _ = w.Write(payload)
		case <-r.Context().Done():
			h.cancelled <- struct{}{}
		}
	}))
	t.Cleanup(h.srv.Close)
	t.Cleanup(func() {
		select {
		case <-h.release:
		default:
			close(h.release)
		}
	})
	return h
}

func TestLeavingCallerDoesNotCancelSharedFetch(t *testing.T) {
	up := newHoldingUpstream(t)
	c, _ := newCache(t, up.srv.URL, cache.Config{})

	// The stayer starts the fetch; the leaver joins it and gives up. (That
	// the fetch survives its *initiator* leaving is flight_test.go's.)
	stayer := make(chan engine.Datapoints, 1)
	go func() { stayer <- c.Datapoints(context.Background(), "tok_shared") }()
	<-up.arrived
	leaverCtx, leave := context.WithCancel(context.Background())
	leave()
	dp := c.Datapoints(leaverCtx, "tok_shared")
	if dp.Status != engine.StatusUnavailable || !errors.Is(dp.Err, context.Canceled) {
		t.Errorf("leaving caller got %s (err %v), want unavailable with context.Canceled", dp.Status, dp.Err)
	}
	close(up.release)
	if dp := <-stayer; dp.Status != engine.StatusOK || dp.Origin != engine.OriginUpstream {
		t.Errorf("staying caller got %s/%s (err %v), want ok/upstream from the shared fetch", dp.Status, dp.Origin, dp.Err)
	}
	select {
	case <-up.cancelled:
		t.Errorf("the shared fetch was cancelled although a caller still waited for it")
	default:
	}
}

func TestLastCallerLeavingCancelsFetch(t *testing.T) {
	up := newHoldingUpstream(t)
	c, _ := newCache(t, up.srv.URL, cache.Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan engine.Datapoints, 1)
	go func() { done <- c.Datapoints(ctx, "tok_alone") }()
	<-up.arrived
	cancel()
	if dp := <-done; dp.Status != engine.StatusUnavailable {
		t.Errorf("Datapoints after cancel = %s, want unavailable", dp.Status)
	}
	select {
	case <-up.cancelled:
	case <-time.After(5 * time.Second):
		t.Fatalf("the upstream request was not cancelled after its only caller left")
	}
	// A newcomer starts a fresh fetch rather than joining the abandoned one.
	newcomer := make(chan engine.Datapoints, 1)
	go func() { newcomer <- c.Datapoints(context.Background(), "tok_alone") }()
	<-up.arrived
	close(up.release)
	if dp := <-newcomer; dp.Status != engine.StatusOK {
		t.Errorf("newcomer got %s (err %v), want ok", dp.Status, dp.Err)
	}
}

func TestStaleIfError(t *testing.T) {
	const ttl, grace = 5 * time.Minute, time.Hour
	type step struct {
		advance    time.Duration
		status     int // fake's forced status from this step on; -1 leaves it
		wantStatus engine.Status
		wantOrigin engine.Origin
		wantAge    time.Duration
	}
	tests := []struct {
		name  string
		grace time.Duration
		steps []step
	}{
		{"stale served while unavailable, fresh once healed", grace, []step{
			{0, 0, engine.StatusOK, engine.OriginUpstream, 0},
			{ttl + time.Second, http.StatusServiceUnavailable, engine.StatusOK, engine.OriginStale, ttl + time.Second},
			{30 * time.Minute, -1, engine.StatusOK, engine.OriginStale, ttl + time.Second + 30*time.Minute},
			{0, 0, engine.StatusOK, engine.OriginUpstream, 0},
			{time.Second, -1, engine.StatusOK, engine.OriginCache, time.Second},
		}},
		{"nothing past the grace", grace, []step{
			{0, 0, engine.StatusOK, engine.OriginUpstream, 0},
			{ttl + grace, http.StatusServiceUnavailable, engine.StatusUnavailable, engine.OriginNone, 0},
		}},
		{"not found replaces stale data", grace, []step{
			{0, 0, engine.StatusOK, engine.OriginUpstream, 0},
			{ttl + time.Second, http.StatusNotFound, engine.StatusNotFound, engine.OriginUpstream, 0},
		}},
		{"rejected is not covered by stale data", grace, []step{
			{0, 0, engine.StatusOK, engine.OriginUpstream, 0},
			{ttl + time.Second, http.StatusUnauthorized, engine.StatusRejected, engine.OriginUpstream, 0},
		}},
		{"stale serving disabled", -1, []step{
			{0, 0, engine.StatusOK, engine.OriginUpstream, 0},
			{ttl + time.Second, http.StatusServiceUnavailable, engine.StatusUnavailable, engine.OriginNone, 0},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fake := csidetest.NewServer()
			defer fake.Close()
			c, clk := newCache(t, fake.URL, cache.Config{TTL: ttl, StaleGrace: tt.grace})
			for i, s := range tt.steps {
				clk.Advance(s.advance)
				if s.status >= 0 {
					fake.SetForcedStatus(s.status)
				}
				dp := c.Datapoints(context.Background(), "demo-human")
				if dp.Status != s.wantStatus || dp.Origin != s.wantOrigin || dp.Age != s.wantAge {
					t.Fatalf("step %d: Datapoints() = %s/%s age %v (err %v), want %s/%s age %v",
						i, dp.Status, dp.Origin, dp.Age, dp.Err, s.wantStatus, s.wantOrigin, s.wantAge)
				}
				if dp.Origin == engine.OriginStale && (dp.Payload == nil || dp.Err == nil) {
					t.Errorf("step %d: stale datapoints without payload or cause", i)
				}
			}
		})
	}
}

func TestErrorsNeverReplaceCachedData(t *testing.T) {
	fake := csidetest.NewServer()
	defer fake.Close()
	c, clk := newCache(t, fake.URL, cache.Config{TTL: time.Minute})
	c.Datapoints(context.Background(), "demo-vpn")
	clk.Advance(2 * time.Minute)
	fake.SetForcedStatus(http.StatusBadGateway)
	for range 3 {
		if dp := c.Datapoints(context.Background(), "demo-vpn"); dp.Origin != engine.OriginStale {
			t.Fatalf("Datapoints() origin = %s, want stale", dp.Origin)
		}
	}
	if got := c.StaleServed(); got != 3 {
		t.Errorf("StaleServed() = %d, want 3", got)
	}
}
