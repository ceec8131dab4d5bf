package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/verdict-engine/verdict/engine"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

// normalize replaces what changes from run to run.
var normalize = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`"decision_id": "[0-9a-f-]{36}"`), `"decision_id": "<uuid>"`},
	{regexp.MustCompile(`"elapsed_ms": [0-9.]+`), `"elapsed_ms": <elapsed>`},
	{regexp.MustCompile(`127\.0\.0\.1:\d+`), `127.0.0.1:<port>`},
}

// TestCommands runs each policy command and compares its output, error and
// exit code with testdata/golden/<name>.golden (go test -update rewrites).
func TestCommands(t *testing.T) {
	good, failing := "testdata/policies/good", "testdata/policies/failing"
	vpn := "../../csideclient/csidetest/testdata/vpn.json"
	tests := []struct {
		name string
		args []string
	}{
		{"test-good", []string{"test", good}},
		{"test-verbose", []string{"test", "-v", good}},
		{"test-run", []string{"test", "--run", "human", good}},
		{"test-coverage", []string{"test", "--coverage", good}},
		{"test-threshold", []string{"test", "--threshold", "90", "testdata/policies/uncovered"}},
		{"test-failing", []string{"test", failing}},
		{"test-syntax", []string{"test", "testdata/policies/syntax"}},
		{"test-missing-dir", []string{"test", "testdata/policies/nope"}},
		{"test-bad-threshold", []string{"test", "--threshold", "101", good}},
		{"check-good", []string{"check", good}},
		{"check-syntax", []string{"check", "testdata/policies/syntax"}},
		{"check-contract", []string{"check", "testdata/policies/contract"}},
		{"check-unformatted", []string{"check", "testdata/policies/unformatted"}},
		{"check-two-dirs", []string{"check", good, failing}},
		{"check-unoptimized", []string{"check", "testdata/policies/unoptimized"}},
		{"fmt-list", []string{"fmt", "testdata/policies/unformatted"}},
		{"fmt-syntax", []string{"fmt", "testdata/policies/syntax"}},
		{"eval-scenario", []string{"eval", "--action", `{"type":"login"}`, "--scenario", "demo-bot", "--policies", good}},
		{"eval-explain", []string{"eval", "--action", `{"type":"checkout","amount":900,"currency":"USD"}`, "--datapoints", vpn, "--explain"}},
		{"eval-staged", []string{"eval", "--action", `{"type":"checkout","amount":900,"currency":"USD"}`, "--datapoints", vpn, "--staged"}},
		{"eval-staged-constant", []string{"eval", "--action", `{"type":"login"}`, "--scenario", "demo-bot", "--staged"}},
		{"eval-upstream", []string{"eval", "--action", `{"type":"login"}`, "--upstream-status", "unavailable", "--external-ids", `{"email":"a@b.c"}`}},
		{"eval-no-source", []string{"eval", "--action", `{"type":"login"}`}},
		{"eval-two-sources", []string{"eval", "--action", `{"type":"login"}`, "--scenario", "demo-bot", "--upstream-status", "unavailable"}},
		{"eval-bad-action", []string{"eval", "--action", `{"type":"Login"}`, "--scenario", "demo-bot"}},
		{"eval-bad-status", []string{"eval", "--action", `{"type":"login"}`, "--upstream-status", "ok"}},
		{"eval-bad-ids", []string{"eval", "--action", `{"type":"login"}`, "--upstream-status", "unavailable", "--external-ids", `{"n":1}`}},
		{"eval-missing-file", []string{"eval", "--action", `{"type":"login"}`, "--datapoints", "testdata/nope.json"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(context.Background(), tt.args, env(nil), &stdout, &stderr)
			var got strings.Builder
			got.WriteString("$ verdict " + strings.Join(tt.args, " ") + "\n")
			got.WriteString(stdout.String())
			if err != nil {
				got.WriteString("error: " + err.Error() + "\n")
			}
			got.WriteString("exit: " + string(rune('0'+exitCode(err))) + "\n")
			out := got.String()
			for _, n := range normalize {
				out = n.re.ReplaceAllString(out, n.with)
			}
			golden := filepath.Join("testdata", "golden", tt.name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(out), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading %s (run go test -update to create it): %v", golden, err)
			}
			if out != string(want) {
				t.Errorf("verdict %s:\n--- got\n%s--- want (%s)\n%s", strings.Join(tt.args, " "), out, golden, want)
			}
		})
	}
}

func TestFmtWrite(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/policies/unformatted/verdict.rego")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(dir, "verdict.rego"), string(src))
	var out bytes.Buffer
	if err := run(context.Background(), []string{"fmt", "-w", dir}, env(nil), &out, &out); err != nil {
		t.Fatalf("fmt -w: %v\n%s", err, out.String())
	}
	got, _ := os.ReadFile(filepath.Join(dir, "verdict.rego"))
	want, err := engine.Format("verdict.rego", src)
	if err != nil || string(got) != string(want) || string(got) == string(src) {
		t.Errorf("after fmt -w:\n%s\nwant\n%s", got, want)
	}
	if err := run(context.Background(), []string{"check", dir}, env(nil), &out, &out); err != nil {
		t.Errorf("check after fmt -w: %v\n%s", err, out.String())
	}
}
