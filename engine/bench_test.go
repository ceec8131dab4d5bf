package engine_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
	"github.com/verdict-engine/verdict/policies"
)

// BenchmarkEval measures one policy evaluation of the shipped policies on a
// parsed (cached) payload: input assembly, Rego evaluation and output
// validation. No HTTP, no cache lookup.
func BenchmarkEval(b *testing.B) {
	ctx := context.Background()
	set, err := engine.Compile(ctx, policies.FS())
	if err != nil {
		b.Fatal(err)
	}
	for _, bc := range []struct {
		name, token string
		action      map[string]any
	}{
		{"human-login", "demo-human", map[string]any{"type": "login"}},
		{"vpn-checkout", "demo-vpn", map[string]any{"type": "checkout", "amount": json.Number("900"), "currency": "USD"}},
		{"bot-signup", "demo-bot", map[string]any{"type": "signup"}},
		{"tor-checkout", "demo-tor", map[string]any{"type": "checkout", "amount": json.Number("900"), "currency": "USD"}},
		{"tamper-checkout", "demo-tamper", map[string]any{"type": "checkout", "amount": json.Number("900"), "currency": "USD"}},
	} {
		b.Run(bc.name, func(b *testing.B) {
			raw, _ := csidetest.Payload(bc.token)
			p, err := engine.ParsePayload(raw)
			if err != nil {
				b.Fatal(err)
			}
			dp := engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginCache, Payload: p}
			req := engine.Request{Token: bc.token, Action: bc.action, ExternalIDs: map[string]string{"accountId": "1234567890"}}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := set.Eval(ctx, req, dp); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkParsePayload measures what a cache miss pays once per token.
func BenchmarkParsePayload(b *testing.B) {
	raw, _ := csidetest.Payload("demo-human")
	b.SetBytes(int64(len(raw)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := engine.ParsePayload(raw); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkCompile is a policy load: parsing, compiling, preparing the
// queries, the stager, and the optimized reasons (optimize.go).
func BenchmarkCompile(b *testing.B) {
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := engine.Compile(ctx, policies.FS()); err != nil {
			b.Fatal(err)
		}
	}
}
