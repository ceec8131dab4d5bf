// Package cache is Verdict's read-through datapoint cache: an engine.Source
// that answers from ristretto when it can and asks cside (through a Fetcher)
// when it must.
//
// Only answers worth repeating are cached: datapoints (for TTL) and "cside
// has nothing for this token" (for NotFoundTTL). Rejected and unavailable
// answers are never cached, so the next request asks again.
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

	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/engine"
)

// Defaults for Config's zero values.
const (
	DefaultMaxCostBytes = 256 << 20
	DefaultTTL          = 5 * time.Minute
	DefaultNotFoundTTL  = 30 * time.Second
)

// entryOverhead approximates the bytes of an entry's own struct, its
// ristretto bookkeeping excluded (ristretto adds that itself).
const entryOverhead = 96

// expectedEntryBytes is a typical entry's cost (a ~1.5 KB payload, raw and
// parsed), used only to size ristretto's admission counters.
const expectedEntryBytes = 8 << 10

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
	// Now is the clock; nil means time.Now. Tests move it instead of sleeping.
	Now func() time.Time
}

// Cache is a read-through engine.Source. It is safe for concurrent use.
type Cache struct {
	cfg     Config
	fetcher Fetcher
	store   *ristretto.Cache[string, *entry]
	hits    atomic.Uint64
	misses  atomic.Uint64
}

// entry is one cached upstream answer. Entries are immutable once set.
type entry struct {
	status    engine.Status   // StatusOK or StatusNotFound
	payload   *engine.Payload // datapoints entries with StatusOK
	id        string          // identity entries with StatusOK
	fetchedAt time.Time
	expires   time.Time
}

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
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("cache: invalid config: %w", err)
	}

	store, err := ristretto.NewCache(&ristretto.Config[string, *entry]{
		// ristretto advises 10 counters per entry the cache holds when full.
		NumCounters: max(10*cfg.MaxCostBytes/expectedEntryBytes, 10_000),
		MaxCost:     cfg.MaxCostBytes,
		BufferItems: 64,
	})
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	return &Cache{cfg: cfg, fetcher: f, store: store}, nil
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

// Datapoints returns the token's datapoints from the cache when fresh, else
// from the upstream, caching what is worth caching.
func (c *Cache) Datapoints(ctx context.Context, token string) engine.Datapoints {
	if e, ok := c.fresh(datapointsKey + token); ok {
		return engine.Datapoints{Status: e.status, Origin: engine.OriginCache, Payload: e.payload, FetchedAt: e.fetchedAt}
	}
	raw, err := c.fetcher.Datapoints(ctx, token)
	now := c.cfg.Now()
	if err != nil {
		return engine.Datapoints{Status: c.remember(datapointsKey+token, err, now), Origin: origin(err), Err: err}
	}
	p, err := engine.ParsePayload(raw)
	if err != nil {
		return engine.Datapoints{Status: engine.StatusUnavailable, Origin: engine.OriginNone, Err: err}
	}
	c.set(datapointsKey+token, &entry{status: engine.StatusOK, payload: p, fetchedAt: now}, p.Size(), now)
	return engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginUpstream, Payload: p, FetchedAt: now}
}

// Identify returns the token's stable fingerprint ID: from cached datapoints
// when there are some, else from a cached or fresh /clientId answer.
func (c *Cache) Identify(ctx context.Context, token string) engine.Identity {
	if e, ok := c.fresh(datapointsKey + token); ok {
		id := ""
		if e.payload != nil {
			id = e.payload.FingerprintID()
		}
		return engine.Identity{FingerprintID: id, Status: e.status, Origin: engine.OriginCache}
	}
	if e, ok := c.fresh(identityKey + token); ok {
		return engine.Identity{FingerprintID: e.id, Status: e.status, Origin: engine.OriginCache}
	}
	id, err := c.fetcher.ClientID(ctx, token)
	now := c.cfg.Now()
	if err != nil {
		return engine.Identity{Status: c.remember(identityKey+token, err, now), Origin: origin(err), Err: err}
	}
	c.set(identityKey+token, &entry{status: engine.StatusOK, id: id, fetchedAt: now}, int64(len(id)), now)
	return engine.Identity{FingerprintID: id, Status: engine.StatusOK, Origin: engine.OriginUpstream}
}

// fresh returns the entry under key if it is cached and not expired.
func (c *Cache) fresh(key string) (*entry, bool) {
	e, ok := c.store.Get(key)
	if ok && c.cfg.Now().Before(e.expires) {
		c.hits.Add(1)
		return e, true
	}
	c.misses.Add(1)
	return nil, false
}

// set stores e under key with the TTL its status calls for; size is the
// bytes e holds beyond its own struct.
func (c *Cache) set(key string, e *entry, size int64, now time.Time) {
	ttl := c.cfg.TTL
	if e.status == engine.StatusNotFound {
		ttl = c.cfg.NotFoundTTL
	}
	e.expires = now.Add(ttl)
	c.store.SetWithTTL(key, e, int64(len(key))+entryOverhead+size, ttl)
}

// remember classifies an upstream error, caches a not-found answer and
// returns the status.
func (c *Cache) remember(key string, err error, now time.Time) engine.Status {
	switch {
	case errors.Is(err, csideclient.ErrNotFound):
		c.set(key, &entry{status: engine.StatusNotFound, fetchedAt: now}, 0, now)
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
