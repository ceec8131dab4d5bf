package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

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

// Payload is a cside datapoint bundle parsed once into the form the policy
// evaluator consumes, so a cached token is never parsed again. A Payload is
// immutable and safe for concurrent use.
type Payload struct {
	raw   []byte
	value ast.Value
	// term and fingerprint are value and the fingerprint ID as the policy
	// input holds them, built once.
	term, fingerprint *ast.Term
	fingerprintID     string
	size              int64
	// stage is how the serving path evaluates decisions on this payload.
	stage stageCell
	// upstream is the input.upstream term of its latest decision
	// (upstreamOf).
	upstream atomic.Pointer[upstreamTerm]
	// externalIDs is the input.external_ids term of its latest decision
	// with external IDs (externalIDsOf).
	externalIDs atomic.Pointer[externalIDsTerm]
}

// ErrInvalidPayload is wrapped by ParsePayload's errors.
var ErrInvalidPayload = errors.New("invalid datapoints payload")

// ParsePayload parses a raw cside payload, which must be a JSON object. It
// keeps raw (callers must not modify it afterwards).
func ParsePayload(raw []byte) (*Payload, error) {
	v, err := ast.ValueFromReader(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidPayload, err)
	}
	obj, ok := v.(ast.Object)
	if !ok {
		return nil, fmt.Errorf("%w: a JSON object is required, got %s", ErrInvalidPayload, ast.ValueName(v))
	}
	p := &Payload{raw: raw, value: obj, term: ast.NewTerm(obj), fingerprint: ast.NullTerm()}
	if id, ok := lookupString(obj, "identification", "fingerprintId"); ok {
		p.fingerprintID, p.fingerprint = id, ast.StringTerm(id)
	}
	p.size = int64(len(raw)) + valueSize(obj)
	return p, nil
}

// Raw returns the payload exactly as cside sent it. Do not modify it.
func (p *Payload) Raw() []byte { return p.raw }

// FingerprintID returns identification.fingerprintId, or "" when the payload
// has none (or it is not a non-empty string).
func (p *Payload) FingerprintID() string { return p.fingerprintID }

// Size approximates the bytes the payload holds in memory: the raw JSON plus
// the parsed tree. It is what a cache should charge for keeping it.
func (p *Payload) Size() int64 { return p.size }

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

// Rough per-node heap costs of OPA's AST (a *Term is a pointer, a Value
// interface and a Location pointer; objects hash their keys).
const (
	termOverhead   = 48
	objectOverhead = 96
	objectPerElem  = 48
	arrayPerElem   = 16
	scalarOverhead = 16
)

// valueSize estimates the heap bytes of a parsed JSON value. It is an
// estimate to keep cache costs proportional to memory, not an exact count.
func valueSize(v ast.Value) int64 {
	switch x := v.(type) {
	case ast.Object:
		n := int64(objectOverhead)
		_ = x.Iter(func(k, val *ast.Term) error {
			n += objectPerElem + 2*termOverhead + valueSize(k.Value) + valueSize(val.Value)
			return nil
		})
		return n
	case *ast.Array:
		n := int64(objectOverhead)
		for i := range x.Len() {
			n += arrayPerElem + termOverhead + valueSize(x.Elem(i).Value)
		}
		return n
	case ast.String:
		return scalarOverhead + int64(len(x))
	case ast.Number:
		return scalarOverhead + int64(len(x))
	default:
		return scalarOverhead
	}
}
