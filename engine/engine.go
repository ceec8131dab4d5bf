// Package engine is Verdict's decision engine. It loads and compiles a Rego
// policy set, looks a session token's datapoints up through a Source, builds
// the policy input, evaluates the prepared query and validates its output.
//
// The policy contract: the engine queries data.verdict.decision (one of
// "allow", "challenge", "deny") and data.verdict.reasons (a set of objects
// with string code, effect and message) with this input:
//
//	input.action          the request's action object
//	input.external_ids    object (empty when not sent)
//	input.datapoints      the cside payload as cside sent it, or null
//	input.upstream        {"status": ..., "source": ..., "age_seconds": ...}
//	input.fingerprint_id  string or null
//
// The engine knows nothing of HTTP or of cside's wire format.
package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"runtime"
	"slices"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// ErrPolicy is wrapped when the policy set produced no valid decision for an
// input: undefined or ill-typed output, or an evaluation error. Decide never
// falls back to a default decision.
var ErrPolicy = errors.New("policy produced no valid decision")

// DefaultEvalTimeout bounds one policy evaluation.
const DefaultEvalTimeout = 50 * time.Millisecond

// Effects, in increasing order of severity.
const (
	Allow     = "allow"
	Challenge = "challenge"
	Deny      = "deny"
)

// Config configures an Engine.
type Config struct {
	// Policies is the policy directory: .rego modules and .json/.yaml data
	// documents, walked recursively, and golden cases in testdata/*.yaml.
	// Required. It must pass Verify to serve, at start and on every reload.
	Policies fs.FS
	// Source looks datapoints up. Required.
	Source Source
	// CaseSource looks up the scenario tokens of golden cases when a policy
	// set is verified (a pipeline over the fake cside); nil fails scenario
	// cases.
	CaseSource Source
	// ShadowPolicies, if set, is a second policy directory evaluated for
	// every decision off the request path, and compared with the live one.
	ShadowPolicies fs.FS
	// ShadowQueue bounds the decisions waiting for shadow evaluation; more
	// are dropped and counted. Zero means DefaultShadowQueue.
	ShadowQueue int
	// ShadowByCaller: Decide does not queue decisions for the shadow set;
	// the caller evaluates them with EvaluateShadow, off its request path
	// (the decision log does, to put the shadow decision in each line).
	ShadowByCaller bool
	// OnDisagreement, if set, is called (from the shadow goroutine) for
	// every decision the shadow set made differently.
	OnDisagreement func(Disagreement)
	// EvalTimeout bounds one policy evaluation in Decide; past it the
	// decision fails with ErrPolicy. Zero means DefaultEvalTimeout (50 ms).
	EvalTimeout time.Duration
	// MaxConcurrentEvals bounds the evaluations running at once; more wait
	// their turn (bounded by their request's context). Evaluation is pure
	// CPU: running more at once than there are cores only time-slices them,
	// and would count the wait for a core against EvalTimeout. Zero means
	// twice GOMAXPROCS.
	MaxConcurrentEvals int
	// NoStaging turns staged evaluation off: every decision evaluates the
	// whole policy set. Staging (see StageAfterUses) never changes an answer;
	// this is the switch to measure it, or to rule it out.
	NoStaging bool
	// DecisionMemo memoizes staged payloads' answers by the values the call
	// gives what their residual reads (say, action.type only): a repeat call
	// is answered without evaluating. Up to 64 answers per cached payload;
	// never for a residual that calls a nondeterministic builtin. Off by
	// default: it trades memory for CPU, and pays only when callers repeat.
	DecisionMemo bool
	// OnReload, if set, is called after every reload of the live ("live")
	// or shadow ("shadow") set, whatever triggered it.
	OnReload func(set string, r ReloadResult)
}

// Request is one decision request, already validated by the caller.
type Request struct {
	// Token is the cside session token. It is never logged.
	Token string
	// Action is the action object (with at least a string "type"), decoded
	// with json.Decoder.UseNumber so numbers keep their precision.
	Action map[string]any
	// ExternalIDs is optional; nil means none.
	ExternalIDs map[string]string
}

// Reason is one rule that fired.
type Reason struct {
	Code    string `json:"code"`
	Effect  string `json:"effect"`
	Message string `json:"message"`
}

// Decision is the engine's answer.
type Decision struct {
	// ID is unique per decision (a UUIDv7).
	ID string
	// Decision is Allow, Challenge or Deny.
	Decision string
	// Reasons lists every rule that fired, sorted by code; never nil. It may
	// be shared between decisions: treat it as read-only.
	Reasons []Reason
	// FingerprintID is "" when unknown.
	FingerprintID string
	// Status and Origin describe the datapoints the policy saw.
	Status Status
	Origin Origin
	// Revision identifies the policy set that decided.
	Revision string
	// Degraded is true when the decision was made without datapoints for a
	// reason other than not_found, or on stale datapoints.
	Degraded bool
	// UpstreamErr explains a degraded decision, for logs only.
	UpstreamErr error
	// Stage says how the policy was evaluated (see StageAfterUses).
	Stage StageKind
	// EvalDuration is the time the policy evaluation took.
	EvalDuration time.Duration
	// Payload is the datapoints the decision was made on (nil: none), and
	// DatapointsAge their age then: what a decision log needs to replay it.
	Payload       *Payload
	DatapointsAge time.Duration
}

// Engine evaluates decisions. It is safe for concurrent use. Close it when
// done if it has shadow policies.
type Engine struct {
	source         Source
	live           *Slot
	shadow         *shadow
	shadowByCaller bool
	staging        bool
	memo           bool
	evalTimeout    time.Duration
	evalSlots      chan struct{}
}

// New verifies cfg.Policies (and cfg.ShadowPolicies) and returns an Engine
// that serves it.
func New(ctx context.Context, cfg Config) (*Engine, error) {
	if cfg.Policies == nil {
		return nil, errors.New("engine: no policy directory configured")
	}
	if cfg.Source == nil {
		return nil, errors.New("engine: no datapoint source configured")
	}
	gate := SuiteOptions{CaseSource: cfg.CaseSource, NoStaging: cfg.NoStaging}
	live, err := newSlot(ctx, cfg.Policies, gate)
	if err != nil {
		return nil, err
	}
	live.onReload = reloadHook(cfg.OnReload, "live")
	e := &Engine{source: cfg.Source, live: live, shadowByCaller: cfg.ShadowByCaller, staging: !cfg.NoStaging, memo: cfg.DecisionMemo,
		evalTimeout: cmp.Or(cfg.EvalTimeout, DefaultEvalTimeout),
		evalSlots:   make(chan struct{}, cmp.Or(cfg.MaxConcurrentEvals, 2*runtime.GOMAXPROCS(0)))}
	if cfg.ShadowPolicies != nil {
		shadowGate := gate
		shadowGate.NoStaging = true // shadow decisions are evaluated in full
		slot, err := newSlot(ctx, cfg.ShadowPolicies, shadowGate)
		if err != nil {
			return nil, fmt.Errorf("shadow policies: %w", err)
		}
		slot.onReload = reloadHook(cfg.OnReload, "shadow")
		e.shadow = newShadow(slot, cmp.Or(cfg.ShadowQueue, DefaultShadowQueue), cfg.OnDisagreement)
	}
	return e, nil
}

func reloadHook(f func(string, ReloadResult), set string) func(ReloadResult) {
	if f == nil {
		return nil
	}
	return func(r ReloadResult) { f(set, r) }
}

// Close stops the shadow evaluation, after the decisions queued for it.
func (e *Engine) Close() {
	if e.shadow != nil {
		e.shadow.close()
	}
}

// Policies returns the policy set serving now.
func (e *Engine) Policies() *PolicySet { return e.live.Current() }

// Revision returns the revision of the policy set serving now.
func (e *Engine) Revision() string { return e.live.Current().revision }

// Live returns the live policy slot.
func (e *Engine) Live() *Slot { return e.live }

// Shadow returns the shadow policy slot, nil without shadow policies.
func (e *Engine) Shadow() *Slot {
	if e.shadow == nil {
		return nil
	}
	return e.shadow.slot
}

// EvaluateShadow evaluates a live decision (as Decide returned it, for req)
// with the shadow set, counts it and reports a disagreement, as the shadow
// queue does; false without shadow policies or when the evaluation failed.
// Use it with Config.ShadowByCaller, never on a request path.
func (e *Engine) EvaluateShadow(req Request, live Decision) (Decision, bool) {
	if e.shadow == nil {
		return Decision{}, false
	}
	dp := Datapoints{Status: live.Status, Origin: live.Origin, Payload: live.Payload, Age: live.DatapointsAge}
	return e.shadow.evaluate(shadowJob{req: req, dp: dp, live: live})
}

// ShadowStats reports the shadow evaluation counts; false without shadow
// policies.
func (e *Engine) ShadowStats() (ShadowStats, bool) {
	if e.shadow == nil {
		return ShadowStats{}, false
	}
	return e.shadow.stats(), true
}

// ReloadReport is the outcome of reloading the live and shadow sets.
type ReloadReport struct {
	Live   ReloadResult
	Shadow *ReloadResult // nil without shadow policies
}

// Reload reloads the live set and the shadow set, if any, each behind its
// own gate (see Slot.Reload).
func (e *Engine) Reload(ctx context.Context) ReloadReport {
	r := ReloadReport{Live: e.live.Reload(ctx)}
	if e.shadow != nil {
		sr := e.shadow.slot.Reload(ctx)
		r.Shadow = &sr
	}
	return r
}

// Decide looks the token's datapoints up and evaluates the policy set.
// Upstream trouble is not an error: the policy sees it and decides. Errors
// wrap ErrPolicy, or are the context's error.
func (e *Engine) Decide(ctx context.Context, req Request) (Decision, error) {
	dp := e.source.Datapoints(ctx, req.Token)
	var d Decision
	fixed := false
	if e.staging {
		d, fixed = e.live.Current().fixedAnswer(dp) // nothing to evaluate: no slot, no timer
	}
	if !fixed {
		var err error
		if d, err = e.evaluate(ctx, req, dp); err != nil {
			return Decision{}, err
		}
	}
	id, err := uuid.NewV7()
	if err != nil {
		return Decision{}, fmt.Errorf("engine: decision id: %w", err)
	}
	d.ID = id.String()
	if e.shadow != nil && !e.shadowByCaller {
		e.shadow.offer(req, dp, d)
	}
	return d, nil
}

// evaluate evaluates one decision in an evaluation slot (MaxConcurrentEvals)
// within EvalTimeout.
func (e *Engine) evaluate(ctx context.Context, req Request, dp Datapoints) (Decision, error) {
	select {
	case e.evalSlots <- struct{}{}:
		defer func() { <-e.evalSlots }()
	case <-ctx.Done():
		return Decision{}, ctx.Err()
	}
	set := e.live.Current()
	evalCtx := withEvalDeadline(ctx, time.Now().Add(e.evalTimeout))
	var d Decision
	var err error
	if e.staging {
		d, err = set.evalStaged(evalCtx, req, dp, e.memo)
	} else {
		d, err = set.Eval(evalCtx, req, dp)
	}
	if err != nil {
		if ctx.Err() == nil && errors.Is(err, context.DeadlineExceeded) {
			return Decision{}, fmt.Errorf("%w: revision %s: evaluation exceeded %v", ErrPolicy, set.revision, e.evalTimeout)
		}
		return Decision{}, err
	}
	return d, nil
}

// Identify returns the token's stable fingerprint ID as the source knows it.
func (e *Engine) Identify(ctx context.Context, token string) Identity {
	return e.source.Identify(ctx, token)
}

// Eval evaluates the policy set on one request and its datapoints. It does
// not assign Decision.ID.
func (p *PolicySet) Eval(ctx context.Context, req Request, dp Datapoints) (Decision, error) {
	return p.eval(ctx, req, dp, nil)
}

// eval is Eval with an optional tracer (Explain's); nil for none. It
// goes through the set's decision table when there is one, but not when
// tracing: a trace must show the decision rule.
func (p *PolicySet) eval(ctx context.Context, req Request, dp Datapoints, tracer topdown.QueryTracer) (Decision, error) {
	if tracer == nil && p.byReasons != nil {
		return p.evalByReasons(ctx, req, dp)
	}
	return p.evalQuery(ctx, p.query, StageFull, req, dp, tracer)
}

// evalStaged is Eval for the serving path: a payload served from the cache
// is staged on its StageAfterUses-th decision from the cache (see
// stage.go), then its residual query is evaluated, or its fixed answer
// served.
func (p *PolicySet) evalStaged(ctx context.Context, req Request, dp Datapoints, memo bool) (Decision, error) {
	if p.stager == nil || dp.Payload == nil || dp.Origin != OriginCache {
		return p.eval(ctx, req, dp, nil)
	}
	cell := &dp.Payload.stage
	st := cell.cur.Load()
	if st == nil || st.set != p {
		if cell.uses.Add(1) < StageAfterUses || !cell.busy.CompareAndSwap(false, true) {
			return p.eval(ctx, req, dp, nil)
		}
		st = p.stage(ctx, dp, memo)
		cell.cur.Store(st)
		cell.busy.Store(false)
	}
	return st.eval(ctx, req, dp)
}

// fixedAnswer returns the answer of a payload staged on p whose answer
// does not depend on the request (StageConstant), as evalStaged would.
func (p *PolicySet) fixedAnswer(dp Datapoints) (Decision, bool) {
	if dp.Payload == nil || dp.Origin != OriginCache {
		return Decision{}, false
	}
	st := dp.Payload.stage.cur.Load()
	if st == nil || st.set != p || st.kind != StageConstant {
		return Decision{}, false
	}
	return st.set.decision(st.decision, st.reasons, StageConstant, dp, 0), true
}

// stageTimeout bounds partial evaluation of one payload. It does not count
// against the request's evaluation timeout; past it the payload keeps full
// evaluation.
const stageTimeout = time.Second

func (p *PolicySet) stage(ctx context.Context, dp Datapoints, memo bool) *staged {
	ctx = withEvalDeadline(context.WithoutCancel(ctx), time.Time{}) // not the request's evaluation deadline
	ctx, cancel := context.WithTimeout(ctx, stageTimeout)
	defer cancel()
	return p.stager.stage(ctx, p, dp, memo)
}

// eval evaluates one decision the way the payload was staged.
func (st *staged) eval(ctx context.Context, req Request, dp Datapoints) (Decision, error) {
	switch st.kind {
	case StageConstant:
		return st.set.decision(st.decision, st.reasons, StageConstant, dp, 0), nil
	case StageResidual:
		return st.evalResidual(ctx, req, dp)
	default:
		return st.set.eval(ctx, req, dp, nil)
	}
}

// evalQuery evaluates q, the decision query or a residual of it, which binds
// decision and reasons.
func (p *PolicySet) evalQuery(ctx context.Context, q *query, kind StageKind, req Request, dp Datapoints, tracer topdown.QueryTracer) (Decision, error) {
	input, err := buildInput(req, dp, !q.payloadFree)
	if err != nil {
		return Decision{}, err
	}
	start := time.Now()
	decisionT, reasonsT, err := q.eval(ctx, input, tracer)
	evalDuration := time.Since(start)
	if err != nil {
		return Decision{}, p.policyErr(ctx, err)
	}
	decision, reasons, err := parseOutput(decisionT, reasonsT)
	if err != nil {
		return Decision{}, p.policyErr(ctx, err)
	}
	return p.decision(decision, reasons, kind, dp, evalDuration), nil
}

// policyErr wraps an evaluation error in ErrPolicy, unless ctx ended: then
// it is the context's error.
func (p *PolicySet) policyErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return fmt.Errorf("%w: revision %s: %w", ErrPolicy, p.revision, err)
}

// errUndefined: the decision query has no result.
var errUndefined = errors.New("data.verdict.decision or data.verdict.reasons is undefined for this input")

// decision assembles the engine's answer around a policy output.
func (p *PolicySet) decision(decision string, reasons []Reason, kind StageKind, dp Datapoints, evalDuration time.Duration) Decision {
	d := Decision{
		Decision:     decision,
		Reasons:      reasons,
		Status:       dp.Status,
		Origin:       dp.Origin,
		Revision:     p.revision,
		Degraded:     dp.Status == StatusUnavailable || dp.Status == StatusRejected || dp.Origin == OriginStale,
		Stage:        kind,
		EvalDuration: evalDuration,
	}
	if d.Degraded {
		d.UpstreamErr = dp.Err
	}
	if dp.Payload != nil {
		d.FingerprintID = dp.Payload.FingerprintID()
		d.Payload, d.DatapointsAge = dp.Payload, dp.Age
	}
	return d
}

// The input's keys and the upstream statuses and origins, as terms built
// once: buildInput runs on every decision.
var (
	actionKey      = ast.StringTerm("action")
	externalIDsKey = ast.StringTerm("external_ids")
	datapointsKey  = ast.StringTerm("datapoints")
	upstreamKey    = ast.StringTerm("upstream")
	fingerprintKey = ast.StringTerm("fingerprint_id")
	statusKey      = ast.StringTerm("status")
	sourceKey      = ast.StringTerm("source")
	ageKey         = ast.StringTerm("age_seconds")
	nullTerm       = ast.NullTerm()
	emptyObject    = ast.ObjectTerm()
	statusTerms    = termsOf(StatusOK, StatusNotFound, StatusRejected, StatusUnavailable)
	originTerms    = termsOf(OriginUpstream, OriginCache, OriginNone, OriginStale)
)

func termsOf[S ~string](values ...S) map[S]*ast.Term {
	m := make(map[S]*ast.Term, len(values))
	for _, v := range values {
		m[v] = ast.StringTerm(string(v))
	}
	return m
}

func stringTerm[S ~string](known map[S]*ast.Term, v S) *ast.Term {
	if t, ok := known[v]; ok {
		return t
	}
	return ast.StringTerm(string(v))
}

// buildInput assembles the policy input. The cached payload is reused as
// parsed (Payload.parsed); only the small action and external_ids objects are
// converted. Without withPayload, input.datapoints and input.fingerprint_id
// are null: for a query that reads neither (query.payloadFree).
func buildInput(req Request, dp Datapoints, withPayload bool) (ast.Value, error) {
	action, err := ast.InterfaceToValue(req.Action)
	if err != nil {
		return nil, fmt.Errorf("engine: converting action: %w", err)
	}
	datapoints, fingerprint := nullTerm, nullTerm
	if dp.Payload != nil && withPayload {
		parsed, err := dp.Payload.parsed()
		if err != nil {
			return nil, fmt.Errorf("engine: %w", err)
		}
		datapoints, fingerprint = parsed.tree, parsed.fingerprint
	}
	return ast.NewObject(
		ast.Item(actionKey, ast.NewTerm(action)),
		ast.Item(externalIDsKey, externalIDsOf(req.ExternalIDs, dp.Payload)),
		ast.Item(datapointsKey, datapoints),
		ast.Item(upstreamKey, upstreamOf(dp)),
		ast.Item(fingerprintKey, fingerprint),
	), nil
}

// externalIDsTerm is input.external_ids as built for a payload's decision.
type externalIDsTerm struct {
	ids  map[string]string // a copy
	term *ast.Term
}

// externalIDsOf returns input.external_ids for ids. A payload keeps the
// term of its latest decision with external IDs, which the next decisions
// with the same IDs share (a token's calls usually carry the same account):
// terms given to topdown are only read. payload may be nil.
func externalIDsOf(ids map[string]string, payload *Payload) *ast.Term {
	if len(ids) == 0 {
		return emptyObject
	}
	if payload != nil {
		if e := payload.externalIDs.Load(); e != nil && maps.Equal(e.ids, ids) {
			return e.term
		}
	}
	items := make([][2]*ast.Term, 0, len(ids))
	for k, v := range ids {
		items = append(items, ast.Item(ast.StringTerm(k), ast.StringTerm(v)))
	}
	t := ast.ObjectTerm(items...)
	if payload != nil {
		payload.externalIDs.Store(&externalIDsTerm{maps.Clone(ids), t})
	}
	return t
}

// cachedUpstream holds input.upstream for a payload served from the cache
// with status ok, by its age in seconds (under maxSharedAge): the same term
// for every token of that age, built once. Terms given to topdown are only
// read.
var cachedUpstream [maxSharedAge]atomic.Pointer[ast.Term]

// maxSharedAge bounds cachedUpstream: past it (a token cached for longer than
// 17 minutes), each decision builds its own term.
const maxSharedAge = 1024

// upstreamOf returns input.upstream for dp: the shared term of its age for a
// payload served from the cache (the decisions of every cached token, the
// hot path), a new one otherwise.
func upstreamOf(dp Datapoints) *ast.Term {
	status, origin := stringTerm(statusTerms, dp.Status), stringTerm(originTerms, dp.Origin)
	if dp.Payload == nil {
		return ast.ObjectTerm(ast.Item(statusKey, status), ast.Item(sourceKey, origin))
	}
	age := int(dp.Age / time.Second)
	build := func() *ast.Term {
		return ast.ObjectTerm(ast.Item(statusKey, status), ast.Item(sourceKey, origin), ast.Item(ageKey, ast.InternedTerm(age)))
	}
	if dp.Status != StatusOK || dp.Origin != OriginCache || age < 0 || age >= maxSharedAge {
		return build()
	}
	if t := cachedUpstream[age].Load(); t != nil {
		return t
	}
	t := build()
	if !cachedUpstream[age].CompareAndSwap(nil, t) {
		t = cachedUpstream[age].Load()
	}
	return t
}

func validEffect(s string) bool { return s == Allow || s == Challenge || s == Deny }

// Keys of a reason object.
var (
	codeKey    = ast.StringTerm("code")
	effectKey  = ast.StringTerm("effect")
	messageKey = ast.StringTerm("message")
)

// parseOutput checks the policy output contract on what the decision query
// bound and returns the decision and the reasons sorted by code (then
// effect and message, for determinism).
func parseOutput(decisionT, reasonsT *ast.Term) (string, []Reason, error) {
	decision, ok := stringOf(decisionT)
	if !ok || !validEffect(decision) {
		return "", nil, fmt.Errorf("data.verdict.decision must be one of allow, challenge, deny; got %v", decisionT)
	}
	reasons, err := parseReasons(reasonsT)
	return decision, reasons, err
}

// parseReasons checks data.verdict.reasons and returns them sorted.
func parseReasons(reasonsT *ast.Term) ([]Reason, error) {
	var set ast.Set
	if reasonsT != nil {
		set, _ = reasonsT.Value.(ast.Set)
	}
	if set == nil {
		return nil, fmt.Errorf("data.verdict.reasons must be a set of objects; got %s", typeOf(reasonsT))
	}
	reasons := make([]Reason, 0, set.Len())
	sorted := set.Sorted()
	for i := range sorted.Len() {
		r := sorted.Elem(i)
		obj, ok := r.Value.(ast.Object)
		if !ok {
			return nil, fmt.Errorf("data.verdict.reasons[%d] must be an object; got %v", i, r)
		}
		var reason Reason
		for _, f := range []struct {
			key *ast.Term
			dst *string
		}{{codeKey, &reason.Code}, {effectKey, &reason.Effect}, {messageKey, &reason.Message}} {
			v := obj.Get(f.key)
			s, ok := stringOf(v)
			if !ok || s == "" {
				got := "nothing"
				if v != nil {
					got = v.String()
				}
				return nil, fmt.Errorf("data.verdict.reasons[%d].%s must be a non-empty string; got %s", i, string(f.key.Value.(ast.String)), got)
			}
			*f.dst = s
		}
		if !validEffect(reason.Effect) {
			return nil, fmt.Errorf("data.verdict.reasons[%d].effect must be one of allow, challenge, deny; got %q", i, reason.Effect)
		}
		reasons = append(reasons, reason)
	}
	slices.SortFunc(reasons, func(a, b Reason) int {
		return cmp.Or(cmp.Compare(a.Code, b.Code), cmp.Compare(a.Effect, b.Effect), cmp.Compare(a.Message, b.Message))
	})
	return reasons, nil
}

func stringOf(t *ast.Term) (string, bool) {
	if t == nil {
		return "", false
	}
	s, ok := t.Value.(ast.String)
	return string(s), ok
}

func typeOf(t *ast.Term) string {
	if t == nil {
		return "undefined"
	}
	return ast.ValueName(t.Value)
}
