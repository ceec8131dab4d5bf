// Command harness runs the helper servers of bench/run.sh:
//
//	harness noop ADDR             a Gin handler that only decodes and encodes JSON: the ceiling
//	harness busy ADDR WORK        the same handler spending WORK (a duration) of CPU per request besides,
//	                              in a loop that allocates nothing: a server as busy as Verdict per
//	                              request, without its heap
//	harness fake ADDR LATENCY     the fake cside (csidetest) on ADDR, every answer delayed by LATENCY
//	harness opa-input TOKEN       prints the OPA input (action, datapoints, upstream) for a demo token
//	harness pace URL RATE DURATION  sends /decide requests at a fixed RATE (per second, open loop) and
//	                              prints "p50 p99 p999 errors" in ms; VERDICT_KEY, if set, is the API key;
//	                              PACE_BURSTS=1 also lists on stderr when the slowest 1 % were due
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/verdict-engine/verdict/csideclient/csidetest"
)

func main() {
	if len(os.Args) < 3 {
		log.Fatal("usage: harness noop ADDR | busy ADDR WORK | fake ADDR LATENCY | opa-input TOKEN | pace URL RATE DURATION")
	}
	switch os.Args[1] {
	case "noop":
		log.Fatal(serve(os.Args[2], noop(nil)))
	case "busy":
		if len(os.Args) != 4 {
			log.Fatal("usage: harness busy ADDR WORK")
		}
		work, err := time.ParseDuration(os.Args[3])
		if err != nil || work < 0 || work > time.Second {
			log.Fatalf("busy: WORK %q: want a duration from 0 to 1s, such as 40us", os.Args[3]) // #nosec G706 -- the operator's own argument, quoted
		}
		spin := calibrate(work)
		log.Fatal(serve(os.Args[2], noop(spin)))
	case "fake":
		latency := time.Duration(0)
		if len(os.Args) > 3 {
			var err error
			if latency, err = time.ParseDuration(os.Args[3]); err != nil {
				log.Fatal(err)
			}
		}
		fake := csidetest.NewServer() // the handler; served on ADDR below
		fake.SetLatency(latency)
		log.Fatal(serve(os.Args[2], fake))
	case "opa-input":
		payload, ok := csidetest.Payload(os.Args[2])
		if !ok {
			log.Fatal("no payload for that token: want a demo token such as demo-vpn")
		}
		var fp struct {
			Identification struct{ FingerprintID string } `json:"identification"`
		}
		_ = json.Unmarshal(payload, &fp)
		input := map[string]any{
			"action":         map[string]any{"type": "checkout", "amount": 900, "currency": "USD"},
			"external_ids":   map[string]any{"accountId": "1234567890"},
			"datapoints":     json.RawMessage(payload),
			"upstream":       map[string]any{"status": "ok", "source": "cache", "age_seconds": 12},
			"fingerprint_id": fp.Identification.FingerprintID,
		}
		b, _ := json.Marshal(map[string]any{"input": input})
		fmt.Println(string(b))
	case "pace":
		if len(os.Args) != 5 {
			log.Fatal("usage: harness pace URL RATE DURATION")
		}
		rate, err := strconv.Atoi(os.Args[3])
		if err != nil || rate <= 0 {
			log.Fatalf("pace: RATE %q: want a positive number of requests per second", os.Args[3]) // #nosec G706 -- the operator's own argument, quoted
		}
		d, err := time.ParseDuration(os.Args[4])
		if err != nil || d <= 0 {
			log.Fatalf("pace: DURATION %q: want a positive duration", os.Args[4]) // #nosec G706 -- the operator's own argument, quoted
		}
		if err := pace(os.Args[2], rate, d, os.Getenv("VERDICT_KEY")); err != nil {
			log.Fatal(err)
		}
	default:
		log.Fatal("unknown helper: want noop, busy, fake, opa-input or pace")
	}
}

func serve(addr string, h http.Handler) error {
	srv := &http.Server{Addr: addr, Handler: h, ReadHeaderTimeout: 5 * time.Second}
	return srv.ListenAndServe()
}

// noop decodes the request body as JSON and answers a decision-sized JSON
// object: what any Go JSON service pays before doing anything. A non-nil
// spin runs once per request besides.
func noop(spin func()) http.Handler {
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.POST("/decide", func(c *gin.Context) {
		var body map[string]any
		if err := c.ShouldBindJSON(&body); err != nil {
			c.JSON(http.StatusBadRequest, gin.H{"error": err.Error()})
			return
		}
		if spin != nil {
			spin()
		}
		c.JSON(http.StatusOK, gin.H{
			"decision_id": "00000000-0000-7000-8000-000000000000", "decision": "challenge",
			"reasons":        []gin.H{{"code": "anonymizing_proxy", "effect": "challenge", "message": "VPN or proxy on checkout of 900 USD"}},
			"fingerprint_id": "fp_VpnUser00000000001", "datapoints": gin.H{"status": "ok", "source": "cache"},
			"policy": gin.H{"revision": "000000000000"}, "degraded": false, "elapsed_ms": 0.01,
		})
	})
	return r
}

// sink keeps the spin loop's result observable, so the compiler keeps the loop.
var sink atomic.Uint64

// calibrate returns a function that does a fixed amount of CPU work, taking
// about d on this core when nothing else runs: a xorshift loop, no memory
// touched beyond registers. The rate is the best of 20 timed runs of 1 ms,
// so a busy moment during calibration does not shrink the work.
func calibrate(d time.Duration) func() {
	loop := func(n int) {
		x := uint64(88172645463325252)
		for range n {
			x ^= x << 13
			x ^= x >> 7
			x ^= x << 17
		}
		sink.Store(x)
	}
	const probe = 200_000
	best := time.Duration(1<<63 - 1)
	for range 20 {
		start := time.Now()
		loop(probe)
		best = min(best, time.Since(start))
	}
	n := int(float64(probe) * float64(d) / float64(best))
	log.Printf("busy: %d iterations per request (%v of work at %.0f per µs)", n, d, probe/float64(best.Microseconds())) // #nosec G706 -- numbers from the operator's own argument, parsed
	return func() { loop(n) }
}

// pace sends the request mix of bench/lua/verdict.lua at a fixed rate over
// 16 keep-alive connections (as wrk uses), each sending on its own schedule,
// and prints p50, p99 and p99.9 in milliseconds, the number of failed
// requests, and how late a connection ever was on its schedule for a late
// answer. When a
// request is sent late because the previous answer on its connection came
// back late, its latency counts from when it was due, as in wrk2: a stalled
// server is not hidden by the sender waiting for it (coordinated omission).
// When it is late only because the sender's timer woke late, it counts from
// when it was sent: that delay is the sender's, not the server's. Connections are raw net.Conns with one bufio
// pair each, so the sender costs little CPU next to the server it measures.
// Every connection is opened and has answered one request before the
// schedule starts, as wrk's are: a keep-alive client's first request, and
// the server's set-up of a new connection, are not the steady state the
// percentiles describe.
func pace(rawURL string, rate int, d time.Duration, key string) error {
	const conns = 16
	u, err := url.Parse(rawURL)
	if err != nil {
		return fmt.Errorf("pace: %w", err)
	}
	tokens := []string{"demo-vpn", "demo-human", "demo-bot", "demo-tor", "demo-tamper"}
	interval := time.Duration(float64(time.Second) * conns / float64(rate))
	perConn := int(d / interval)
	clients := make([]*client, conns)
	for c := range clients {
		clients[c] = &client{u: u, key: key}
		if ok, err := clients[c].do(requestBody(tokens, c)); !ok {
			return fmt.Errorf("pace: connection %d does not answer (%v)", c, err)
		}
	}
	var (
		mu      sync.Mutex
		samples []sample
		errs    int
		maxLag  time.Duration
		wg      sync.WaitGroup
	)
	start := time.Now()
	for c, cl := range clients {
		wg.Go(func() {
			got, lag, failed := cl.pace(tokens, start, start.Add(time.Duration(c)*interval/conns), interval, perConn, c)
			mu.Lock()
			defer mu.Unlock()
			samples = append(samples, got...)
			errs += failed
			maxLag = max(maxLag, lag)
		})
	}
	wg.Wait()
	for _, cl := range clients {
		cl.close()
	}
	if len(samples) == 0 {
		return fmt.Errorf("pace: every request failed")
	}
	slices.SortFunc(samples, func(a, b sample) int { return int(a.lat - b.lat) })
	at := func(q float64) string {
		return fmt.Sprintf("%.2fms", float64(samples[int(q*float64(len(samples)-1))].lat)/1e6)
	}
	fmt.Println(at(0.50), at(0.99), at(0.999), errs, fmt.Sprintf("%.1fms", float64(maxLag)/1e6))
	if os.Getenv("PACE_BURSTS") != "" {
		printBursts(os.Stderr, samples[int(0.99*float64(len(samples)-1)):])
	}
	return nil
}

// sample is one answered request: when it was due, from the start of the
// run, and its latency.
type sample struct{ due, lat time.Duration }

// printBursts lists the slow requests by when they were due, grouping those
// less than 20 ms apart: a server that stalls shows as bursts in which every
// connection waited at once (the GC's mark phases, in docs/benchmarks.md),
// a slow request path as slow requests spread over the run.
func printBursts(w io.Writer, slow []sample) {
	slices.SortFunc(slow, func(a, b sample) int { return int(a.due - b.due) })
	for i := 0; i < len(slow); {
		j, worst := i, time.Duration(0)
		for ; j < len(slow) && slow[j].due-slow[max(j-1, i)].due < 20*time.Millisecond; j++ {
			worst = max(worst, slow[j].lat)
		}
		fmt.Fprintf(w, "at %7.3fs: %3d slow requests, the worst %.1fms\n", slow[i].due.Seconds(), j-i, float64(worst)/1e6)
		i = j
	}
}

// requestBody is the seq-th request of the mix: the demo tokens in turn, a
// checkout amount that varies.
func requestBody(tokens []string, seq int) string {
	return fmt.Sprintf(`{"token":%q,"action":{"type":"checkout","amount":%d,"currency":"USD"},"external_ids":{"accountId":"1234567890"}}`,
		tokens[seq%len(tokens)], seq%1000)
}

// client is one keep-alive connection to the server; it redials after a
// failure.
type client struct {
	u    *url.URL
	key  string
	conn net.Conn
	r    *bufio.Reader
}

// do sends one POST of body and reports whether it was answered 200.
func (c *client) do(body string) (bool, error) {
	if c.conn == nil {
		conn, err := net.Dial("tcp", c.u.Host) // #nosec G704 -- a load generator dials the server its operator names
		if err != nil {
			return false, err
		}
		c.conn, c.r = conn, bufio.NewReader(conn)
	}
	auth := ""
	if c.key != "" {
		auth = "Authorization: Bearer " + c.key + "\r\n"
	}
	req := fmt.Sprintf("POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\n%sContent-Length: %d\r\n\r\n%s",
		c.u.RequestURI(), c.u.Host, auth, len(body), body)
	if _, err := io.WriteString(c.conn, req); err != nil {
		c.close()
		return false, err
	}
	resp, err := http.ReadResponse(c.r, nil)
	if err != nil {
		c.close()
		return false, err
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return false, fmt.Errorf("status %d", resp.StatusCode)
	}
	return true, nil
}

func (c *client) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn = nil
	}
}

// pace sends n requests, one every interval from first, and returns their
// samples, its largest lag and its failures.
func (c *client) pace(tokens []string, start, first time.Time, interval time.Duration, n, offset int) ([]sample, time.Duration, int) {
	var (
		got    = make([]sample, 0, n)
		done   time.Time // when the previous answer came back
		lag    time.Duration
		failed int
	)
	for i := range n {
		due := first.Add(time.Duration(i) * interval)
		time.Sleep(time.Until(due))
		from := due
		if sent := time.Now(); done.Before(due) {
			from = sent
		} else {
			lag = max(lag, sent.Sub(due))
		}
		ok, err := c.do(requestBody(tokens, i*16+offset))
		done = time.Now()
		if !ok {
			if failed == 0 {
				log.Printf("pace: first failure: %v", err)
			}
			failed++
			continue
		}
		got = append(got, sample{due.Sub(start), done.Sub(from)})
	}
	return got, lag, failed
}
