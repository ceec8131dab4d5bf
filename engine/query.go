package engine

import (
	"context"
	"fmt"
	"time"

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
	// payloadFree: the query reads nothing of input.datapoints or
	// input.fingerprint_id (a staged residual, reach.payload), so its input
	// leaves them null: a cached token's parsed tree is not needed (see
	// Payload).
	payloadFree bool
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
// and reasons. It fails when the query has no result or several, on ctx's
// end, and past the evaluation deadline ctx carries (withEvalDeadline:
// context.DeadlineExceeded); the evaluation is cancelled, not abandoned
// (see evalCancel).
func (q *query) eval(ctx context.Context, input ast.Value, tracer topdown.QueryTracer) (decision, reasons *ast.Term, err error) {
	cancel := &evalCancel{done: ctx.Done()}
	cancel.deadline, _ = ctx.Value(evalDeadlineKey{}).(time.Time)
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
		WithCancel(cancel).
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
	case cancel.expired:
		return nil, nil, context.DeadlineExceeded
	case err != nil:
		return nil, nil, err
	case results == 0:
		return nil, nil, errUndefined
	case results > 1:
		return nil, nil, fmt.Errorf("the decision query has %d results, want one", results)
	}
	return decision, reasons, nil
}

// evalDeadlineKey is the context key of an evaluation's deadline
// (withEvalDeadline).
type evalDeadlineKey struct{}

// withEvalDeadline bounds the evaluations under ctx by deadline. It is a
// context value that evalCancel reads, not a context deadline: a
// context.WithTimeout per decision costs a timer, a cancel context and its
// registration with the request's, ~500 bytes and 5 allocations, for a
// deadline that almost never fires.
func withEvalDeadline(ctx context.Context, deadline time.Time) context.Context {
	return context.WithValue(ctx, evalDeadlineKey{}, deadline)
}

// deadlineEvery is how many of topdown's questions evalCancel answers
// between two readings of the clock. topdown asks once per expression
// (about a microsecond each); a reading costs tens of nanoseconds, and one
// in 16 keeps that well under 1 % while the deadline is still noticed
// within microseconds of passing.
const deadlineEvery = 16

// evalCancel tells topdown that the evaluation must stop: the context
// ended, or the deadline passed. topdown asks before every expression (and
// inside long builtins), from the evaluating goroutine; a receive that does
// not wait costs a few atomic loads, while a topdown.Cancel set by
// context.AfterFunc allocates and registers with the context on every
// evaluation.
type evalCancel struct {
	done     <-chan struct{}
	deadline time.Time // zero: none
	asked    int
	expired  bool // the deadline passed
}

// Cancel does nothing: the context and the deadline are what cancel.
func (*evalCancel) Cancel() {}

func (c *evalCancel) Cancelled() bool {
	select {
	case <-c.done:
		return true
	default:
	}
	if c.expired || c.deadline.IsZero() {
		return c.expired
	}
	if c.asked++; c.asked%deadlineEvery == 0 && !time.Now().Before(c.deadline) {
		c.expired = true
	}
	return c.expired
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
