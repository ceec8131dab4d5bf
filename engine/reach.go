package engine

// What a query can read: the reach analysis behind staged evaluation's
// constant answers and memo keys.

import (
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
)

// reach is what a query can read, following every rule it refers to.
type reach struct {
	// varies: it reads an unknown part of the input, or calls a
	// nondeterministic builtin: the answer may change between calls on one
	// payload.
	varies bool
	// nondet: it calls a nondeterministic builtin (time.now_ns, rand.intn,
	// ...), so no memo may stand in for it.
	nondet bool
	// input: it reads some part of the input, varying or not.
	input bool
	// payload: it reads some part of input.datapoints or
	// input.fingerprint_id (or all of the input), so its evaluation needs
	// the payload's parsed form.
	payload bool
	// reads are the unknown parts of the input it reads, as refs: a ref
	// into input.action, input.external_ids or input.upstream.age_seconds,
	// cut at its first variable; reading above them (all of input, or of
	// input.upstream) reads each unknown it covers. Sorted, no duplicates.
	reads []ast.Ref
}

// payloadRefs are the parts of the input built from the payload's parsed
// form (Payload.parsed).
var payloadRefs = []ast.Ref{ast.MustParseRef("input.datapoints"), ast.MustParseRef("input.fingerprint_id")}

// reach walks body and, transitively, every rule it refers to, except
// data.verdict.reasons, which the residual query replaces. Callers hold mu.
func (s *stager) reach(body ast.Body) reach {
	var r reach
	read := func(ref ast.Ref) {
		r.input = true
		for _, p := range payloadRefs {
			if ref.HasPrefix(p) || p.HasPrefix(ref) {
				r.payload = true
			}
		}
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
