package csideclient_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/csideclient/csidetest"
)

// firstFails answers its first request with status (or hangs until the
// client gives up when status is 0), and every later one with the human
// payload. It counts requests.
func firstFails(t *testing.T, status int) (*int64, string) {
	t.Helper()
	var n int64
	payload, _ := csidetest.Payload("demo-human")
	srv := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) {
		// Consume the body: only then does net/http notice a client that
		// went away and end r.Context().
		_, _ = io.Copy(io.Discard, r.Body)
		if atomic.AddInt64(&n, 1) == 1 {
			if status == 0 {
				<-r.Context().Done()
				return
			}
			w.WriteHeader(status)
			return
		}
		_, _ = w.Write(payload)
	})
	return &n, srv.URL
}

func TestRetry(t *testing.T) {
	tests := []struct {
		name      string
		status    int // first answer; 0 hangs
		noRetry   bool
		want      error
		wantCalls int64
	}{
		{"503 retried", http.StatusServiceUnavailable, false, nil, 2},
		{"500 retried", http.StatusInternalServerError, false, nil, 2},
		{"502 retried", http.StatusBadGateway, false, nil, 2},
		{"429 retried", http.StatusTooManyRequests, false, nil, 2},
		{"408 retried", http.StatusRequestTimeout, false, nil, 2},
		{"hang retried after the attempt timeout", 0, false, nil, 2},
		{"401 not retried", http.StatusUnauthorized, false, csideclient.ErrRejected, 1},
		{"400 not retried", http.StatusBadRequest, false, csideclient.ErrRejected, 1},
		{"422 not retried", http.StatusUnprocessableEntity, false, csideclient.ErrRejected, 1},
		{"404 not retried", http.StatusNotFound, false, csideclient.ErrNotFound, 1},
		{"302 not retried", http.StatusFound, false, csideclient.ErrUnavailable, 1},
		{"503 with NoRetry", http.StatusServiceUnavailable, true, csideclient.ErrUnavailable, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, url := firstFails(t, tt.status)
			c := newClient(t, csideclient.Config{BaseURL: url, Timeout: 600 * time.Millisecond, NoRetry: tt.noRetry})
			_, err := c.Datapoints(context.Background(), "demo-human")
			checkErr(t, "Datapoints", err, tt.want)
			if got := atomic.LoadInt64(n); got != tt.wantCalls {
				t.Errorf("upstream requests = %d, want %d", got, tt.wantCalls)
			}
		})
	}
}

func TestInvalidBodyNotRetried(t *testing.T) {
	fake := newFake(t)
	c := newClient(t, csideclient.Config{BaseURL: fake.URL})
	_, err := c.Datapoints(context.Background(), "demo-garbage")
	checkErr(t, "Datapoints(demo-garbage)", err, csideclient.ErrUnavailable)
	if got := fake.ClientRequests(); got != 1 {
		t.Errorf("upstream requests = %d, want 1: invalid bodies are not retried", got)
	}
}

func TestRetryNeverExceedsBudget(t *testing.T) {
	fake := newFake(t)
	fake.SetLatency(2 * time.Second)
	const budget = 300 * time.Millisecond
	c := newClient(t, csideclient.Config{BaseURL: fake.URL, Timeout: budget})
	start := time.Now()
	_, err := c.Datapoints(context.Background(), "demo-human")
	elapsed := time.Since(start)
	checkErr(t, "Datapoints", err, csideclient.ErrUnavailable)
	if elapsed > budget+100*time.Millisecond {
		t.Errorf("Datapoints took %v, want at most the %v budget (plus scheduling slack)", elapsed, budget)
	}
	if got := fake.ClientRequests(); got != 2 {
		t.Errorf("upstream requests = %d, want 2: the first attempt times out at half the budget, the retry uses the rest", got)
	}
}

func TestNoRetryWithoutRoomInBudget(t *testing.T) {
	fake := newFake(t)
	fake.SetLatency(2 * time.Second)
	// The first attempt may use the whole budget: no room for a retry.
	c := newClient(t, csideclient.Config{BaseURL: fake.URL, Timeout: 200 * time.Millisecond, AttemptTimeout: 200 * time.Millisecond})
	_, err := c.Datapoints(context.Background(), "demo-human")
	checkErr(t, "Datapoints", err, csideclient.ErrUnavailable)
	if got := fake.ClientRequests(); got != 1 {
		t.Errorf("upstream requests = %d, want 1", got)
	}
}

func TestBreakerCountsACallOnce(t *testing.T) {
	// One failed attempt followed by a good retry is a good call: with a
	// breaker that trips on the first failure, it stays closed.
	n, url := firstFails(t, http.StatusServiceUnavailable)
	c := newClient(t, csideclient.Config{BaseURL: url, Breaker: csideclient.BreakerConfig{ConsecutiveFailures: 1}})
	if _, err := c.Datapoints(context.Background(), "demo-human"); err != nil {
		t.Fatalf("Datapoints error = %v", err)
	}
	if got := c.BreakerState(); got != "closed" || atomic.LoadInt64(n) != 2 {
		t.Errorf("after a retried call: breaker %s, %d requests; want closed, 2", got, atomic.LoadInt64(n))
	}
}

func TestOpenBreakerIsNotRetried(t *testing.T) {
	fake := newFake(t)
	fake.SetForcedStatus(http.StatusServiceUnavailable)
	c := newClient(t, csideclient.Config{BaseURL: fake.URL, Breaker: csideclient.BreakerConfig{ConsecutiveFailures: 1, OpenFor: time.Hour}})
	_, _ = c.Datapoints(context.Background(), "demo-human")
	before := fake.ClientRequests()
	start := time.Now()
	_, err := c.Datapoints(context.Background(), "demo-human")
	checkErr(t, "Datapoints with the breaker open", err, csideclient.ErrUnavailable)
	if fake.ClientRequests() != before || time.Since(start) > 20*time.Millisecond {
		t.Errorf("with the breaker open: %d new requests in %v, want none and an immediate answer", fake.ClientRequests()-before, time.Since(start))
	}
}

// TestRetriesAbsorbFlapping makes 200 sequential calls to an upstream that
// fails half its requests (seeded, so the run is repeatable): with the
// retry about three calls in four succeed, without it about one in two.
func TestRetriesAbsorbFlapping(t *testing.T) {
	okRate := func(noRetry bool) float64 {
		fake := newFake(t)
		fake.SetErrorRate(0.5)
		c := newClient(t, csideclient.Config{
			BaseURL: fake.URL, NoRetry: noRetry, RetryBackoff: time.Millisecond,
			Breaker: csideclient.BreakerConfig{ConsecutiveFailures: 1000, MinRequests: 1000},
		})
		ok := 0
		const calls = 200
		for range calls {
			if _, err := c.Datapoints(context.Background(), "demo-human"); err == nil {
				ok++
			}
		}
		return float64(ok) / calls
	}
	with, without := okRate(false), okRate(true)
	t.Logf("ok rate at 50%% upstream errors: %.2f with retry, %.2f without", with, without)
	if with < 0.65 || with <= without {
		t.Errorf("ok rate with retry = %.2f (without %.2f), want at least 0.65 and better than without", with, without)
	}
}

func ExampleClient_Datapoints() {
	fake := csidetest.NewServer()
	defer fake.Close()
	c, err := csideclient.New(csideclient.Config{BaseURL: fake.URL})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	payload, err := c.Datapoints(context.Background(), "demo-human")
	fmt.Println(len(payload) > 0, err)
	_, err = c.Datapoints(context.Background(), "demo-unknown")
	fmt.Println(err)
	// Output:
	// true <nil>
	// cside /token/v1/client: status 404: not found
}

func TestHostilePayloads(t *testing.T) {
	human, _ := csidetest.Payload("demo-human")
	tests := []struct {
		name string
		body []byte
		ok   bool
	}{
		{"invalid UTF-8 in a string", []byte("{\"a\": \"\xff\xfe\"}"), false},
		{"nested 65 deep", []byte(`{"a":` + strings.Repeat("[", 64) + strings.Repeat("]", 64) + `}`), false},
		{"nested 64 deep", []byte(`{"a":` + strings.Repeat("[", 63) + strings.Repeat("]", 63) + `}`), true},
		{"brackets inside strings do not count", []byte(`{"a": "` + strings.Repeat("[", 100) + `\"` + `"}`), true},
		{"the human payload", human, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := newPlainServer(t, func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write(tt.body) })
			c := newClient(t, csideclient.Config{BaseURL: srv.URL})
			_, err := c.Datapoints(context.Background(), "tok")
			if tt.ok {
				checkErr(t, "Datapoints", err, nil)
			} else {
				checkErr(t, "Datapoints", err, csideclient.ErrUnavailable)
			}
		})
	}
}
