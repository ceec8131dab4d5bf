package policies_test

import (
	"context"
	"os"
	"testing"

	"github.com/verdict-engine/verdict/cache"
	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
	"github.com/verdict-engine/verdict/policies"
)

// shippedRules are the reason codes the shipped policy set documents; the
// golden cases must make each of them fire at least once.
var shippedRules = []string{
	"bot_detected", "known_bot", "tor_exit", "ip_blocklisted", "anonymizing_proxy",
	"browser_tampering", "throwaway_email", "new_incognito_visitor", "high_suspect_score",
	"unknown_fingerprint", "datapoints_unavailable", "stale_datapoints",
}

// TestGolden evaluates every case in policies/testdata/*.yaml on the shipped
// policies. Scenario cases go through the real pipeline: a fake cside, the
// cside client and the cache, fresh for each case so that one case's
// failures cannot trip the breaker for the next.
func TestGolden(t *testing.T) {
	ctx := context.Background()
	set, err := engine.Compile(ctx, policies.FS())
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	cases, err := engine.LoadCases(os.DirFS("../policies"), "testdata")
	if err != nil {
		t.Fatalf("LoadCases: %v", err)
	}
	fake := csidetest.NewServer()
	defer fake.Close()

	fired := map[string]bool{}
	scenarios := map[string]bool{}
	for _, c := range cases {
		t.Run(c.Name, func(t *testing.T) {
			src := pipeline(t, fake.URL)
			d, diffs, err := set.RunCase(ctx, c, src)
			if err != nil {
				t.Fatalf("%s: %v", c.File, err)
			}
			for _, diff := range diffs {
				t.Errorf("%s: %s", c.File, diff)
			}
			for _, r := range d.Reasons {
				fired[r.Code] = true
			}
			scenarios[c.Scenario] = true
		})
	}

	for _, code := range shippedRules {
		if !fired[code] {
			t.Errorf("no golden case makes %s fire", code)
		}
	}
	for _, token := range csidetest.Tokens() {
		if !scenarios[token] {
			t.Errorf("no golden case covers scenario token %s", token)
		}
	}
}

func pipeline(t *testing.T, upstream string) *cache.Cache {
	t.Helper()
	client, err := csideclient.New(csideclient.Config{BaseURL: upstream})
	if err != nil {
		t.Fatalf("csideclient.New: %v", err)
	}
	c, err := cache.New(cache.Config{}, client)
	if err != nil {
		t.Fatalf("cache.New: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}
