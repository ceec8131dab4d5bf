// Package cache is Verdict's read-through datapoint cache: an engine.Source
// that answers from ristretto when it can and asks cside (through a Fetcher)
// when it must.
//
// Only answers worth repeating are cached: datapoints (for TTL) and "cside
// has nothing for this token" (for NotFoundTTL). Rejected and unavailable
// answers are never cached, so the next request asks again.
//
// Concurrent misses for one token make one upstream call (see flightGroup).
// Datapoints past their TTL are kept for StaleGrace more: when refreshing
// them fails with the upstream unavailable, they are served as stale.
//
// A cached entry is held by value and points only at bytes: a busy replica
// caches a hundred thousand tokens, and every garbage collection would mark
// an object per token otherwise (docs/architecture.md, "Where the parsed
// datapoints live"). The engine's state for a payload (its parsed tree while
// the collector leaves it, its staged residual) lives in an engine.Payload,
// which the cache keeps for the tokens served from it (up to HotPayloads)
// while their entry is cached.
//
// ristretto applies sets asynchronously and may drop them under contention
// or when its admission policy refuses an entry. Nothing here depends on a
// set being visible: a dropped set only costs a later upstream call. Tests
// that need a set to be visible call Wait.
package cache

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/ristretto/v2"
	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/engine"
)

// Defaults for Config's zero values.
const (
	DefaultMaxCostBytes = 256 << 20
	DefaultTTL          = 5 * time.Minute
	DefaultNotFoundTTL  = 30 * time.Second
	DefaultStaleGrace   = time.Hour
)

// entryOverhead approximates what an entry holds besides its bytes (the raw
// payload or the fingerprint ID): its struct in ristretto's map with
// ristretto's own fields and the map's spare room, and the allocator's
// rounding of the payload's bytes up to a size class (TestMemoryBounded
// holds the costs to the live heap).
const entryOverhead = 384

// expectedEntryBytes is a typical entry's cost (a ~1.6 KB raw payload, its
// key and entryOverhead), used only to size ristretto's admission counters.
const expectedEntryBytes = 2 << 10

// Fetcher asks the upstream. csideclient.Client implements it. Errors must
// wrap csideclient.ErrNotFound, ErrRejected or ErrUnavailable; any other
// error counts as unavailable.
type Fetcher interface {
	Datapoints(ctx context.Context, token string) ([]byte, error)
	ClientID(ctx context.Context, token string) (string, error)
}

// Config configures a Cache. The zero value is usable.
type Config struct {
	// MaxCostBytes bounds the memory entries hold: raw payload, parsed form
	// and key bytes. Zero means DefaultMaxCostBytes (256 MiB).
	MaxCostBytes int64
	// TTL is how long datapoints stay fresh. Zero means DefaultTTL (5 min).
	TTL time.Duration
	// NotFoundTTL is how long a "not found" answer is kept. Zero means
	// DefaultNotFoundTTL (30 s).
	NotFoundTTL time.Duration
	// StaleGrace is how long datapoints are kept past their TTL, to be served
	// (as stale) when the upstream is unavailable. Zero means
	// DefaultStaleGrace (1 h); a negative value disables stale serving.
	StaleGrace time.Duration
	// HotPayloads bounds the tokens served from the cache that keep the
	// engine's state for their payload between decisions (the parsed tree
	// until the next garbage collection, and the staged residual that serves
	// a token's decisions from its engine.StageAfterUses-th from the cache
	// on), for as long as their entry is cached; past the bound, those
	// served least recently lose it, and are decided from their cached bytes
	// and staged again when they come back. Each holds ~0.6 KB besides what
	// MaxCostBytes bounds. A token fetched and never decided again holds
	// none. Zero means as many as MaxCostBytes holds typical entries
	// (MaxCostBytes / 2 KiB: 131,072 at the default).
	HotPayloads int
	// Now is the clock; nil means time.Now. Tests move it instead of sleeping.
	Now func() time.Time
}

// Cache is a read-through engine.Source. It is safe for concurrent use.
type Cache struct {
	cfg     Config
	fetcher Fetcher
	store   *ristretto.Cache[string, entry]
	// hot holds the engine.Payload of tokens served from the cache, by
	// the address of their cached bytes (so a payload is never one of an
	// entry fetched earlier); an entry leaving the cache takes its own.
	hot *lru.Cache[*byte, *engine.Payload]
	// epoch is the clock's reading at New: entries keep their times as
	// offsets from it, measured on the monotonic clock when the clock has
	// one, as time.Time's Sub does (a wall-clock step does not age them).
	epoch      time.Time
	datapoints flightGroup[engine.Datapoints]
	identities flightGroup[engine.Identity]
	hits       atomic.Uint64
	misses     atomic.Uint64
	stale      atomic.Uint64
	coalesced  atomic.Uint64
}

// entry is one cached upstream answer, held by value; the bytes it points
// at are never written after it is set. It is kept small: ristretto keeps it
// in a Go map, which stores values of more than 128 bytes (with ristretto's
// own fields) as objects of their own, one more per token to mark.
type entry struct {
	status engine.Status // StatusOK or StatusNotFound
	// raw is a datapoints entry's payload, as its engine.Payload's Raw gave it.
	raw []byte
	// id is the fingerprint ID: an identity entry's, or a datapoints entry's
	// (its engine.Payload's FingerprintID).
	id string
	// fetchedAt and expires are offsets from the cache's epoch; expires is
	// when the entry stops being fresh (datapoints are kept StaleGrace more).
	fetchedAt, expires time.Duration
}

// fetched returns when e was fetched.
func (c *Cache) fetched(e entry) time.Time { return c.epoch.Add(e.fetchedAt) }

// now returns the clock's reading as an offset from the epoch.
func (c *Cache) now() time.Duration { return c.cfg.Now().Sub(c.epoch) }

// Key prefixes keep the two kinds of entries for one token apart.
const (
	datapointsKey = "d:"
	identityKey   = "i:"
)

// New validates cfg and returns a Cache reading through f.
func New(cfg Config, f Fetcher) (*Cache, error) {
	if cfg.MaxCostBytes == 0 {
		cfg.MaxCostBytes = DefaultMaxCostBytes
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.NotFoundTTL == 0 {
		cfg.NotFoundTTL = DefaultNotFoundTTL
	}
	if cfg.StaleGrace == 0 {
		cfg.StaleGrace = DefaultStaleGrace
	}
	if cfg.StaleGrace < 0 {
		cfg.StaleGrace = 0
	}
	if cfg.HotPayloads == 0 {
		cfg.HotPayloads = int(cfg.MaxCostBytes / expectedEntryBytes)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	var errs []error
	if f == nil {
		errs = append(errs, errors.New("no fetcher"))
	}
	if cfg.MaxCostBytes < 1<<20 {
		errs = append(errs, fmt.Errorf("max cost %d bytes: must be at least 1 MiB", cfg.MaxCostBytes))
	}
	if cfg.TTL < 0 || cfg.NotFoundTTL < 0 {
		errs = append(errs, fmt.Errorf("TTLs must be positive (ttl %v, not-found ttl %v)", cfg.TTL, cfg.NotFoundTTL))
	}
	if cfg.HotPayloads < 0 {
		errs = append(errs, fmt.Errorf("hot payloads %d: must be positive", cfg.HotPayloads))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cache: invalid config: %w", err)
	}

	hot, err := lru.New[*byte, *engine.Payload](cfg.HotPayloads)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	store, err := ristretto.NewCache(&ristretto.Config[string, entry]{
		// ristretto advises 10 counters per entry the cache holds when full.
		NumCounters: max(10*cfg.MaxCostBytes/expectedEntryBytes, 10_000),
		MaxCost:     cfg.MaxCostBytes,
		BufferItems: 64,
		Metrics:     true, // cost held and evictions, for monitoring
		// An entry evicted, expired or replaced takes its hot payload.
		OnExit: func(e entry) {
			if len(e.raw) > 0 {
				hot.Remove(&e.raw[0])
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &Cache{cfg: cfg, fetcher: f, store: store, hot: hot, epoch: cfg.Now()}, nil
}

// Close stops ristretto's goroutines. The Cache must not be used afterwards.
func (c *Cache) Close() { c.store.Close() }

// Wait blocks until every set made so far was applied (or dropped).
func (c *Cache) Wait() { c.store.Wait() }

// Hits reports entry lookups that found a fresh entry. Datapoints makes one
// lookup per call; Identify up to two (datapoints, then fingerprint ID).
func (c *Cache) Hits() uint64 { return c.hits.Load() }

// Misses reports entry lookups that found no fresh entry.
func (c *Cache) Misses() uint64 { return c.misses.Load() }

// CostBytes reports the cost the cache holds: the bytes of its entries as
// estimated when they were set (ristretto's own bookkeeping included).
func (c *Cache) CostBytes() uint64 {
	m := c.store.Metrics
	return m.CostAdded() - min(m.CostEvicted(), m.CostAdded())
}

// HotPayloads reports how many tokens the cache keeps an engine.Payload for
// (their parsed and staged state; Config.HotPayloads bounds them).
func (c *Cache) HotPayloads() int { return c.hot.Len() }

// Evictions reports entries evicted to stay within MaxCostBytes.
func (c *Cache) Evictions() uint64 { return c.store.Metrics.KeysEvicted() }

// StaleServed reports datapoints served stale because a refresh failed.
func (c *Cache) StaleServed() uint64 { return c.stale.Load() }

// Coalesced reports lookups that shared another caller's upstream call
// instead of making their own.
func (c *Cache) Coalesced() uint64 { return c.coalesced.Load() }

// Datapoints returns the token's datapoints from the cache when fresh, else
// from the upstream, caching what is worth caching. When the upstream is
// unavailable and the cache holds datapoints within their stale grace, those
// are returned with OriginStale. When ctx ends before an answer, the result
// is unavailable, and the upstream call goes on only if others wait for it.
func (c *Cache) Datapoints(ctx context.Context, token string) engine.Datapoints {
	key := datapointsKey + token
	e, fresh := c.lookup(key)
	if fresh {
		return engine.Datapoints{Status: e.status, Origin: engine.OriginCache, Payload: c.payload(e),
			FetchedAt: c.fetched(e), Age: c.now() - e.fetchedAt}
	}
	dp, shared, err := c.datapoints.do(ctx, key, func(ctx context.Context) engine.Datapoints {
		return c.fetchDatapoints(ctx, key, token)
	})
	if shared {
		c.coalesced.Add(1)
	}
	if err != nil {
		dp = engine.Datapoints{Status: engine.StatusUnavailable, Origin: engine.OriginNone,
			Err: fmt.Errorf("waiting for the upstream: %w", err)}
	}
	if dp.Status == engine.StatusUnavailable && c.usableStale(e) {
		c.stale.Add(1)
		return engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginStale, Payload: c.payload(e),
			FetchedAt: c.fetched(e), Age: c.now() - e.fetchedAt, Err: dp.Err}
	}
	return dp
}

// fetchDatapoints asks the upstream once and caches the answer. It makes
// the entry visible before returning, so that callers arriving after a
// coalesced fetch find it instead of fetching again.
func (c *Cache) fetchDatapoints(ctx context.Context, key, token string) engine.Datapoints {
	raw, err := c.fetcher.Datapoints(ctx, token)
	now := c.cfg.Now()
	if err != nil {
		return engine.Datapoints{Status: c.remember(key, err, now), Origin: origin(err), Err: err}
	}
	p, err := engine.ParsePayload(raw)
	if err != nil {
		return engine.Datapoints{Status: engine.StatusUnavailable, Origin: engine.OriginNone, Err: err}
	}
	e := entry{status: engine.StatusOK, raw: p.Raw(), id: p.FingerprintID()}
	c.set(key, e, int64(len(e.raw)+len(e.id)), now)
	return engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginUpstream, Payload: p, FetchedAt: now}
}

// payload returns the engine.Payload of e, a datapoints entry served from
// the cache: the one kept for e's bytes, else a new one over them, kept
// from now on. (A payload just fetched is not kept: most tokens are decided
// once.) Two callers may make one each at once; the later is kept, and the
// other only loses the state it gathered (a parse, uses towards staging).
// An entry evicted between this lookup and the Add leaves its payload in
// hot until the LRU drops it: rare, and within the bound.
func (c *Cache) payload(e entry) *engine.Payload {
	if len(e.raw) == 0 {
		return nil
	}
	if p, ok := c.hot.Get(&e.raw[0]); ok {
		return p
	}
	p := engine.ReusePayload(e.raw, e.id)
	c.hot.Add(&e.raw[0], p)
	return p
}

// Identify returns the token's stable fingerprint ID: from cached datapoints
// when there are some, else from a cached or fresh /clientId answer.
func (c *Cache) Identify(ctx context.Context, token string) engine.Identity {
	if e, fresh := c.lookup(datapointsKey + token); fresh {
		return engine.Identity{FingerprintID: e.id, Status: e.status, Origin: engine.OriginCache}
	}
	key := identityKey + token
	if e, fresh := c.lookup(key); fresh {
		return engine.Identity{FingerprintID: e.id, Status: e.status, Origin: engine.OriginCache}
	}
	id, shared, err := c.identities.do(ctx, key, func(ctx context.Context) engine.Identity {
		return c.fetchIdentity(ctx, key, token)
	})
	if shared {
		c.coalesced.Add(1)
	}
	if err != nil {
		return engine.Identity{Status: engine.StatusUnavailable, Origin: engine.OriginNone,
			Err: fmt.Errorf("waiting for the upstream: %w", err)}
	}
	return id
}

func (c *Cache) fetchIdentity(ctx context.Context, key, token string) engine.Identity {
	id, err := c.fetcher.ClientID(ctx, token)
	now := c.cfg.Now()
	if err != nil {
		return engine.Identity{Status: c.remember(key, err, now), Origin: origin(err), Err: err}
	}
	c.set(key, entry{status: engine.StatusOK, id: id}, int64(len(id)), now)
	return engine.Identity{FingerprintID: id, Status: engine.StatusOK, Origin: engine.OriginUpstream}
}

// lookup returns the entry under key, if any (else a zero entry), and
// whether it is fresh.
func (c *Cache) lookup(key string) (entry, bool) {
	e, ok := c.store.Get(key)
	if ok && c.now() < e.expires {
		c.hits.Add(1)
		return e, true
	}
	c.misses.Add(1)
	return e, false
}

// usableStale reports whether e holds datapoints within their stale grace.
func (c *Cache) usableStale(e entry) bool {
	return e.status == engine.StatusOK && e.raw != nil &&
		c.now() < e.expires+c.cfg.StaleGrace
}

// set stores e under key, fresh for the TTL its status calls for (kept
// StaleGrace longer when it holds datapoints), and waits until the entry is
// visible; size is the bytes e holds beyond its own struct.
func (c *Cache) set(key string, e entry, size int64, now time.Time) {
	ttl, keep := c.cfg.TTL, c.cfg.TTL
	switch {
	case e.status == engine.StatusNotFound:
		ttl, keep = c.cfg.NotFoundTTL, c.cfg.NotFoundTTL
	case e.raw != nil:
		keep += c.cfg.StaleGrace
	}
	e.fetchedAt = now.Sub(c.epoch)
	e.expires = e.fetchedAt + ttl
	if c.store.SetWithTTL(key, e, int64(len(key))+entryOverhead+size, keep) {
		c.store.Wait()
	}
}

// remember classifies an upstream error, caches a not-found answer and
// returns the status.
func (c *Cache) remember(key string, err error, now time.Time) engine.Status {
	switch {
	case errors.Is(err, csideclient.ErrNotFound):
		c.set(key, entry{status: engine.StatusNotFound}, 0, now)
		return engine.StatusNotFound
	case errors.Is(err, csideclient.ErrRejected):
		return engine.StatusRejected
	default:
		return engine.StatusUnavailable
	}
}

// origin says whether cside answered (not found, rejected) or not at all.
func origin(err error) engine.Origin {
	if errors.Is(err, csideclient.ErrNotFound) || errors.Is(err, csideclient.ErrRejected) {
		return engine.OriginUpstream
	}
	return engine.OriginNone
}
