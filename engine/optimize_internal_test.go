package engine

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/policies"
)

// fullInputs is every kind of input full evaluation sees: each scenario
// payload fetched, cached and stale (young and old), and no payload at all.
func fullInputs(t *testing.T) map[string]Datapoints {
	t.Helper()
	out := map[string]Datapoints{}
	for _, token := range csidetest.Tokens() {
		if _, ok := csidetest.Payload(token); !ok {
			continue
		}
		dp := cachedPayload(t, token)
		out[token+"/cache"] = dp
		dp.Origin = OriginUpstream
		out[token+"/upstream"] = dp
		for _, age := range []time.Duration{30 * time.Second, 700 * time.Second, 2000 * time.Second} {
			dp.Origin, dp.Age = OriginStale, age
			out[token+"/stale "+age.String()] = dp
		}
	}
	for _, status := range []Status{StatusNotFound, StatusRejected, StatusUnavailable} {
		out[string(status)] = Datapoints{Status: status, Origin: OriginNone}
	}
	return out
}

// requireSameAsWritten fails unless full evaluation of set (through the
// optimized reasons, when set has them) answers every input of inputs and
// every action of the matrix as the decision query on the rules as written.
func requireSameAsWritten(t *testing.T, set *PolicySet, inputs map[string]Datapoints) {
	t.Helper()
	ctx := context.Background()
	for name, dp := range inputs {
		for _, req := range actionMatrix() {
			if diff, err := set.checkFastPaths(ctx, req, dp); err != nil || diff != "" {
				t.Fatalf("%s %v: %v %s", name, req.Action, err, diff)
			}
		}
	}
}

// TestOptimizedMatchesRulesAsWritten is the equivalence proof for the
// shipped policies beyond the golden cases.
func TestOptimizedMatchesRulesAsWritten(t *testing.T) {
	set := shippedSet(t)
	if ok, why := set.Optimized(); !ok {
		t.Fatalf("the shipped policies are not optimized: %s", why)
	}
	if !strings.Contains(set.byReasons.reasons.source.String(), optimizedNamespace) {
		t.Fatalf("full evaluation queries %v, want the optimized reasons", set.byReasons.reasons.source)
	}
	if !set.stager.target.Equal(optimizedReasonsRef) {
		t.Errorf("staging starts from %v, want the optimized reasons", set.stager.target)
	}
	requireSameAsWritten(t, set, fullInputs(t))
}

// TestOptimizeConstructs holds the optimization to the rules as written on
// the Rego constructs partial evaluation treats specially, and checks when
// it is refused.
func TestOptimizeConstructs(t *testing.T) {
	const head = "package verdict\n\ndefault decision := \"allow\"\n\ndecision := \"deny\" if {\n\tsome r in reasons\n\tr.effect == \"deny\"\n}\n\n"
	tests := []struct {
		name    string
		policy  string
		refused string            // a part of Optimized's why; "" when optimized
		extra   map[string]string // more policy files, by name
	}{
		{name: "else chain", policy: `reasons contains {"code": "x", "effect": eff, "message": "m"} if { input.datapoints.bot.result == "bad"; eff := e }
e := "deny" if input.action.type == "signup" else := "challenge" if input.action.type == "login" else := "allow"`},
		{name: "function with several bodies", policy: `reasons contains {"code": "x", "effect": f(input.action.type), "message": "m"} if input.datapoints.ip.tor == true
f("signup") := "deny"
f(x) := "challenge" if x != "signup"`},
		{name: "defaults", policy: `reasons contains {"code": "x", "effect": f(input.action.type), "message": msg} if input.datapoints.ip.tor == true
default f(_) := "challenge"
f(a) := "deny" if a == "signup"
default msg := "no currency"
msg := sprintf("currency %s", [input.action.currency]) if is_string(input.action.currency)`},
		{name: "every and comprehension", policy: `reasons contains {"code": "x", "effect": "deny", "message": concat(",", ks)} if {
	ks := [k | some k, v in input.datapoints.ip; v == true]
	count(ks) > 0
	every k in ks { k != "address" }
}`},
		{name: "with", policy: `reasons contains {"code": "x", "effect": "challenge", "message": "m"} if {
	tor with input.datapoints.ip.tor as true
	input.action.type == "signup"
}
tor if input.datapoints.ip.tor == true`},
		{name: "the input as a whole", policy: `reasons contains {"code": "x", "effect": "challenge", "message": sprintf("%d", [count(input)])} if object.get(input, ["action", "type"], "") == "login"`},
		{name: "the clock", policy: `reasons contains {"code": "x", "effect": "challenge", "message": "m"} if {
	input.upstream.status == "ok"
	time.now_ns() > 0
}`},
		{name: "print", policy: `reasons contains {"code": "x", "effect": "challenge", "message": "m"} if {
	print("tor", input.datapoints.ip.tor)
	input.datapoints.ip.tor == true
}`},
		{name: "a helper in another package", policy: `import data.lib

reasons contains {"code": "x", "effect": lib.effect(input.action.type), "message": "m"} if lib.risky`,
			extra: map[string]string{"lib.rego": `package lib

risky if input.datapoints.ip.vpn == true

risky if input.datapoints.bot.result == "bad"

effect("signup") := "deny"

effect(a) := "challenge" if a != "signup"
`}},
		{name: "and, or", policy: `import future.keywords.and
import future.keywords.or

reasons contains {"code": "x", "effect": "challenge", "message": sprintf("on %s", [input.action.type])} if {
	risky
	input.action.type == "signup" or input.action.type == "checkout" and input.action.amount >= 500
}
risky if input.datapoints.ip.vpn == true or input.datapoints.bot.result == "bad"`},
		{name: "the namespace taken", policy: `reasons contains {"code": "x", "effect": "deny", "message": "m"} if input.datapoints.ip.tor == true`,
			extra: map[string]string{"q.rego": "package " + optimizedNamespace + ".x\n\ny := 1\n"}, refused: "taken by package"},
		{name: "helpers that multiply", policy: `reasons contains {"code": "x", "effect": "challenge", "message": "m"} if { a; b; c; d }
a if input.datapoints.ip.tor == true
a if input.datapoints.ip.vpn == true
a if input.datapoints.ip.proxy == true
a if input.datapoints.ip.datacenter == true
b if input.action.type == "login"
b if input.action.type == "signup"
b if input.action.type == "checkout"
b if input.action.type == "browse"
c if input.datapoints.bot.result == "bad"
c if input.datapoints.bot.result == "good"
c if input.datapoints.bot.result == "notDetected"
c if input.datapoints.bot.result == "unknown"
d if input.upstream.status == "ok"
d if input.upstream.status == "not_found"
d if input.upstream.status == "unavailable"
d if input.upstream.status == "rejected"`, refused: "rules for the policy's"},
		{name: "a file at the residual's name", policy: `reasons contains {"code": "x", "effect": "deny", "message": "m"} if input.datapoints.ip.tor == true`,
			extra: map[string]string{optimizedNamespace + "/0.rego": "package other\n\ny := 1\n"}, refused: "a policy file is named"},
		{name: "the decision reads the action", policy: `reasons contains {"code": "x", "effect": "deny", "message": "m"} if input.datapoints.ip.tor == true
decision := "deny" if input.action.type == "payout"`, refused: "decision table"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fsys := fstest.MapFS{"p.rego": {Data: []byte(head + tt.policy + "\n")}}
			for name, content := range tt.extra {
				fsys[name] = &fstest.MapFile{Data: []byte(content)}
			}
			set, err := Compile(context.Background(), fsys)
			if err != nil {
				t.Fatal(err)
			}
			ok, why := set.Optimized()
			switch {
			case tt.refused == "" && !ok:
				t.Errorf("not optimized: %s", why)
			case tt.refused != "" && (ok || !strings.Contains(why, tt.refused)):
				t.Errorf("Optimized() = %v, %q; want refused, %q", ok, why, tt.refused)
			}
			want := optimizedReasonsRef
			if !ok && set.byReasons != nil { // partial evaluation refused, not the decision table
				want = reasonsRef
			}
			if set.stager != nil && !set.stager.target.Equal(want) {
				t.Errorf("staging starts from %v, want %v", set.stager.target, want)
			}
			requireSameAsWritten(t, set, fullInputs(t))
		})
	}
}

// TestOptimizedDataNamespace: a data document at the optimization's
// namespace keeps the rules as written.
func TestOptimizedDataNamespace(t *testing.T) {
	set, err := Compile(context.Background(), fstest.MapFS{
		"p.rego":    {Data: []byte("package verdict\n\ndecision := \"allow\"\n\nreasons := set()\n")},
		"data.json": {Data: []byte(`{"` + optimizedNamespace + `": {"x": 1}}`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	if ok, why := set.Optimized(); ok || !strings.Contains(why, "data document") {
		t.Errorf("Optimized() = %v, %q; want refused for the data document", ok, why)
	}
}

// TestFastPathCheckCatchesAnOptimizationBug: checkFastPaths, which every
// golden case runs, reports full evaluation through optimized reasons that
// differ from the rules as written.
func TestFastPathCheckCatchesAnOptimizationBug(t *testing.T) {
	ctx := context.Background()
	set := shippedSet(t)
	other, err := Compile(ctx, fstest.MapFS{"p.rego": {Data: []byte(`package verdict

decision := "allow"

reasons contains {"code": "x", "effect": "challenge", "message": "m"} if input.action.type == "login"
`)}})
	if err != nil {
		t.Fatal(err)
	}
	set.byReasons.reasons = other.byReasons.reasons // a "bug": answers from another policy
	dp := cachedPayload(t, "demo-human")
	diff, err := set.checkFastPaths(ctx, Request{Action: map[string]any{"type": "login"}}, dp)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(diff, "a Verdict bug") {
		t.Errorf("checkFastPaths = %q, want the difference reported", diff)
	}
}

// BenchmarkReasonsQuery is policy evaluation alone, the reasons query of
// full evaluation on the same input, both ways: the rules as written and
// the optimized ones. Run in one process, alternately per token, the two
// share the machine's drift.
func BenchmarkReasonsQuery(b *testing.B) {
	ctx := context.Background()
	l, err := load(policies.FS())
	if err != nil {
		b.Fatal(err)
	}
	written, err := newQuery(l.compiler, l.store, reasonsQuery)
	if err != nil {
		b.Fatal(err)
	}
	optimized, _, err := optimizeReasons(ctx, l)
	if err != nil {
		b.Fatal(err)
	}
	checkout := map[string]any{"type": "checkout", "amount": json.Number("900"), "currency": "USD"}
	for _, bc := range []struct {
		name, token string
		action      map[string]any
	}{
		{"human-login", "demo-human", map[string]any{"type": "login"}},
		{"vpn-checkout", "demo-vpn", checkout},
		{"bot-signup", "demo-bot", map[string]any{"type": "signup"}},
		{"tor-checkout", "demo-tor", checkout},
		{"tamper-checkout", "demo-tamper", checkout},
	} {
		input, err := buildInput(Request{Action: bc.action, ExternalIDs: map[string]string{"accountId": "1234567890"}}, cachedPayload(b, bc.token), true)
		if err != nil {
			b.Fatal(err)
		}
		for _, q := range []struct {
			name string
			q    *query
		}{{"written", written}, {"optimized", optimized}} {
			b.Run(bc.name+"/way="+q.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, _, err := q.q.eval(ctx, input, nil); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
