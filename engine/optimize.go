package engine

// Optimized full evaluation: the reasons partially evaluated against the
// policy set's data at load time.
//
// Full evaluation (a token's first decisions from the cache, a cache miss,
// stale datapoints, serve --staging=false) evaluates data.verdict.reasons
// on the whole input. At load, the engine partially evaluates that query
// with all of input unknown, as `opa build --optimize` does: the data
// (data.verdict_config) and every rule that reads only data fold in,
// helper rules such as `anonymized if input.datapoints.ip.vpn == true`
// inline into the rules that use them, and what is left is one rule per
// way a reason can fire, most of them starting with equalities on input,
// which OPA's rule index uses to skip, unevaluated, the rules whose
// conditions fail. Full evaluation through the decision table then
// queries those rules, compiled with the policy's own modules (the
// residual still calls rules partial evaluation keeps, such as those with
// else). That compilation serves every query of the set: no rule can read
// data as a whole (OPA refuses it as recursive), so the residual package
// is invisible to the policy's own rules. It costs ~350 KB per set (the
// residual rules in that compilation and in staging's) and doubles the
// load time (BenchmarkCompile).
//
// It never changes an answer: RunCase evaluates every golden case through
// it and through the decision query on the rules as written, and a
// difference fails the case (checkFastPaths). When partial evaluation does
// not apply, full evaluation queries the rules as written, and
// PolicySet.Optimized says why.

import (
	"context"
	"fmt"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/rego"
)

// optimizedNamespace is the package the residual rules are compiled in,
// under data. A policy set that uses it is not optimized.
const optimizedNamespace = "__verdict_optimized"

// optimizeTimeout bounds partial evaluation at load.
const optimizeTimeout = 2 * time.Second

// maxOptimizedRules bounds the residual's size, as a multiple of the
// policy's own rule count: inlining a helper of n bodies into a rule makes
// n rules, and helpers of helpers multiply. Past it, the residual is not
// used (a bigger rule set is not a faster one).
const maxOptimizedRules = 8

// optimizedReasonsRef is where the optimized reasons' rules are, when
// partial evaluation leaves rules: staging partially evaluates them rather
// than the rules as written (data folded in, helpers inlined: staging is
// 8–15 % cheaper, BenchmarkStage; the residuals are the same).
var optimizedReasonsRef = ast.DefaultRootRef.Append(ast.StringTerm(optimizedNamespace)).Concat(reasonsRef[1:])

// optimizeReasons prepares the reasons query of optimized full evaluation
// on l, or says why it does not apply. The query's compiler has l's
// modules and the residual ones, which it also returns, as partial
// evaluation gave them (for the stager's compiler).
func optimizeReasons(ctx context.Context, l *loaded) (*query, map[string]*ast.Module, error) {
	if _, taken := l.data[optimizedNamespace]; taken {
		return nil, nil, fmt.Errorf("data.%s is taken by a data document", optimizedNamespace)
	}
	rules := 0
	for _, m := range l.modules {
		if len(m.Package.Path) > 1 && m.Package.Path[1].Value.Compare(ast.String(optimizedNamespace)) == 0 {
			return nil, nil, fmt.Errorf("data.%s is taken by package %v", optimizedNamespace, m.Package.Path)
		}
		rules += len(m.Rules)
	}
	ctx, cancel := context.WithTimeout(ctx, optimizeTimeout)
	defer cancel()
	// Partial evaluation writes into the terms it works on: a compiler and
	// a store of its own, on copies.
	peCompiler := compile(copyModules(l.modules))
	if peCompiler.Failed() {
		return nil, nil, fmt.Errorf("compiling for partial evaluation: %w", peCompiler.Errors)
	}
	pq, err := rego.New(
		rego.ParsedQuery(reasonsQuery),
		rego.Compiler(peCompiler),
		rego.Store(newStore(l.data)),
		rego.Unknowns([]string{"input"}),
		rego.PartialNamespace(optimizedNamespace),
		rego.StrictBuiltinErrors(false),
	).Partial(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("partial evaluation: %w", err)
	}
	if len(pq.Queries) != 1 {
		return nil, nil, fmt.Errorf("partial evaluation left %d queries, want one", len(pq.Queries))
	}
	modules := make(map[string]*ast.Module, len(l.modules)+len(pq.Support))
	for name, m := range l.modules {
		modules[name] = m // compile copies
	}
	support := make(map[string]*ast.Module, len(pq.Support))
	residualRules := 0
	for i, m := range pq.Support {
		name := fmt.Sprintf("%s/%d.rego", optimizedNamespace, i)
		if _, taken := modules[name]; taken {
			return nil, nil, fmt.Errorf("a policy file is named %s", name)
		}
		modules[name], support[name] = m, m
		residualRules += len(m.Rules)
	}
	if residualRules > maxOptimizedRules*max(rules, 1) {
		return nil, nil, fmt.Errorf("partial evaluation left %d rules for the policy's %d", residualRules, rules)
	}
	compiler := compileDerived(modules)
	if compiler.Failed() {
		return nil, nil, fmt.Errorf("compiling the residual rules: %w", compiler.Errors)
	}
	q, err := newQuery(compiler, l.store, pq.Queries[0].Copy())
	if err != nil {
		return nil, nil, fmt.Errorf("preparing the residual query: %w", err)
	}
	if !q.body.Vars(ast.VarVisitorParams{}).Contains(reasonsVar) {
		return nil, nil, fmt.Errorf("the residual query %v does not bind reasons", q.source)
	}
	return q, support, nil
}

// copyModules deep-copies modules, for a compiler that partial evaluation
// may write into.
func copyModules(modules map[string]*ast.Module) map[string]*ast.Module {
	out := make(map[string]*ast.Module, len(modules))
	for name, m := range modules {
		out[name] = m.Copy()
	}
	return out
}
