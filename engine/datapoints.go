package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
	"unsafe"
	"weak"

	"github.com/open-policy-agent/opa/v1/ast"
)

// Status says what the upstream answered for a token. It reaches policies
// as input.upstream.status.
type Status string

// Upstream statuses.
const (
	// StatusOK: datapoints were obtained.
	StatusOK Status = "ok"
	// StatusNotFound: cside has no datapoints for the token (404).
	StatusNotFound Status = "not_found"
	// StatusRejected: cside refused our request (400, 401, 403, 422).
	StatusRejected Status = "rejected"
	// StatusUnavailable: no answer (timeout, 5xx, 429, open breaker, invalid
	// body).
	StatusUnavailable Status = "unavailable"
)

// Origin says where an answer came from. It reaches policies as
// input.upstream.source.
type Origin string

// Origins.
const (
	// OriginUpstream: cside answered this very request.
	OriginUpstream Origin = "upstream"
	// OriginCache: a cached cside answer served the request.
	OriginCache Origin = "cache"
	// OriginNone: no answer was obtained.
	OriginNone Origin = "none"
	// OriginStale: cached datapoints past their TTL, served because the
	// upstream is unavailable. The decision is degraded.
	OriginStale Origin = "stale"
)

// Datapoints is what a Source found for a token.
type Datapoints struct {
	Status Status
	Origin Origin
	// Payload is the parsed datapoint bundle; nil unless Status is StatusOK.
	Payload *Payload
	// FetchedAt is when cside produced the answer; zero when there was none.
	FetchedAt time.Time
	// Age is how old the answer was when it was looked up (by the source's
	// clock); zero for an answer fetched for this very request. It reaches
	// policies as input.upstream.age_seconds when there is a payload.
	Age time.Duration
	// Err explains StatusRejected and StatusUnavailable, and why stale data
	// was served; nil otherwise. It is for logs and never reaches policies
	// or callers.
	Err error
}

// Identity is what a Source knows of a token's stable fingerprint ID.
type Identity struct {
	// FingerprintID is "" when unknown.
	FingerprintID string
	Status        Status
	Origin        Origin
	Err           error
}

// Source finds datapoints for session tokens. Implementations (the cache)
// must be safe for concurrent use and must not return errors: every outcome
// is a Status the policies decide on.
type Source interface {
	Datapoints(ctx context.Context, token string) Datapoints
	Identify(ctx context.Context, token string) Identity
}

// Payload is a cside datapoint bundle, validated and parsed once, with the
// engine's state for it: its parsed tree while the collector leaves it, and
// its staging (a token's decisions from the cache are served from a staged
// residual from its StageAfterUses-th on, for as long as its Payload is the
// one the Source returns). A cache may keep only Raw and FingerprintID for a
// token it has not served yet and make a new Payload over them with
// ReusePayload when it does. A Payload is safe for concurrent use.
//
// It holds its parsed tree (the policy input's form) weakly: the garbage
// collector does not mark through it, and frees it at its next cycle once no
// evaluation holds it; the next evaluation that needs it parses the raw
// bytes again (parsed). A full cache of parsed trees would be hundreds of
// thousands of small objects for every collection to mark (~440 ms of CPU
// per collection for 19,662 cached tokens, docs/benchmarks.md, eighth part);
// raw bytes hold no pointers. Staged residuals that read neither
// input.datapoints nor input.fingerprint_id do not need it at all
// (query.payloadFree).
type Payload struct {
	raw           []byte
	fingerprintID string
	tree          weakCell[parsedPayload]
	// stage is how the serving path evaluates decisions on this payload.
	stage stageCell
	// externalIDs is the input.external_ids term of its latest decision
	// with external IDs (externalIDsOf), weakly held too: it serves the
	// decisions until the next collection.
	externalIDs weakCell[externalIDsTerm]
}

// parsedPayload is a payload as the policy input holds it.
type parsedPayload struct {
	tree, fingerprint *ast.Term // fingerprint: a string, or null
}

// weakCell holds a *T that the garbage collector may free once nothing
// else refers to it. Safe for concurrent use. The weak pointer is held
// inline, under a mutex, rather than boxed for an atomic swap: a box would
// be one more object per cached token for every collection to mark.
type weakCell[T any] struct {
	mu sync.Mutex
	w  weak.Pointer[T]
}

// Load returns the value stored last, or nil if there is none or it was freed.
func (c *weakCell[T]) Load() *T {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.w.Value()
}

// Store replaces the value.
func (c *weakCell[T]) Store(v *T) {
	w := weak.Make(v)
	c.mu.Lock()
	c.w = w
	c.mu.Unlock()
}

// ErrInvalidPayload is wrapped by ParsePayload's errors.
var ErrInvalidPayload = errors.New("invalid datapoints payload")

// ParsePayload parses a raw cside payload, which must be a JSON object. It
// keeps a copy of raw.
func ParsePayload(raw []byte) (*Payload, error) {
	obj, err := parseObject(raw)
	if err != nil {
		return nil, err
	}
	id, _ := lookupString(obj, "identification", "fingerprintId")
	// One allocation for the raw bytes and the fingerprint ID: a cached
	// token's every object is one more for each collection to mark.
	buf := make([]byte, len(raw)+len(id))
	copy(buf, raw)
	copy(buf[len(raw):], id)
	p := &Payload{raw: buf[:len(raw):len(raw)]}
	if id != "" {
		// buf's tail is written once, above, and never again: Raw's capacity
		// ends before it, so appending to Raw copies.
		p.fingerprintID = unsafe.String(&buf[len(raw)], len(id)) // #nosec G103 -- immutable, see above
	}
	p.tree.Store(p.parsedFrom(obj))
	return p, nil
}

// ReusePayload returns a Payload over raw and fingerprintID as an earlier
// ParsePayload's Raw and FingerprintID gave them, without parsing or copying
// them again, and with none of that Payload's state (its parsed tree, its
// staging). A cache can then keep only those bytes for a token it has not
// served yet: no object of its own for every collection to mark.
func ReusePayload(raw []byte, fingerprintID string) *Payload {
	return &Payload{raw: raw, fingerprintID: fingerprintID}
}

func (p *Payload) parsedFrom(obj ast.Object) *parsedPayload {
	fingerprint := nullTerm
	if p.fingerprintID != "" {
		fingerprint = ast.StringTerm(p.fingerprintID)
	}
	return &parsedPayload{tree: ast.NewTerm(obj), fingerprint: fingerprint}
}

func parseObject(raw []byte) (ast.Object, error) {
	v, err := ast.ValueFromReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPayload, err)
	}
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%w: a JSON object is required, got %s", ErrInvalidPayload, ast.ValueName(v))
	}
	return obj, nil
}

// parsed returns the payload as the policy input holds it: that of its
// latest parse if the collector has not freed it yet, else a new parse of the
// raw bytes, kept (weakly) for the next evaluations. Terms given to topdown
// are only read, so concurrent evaluations share them.
func (p *Payload) parsed() (*parsedPayload, error) {
	if t := p.tree.Load(); t != nil {
		return t, nil
	}
	obj, err := parseObject(p.raw) // valid: ParsePayload parsed it
	if err != nil {
		return nil, err
	}
	t := p.parsedFrom(obj)
	p.tree.Store(t)
	return t, nil
}

// Raw returns the payload exactly as cside sent it. Do not modify it.
func (p *Payload) Raw() []byte { return p.raw }

// FingerprintID returns identification.fingerprintId, or "" when the payload
// has none (or it is not a non-empty string).
func (p *Payload) FingerprintID() string { return p.fingerprintID }

func lookupString(obj ast.Object, path ...string) (string, bool) {
	var v ast.Value = obj
	for _, k := range path {
		o, ok := v.(ast.Object)
		if !ok {
			return "", false
		}
		t := o.Get(ast.InternedTerm(k))
		if t == nil {
			return "", false
		}
		v = t.Value
	}
	s, ok := v.(ast.String)
	if !ok || s == "" {
		return "", false
	}
	return string(s), true
}
