package engine

import (
	"context"
	"slices"
	"testing"
	"testing/fstest"
)

// PolicyFS is policyFS for the tests of package engine_test.
var PolicyFS = policyFS

// policyFS is a policy directory of the named files' contents.
func policyFS(kv ...string) fstest.MapFS {
	fs := fstest.MapFS{}
	for i := 0; i < len(kv); i += 2 {
		fs[kv[i]] = &fstest.MapFile{Data: []byte(kv[i+1])}
	}
	return fs
}

func TestServingModules(t *testing.T) {
	const policy = "package verdict\n\ndefault decision := \"allow\"\n\nreasons := set()\n"
	test := "package verdict_test\n\nimport data.verdict\n\ntest_allow if verdict.decision == \"allow\"\n"
	tests := []struct {
		name  string
		files []string // name, content, ...
		want  []string // the modules a set serves with
	}{
		{"tests in a package of their own are left out",
			[]string{"p.rego", policy, "p_test.rego", test},
			[]string{"p.rego"}},
		{"a file not named _test.rego stays, whatever its package",
			[]string{"p.rego", policy, "checks.rego", "package verdict_test\n\nx := 1\n"},
			[]string{"checks.rego", "p.rego"}},
		{"a test file in the policy's package stays",
			[]string{"p.rego", policy, "p_test.rego", "package verdict\n\ntest_allow if decision == \"allow\"\n"},
			[]string{"p.rego", "p_test.rego"}},
		{"a test file in a package below the policy's stays",
			[]string{"p.rego", policy, "sub_test.rego", "package verdict.sub\n\nx := 1\n"},
			[]string{"p.rego", "sub_test.rego"}},
		{"a test file in a package the policy reads stays",
			[]string{"p.rego", policy + "\nlimit := data.lib.limit\n", "lib_test.rego", "package lib\n\nlimit := 5\n", "p_test.rego", test},
			[]string{"lib_test.rego", "p.rego"}},
		{"a test file that a kept test file reads stays",
			[]string{"p.rego", policy + "\nlimit := data.lib.limit\n", "lib_test.rego", "package lib\n\nlimit := data.fixtures.n\n",
				"fixtures_test.rego", "package fixtures\n\nn := 5\n", "p_test.rego", test},
			[]string{"fixtures_test.rego", "lib_test.rego", "p.rego"}},
		{"a test file in a package the policy imports stays",
			[]string{"p.rego", "package verdict\n\nimport data.lib\n\ndefault decision := \"allow\"\n\nreasons := {r | some r in lib.reasons}\n",
				"lib_test.rego", "package lib\n\nreasons := set()\n"},
			[]string{"lib_test.rego", "p.rego"}},
		{"a test file stays when the policy reads a package above it by a variable",
			[]string{"p.rego", policy + "\nn := count([k | data.lib[k]])\n", "lib_test.rego", "package lib.fixtures\n\nx := 1\n", "p_test.rego", test},
			[]string{"lib_test.rego", "p.rego"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l, err := loadServing(policyFS(tt.files...))
			if err != nil {
				t.Fatalf("loadServing: %v", err)
			}
			got := sortedKeys(l.compiler.Modules)
			if !slices.Equal(got, tt.want) {
				t.Errorf("serving modules = %v, want %v", got, tt.want)
			}
			if all, err := load(policyFS(tt.files...)); err != nil || len(all.compiler.Modules) != len(tt.files)/2 {
				t.Errorf("load (tests included) = %v, %v; want every file", all, err)
			}
			if _, err := Compile(context.Background(), policyFS(tt.files...)); err != nil {
				t.Errorf("Compile: %v", err)
			}
		})
	}
}
