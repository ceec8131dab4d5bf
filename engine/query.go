package engine

import (
	"context"
	"fmt"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/metrics"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// noMetrics: the engine times evaluations itself; topdown's own timers
// would allocate a map per evaluation for nothing.
var noMetrics = metrics.NoOp()

// Query variables: every query the engine evaluates binds these two.
var (
	decisionVar = ast.Var("decision")
	reasonsVar  = ast.Var("reasons")
)

// query is a query compiled once on a policy set and evaluated with OPA's
// evaluator (topdown) directly. rego.PreparedEvalQuery does the same with
// more set-up per evaluation (an evaluation context and metrics, a
// goroutine watching the context, results converted to Go values): about
// 7 µs and 90 allocations, which is most of a staged residual's cost.
type query struct {
	source   ast.Body // as given, for people to read
	body     ast.Body
	compiler *ast.Compiler
	store    storage.Store
	// uncached: evaluate without topdown's virtual cache (see noCache).
	uncached bool
}

// newQuery compiles body on compiler, as rego prepares a query. body binds
// decision and reasons with "=", which the query compiler leaves as named.
func newQuery(compiler *ast.Compiler, store storage.Store, body ast.Body) (*query, error) {
	compiled, err := compiler.QueryCompiler().WithStrict(false).Compile(body)
	if err != nil {
		return nil, err
	}
	return &query{source: body, body: compiled, compiler: compiler, store: store}, nil
}

// eval evaluates the query on input and returns what it binds to decision
// and reasons. It fails when the query has no result or several, and on
// ctx's end (the evaluation is cancelled, not abandoned: see doneCancel).
func (q *query) eval(ctx context.Context, input ast.Value, tracer topdown.QueryTracer) (decision, reasons *ast.Term, err error) {
	txn, err := q.store.NewTransaction(ctx)
	if err != nil {
		return nil, nil, err
	}
	defer q.store.Abort(ctx, txn)
	tq := topdown.NewQuery(q.body).
		WithCompiler(q.compiler).
		WithStore(q.store).
		WithTransaction(txn).
		WithInput(ast.NewTerm(input)).
		WithCancel(doneCancel{ctx.Done()}).
		WithMetrics(noMetrics).
		WithStrictBuiltinErrors(false)
	if tracer != nil {
		tq = tq.WithQueryTracer(tracer)
	}
	if q.uncached {
		tq = tq.WithVirtualCache(noCache{})
	}
	results := 0
	err = tq.Iter(ctx, func(qr topdown.QueryResult) error {
		results++
		decision, reasons = qr[decisionVar], qr[reasonsVar]
		return nil
	})
	switch {
	case err != nil:
		return nil, nil, err
	case results == 0:
		return nil, nil, errUndefined
	case results > 1:
		return nil, nil, fmt.Errorf("the decision query has %d results, want one", results)
	}
	return decision, reasons, nil
}

// doneCancel tells topdown that ctx ended. topdown asks before every
// expression; a receive that does not wait costs a few atomic loads, while
// a topdown.Cancel set by context.AfterFunc allocates and registers with
// the context on every evaluation.
type doneCancel struct{ done <-chan struct{} }

// Cancel does nothing: the context is what cancels.
func (doneCancel) Cancel() {}

func (c doneCancel) Cancelled() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// noCache is a topdown.VirtualCache that keeps nothing. topdown caches the
// value of every rule an evaluation reaches, so that a rule referred to
// twice is evaluated once; a staged residual refers to few rules, once
// each, and the cache's own allocations cost it more than it saves (−15 to
// −25 allocations per residual). Full evaluation, which reaches a rule such
// as cfg from many others, keeps the cache.
type noCache struct{}

func (noCache) Push()                         {}
func (noCache) Pop()                          {}
func (noCache) Get(ast.Ref) (*ast.Term, bool) { return nil, false }
func (noCache) Put(ast.Ref, *ast.Term)        {}
func (noCache) Keys() []ast.Ref               { return nil }
