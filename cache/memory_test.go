package cache_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/verdict-engine/verdict/cache"
	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
)

// inMemory serves requests with a handler directly, without sockets, so a
// test can push hundreds of thousands of requests through the real client
// and the real fake quickly.
type inMemory struct{ h http.Handler }

func (t inMemory) RoundTrip(r *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	t.h.ServeHTTP(rec, r)
	return rec.Result(), nil
}

// TestMemoryBounded streams 200k distinct tokens, each with its own 1.6 KB
// payload and each looked up twice (fetched, then served from the cache, so
// that the hot payloads fill too), through a cache bounded to 64 MiB (hot
// payloads at their default bound), and checks two bounds:
//
//   - live heap (after GC) within MaxCostBytes of the baseline, plus 1 KB
//     per hot payload kept at the end: entry costs account for the memory
//     entries really hold, and a hot payload holds what Config.HotPayloads
//     says (its entry's bytes are the cache's);
//   - heap in use within 4 times that: each lookup leaves garbage (the
//     payload's parsed tree, which the cache does not keep: engine.Payload),
//     and evicting entries in random order leaves spans partly used
//     (measured here: ~2x live under concurrent churn), but both stay
//     bounded (docs/resilience.md).
//
// Under the race detector, which makes this slow, it streams 25k tokens
// through an 8 MiB cache instead.
func TestMemoryBounded(t *testing.T) {
	tokens, maxCost := 200_000, int64(64<<20)
	if raceEnabled {
		tokens, maxCost = 25_000, 8<<20
	}
	fake := csidetest.NewServer()
	defer fake.Close()
	client, err := csideclient.New(csideclient.Config{BaseURL: fake.URL, Transport: inMemory{fake}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := cache.New(cache.Config{MaxCostBytes: maxCost}, client)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	baseline := readHeap()
	var next, failed atomic.Int64
	var peak atomic.Uint64 // heap in use
	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(tokens) {
					return
				}
				token := fmt.Sprintf("demo-human-%d", i)
				for range 2 {
					if dp := c.Datapoints(context.Background(), token); dp.Status != engine.StatusOK {
						failed.Add(1)
					}
				}
				if i%10_000 == 0 {
					if h := readHeap().inUse; h > peak.Load() {
						peak.Store(h)
					}
				}
			}
		})
	}
	wg.Wait()
	c.Wait()
	final := readHeap()
	hot := c.HotPayloads()
	peakInUse := max(peak.Load(), final.inUse)
	t.Logf("%d tokens through a %d MiB cache, %d hot payloads: live heap %d MiB at start, %d MiB at the end; heap in use %d MiB at start, peak %d MiB, %d MiB at the end",
		tokens, maxCost>>20, hot, baseline.live>>20, final.live>>20, baseline.inUse>>20, peakInUse>>20, final.inUse>>20)
	if failed.Load() > 0 {
		t.Errorf("%d lookups failed", failed.Load())
	}
	if limit := baseline.live + uint64(maxCost)*11/10 + uint64(hot)<<10 + 8<<20; final.live > limit {
		t.Errorf("live heap %d MiB, want at most %d MiB: entry costs understate what entries hold, or hot payloads hold more than 1 KB",
			final.live>>20, limit>>20)
	}
	if limit := baseline.inUse + uint64(maxCost)*4 + 16<<20; peakInUse > limit {
		t.Errorf("heap in use peaked at %d MiB, want at most %d MiB", peakInUse>>20, limit>>20)
	}
}

type heap struct{ live, inUse uint64 }

func readHeap() heap {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return heap{live: m.HeapAlloc, inUse: m.HeapInuse}
}
