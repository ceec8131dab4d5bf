package engine

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/tester"
)

// TestResult is the outcome of one Rego test rule (test_*), as OPA's own
// tester reports it.
type TestResult = tester.Result

// RunTests runs every Rego unit test in the policy directory fsys with OPA's
// tester, loading files exactly as Compile does. filter, when not empty, is
// a regular expression selecting tests by package-qualified name. Results
// are sorted by file and line. A load or compile error is returned wrapping
// ErrPolicyLoad; failed tests are reported in the results, not as an error.
func RunTests(ctx context.Context, fsys fs.FS, filter string) ([]*TestResult, error) {
	l, err := load(fsys)
	if err != nil {
		return nil, err
	}
	ch, err := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		SetStore(l.store).
		SetModules(l.modules).
		CapturePrintOutput(true).
		Filter(filter).
		RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: preparing tests: %w", ErrPolicyLoad, err)
	}
	var results []*TestResult
	for r := range ch {
		results = append(results, r)
	}
	slices.SortFunc(results, func(a, b *TestResult) int {
		if c := strings.Compare(a.Location.File, b.Location.File); c != 0 {
			return c
		}
		return a.Location.Row - b.Location.Row
	})
	return results, nil
}
