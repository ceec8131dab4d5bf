package policies_test

import (
	"context"
	"testing"

	"github.com/verdict-engine/verdict/engine"
	"github.com/verdict-engine/verdict/policies"
)

// TestRego runs every Rego unit test of the shipped policy set through OPA's
// tester, each as a subtest, and fails on any failure or error.
func TestRego(t *testing.T) {
	suite, err := engine.RunSuite(context.Background(), policies.FS(), engine.SuiteOptions{})
	if err != nil {
		t.Fatalf("RunSuite: %v", err)
	}
	results := suite.Tests
	if len(results) < 40 {
		t.Errorf("found %d Rego tests, want at least 40: are test files loaded?", len(results))
	}
	for _, r := range results {
		t.Run(r.Package+"."+r.Name, func(t *testing.T) {
			switch {
			case r.Error != nil:
				t.Errorf("%s:%d: error: %v", r.Location.File, r.Location.Row, r.Error)
			case r.Fail:
				t.Errorf("%s:%d: FAIL%s", r.Location.File, r.Location.Row, string(r.Output))
			case r.Skip:
				t.Skipf("%s:%d: skipped (todo_test_)", r.Location.File, r.Location.Row)
			}
		})
	}
}
