package cache_test

import (
	"context"
	"runtime"
	"strconv"
	"testing"

	"github.com/verdict-engine/verdict/cache"
	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
)

// BenchmarkDatapoints measures the cache on /decide's path: a hit (a
// ristretto lookup and the entry's age), hits from every core at once on the
// harness's five tokens, and a miss, which is a real csideclient call to the
// in-process fake cside over loopback HTTP (both ends' CPU counted), the
// payload's parsing and the insert.
func BenchmarkDatapoints(b *testing.B) {
	ctx := context.Background()
	c, _ := setupClock(b, nil) // the real clock, as in production: the fake one has a mutex
	tokens := []string{"demo-vpn", "demo-human", "demo-bot", "demo-tor", "demo-tamper"}
	for _, token := range tokens {
		if dp := c.Datapoints(ctx, token); dp.Status != engine.StatusOK {
			b.Fatalf("%s: %s (%v)", token, dp.Status, dp.Err)
		}
	}
	c.Wait()
	b.Run("hit", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if dp := c.Datapoints(ctx, "demo-vpn"); dp.Origin != engine.OriginCache {
				b.Fatalf("origin %s, want cache", dp.Origin)
			}
		}
	})
	b.Run("hit-parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for i := 0; pb.Next(); i++ {
				if dp := c.Datapoints(ctx, tokens[i%len(tokens)]); dp.Origin != engine.OriginCache {
					b.Errorf("origin %s, want cache", dp.Origin)
					return
				}
			}
		})
	})
	n := 0 // tokens never seen: -count runs the sub-benchmarks again on the same cache
	b.Run("miss", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			n++
			if dp := c.Datapoints(ctx, csidetest.HumanFamily+"bench"+strconv.Itoa(n)); dp.Origin != engine.OriginUpstream {
				b.Fatalf("origin %s (%v), want upstream", dp.Origin, dp.Err)
			}
		}
	})
}

// BenchmarkCollectFullCache measures what a full cache costs every garbage
// collection: a forced collection (runtime.GC: mark, and the sweep it waits
// for) with 20,000 distinct tokens cached, fetched through the real client
// from the fake cside, reported per cached token as well. The cache's bound
// is high enough that none is evicted. "fetched": each token fetched once,
// as most are (bytes only); "served-again": each also served once from the
// cache, so that the cache keeps its engine.Payload (a hot payload, not yet
// staged: staging is the engine's).
func BenchmarkCollectFullCache(b *testing.B) {
	for _, tc := range []struct {
		name    string
		lookups int
	}{{"fetched", 1}, {"served-again", 2}} {
		b.Run(tc.name, func(b *testing.B) {
			const tokens = 20_000
			fake := csidetest.NewServer()
			defer fake.Close()
			client, err := csideclient.New(csideclient.Config{BaseURL: fake.URL, Transport: inMemory{fake}})
			if err != nil {
				b.Fatal(err)
			}
			c, err := cache.New(cache.Config{MaxCostBytes: 1 << 30}, client)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			for i := range tokens {
				for range tc.lookups {
					if dp := c.Datapoints(context.Background(), csidetest.HumanFamily+strconv.Itoa(i)); dp.Status != engine.StatusOK {
						b.Fatalf("token %d: %s (%v)", i, dp.Status, dp.Err)
					}
				}
			}
			c.Wait()
			if want := tokens * (tc.lookups - 1); c.HotPayloads() != want {
				b.Fatalf("%d hot payloads, want %d", c.HotPayloads(), want)
			}
			runtime.GC()
			for b.Loop() {
				runtime.GC()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/tokens, "ns/token")
			runtime.KeepAlive(c)
		})
	}
}
