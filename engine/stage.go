package engine

// Staged evaluation: per-token partial evaluation.
//
// A cached payload is fixed for its token; from call to call only the
// action, the external IDs and the payload's age change. On a payload's
// StageAfterUses-th decision from the cache, the engine partially evaluates
// data.verdict.reasons against it with those three unknown (OPA's partial
// evaluation; it starts from the set's optimized reasons when there are
// any, optimize.go): every rule whose datapoint conditions fail drops out, known
// values fold in, and a small residual over input.action is left. Later
// decisions on that payload evaluate
//
//	reasons := <residual as set comprehensions>
//	decision := data.verdict.decision with data.verdict.reasons as reasons
//
// and when nothing that query reaches reads the unknowns or calls a
// nondeterministic builtin, the answer cannot vary: it is computed once and
// served without evaluating anything. reach.go finds what a query reaches;
// memo.go keeps the residual cheap: the decision rule is evaluated once per
// distinct set of reasons, and with Config.DecisionMemo a repeat call is
// answered from memory.
//
// Staging is an optimisation that never changes an answer. It falls back to
// full evaluation where partial evaluation does not apply (support modules,
// an error, the residual table full, a payload served stale), and RunCase
// checks it against full evaluation on every golden case, so a policy set
// whose staged answers differ is refused at load.

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
	"github.com/open-policy-agent/opa/v1/storage"
)

// StageAfterUses is the decision from the cache on which a payload is
// staged: the decision that fetched it and the cached ones before are
// evaluated in full. Staging costs about as much as ten full evaluations
// (BenchmarkStage), so a token seen once or twice never pays it.
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
// rewrites them in place, with equal values). So it runs on a compiler and
// a data store of its own, one payload at a time (mu), on a private copy of
// the payload, and its result is deep-copied before the serving compiler
// sees it.
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
	// decisionPure: data.verdict.decision, with the reasons given, reads no
	// input at all and calls no nondeterministic builtin: it is a function
	// of the reasons for the whole policy set (PolicySet.decisionOf).
	decisionPure bool

	// target is the reasons partial evaluation starts from: the optimized
	// ones when the set has them (optimize.go), else the rules as written.
	target ast.Ref

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

func newStager(ctx context.Context, l *loaded) (*stager, error) {
	modules := copyModules(l.modules)
	for name, m := range copyModules(l.support) {
		modules[name] = m
	}
	peCompiler := compileDerived(modules)
	if peCompiler.Failed() {
		return nil, fmt.Errorf("compiling for partial evaluation: %w", peCompiler.Errors)
	}
	peStore := newStore(l.data) // its AST values are partial evaluation's to write into
	target := reasonsRef
	if len(peCompiler.GetRulesExact(optimizedReasonsRef)) > 0 {
		target = optimizedReasonsRef // the same reasons, cheaper to stage (optimize.go)
	}
	each := ast.NewBody(ast.NewExpr(ast.NewTerm(target.Append(ast.NewTerm(reasonVar)))))
	pq, err := rego.New(
		rego.ParsedQuery(each),
		rego.Compiler(peCompiler),
		rego.Store(peStore),
		rego.StrictBuiltinErrors(false),
	).PrepareForPartial(ctx)
	if err != nil {
		return nil, fmt.Errorf("preparing partial evaluation: %w", err)
	}
	s := &stager{compiler: l.compiler, peCompiler: peCompiler, store: l.store, partial: pq, target: target,
		residuals: map[string]*residual{}}
	for _, r := range unknownRefs {
		s.unknowns = append(s.unknowns, ast.NewTerm(r))
	}
	d := s.reach(ast.NewBody(ast.Equality.Expr(ast.NewTerm(decisionVar), ast.NewTerm(decisionRef))))
	s.decisionFixed, s.decisionPure = !d.varies, !d.input && !d.nondet
	return s, nil
}

// staged is a payload's staged form under one policy set, as served from
// the cache (input.upstream.source is "cache").
type staged struct {
	set  *PolicySet
	kind StageKind
	// why explains a StageFull fallback.
	why string
	// residual is the residual query (StageResidual).
	residual *residual
	// decision and reasons are the fixed answer (StageConstant).
	decision string
	reasons  []Reason
	// decisions memoizes the decision by reasons (StageResidual, when the
	// stager's decisionFixed); nil otherwise.
	decisions *decisionTable
	mu        sync.Mutex // guards memo
	// memo memoizes answers by the values of what the residual reads
	// (StageResidual with the decision memo on, the residual free of
	// nondeterministic builtins); nil otherwise.
	memo map[string]answer
}

// stageCell is the staging state a Payload carries.
type stageCell struct {
	uses atomic.Int64
	busy atomic.Bool
	cur  atomic.Pointer[staged]
}

// stage partially evaluates the policy set against dp's payload. It never
// fails: when staging does not apply, the result is StageFull with why.
func (s *stager) stage(ctx context.Context, p *PolicySet, dp Datapoints, memo bool) *staged {
	st := &staged{set: p, kind: StageFull}
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
	if !r.varies {
		q := s.prepare(body, true)
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
	key := body.String()
	s.mu.Lock()
	res, ok := s.residuals[key]
	full := len(s.residuals) >= maxResiduals
	s.mu.Unlock()
	if !ok {
		if full {
			st.why = "residual table full"
			return st
		}
		res = &residual{full: s.prepare(body, r.payload), reasons: s.prepare(body[:1], r.payload), reads: r.reads, nondet: r.nondet}
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
		st.decisions = newDecisionTable(maxDecisionsPerPayload)
	}
	if memo && !res.nondet {
		st.memo = map[string]answer{}
	}
	return st
}

// prepare compiles a residual query on the serving compiler; nil if it
// does not compile (which would be a bug in partial evaluation: fall back).
func (s *stager) prepare(body ast.Body, payload bool) *query {
	q, err := newQuery(s.compiler, s.store, body)
	if err != nil {
		return nil
	}
	q.uncached, q.payloadFree = true, !payload
	return q
}

// residualQuery turns the partial evaluation of data.verdict.reasons[x]
// (one query per way a reason can still fire) into the staged decision
// query: the union of the reasons that fire whatever the call (a set
// literal) and one set comprehension per residual query that still
// depends on it, and the decision rule evaluated with data.verdict.reasons
// replaced by that union.
func residualQuery(queries []ast.Body) ast.Body {
	var fixed, parts []*ast.Term
	for _, q := range queries {
		q = dropCopies(q)
		if r := constantReason(q); r != nil {
			fixed = append(fixed, r)
		} else {
			parts = append(parts, ast.SetComprehensionTerm(ast.NewTerm(reasonVar), q))
		}
	}
	if len(fixed) > 0 || len(parts) == 0 {
		parts = append([]*ast.Term{ast.SetTerm(fixed...)}, parts...)
	}
	union := parts[0]
	for _, p := range parts[1:] {
		union = ast.CallTerm(ast.RefTerm(ast.VarTerm(ast.Or.Name)), union, p)
	}
	decision := ast.Equality.Expr(ast.NewTerm(decisionVar), ast.NewTerm(decisionRef))
	decision.With = []*ast.With{{Target: ast.NewTerm(reasonsRef), Value: ast.NewTerm(reasonsVar)}}
	return ast.NewBody(ast.Equality.Expr(ast.NewTerm(reasonsVar), union), decision)
}

// constantReason returns the reason q binds when that is all q does and
// the reason is a constant ("__verdict_reason__ = {...}", no reference,
// call or variable in it): a reason the call cannot change, which the
// staged query then holds as a value instead of evaluating a comprehension
// for it on every call. Nil otherwise.
func constantReason(q ast.Body) *ast.Term {
	if len(q) != 1 || q[0].Negated || !bindsReason(q[0]) {
		return nil
	}
	if r := q[0].Operand(1); ast.IsConstant(r.Value) {
		return r
	}
	return nil
}

// bindsReason reports whether e is "__verdict_reason__ = X", without with,
// as partial evaluation writes the reason a residual query binds.
func bindsReason(e *ast.Expr) bool {
	return e.IsEquality() && len(e.With) == 0 && e.Operand(0).Equal(ast.NewTerm(reasonVar))
}

// dropCopies removes the copies partial evaluation leaves of the reason a
// residual binds: "_ = X" and "__localqN__ = X" next to "__verdict_reason__ =
// X". Each only asserts that X is defined, which binding the reason
// asserts too, but evaluating X twice builds the reason (and its message)
// twice.
func dropCopies(q ast.Body) ast.Body {
	var bound *ast.Term
	for _, e := range q {
		if bindsReason(e) {
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
	fresh, err := parseObject(dp.Payload.Raw())
	if err != nil {
		return nil, err
	}
	// Every term is new, not buildInput's shared ones: partial evaluation
	// may write into them.
	return ast.NewObject(
		ast.Item(ast.StringTerm("datapoints"), ast.NewTerm(fresh)),
		ast.Item(ast.StringTerm("upstream"), ast.ObjectTerm(
			ast.Item(ast.StringTerm("status"), ast.StringTerm(string(dp.Status))),
			ast.Item(ast.StringTerm("source"), ast.StringTerm(string(dp.Origin))),
		)),
		ast.Item(ast.StringTerm("fingerprint_id"), fingerprint),
	), nil
}

// Staging says how the serving path would evaluate decisions on dp's
// payload once it is staged: for policy authors (verdict eval --staged).
type Staging struct {
	// Kind is StageConstant, StageResidual or StageFull.
	Kind StageKind `json:"kind"`
	// Why explains StageFull.
	Why string `json:"why,omitempty"`
	// Residual is the query each decision evaluates (StageResidual).
	Residual string `json:"residual,omitempty"`
	// Reads are the parts of the input that vary per call and that the
	// residual reads: the decision memo's key (StageResidual).
	Reads []string `json:"reads,omitempty"`
}

// Staging stages dp's payload as if it were served from the cache, and
// reports the outcome. It changes nothing that serves decisions.
func (p *PolicySet) Staging(ctx context.Context, dp Datapoints) Staging {
	if p.stager == nil {
		return Staging{Kind: StageFull, Why: "the policy set cannot be staged (data.verdict.reasons is not a set)"}
	}
	if dp.Payload == nil {
		return Staging{Kind: StageFull, Why: "no payload: only cached datapoints are staged"}
	}
	dp.Origin = OriginCache
	st := p.stage(ctx, dp, false)
	out := Staging{Kind: st.kind, Why: st.why}
	if st.residual != nil {
		out.Residual = st.residual.full.source.String()
		for _, r := range st.residual.reads {
			out.Reads = append(out.Reads, r.String())
		}
	}
	return out
}
