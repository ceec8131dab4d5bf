package engine

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/cover"
	"github.com/open-policy-agent/opa/v1/tester"
	"github.com/open-policy-agent/opa/v1/topdown"
)

// caseTimeout bounds one golden case (a scenario's lookup included), like
// OPA's tester bounds a Rego test.
const caseTimeout = 5 * time.Second

// ErrTestsFailed is wrapped when a policy set's own tests or golden cases
// fail, or its coverage is below the threshold asked for.
var ErrTestsFailed = errors.New("policy tests failed")

// TestResult is the outcome of one Rego test rule (test_*), as OPA's own
// tester reports it.
type TestResult = tester.Result

// CaseResult is the outcome of one golden decision case.
type CaseResult struct {
	Case     Case
	Decision Decision
	// Diffs says how the decision differs from the case's expectation;
	// empty when it passes.
	Diffs []string
	// Err is set when the case could not be evaluated.
	Err error
}

// Pass reports whether the case passed.
func (r CaseResult) Pass() bool { return r.Err == nil && len(r.Diffs) == 0 }

// SuiteOptions says what RunSuite runs.
type SuiteOptions struct {
	// Run, when set, is a regular expression selecting Rego tests (by
	// package-qualified name) and golden cases (by name).
	Run string
	// Coverage computes line coverage of the non-test modules.
	Coverage bool
	// CaseSource looks up the tokens of scenario cases; nil fails them.
	CaseSource Source
	// NoStaging skips the check that staged evaluation gives every golden
	// case the answer full evaluation gives (for serve --staging=false).
	NoStaging bool
}

// Suite is the outcome of a policy set's Rego tests and golden cases.
type Suite struct {
	Tests []*TestResult
	Cases []CaseResult
	// Coverage is set when SuiteOptions.Coverage was; test files excluded.
	Coverage *cover.Report
}

// Passed and Failed count tests and cases together.
func (s *Suite) Passed() int { return len(s.Tests) + len(s.Cases) - s.Failed() }

// Failed counts failed or erroring tests and cases (skipped tests are not
// failures).
func (s *Suite) Failed() int {
	n := 0
	for _, t := range s.Tests {
		if t.Fail || t.Error != nil {
			n++
		}
	}
	for _, c := range s.Cases {
		if !c.Pass() {
			n++
		}
	}
	return n
}

// RunSuite runs every Rego unit test of the policy directory fsys with OPA's
// tester, and every golden case in its testdata/*.yaml on the compiled set.
// Files load exactly as Compile loads them. Results are sorted by file and
// line (tests) and in file order (cases). A load, compile or case-file error
// is returned as an error; failed tests and cases are reported in the Suite.
func RunSuite(ctx context.Context, fsys fs.FS, opts SuiteOptions) (*Suite, error) {
	return runSuite(ctx, fsys, opts, nil)
}

// runSuite is RunSuite running the golden cases on set, or, when set is
// nil, on a set it compiles (and strips of staging with opts.NoStaging).
func runSuite(ctx context.Context, fsys fs.FS, opts SuiteOptions, set *PolicySet) (*Suite, error) {
	var filter *regexp.Regexp
	if opts.Run != "" {
		var err error
		if filter, err = regexp.Compile(opts.Run); err != nil {
			return nil, fmt.Errorf("test filter %q: %w", opts.Run, err)
		}
	}
	l, err := load(fsys)
	if err != nil {
		return nil, err
	}
	runner := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		SetStore(l.store).
		SetModules(l.modules).
		CapturePrintOutput(true).
		Filter(opts.Run)
	var coverage *cover.Cover
	if opts.Coverage {
		coverage = cover.New()
		runner.SetCoverageQueryTracer(coverage)
	}
	ch, err := runner.RunTests(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: preparing tests: %w", ErrPolicyLoad, err)
	}
	suite := &Suite{}
	for r := range ch {
		suite.Tests = append(suite.Tests, r)
	}
	if err := locateFailures(ctx, l, suite.Tests); err != nil {
		return nil, err
	}
	slices.SortFunc(suite.Tests, func(a, b *TestResult) int {
		if c := strings.Compare(a.Location.File, b.Location.File); c != 0 {
			return c
		}
		return a.Location.Row - b.Location.Row
	})
	if coverage != nil {
		suite.Coverage = policyCoverage(coverage.Report(l.modules))
	}

	cases, err := LoadCases(fsys, "testdata")
	if err != nil {
		return nil, err
	}
	if len(cases) == 0 {
		return suite, nil
	}
	if set == nil {
		if set, err = compileFor(ctx, fsys, opts); err != nil {
			return nil, err
		}
	}
	for _, c := range cases {
		if filter != nil && !filter.MatchString(c.Name) {
			continue
		}
		caseCtx, cancel := context.WithTimeout(ctx, caseTimeout)
		d, diffs, err := set.RunCase(caseCtx, c, opts.CaseSource)
		cancel()
		suite.Cases = append(suite.Cases, CaseResult{Case: c, Decision: d, Diffs: diffs, Err: err})
	}
	return suite, nil
}

// locateFailures runs the failed tests again with tracing, which is too
// slow for every run, and sets FailedAt to the expression that failed, the
// way `opa test` finds its failure line.
func locateFailures(ctx context.Context, l *loaded, tests []*TestResult) error {
	byName := map[string]*TestResult{}
	var names []string
	for _, t := range tests {
		if t.Fail {
			name := t.Package + "." + t.Name
			byName[name] = t
			names = append(names, regexp.QuoteMeta(name))
		}
	}
	if len(names) == 0 {
		return nil
	}
	ch, err := tester.NewRunner().
		SetDefaultRegoVersion(ast.RegoV1).
		SetStore(l.store).
		SetModules(l.modules).
		EnableTracing(true).
		Filter("^("+strings.Join(names, "|")+")$").
		RunTests(ctx, nil)
	if err != nil {
		return fmt.Errorf("%w: tracing failed tests: %w", ErrPolicyLoad, err)
	}
	for r := range ch {
		t, ok := byName[r.Package+"."+r.Name]
		if !ok {
			continue
		}
		for _, e := range slices.Backward(r.Trace) {
			expr, isExpr := e.Node.(*ast.Expr)
			if e.Op != topdown.FailOp || e.Location == nil || e.QueryID == 0 || !isExpr {
				continue
			}
			if _, isEvery := expr.Terms.(*ast.Every); isEvery {
				continue // the failing expression inside the every body comes later
			}
			t.FailedAt = expr
			break
		}
	}
	return nil
}

// policyCoverage drops the test files from a coverage report and
// recomputes the total over the policy files alone.
func policyCoverage(r cover.Report) *cover.Report {
	out := &cover.Report{Files: map[string]*cover.FileReport{}}
	for name, f := range r.Files {
		if strings.HasSuffix(name, "_test.rego") {
			continue
		}
		out.Files[name] = f
		out.CoveredLines += f.CoveredLines
		out.NotCoveredLines += f.NotCoveredLines
	}
	if total := out.CoveredLines + out.NotCoveredLines; total > 0 {
		out.Coverage = 100 * float64(out.CoveredLines) / float64(total)
	}
	return out
}

// Verify is the gate a policy set passes before it serves: it compiles in
// strict mode, checks the output contract, and runs the set's own Rego tests
// and golden cases (scenarios through caseSource). It returns the compiled
// set only if all of that passes; otherwise an error wrapping ErrPolicyLoad,
// ErrContract or ErrTestsFailed that says what failed.
func Verify(ctx context.Context, fsys fs.FS, caseSource Source) (*PolicySet, error) {
	return verify(ctx, fsys, SuiteOptions{CaseSource: caseSource})
}

// verify is Verify with the suite's options; with NoStaging, the set it
// returns is never staged either.
func verify(ctx context.Context, fsys fs.FS, opts SuiteOptions) (*PolicySet, error) {
	problems, err := CheckContract(fsys)
	if err != nil {
		return nil, err
	}
	if err := contractErr(problems); err != nil {
		return nil, err
	}
	set, err := compileFor(ctx, fsys, opts)
	if err != nil {
		return nil, err
	}
	suite, err := runSuite(ctx, fsys, opts, set) // the cases run on the set that will serve
	if err != nil {
		return nil, err
	}
	if n := suite.Failed(); n > 0 {
		return nil, fmt.Errorf("%w: %d of %d failed: %s", ErrTestsFailed, n, len(suite.Tests)+len(suite.Cases), strings.Join(suite.failures(3), "; "))
	}
	return set, nil
}

// compileFor compiles fsys for a suite's options: with NoStaging, the set
// is never staged.
func compileFor(ctx context.Context, fsys fs.FS, opts SuiteOptions) (*PolicySet, error) {
	set, err := Compile(ctx, fsys)
	if err != nil {
		return nil, err
	}
	if opts.NoStaging {
		set.stager = nil
	}
	return set, nil
}

// failures describes up to n failures.
func (s *Suite) failures(n int) []string {
	var out []string
	for _, t := range s.Tests {
		if t.Fail || t.Error != nil {
			out = append(out, fmt.Sprintf("%s:%d: %s.%s", t.Location.File, t.Location.Row, t.Package, t.Name))
		}
	}
	for _, c := range s.Cases {
		switch {
		case c.Err != nil:
			out = append(out, fmt.Sprintf("%s: case %q: %v", c.Case.File, c.Case.Name, c.Err))
		case len(c.Diffs) > 0:
			out = append(out, fmt.Sprintf("%s: case %q: %s", c.Case.File, c.Case.Name, strings.Join(c.Diffs, ", ")))
		}
	}
	if len(out) > n {
		out = append(out[:n], fmt.Sprintf("and %d more", len(out)-n))
	}
	return out
}
