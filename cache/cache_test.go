package cache_test

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/verdict-engine/verdict/cache"
	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
)

// clock is a fake clock tests move instead of sleeping.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// setup returns a cache reading through a real cside client from a fake
// cside, with a fake clock.
func setup(t testing.TB) (*cache.Cache, *csidetest.Server, *clock) {
	t.Helper()
	clk := &clock{now: time.Date(2026, 6, 10, 15, 20, 0, 0, time.UTC)}
	c, fake := setupClock(t, clk.Now)
	return c, fake, clk
}

// setupClock is setup with the clock now (nil: the real one).
func setupClock(t testing.TB, now func() time.Time) (*cache.Cache, *csidetest.Server) {
	t.Helper()
	return setupConfig(t, cache.Config{TTL: 5 * time.Minute, NotFoundTTL: 30 * time.Second, Now: now})
}

// setupConfig is setup with the cache configured by cfg.
func setupConfig(t testing.TB, cfg cache.Config) (*cache.Cache, *csidetest.Server) {
	t.Helper()
	fake := csidetest.NewServer()
	t.Cleanup(fake.Close)
	client, err := csideclient.New(csideclient.Config{
		BaseURL: fake.URL,
		NoRetry: true, // one upstream request per fetch: the counters count fetches
		// failures must not open the breaker in these tests
		Breaker: csideclient.BreakerConfig{ConsecutiveFailures: 1000, MinRequests: 1000},
	})
	if err != nil {
		t.Fatalf("csideclient.New: %v", err)
	}
	c, err := cache.New(cfg, client)
	if err != nil {
		t.Fatalf("cache.New: %v", err)
	}
	t.Cleanup(c.Close)
	return c, fake
}

type lookup struct {
	status   engine.Status
	origin   engine.Origin
	upstream int64 // /client requests so far
}

func TestDatapointsCaching(t *testing.T) {
	tests := []struct {
		name  string
		token string
		steps []struct {
			advance time.Duration
			want    lookup
		}
	}{
		{"ok is cached for TTL", "demo-human", []struct {
			advance time.Duration
			want    lookup
		}{
			{0, lookup{engine.StatusOK, engine.OriginUpstream, 1}},
			{time.Second, lookup{engine.StatusOK, engine.OriginCache, 1}},
			{5*time.Minute - 2*time.Second, lookup{engine.StatusOK, engine.OriginCache, 1}},
			{2 * time.Second, lookup{engine.StatusOK, engine.OriginUpstream, 2}},
		}},
		{"not found is cached for NotFoundTTL", "demo-unknown", []struct {
			advance time.Duration
			want    lookup
		}{
			{0, lookup{engine.StatusNotFound, engine.OriginUpstream, 1}},
			{29 * time.Second, lookup{engine.StatusNotFound, engine.OriginCache, 1}},
			{time.Second, lookup{engine.StatusNotFound, engine.OriginUpstream, 2}},
		}},
		{"unavailable is never cached", "demo-error", []struct {
			advance time.Duration
			want    lookup
		}{
			{0, lookup{engine.StatusUnavailable, engine.OriginNone, 1}},
			{0, lookup{engine.StatusUnavailable, engine.OriginNone, 2}},
		}},
		{"invalid JSON is never cached", "demo-garbage", []struct {
			advance time.Duration
			want    lookup
		}{
			{0, lookup{engine.StatusUnavailable, engine.OriginNone, 1}},
			{0, lookup{engine.StatusUnavailable, engine.OriginNone, 2}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, fake, clk := setup(t)
			for i, step := range tt.steps {
				clk.Advance(step.advance)
				dp := c.Datapoints(context.Background(), tt.token)
				c.Wait()
				got := lookup{dp.Status, dp.Origin, fake.ClientRequests()}
				if got != step.want {
					t.Fatalf("step %d: Datapoints(%q) = %+v, want %+v (err %v)", i, tt.token, got, step.want, dp.Err)
				}
				if (dp.Payload != nil) != (dp.Status == engine.StatusOK) {
					t.Errorf("step %d: payload present = %v with status %s", i, dp.Payload != nil, dp.Status)
				}
			}
		})
	}
}

func TestRejectedIsNeverCached(t *testing.T) {
	c, fake, _ := setup(t)
	fake.RequireHeader("Authorization", "Bearer secret")
	for i := range 2 {
		dp := c.Datapoints(context.Background(), "demo-human")
		c.Wait()
		if dp.Status != engine.StatusRejected || dp.Origin != engine.OriginUpstream || dp.Err == nil {
			t.Fatalf("call %d: Datapoints() = %s/%s (err %v), want rejected/upstream with an error", i, dp.Status, dp.Origin, dp.Err)
		}
	}
	if n := fake.ClientRequests(); n != 2 {
		t.Errorf("upstream requests = %d, want 2", n)
	}
}

func TestCachedPayloadIsTheParsedUpstreamPayload(t *testing.T) {
	c, _, _ := setup(t)
	first := c.Datapoints(context.Background(), "demo-vpn")
	c.Wait()
	second := c.Datapoints(context.Background(), "demo-vpn")
	third := c.Datapoints(context.Background(), "demo-vpn")
	want, _ := csidetest.Payload("demo-vpn")
	if string(first.Payload.Raw()) != string(want) {
		t.Errorf("payload differs from the fixture")
	}
	if !sameBytes(second.Payload.Raw(), first.Payload.Raw()) {
		t.Errorf("cached lookup returned other bytes than the fetch parsed: the cache must keep them, not copies")
	}
	if third.Payload != second.Payload {
		t.Errorf("two lookups from the cache returned different payloads: the engine's state for it (staging) would be lost")
	}
	if got := second.Payload.FingerprintID(); got != "fp_VpnUser00000000001" {
		t.Errorf("FingerprintID() = %q, want fp_VpnUser00000000001", got)
	}
	if c.Hits() != 2 || c.Misses() != 1 {
		t.Errorf("hits/misses = %d/%d, want 2/1", c.Hits(), c.Misses())
	}
}

// sameBytes reports whether a and b are the same bytes in memory.
func sameBytes(a, b []byte) bool { return len(a) == len(b) && len(a) > 0 && &a[0] == &b[0] }

// TestHotPayloads: a token served from the cache keeps its engine.Payload
// while it is among the HotPayloads served most recently; past them, or once
// its entry is fetched again, it gets a new one, and an entry leaving the
// cache takes its payload along.
func TestHotPayloads(t *testing.T) {
	clk := &clock{now: time.Date(2026, 6, 10, 15, 20, 0, 0, time.UTC)}
	c, fake := setupConfig(t, cache.Config{HotPayloads: 2, Now: clk.Now})
	ctx := context.Background()
	served := func(token string) *engine.Payload {
		t.Helper()
		dp := c.Datapoints(ctx, token)
		c.Wait()
		if dp.Status != engine.StatusOK || dp.Payload == nil {
			t.Fatalf("Datapoints(%q) = %s/%s (err %v), want ok", token, dp.Status, dp.Origin, dp.Err)
		}
		return dp.Payload
	}
	fetched := served("demo-vpn")
	hot := served("demo-vpn")
	if hot == fetched || !sameBytes(hot.Raw(), fetched.Raw()) {
		t.Fatalf("first lookup from the cache: want a new payload over the fetched bytes")
	}
	served("demo-human")
	if served("demo-vpn") != hot {
		t.Errorf("a token among the 2 served most recently got a new payload")
	}
	served("demo-human")
	served("demo-bot")
	served("demo-bot")
	again := served("demo-vpn")
	if again == hot {
		t.Errorf("a token past the 2 served most recently kept its payload: HotPayloads does not bound them")
	}
	if !sameBytes(again.Raw(), hot.Raw()) {
		t.Errorf("a token past the hot ones: want a new payload over the same cached bytes")
	}
	if served("demo-vpn") != again {
		t.Errorf("the token's new payload was not kept")
	}

	if n := c.HotPayloads(); n != 2 {
		t.Errorf("HotPayloads() = %d, want the bound, 2", n)
	}

	clk.Advance(6 * time.Minute) // past the TTL: fetched again
	refetched := served("demo-vpn")
	if n := c.HotPayloads(); n != 1 {
		t.Errorf("after a token's entry was replaced: HotPayloads() = %d, want 1: the old entry must take its payload along", n)
	}
	fresh := served("demo-vpn")
	if sameBytes(refetched.Raw(), again.Raw()) || fresh == again || !sameBytes(fresh.Raw(), refetched.Raw()) {
		t.Errorf("after a new fetch: want a payload over the new bytes, not the one kept for the old")
	}
	if n := fake.ClientRequests(); n != 4 {
		t.Errorf("upstream requests = %d, want 4 (three tokens, one fetched again)", n)
	}
}

func TestIdentify(t *testing.T) {
	type want struct {
		id               string
		status           engine.Status
		origin           engine.Origin
		client, clientID int64
	}
	tests := []struct {
		name       string
		token      string
		warm       bool // look datapoints up first
		want       []want
		advanceNth time.Duration
	}{
		{"from cached datapoints", "demo-human", true, []want{
			{"fp_8Zq2kL0vXr7tN4mWb1Yc", engine.StatusOK, engine.OriginCache, 1, 0},
		}, 0},
		{"cached payload without ID is null", "demo-noid", true, []want{
			{"", engine.StatusOK, engine.OriginCache, 1, 0},
		}, 0},
		{"from clientId, then cached", "demo-bot", false, []want{
			{"fp_B0tHeadless00000001", engine.StatusOK, engine.OriginUpstream, 0, 1},
			{"fp_B0tHeadless00000001", engine.StatusOK, engine.OriginCache, 0, 1},
		}, 0},
		{"not found, then cached", "demo-unknown", false, []want{
			{"", engine.StatusNotFound, engine.OriginUpstream, 0, 1},
			{"", engine.StatusNotFound, engine.OriginCache, 0, 1},
		}, 0},
		{"unavailable, never cached", "demo-error", false, []want{
			{"", engine.StatusUnavailable, engine.OriginNone, 0, 1},
			{"", engine.StatusUnavailable, engine.OriginNone, 0, 2},
		}, 0},
		{"clientId expires with TTL", "demo-tor", false, []want{
			{"fp_TorExit00000000001", engine.StatusOK, engine.OriginUpstream, 0, 1},
			{"fp_TorExit00000000001", engine.StatusOK, engine.OriginUpstream, 0, 2},
		}, 6 * time.Minute},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, fake, clk := setup(t)
			if tt.warm {
				c.Datapoints(context.Background(), tt.token)
				c.Wait()
			}
			for i, w := range tt.want {
				if i > 0 {
					clk.Advance(tt.advanceNth)
				}
				id := c.Identify(context.Background(), tt.token)
				c.Wait()
				got := want{id.FingerprintID, id.Status, id.Origin, fake.ClientRequests(), fake.ClientIDRequests()}
				if got != w {
					t.Errorf("call %d: Identify(%q) = %+v, want %+v (err %v)", i, tt.token, got, w, id.Err)
				}
			}
		})
	}
}

func TestCallerCancellationIsUnavailable(t *testing.T) {
	c, fake, _ := setup(t)
	fake.SetLatency(time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	dp := c.Datapoints(ctx, "demo-human")
	if dp.Status != engine.StatusUnavailable || dp.Origin != engine.OriginNone {
		t.Errorf("Datapoints(cancelled ctx) = %s/%s, want unavailable/none", dp.Status, dp.Origin)
	}
}

func TestNewValidatesConfig(t *testing.T) {
	client, err := csideclient.New(csideclient.Config{BaseURL: "http://127.0.0.1:1", Transport: http.DefaultTransport})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  cache.Config
		f    cache.Fetcher
	}{
		{"no fetcher", cache.Config{}, nil},
		{"tiny max cost", cache.Config{MaxCostBytes: 1000}, client},
		{"negative ttl", cache.Config{TTL: -time.Second}, client},
		{"negative not-found ttl", cache.Config{NotFoundTTL: -time.Second}, client},
		{"negative hot payloads", cache.Config{HotPayloads: -1}, client},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if c, err := cache.New(tt.cfg, tt.f); err == nil {
				c.Close()
				t.Errorf("New(%+v) succeeded, want an error", tt.cfg)
			}
		})
	}
	c, err := cache.New(cache.Config{}, client)
	if err != nil {
		t.Fatalf("New(zero Config) error = %v", err)
	}
	c.Close()
}
