package main

// The chaos suite: a real `verdict serve` (real listener, real cside client,
// cache and engine) in front of the fake cside made slow, down, flapping or
// absurd, driven by concurrent clients over HTTP. Every scenario asserts
// that every valid request gets a 200 with an honest decision.

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-engine/verdict/csideclient/csidetest"
)

// decideBody is the part of a /decide answer the chaos suite checks.
type decideBody struct {
	Decision string `json:"decision"`
	Reasons  []struct {
		Code string `json:"code"`
	} `json:"reasons"`
	FingerprintID *string `json:"fingerprint_id"`
	Datapoints    struct {
		Status string `json:"status"`
		Source string `json:"source"`
	} `json:"datapoints"`
	Degraded bool `json:"degraded"`
}

func (b decideBody) codes() string {
	var codes []string
	for _, r := range b.Reasons {
		codes = append(codes, r.Code)
	}
	return strings.Join(codes, ",")
}

type result struct {
	status  int
	body    decideBody
	latency time.Duration
	err     error
}

// chaos is a running server with its fake upstream and a load client.
type chaos struct {
	t      *testing.T
	base   string
	admin  string
	fake   *csidetest.Server
	logs   *logLines
	client *http.Client
	stop   func() error
}

// startChaos starts a fake cside and `verdict serve` in front of it, with
// extra flags. The server is stopped (and must stop cleanly) at the end.
func startChaos(t *testing.T, extra ...string) *chaos {
	t.Helper()
	fake := csidetest.NewServer()
	t.Cleanup(fake.Close)
	// The chaos suite is about the upstream: no keys (the auth tests cover
	// them), and an evaluation timeout that a CPU shared with the race
	// detector and other test binaries cannot hit (engine tests cover it).
	args := append([]string{"serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--insecure-no-auth",
		"--eval-timeout", "2s", "--cside-url", fake.URL, "--log-level", "debug"}, extra...)
	base, logs, stop := startServeArgs(t, args...)
	tr := &http.Transport{MaxIdleConnsPerHost: 1024}
	c := &chaos{t: t, base: base, admin: "http://" + logs.adminAddr(), fake: fake, logs: logs,
		client: &http.Client{Transport: tr, Timeout: 30 * time.Second}, stop: stop}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("serve returned %v at shutdown, want nil", err)
		}
		tr.CloseIdleConnections()
		if all := logs.all(); strings.Contains(all, "demo-human-") || strings.Contains(all, "tok-") {
			t.Errorf("logs contain a raw token")
		}
	})
	return c
}

func (c *chaos) decide(token string, action string) result {
	body := fmt.Sprintf(`{"token":%q,"action":%s}`, token, action)
	start := time.Now()
	resp, err := c.client.Post(c.base+"/decide", "application/json", strings.NewReader(body))
	if err != nil {
		return result{err: err, latency: time.Since(start)}
	}
	defer resp.Body.Close()
	var r result
	r.status = resp.StatusCode
	raw, err := io.ReadAll(resp.Body)
	r.latency = time.Since(start)
	if err == nil {
		err = json.Unmarshal(raw, &r.body)
	}
	if err == nil && strings.Contains(string(raw), token) {
		err = fmt.Errorf("the answer contains the token: %s", raw)
	}
	r.err = err
	return r
}

func (c *chaos) breaker() string {
	resp, err := c.client.Get(c.base + "/healthz")
	if err != nil {
		return "error: " + err.Error()
	}
	defer resp.Body.Close()
	var h struct {
		Upstream struct {
			Breaker string `json:"breaker"`
		} `json:"upstream"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&h)
	return h.Upstream.Breaker
}

// drive runs n requests over conc concurrent clients; req(i) makes the
// i-th. It fails the test on any transport error or non-200 answer.
func (c *chaos) drive(n, conc int, req func(i int) result) []result {
	c.t.Helper()
	out := make([]result, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				out[i] = req(i)
			}
		})
	}
	wg.Wait()
	bad := 0
	for i, r := range out {
		if r.err != nil || r.status != http.StatusOK {
			if bad++; bad <= 5 {
				c.t.Errorf("request %d: status %d, error %v: want 200", i, r.status, r.err)
			}
		}
	}
	if bad > 0 {
		c.t.Errorf("%d of %d valid requests did not get a 200", bad, n)
	}
	return out
}

// until polls cond every 10 ms until it holds or the deadline passes.
func until(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func percentile(rs []result, p float64) time.Duration {
	lat := make([]time.Duration, len(rs))
	for i, r := range rs {
		lat[i] = r.latency
	}
	slices.Sort(lat)
	return lat[max(0, int(float64(len(lat))*p+0.5)-1)]
}

func maxLatency(rs []result) time.Duration { return percentile(rs, 1) }

// slack is what a latency bound allows beyond the budget: 50 ms, or three
// times that under the race detector (which also triples the p99 bound).
func slack() time.Duration {
	if raceEnabled {
		return 150 * time.Millisecond
	}
	return 50 * time.Millisecond
}

// breakerRejections counts degraded decisions the breaker answered for, not
// cside: the server logs each degraded decision with its cause.
func (c *chaos) breakerRejections() int {
	n := 0
	for _, line := range strings.Split(c.logs.all(), "\n") {
		if strings.Contains(line, `"msg":"decision made without datapoints"`) && strings.Contains(line, "circuit breaker") {
			n++
		}
	}
	return n
}

const login = `{"type":"login"}`

// 1. Upstream down (connection refused).
func TestChaosUpstreamDown(t *testing.T) {
	c := startChaos(t)
	c.fake.Close() // nothing listens there any more: connection refused

	first := c.drive(200, 8, func(i int) result { return c.decide(fmt.Sprintf("tok-down-%d", i), login) })
	if got := c.breaker(); got != "open" {
		t.Fatalf("breaker after 200 failed fetches = %q, want open", got)
	}
	after := c.drive(400, 4, func(i int) result { return c.decide(fmt.Sprintf("tok-down-after-%d", i), login) })
	for i, r := range append(first, after...) {
		if r.body.Decision != "allow" || r.body.codes() != "datapoints_unavailable" || !r.body.Degraded ||
			r.body.Datapoints.Status != "unavailable" || r.body.Datapoints.Source != "none" {
			t.Fatalf("request %d = %+v, want a degraded allow by datapoints_unavailable", i, r.body)
		}
	}
	p99, bound := percentile(after, 0.99), 20*time.Millisecond
	if raceEnabled {
		bound *= 3
	}
	t.Logf("upstream down, breaker open: p50 %v, p99 %v, max %v over %d requests", percentile(after, 0.5), p99, maxLatency(after), len(after))
	if p99 >= bound {
		t.Errorf("p99 /decide latency with the breaker open = %v, want below %v", p99, bound)
	}
}

// 2. Upstream slow (2 s) with the default 800 ms budget.
func TestChaosUpstreamSlow(t *testing.T) {
	c := startChaos(t)
	c.fake.SetLatency(2 * time.Second)
	const budget = 800 * time.Millisecond
	rs := c.drive(160, 16, func(i int) result { return c.decide(fmt.Sprintf("tok-slow-%d", i), `{"type":"checkout","amount":10}`) })
	for i, r := range rs {
		if r.latency > budget+slack() {
			t.Errorf("request %d took %v, want at most the %v budget + %v", i, r.latency, budget, slack())
		}
		if r.body.Decision != "challenge" || !r.body.Degraded || r.body.Datapoints.Status != "unavailable" {
			t.Errorf("request %d = %+v, want a degraded challenge", i, r.body)
		}
	}
	t.Logf("upstream slow: max latency %v over %d requests, breaker %s", maxLatency(rs), len(rs), c.breaker())
}

// 3. Upstream flapping: half of all upstream requests answer 503.
func TestChaosUpstreamFlapping(t *testing.T) {
	c := startChaos(t)
	c.fake.SetErrorRate(0.5)
	const budget = 800 * time.Millisecond
	rs := c.drive(300, 8, func(i int) result { return c.decide(fmt.Sprintf("demo-human-flap-%d", i), login) })
	ok := 0
	for i, r := range rs {
		if r.latency > budget+slack() {
			t.Errorf("request %d took %v, want within the budget", i, r.latency)
		}
		if r.body.Datapoints.Status == "ok" {
			ok++
		} else if r.body.codes() != "datapoints_unavailable" || !r.body.Degraded {
			t.Errorf("request %d = %+v, want datapoints or a degraded datapoints_unavailable decision", i, r.body)
		}
	}
	// Retried once, a call fails only when both attempts fail: about one in
	// four. The breaker may still open on a chance run of failed calls (that
	// is its rule), and answers for cside while open: judge the retries on
	// the decisions that did ask cside.
	asked := len(rs) - c.breakerRejections()
	attempts := c.fake.ClientRequests()
	rate := float64(ok) / float64(asked)
	t.Logf("upstream flapping: %d of %d decisions that asked cside had datapoints (%.0f%%), %d upstream requests, %d answered by the breaker; max latency %v",
		ok, asked, 100*rate, attempts, len(rs)-asked, maxLatency(rs))
	if asked < len(rs)/3 {
		t.Fatalf("only %d of %d decisions asked cside", asked, len(rs))
	}
	if attempts <= int64(asked) {
		t.Errorf("%d upstream requests for %d cold tokens that asked cside: want retries", attempts, asked)
	}
	if rate < 0.6 {
		t.Errorf("%.0f%% of decisions that asked cside had datapoints, want at least 60%% (retries absorb most failures)", 100*rate)
	}
}

// 4. Garbage, truncated and 1 GiB answers.
func TestChaosUpstreamGarbage(t *testing.T) {
	// The breaker would stop asking after five bad answers; keep it closed
	// so that every request really receives the bad body.
	c := startChaos(t, "--breaker-consecutive-failures", "1000000", "--breaker-min-requests", "1000000")
	heapBefore := heapInUse()
	var peak atomic.Uint64
	stopSampling := sampleHeap(&peak)
	tokens := []string{"demo-garbage", "demo-truncated", "demo-huge"}
	rs := c.drive(150, 8, func(i int) result { return c.decide(tokens[i%len(tokens)], login) })
	stopSampling()
	for i, r := range rs {
		if r.body.Datapoints.Status != "unavailable" || !r.body.Degraded || r.body.codes() != "datapoints_unavailable" {
			t.Errorf("request %d (%s) = %+v, want unavailable", i, tokens[i%len(tokens)], r.body)
		}
	}
	// Concurrent requests for one token share a fetch; one at a time, each
	// asks again: bad bodies are neither cached nor retried.
	before := c.fake.ClientRequests()
	for _, token := range tokens {
		c.decide(token, login)
	}
	if got := c.fake.ClientRequests() - before; got != int64(len(tokens)) {
		t.Errorf("%d sequential requests made %d upstream requests, want %d", len(tokens), got, len(tokens))
	}
	heapAfter := heapInUse()
	t.Logf("garbage: heap in use %d MiB before, %d MiB after, peak %d MiB sampled during 50 reads of a 1 GiB body",
		heapBefore>>20, heapAfter>>20, peak.Load()>>20)
	if peak.Load() > heapBefore+128<<20 || heapAfter > heapBefore+32<<20 {
		t.Errorf("memory did not stay flat: heap %d MiB before, peak %d MiB, %d MiB after", heapBefore>>20, peak.Load()>>20, heapAfter>>20)
	}
}

func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// sampleHeap records the highest heap in use every 5 ms until stopped.
func sampleHeap(peak *atomic.Uint64) (stop func()) {
	done, stopped := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(stopped)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			if m.HeapInuse > peak.Load() {
				peak.Store(m.HeapInuse)
			}
			select {
			case <-done:
				return
			case <-tick.C:
			}
		}
	}()
	return func() { close(done); <-stopped }
}

// 5. Stampede: 500 concurrent requests for one cold token.
func TestChaosStampede(t *testing.T) {
	// A budget long enough that the one upstream call outlives the arrival
	// of all 500 requests.
	c := startChaos(t, "--upstream-timeout", "10s")
	c.fake.SetLatency(2 * time.Second)
	const n = 500
	var ready sync.WaitGroup
	ready.Add(n)
	start := make(chan struct{})
	go func() { ready.Wait(); close(start) }()
	rs := c.drive(n, n, func(int) result {
		ready.Done()
		<-start
		return c.decide("demo-human-stampede", `{"type":"signup"}`)
	})
	sources := map[string]int{}
	for i, r := range rs {
		sources[r.body.Datapoints.Source]++
		if r.body.Datapoints.Status != "ok" || r.body.Decision != "allow" || r.body.FingerprintID == nil {
			t.Fatalf("request %d = %+v, want an allow on datapoints", i, r.body)
		}
	}
	if got := c.fake.ClientRequests(); got != 1 {
		t.Errorf("upstream requests = %d for %d concurrent requests of one cold token, want 1", got, n)
	}
	t.Logf("stampede: %d requests, sources %v, 1 upstream call", n, sources)
}

// 6. Recovery: the upstream heals, the breaker half-opens and closes, and
// fresh data replaces stale.
func TestChaosRecovery(t *testing.T) {
	c := startChaos(t, "--cache-ttl", "300ms", "--breaker-open-for", "300ms")
	const token = "demo-human-recovery"
	if r := c.decide(token, login); r.body.Datapoints.Source != "upstream" {
		t.Fatalf("warm-up = %+v, want datapoints from upstream", r.body)
	}

	c.fake.SetForcedStatus(http.StatusServiceUnavailable)
	c.drive(20, 4, func(i int) result { return c.decide(fmt.Sprintf("tok-recovery-%d", i), login) })
	if got := c.breaker(); got != "open" {
		t.Fatalf("breaker after 20 failed fetches = %q, want open", got)
	}
	until(t, "stale datapoints served", 5*time.Second, func() bool {
		return c.decide(token, login).body.Datapoints.Source == "stale"
	})

	c.fake.SetForcedStatus(0)
	var fresh decideBody
	until(t, "fresh datapoints replace stale ones", 5*time.Second, func() bool {
		fresh = c.decide(token, login).body
		return fresh.Datapoints.Source != "stale"
	})
	if fresh.Datapoints.Source != "upstream" || fresh.Degraded {
		t.Errorf("first answer after healing = %+v, want fresh datapoints from upstream, not degraded", fresh)
	}
	if r := c.decide(token, login); r.body.Datapoints.Source != "cache" {
		t.Errorf("next answer = %+v, want the refreshed entry from the cache", r.body)
	}
	n := 0
	until(t, "breaker closes", 5*time.Second, func() bool {
		n++
		c.decide(fmt.Sprintf("demo-human-probe-%d", n), login)
		return c.breaker() == "closed"
	})
	// The server's log reaches the test through a pipe and a reader
	// goroutine: wait for the lines rather than race them.
	for _, transition := range []string{`"from":"closed","to":"open"`, `"from":"open","to":"half-open"`, `"from":"half-open","to":"closed"`} {
		until(t, "breaker transition "+transition+" logged", 5*time.Second, func() bool {
			return strings.Contains(c.logs.all(), transition)
		})
	}
}

// 7. Stale serve: warm a token, expire its TTL, take the upstream down.
func TestChaosStaleServe(t *testing.T) {
	c := startChaos(t, "--cache-ttl", "200ms")
	signup := `{"type":"signup"}`
	if r := c.decide("demo-vpn", signup); r.body.Datapoints.Source != "upstream" || r.body.codes() != "anonymizing_proxy" {
		t.Fatalf("warm-up = %+v, want anonymizing_proxy on upstream datapoints", r.body)
	}
	c.fake.Close() // down: connection refused
	until(t, "stale datapoints served", 5*time.Second, func() bool {
		return c.decide("demo-vpn", signup).body.Datapoints.Source == "stale"
	})
	rs := c.drive(100, 8, func(int) result { return c.decide("demo-vpn", signup) })
	for i, r := range rs {
		b := r.body
		if b.Datapoints.Source != "stale" || b.Datapoints.Status != "ok" || !b.Degraded ||
			b.Decision != "challenge" || b.codes() != "anonymizing_proxy" || b.FingerprintID == nil {
			t.Fatalf("request %d = %+v, want the vpn decision made on stale datapoints, degraded", i, b)
		}
	}
}
