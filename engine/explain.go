package engine

import (
	"cmp"
	"context"
	"fmt"
	"slices"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// RuleHit is a rule of package verdict that succeeded during an evaluation.
type RuleHit struct {
	// Rule is the rule's path, e.g. data.verdict.reasons.
	Rule string `json:"rule"`
	// Location is file:line of the rule.
	Location string `json:"location"`
}

// Explain evaluates like Eval and also reports which rules of package
// verdict (and below) succeeded, in file and line order. It traces the
// evaluation, so it is much slower than Eval: for tools, not for serving.
func (p *PolicySet) Explain(ctx context.Context, req Request, dp Datapoints) (Decision, []RuleHit, error) {
	tracer := topdown.NewBufferTracer()
	d, err := p.eval(ctx, req, dp, tracer)
	if err != nil {
		return Decision{}, nil, err
	}
	verdictPkg := ast.MustParseRef("data.verdict")
	var rules []*ast.Rule
	for _, e := range *tracer {
		r, ok := e.Node.(*ast.Rule)
		if e.Op == topdown.ExitOp && ok && r.Module != nil && r.Location != nil &&
			r.Module.Package.Path.HasPrefix(verdictPkg) && !slices.Contains(rules, r) {
			rules = append(rules, r)
		}
	}
	slices.SortFunc(rules, func(a, b *ast.Rule) int {
		return cmp.Or(cmp.Compare(a.Location.File, b.Location.File), cmp.Compare(a.Location.Row, b.Location.Row))
	})
	hits := make([]RuleHit, len(rules))
	for i, r := range rules {
		hits[i] = RuleHit{
			Rule:     r.Module.Package.Path.Extend(r.Head.Ref()).String(),
			Location: fmt.Sprintf("%s:%d", r.Location.File, r.Location.Row),
		}
	}
	return d, hits, nil
}
