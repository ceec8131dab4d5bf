package engine

// Staged evaluation: per-token partial evaluation.
//
// A cached payload is fixed for its token; from call to call only the
// action, the external IDs and the payload's age change. On a payload's
// StageAfterUses-th decision from the cache, the engine partially evaluates
// data.verdict.reasons against it with those three unknown (OPA's partial
// evaluation): every rule whose datapoint conditions fail drops out, known
// values fold in, and a small residual over input.action is left. Later
// decisions on that payload evaluate
//
//	reasons := <residual as set comprehensions>
//	decision := data.verdict.decision with data.verdict.reasons as reasons
//
// and when nothing that query reaches reads the unknowns or calls a
// nondeterministic builtin, the answer cannot vary: it is computed once and
// served without evaluating anything.
//
// Staging is an optimisation that never changes an answer. It falls back to
// full evaluation where partial evaluation does not apply (support modules,
// an error, the residual table full, a payload served stale), and RunCase
// checks it against full evaluation on every golden case, so a policy set
// whose staged answers differ is refused at load.

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// StageAfterUses is the decision from the cache on which a payload is
// staged: the decision that fetched it and the cached ones before are
// evaluated in full. Staging costs about as much as five full evaluations,
// so a token seen once or twice never pays it.
const StageAfterUses = 2

// maxResiduals bounds the distinct residual queries a policy set prepares.
// Tokens with the same signals share a residual; past the bound, new
// residuals are not prepared and their tokens use full evaluation.
const maxResiduals = 1024

// reasonVar is the variable the residual binds each reason to.
const reasonVar = ast.Var("__verdict_reason__")

// unknownRefs are the parts of the input that vary between calls on the
// same payload. Everything else in the input is fixed by the payload and
// its origin.
var unknownRefs = []ast.Ref{
	ast.MustParseRef("input.action"),
	ast.MustParseRef("input.external_ids"),
	ast.MustParseRef("input.upstream.age_seconds"),
}

// StageKind says how a payload's decisions are evaluated.
type StageKind string

// Stage kinds.
const (
	// StageFull: full evaluation (not staged, or staging did not apply).
	StageFull StageKind = "full"
	// StageResidual: the residual query per call.
	StageResidual StageKind = "residual"
	// StageConstant: the answer is fixed for the payload; no evaluation.
	StageConstant StageKind = "constant"
	// StageMemo: the decision memo (Config.DecisionMemo) answered a
	// residual payload: the call read the same values as an earlier one.
	StageMemo StageKind = "memo"
)

// stager partially evaluates one policy set against payloads.
//
// OPA's partial evaluation writes into the terms it works on, including
// terms of the compiled rules and of the input (its copy propagation
// rewrites them in place, with equal values). So it runs on a compiler of
// its own, one payload at a time (mu), on a private copy of the payload,
// and its result is deep-copied before the serving compiler sees it.
type stager struct {
	// compiler serves evaluations (residual queries are prepared on it);
	// peCompiler is partial evaluation's own compilation of the same
	// modules.
	compiler   *ast.Compiler
	peCompiler *ast.Compiler
	store      storage.Store
	unknowns   []*ast.Term

	// decisionFixed: data.verdict.decision, with the reasons given, reads
	// nothing that varies between calls on a payload. A staged payload then
	// evaluates the decision rule once per distinct set of reasons.
	decisionFixed bool

	mu        sync.Mutex // guards partial, peCompiler and residuals
	partial   rego.PreparedPartialQuery
	residuals map[string]*residual
}

// residual is a prepared residual query, shared by the payloads whose
// partial evaluation gave the same one.
type residual struct {
	// full binds reasons and decision; reasons binds only the reasons.
	full, reasons *query
	// reads are the unknown parts of the input the residual reads; nondet
	// says it calls a nondeterministic builtin (see reach).
	reads  []ast.Ref
	nondet bool
}

// maxDecisionsPerPayload bounds a staged payload's decision memo.
const maxDecisionsPerPayload = 16

func newStager(ctx context.Context, l *loaded) (*stager, error) {
	modules := make(map[string]*ast.Module, len(l.modules))
	for name, m := range l.modules {
		modules[name] = m.Copy()
	}
	peCompiler := compile(modules)
	if peCompiler.Failed() {
		return nil, fmt.Errorf("compiling for partial evaluation: %w", peCompiler.Errors)
	}
	each := ast.NewBody(ast.NewExpr(ast.NewTerm(reasonsRef.Append(ast.NewTerm(reasonVar)))))
	pq, err := rego.New(
		rego.ParsedQuery(each),
		rego.Compiler(peCompiler),
		rego.Store(l.store),
		rego.StrictBuiltinErrors(false),
	).PrepareForPartial(ctx)
	if err != nil {
		return nil, fmt.Errorf("preparing partial evaluation: %w", err)
	}
	s := &stager{compiler: l.compiler, peCompiler: peCompiler, store: l.store, partial: pq,
		residuals: map[string]*residual{}}
	for _, r := range unknownRefs {
		s.unknowns = append(s.unknowns, ast.NewTerm(r))
	}
	s.decisionFixed = !s.reach(ast.NewBody(ast.Equality.Expr(ast.NewTerm(decisionVar), ast.NewTerm(decisionRef)))).varies
	return s, nil
}

// staged is a payload's staged form under one policy set and origin.
type staged struct {
	set    *PolicySet
	origin Origin
	kind   StageKind
	// why explains a StageFull fallback.
	why string
	// residual is the residual query (StageResidual).
	residual *residual
	// decision and reasons are the fixed answer (StageConstant).
	decision string
	reasons  []Reason
	// decisions memoizes the decision by reasons (StageResidual, when the
	// stager's decisionFixed); nil otherwise.
	mu        sync.Mutex
	decisions map[string]string
	// memo memoizes answers by the values of what the residual reads
	// (StageResidual with the decision memo on, the residual free of
	// nondeterministic builtins); nil otherwise.
	memo map[string]answer
}

// answer is a policy output.
type answer struct {
	decision string
	reasons  []Reason
}

// maxMemoPerPayload bounds a staged payload's decision memo.
const maxMemoPerPayload = 64

// stageCell is the staging state a Payload carries.
type stageCell struct {
	uses atomic.Int64
	busy atomic.Bool
	cur  atomic.Pointer[staged]
}

// stage partially evaluates the policy set against dp's payload. It never
// fails: when staging does not apply, the result is StageFull with why.
func (s *stager) stage(ctx context.Context, p *PolicySet, dp Datapoints, memo bool) *staged {
	st := &staged{set: p, origin: dp.Origin, kind: StageFull}
	if dp.Payload == nil || dp.Origin == OriginStale {
		st.why = "no payload, or a stale one"
		return st
	}
	known, err := knownInput(dp)
	if err != nil {
		st.why = err.Error()
		return st
	}
	s.mu.Lock()
	pqs, err := s.partial.Partial(ctx, rego.EvalParsedInput(known), rego.EvalParsedUnknowns(s.unknowns))
	var body ast.Body
	var r reach
	if err == nil && len(pqs.Support) == 0 {
		body = residualQuery(pqs.Queries).Copy() // detached from peCompiler's terms
		r = s.reach(body)
	}
	s.mu.Unlock()
	switch {
	case err != nil:
		st.why = "partial evaluation: " + err.Error()
		return st
	case len(pqs.Support) > 0:
		st.why = "partial evaluation needs support rules"
		return st
	}
	key := body.String()
	if !r.varies {
		q := s.prepare(body)
		if q == nil {
			st.why = "residual query does not compile"
			return st
		}
		decision, reasons, err := q.eval(ctx, known, nil)
		if err != nil {
			st.why = "evaluating the constant residual: " + err.Error()
			return st
		}
		if st.decision, st.reasons, err = parseOutput(decision, reasons); err != nil {
			st.why = "constant residual: " + err.Error()
			return st
		}
		st.kind = StageConstant
		return st
	}
	s.mu.Lock()
	res, ok := s.residuals[key]
	full := len(s.residuals) >= maxResiduals
	s.mu.Unlock()
	if !ok {
		if full {
			st.why = "residual table full"
			return st
		}
		res = &residual{full: s.prepare(body), reasons: s.prepare(body[:1]), reads: r.reads, nondet: r.nondet}
		if res.full == nil || res.reasons == nil {
			st.why = "residual query does not compile"
			return st
		}
		s.mu.Lock()
		if prev, ok := s.residuals[key]; ok {
			res = prev
		} else {
			s.residuals[key] = res
		}
		s.mu.Unlock()
	}
	st.kind, st.residual = StageResidual, res
	if s.decisionFixed {
		st.decisions = map[string]string{}
	}
	if memo && !res.nondet {
		st.memo = map[string]answer{}
	}
	return st
}

// evalResidual evaluates one decision on a staged payload's residual. With
// a decision memo, it evaluates only the reasons, and the decision rule
// only for a set of reasons not seen before on this payload.
func (st *staged) evalResidual(ctx context.Context, req Request, dp Datapoints) (Decision, error) {
	if st.memo == nil {
		return st.evalResidualOnce(ctx, req, dp)
	}
	start := time.Now()
	key := memoKey(st.residual.reads, req, dp)
	st.mu.Lock()
	a, ok := st.memo[key]
	st.mu.Unlock()
	if ok {
		return st.set.decision(a.decision, a.reasons, StageMemo, dp, time.Since(start)), nil
	}
	d, err := st.evalResidualOnce(ctx, req, dp)
	if err == nil {
		st.mu.Lock()
		if len(st.memo) < maxMemoPerPayload {
			st.memo[key] = answer{d.Decision, d.Reasons}
		}
		st.mu.Unlock()
	}
	return d, err
}

// evalResidualOnce evaluates the residual for one call.
func (st *staged) evalResidualOnce(ctx context.Context, req Request, dp Datapoints) (Decision, error) {
	if st.decisions == nil {
		return st.set.evalQuery(ctx, st.residual.full, StageResidual, req, dp, nil)
	}
	input, err := buildInput(req, dp)
	if err != nil {
		return Decision{}, err
	}
	start := time.Now()
	_, reasonsT, err := st.residual.reasons.eval(ctx, input, nil)
	if err != nil {
		return Decision{}, st.set.policyErr(ctx, err)
	}
	reasons, err := parseReasons(reasonsT)
	if err != nil {
		return Decision{}, st.set.policyErr(ctx, err)
	}
	key := reasonsKey(reasons)
	st.mu.Lock()
	decision, ok := st.decisions[key]
	st.mu.Unlock()
	if !ok {
		d, err := st.set.evalQuery(ctx, st.residual.full, StageResidual, req, dp, nil)
		if err != nil {
			return Decision{}, err
		}
		st.mu.Lock()
		if len(st.decisions) < maxDecisionsPerPayload {
			st.decisions[reasonsKey(d.Reasons)] = d.Decision
		}
		st.mu.Unlock()
		return d, nil
	}
	return st.set.decision(decision, reasons, StageResidual, dp, time.Since(start)), nil
}

// memoKey renders the values a call gives the refs a residual reads, each
// length-prefixed and typed, so that two calls share a key only when the
// residual reads the same values in both. It reads the request's Go values
// directly: building the policy input costs more.
func memoKey(reads []ast.Ref, req Request, dp Datapoints) string {
	b := make([]byte, 0, 64)
	for _, ref := range reads {
		v, ok := valueAt(ref, req, dp)
		b = appendValue(b, v, ok)
	}
	return string(b)
}

// valueAt returns the value of ref, an input ref under input.action,
// input.external_ids or input.upstream.age_seconds, as buildInput would
// give it, and false when it is undefined.
func valueAt(ref ast.Ref, req Request, dp Datapoints) (any, bool) {
	var v any
	switch ref[1].Value.(ast.String) {
	case "action":
		v = req.Action
	case "external_ids":
		ids := make(map[string]any, len(req.ExternalIDs))
		for k, id := range req.ExternalIDs {
			ids[k] = id
		}
		v = ids
	case "upstream": // input.upstream.age_seconds
		if dp.Payload == nil {
			return nil, false
		}
		return int(dp.Age / time.Second), true
	}
	for _, part := range ref[2:] {
		switch cur := v.(type) {
		case map[string]any:
			k, isString := part.Value.(ast.String)
			if !isString {
				return nil, false
			}
			var ok bool
			if v, ok = cur[string(k)]; !ok {
				return nil, false
			}
		case []any:
			n, ok := part.Value.(ast.Number)
			i, isInt := n.Int()
			if !ok || !isInt || i < 0 || i >= len(cur) {
				return nil, false
			}
			v = cur[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// appendValue renders one value for memoKey.
func appendValue(b []byte, v any, defined bool) []byte {
	field := func(tag byte, s string) []byte {
		b = append(b, tag)
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		return append(b, s...)
	}
	switch x := v.(type) {
	case nil:
		if !defined {
			return append(b, 'u')
		}
		return append(b, 'z')
	case string:
		return field('s', x)
	case json.Number:
		return field('n', string(x))
	case int:
		return field('i', strconv.Itoa(x))
	default: // objects, arrays, booleans: decoded JSON always marshals
		j, _ := json.Marshal(x)
		return field('j', string(j))
	}
}

// reasonsKey identifies a sorted set of reasons.
func reasonsKey(reasons []Reason) string {
	var b strings.Builder
	for _, r := range reasons {
		b.WriteString(r.Code)
		b.WriteByte(0)
		b.WriteString(r.Effect)
		b.WriteByte(0)
		b.WriteString(r.Message)
		b.WriteByte(0)
	}
	return b.String()
}

// prepare compiles a residual query on the serving compiler; nil if it
// does not compile (which would be a bug in partial evaluation: fall back).
func (s *stager) prepare(body ast.Body) *query {
	q, err := newQuery(s.compiler, s.store, body)
	if err != nil {
		return nil
	}
	return q
}

// residualQuery turns the partial evaluation of data.verdict.reasons[x]
// (one query per way a reason can still fire) into the staged decision
// query: the union of one set comprehension per residual query, and the
// decision rule evaluated with data.verdict.reasons replaced by it.
func residualQuery(queries []ast.Body) ast.Body {
	union := ast.SetTerm()
	for i, q := range queries {
		c := ast.SetComprehensionTerm(ast.NewTerm(reasonVar), dropCopies(q))
		if i == 0 {
			union = c
		} else {
			union = ast.CallTerm(ast.RefTerm(ast.VarTerm(ast.Or.Name)), union, c)
		}
	}
	decision := ast.Equality.Expr(ast.NewTerm(decisionVar), ast.NewTerm(decisionRef))
	decision.With = []*ast.With{{Target: ast.NewTerm(reasonsRef), Value: ast.NewTerm(reasonsVar)}}
	return ast.NewBody(ast.Equality.Expr(ast.NewTerm(reasonsVar), union), decision)
}

// dropCopies removes the copies partial evaluation leaves of the reason a
// residual binds: "_ = X" and "__localqN__ = X" next to "__verdict_reason__ =
// X". Each only asserts that X is defined, which binding the reason
// asserts too, but evaluating X twice builds the reason (and its message)
// twice.
func dropCopies(q ast.Body) ast.Body {
	var bound *ast.Term
	for _, e := range q {
		if e.IsEquality() && len(e.With) == 0 && e.Operand(0).Equal(ast.NewTerm(reasonVar)) {
			bound = e.Operand(1)
		}
	}
	if bound == nil {
		return q
	}
	used := map[ast.Var]int{}
	ast.WalkVars(q, func(v ast.Var) bool { used[v]++; return false })
	out := make(ast.Body, 0, len(q))
	for _, e := range q {
		if e.IsEquality() && len(e.With) == 0 && !e.Negated && e.Operand(1).Equal(bound) {
			if v, ok := e.Operand(0).Value.(ast.Var); ok && v != reasonVar && (v.IsWildcard() || used[v] == 1) {
				continue
			}
		}
		out.Append(e)
	}
	return out
}

// knownInput is the input without its unknown parts: what is fixed for a
// payload served from one origin. The payload is parsed afresh from its raw
// bytes: partial evaluation must not touch the copy decisions read.
func knownInput(dp Datapoints) (ast.Value, error) {
	fingerprint := ast.NullTerm()
	if id := dp.Payload.FingerprintID(); id != "" {
		fingerprint = ast.StringTerm(id)
	}
	fresh, err := ParsePayload(dp.Payload.Raw())
	if err != nil {
		return nil, err
	}
	return ast.NewObject(
		ast.Item(ast.InternedTerm("datapoints"), ast.NewTerm(fresh.value)),
		ast.Item(ast.InternedTerm("upstream"), ast.ObjectTerm(
			ast.Item(ast.InternedTerm("status"), ast.StringTerm(string(dp.Status))),
			ast.Item(ast.InternedTerm("source"), ast.StringTerm(string(dp.Origin))),
		)),
		ast.Item(ast.InternedTerm("fingerprint_id"), fingerprint),
	), nil
}

// reach is what a query can read, following every rule it refers to.
type reach struct {
	// varies: it reads an unknown part of the input, or calls a
	// nondeterministic builtin: the answer may change between calls on one
	// payload.
	varies bool
	// nondet: it calls a nondeterministic builtin (time.now_ns, rand.intn,
	// ...), so no memo may stand in for it.
	nondet bool
	// reads are the unknown parts of the input it reads, as refs: a ref
	// into input.action, input.external_ids or input.upstream.age_seconds,
	// cut at its first variable; reading above them (all of input, or of
	// input.upstream) reads each unknown it covers. Sorted, no duplicates.
	reads []ast.Ref
}

// reach walks body and, transitively, every rule it refers to, except
// data.verdict.reasons, which the residual query replaces. Callers hold mu.
func (s *stager) reach(body ast.Body) reach {
	var r reach
	read := func(ref ast.Ref) {
		for _, u := range unknownRefs {
			switch {
			case ref.HasPrefix(u):
				r.reads = append(r.reads, ref)
			case u.HasPrefix(ref):
				r.reads = append(r.reads, u)
			}
		}
	}
	seen := map[*ast.Rule]bool{}
	var visit func(x any)
	visit = func(x any) {
		ast.WalkTerms(x, func(t *ast.Term) bool {
			switch v := t.Value.(type) {
			case ast.Var: // a bare input outside a ref reads all of it
				if v.Equal(ast.InputRootDocument.Value) {
					read(ast.InputRootRef)
				}
			case ast.Ref:
				switch {
				case v.HasPrefix(ast.InputRootRef):
					read(v.ConstantPrefix())
				case v.HasPrefix(ast.DefaultRootRef):
					for _, rule := range s.peCompiler.GetRules(v.ConstantPrefix()) {
						if !seen[rule] && !rule.Ref().Equal(reasonsRef) {
							seen[rule] = true
							visit(rule)
						}
					}
				default:
					if b, ok := ast.BuiltinMap[strings.TrimSuffix(v.String(), ".")]; ok && b.Nondeterministic {
						r.nondet = true
					}
				}
				for _, part := range v[1:] { // refs inside the ref: data.x[input.y]
					visit(part)
				}
				return true
			}
			return false
		})
	}
	visit(body)
	slices.SortFunc(r.reads, func(a, b ast.Ref) int { return a.Compare(b) })
	r.reads = slices.CompactFunc(r.reads, func(a, b ast.Ref) bool { return a.Equal(b) })
	r.varies = r.nondet || len(r.reads) > 0
	return r
}
