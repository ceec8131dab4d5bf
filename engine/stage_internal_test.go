package engine

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"

	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/policies"
)

func shippedSet(t testing.TB) *PolicySet {
	t.Helper()
	set, err := Compile(context.Background(), policies.FS())
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func cachedPayload(t testing.TB, token string) Datapoints {
	t.Helper()
	raw, ok := csidetest.Payload(token)
	if !ok {
		t.Fatalf("no payload for %s", token)
	}
	p, err := ParsePayload(raw)
	if err != nil {
		t.Fatal(err)
	}
	return Datapoints{Status: StatusOK, Origin: OriginCache, Payload: p}
}

// actionMatrix is every shipped rule's action conditions, their edges and
// some shapes a caller may send.
func actionMatrix() []Request {
	var out []Request
	for _, typ := range []string{"login", "signup", "checkout", "password_reset", "browse", "payout", "unknown_action"} {
		out = append(out, Request{Action: map[string]any{"type": typ}})
	}
	for _, amount := range []any{json.Number("0"), json.Number("499.99"), json.Number("500"), json.Number("900.5"), "900", nil} {
		for _, currency := range []any{"EUR", "", 42, nil} {
			a := map[string]any{"type": "checkout", "amount": amount}
			if currency != nil {
				a["currency"] = currency
			}
			out = append(out, Request{Action: a})
		}
	}
	out = append(out,
		Request{Action: map[string]any{"type": "signup", "extra": map[string]any{"nested": []any{json.Number("1")}}}},
		Request{Action: map[string]any{"type": "login"}, ExternalIDs: map[string]string{"accountId": "1234567890", "email": "a@example.com"}},
	)
	return out
}

// TestStagedMatchesFull is the equivalence proof beyond the golden cases:
// every scenario payload of the fake cside, every action of the matrix,
// staged and full evaluation give the same decision and reasons.
func TestStagedMatchesFull(t *testing.T) {
	ctx := context.Background()
	set := shippedSet(t)
	if !set.stager.decisionFixed || !set.stager.decisionPure || set.byReasons == nil {
		t.Error("the shipped decision rule reads only the reasons: want both decision tables on")
	}
	kinds := map[StageKind]int{}
	for _, memo := range []bool{false, true} {
		for _, token := range append(csidetest.Tokens(), csidetest.HumanFamily+"x") {
			if _, ok := csidetest.Payload(token); !ok {
				continue
			}
			dp := cachedPayload(t, token)
			st := set.stage(ctx, dp, memo)
			kinds[st.kind]++
			for pass := range 2 { // the second pass answers from the memos
				for _, req := range actionMatrix() {
					full, err := set.evalQuery(ctx, set.query, StageFull, req, dp, nil) // no shortcut at all
					if err != nil {
						t.Fatalf("%s %v: %v", token, req.Action, err)
					}
					if viaTable, err := set.Eval(ctx, req, dp); err != nil || viaTable.Decision != full.Decision || !slices.Equal(viaTable.Reasons, full.Reasons) {
						t.Errorf("%s %v: through the decision table %s %v (%v), the decision query %s %v", token, req.Action,
							viaTable.Decision, viaTable.Reasons, err, full.Decision, full.Reasons)
					}
					staged, err := st.eval(ctx, req, dp)
					if err != nil {
						t.Fatalf("%s %v: staged (%s): %v", token, req.Action, st.kind, err)
					}
					kinds[staged.Stage]++
					if staged.Decision != full.Decision || !slices.Equal(staged.Reasons, full.Reasons) {
						t.Errorf("%s %v (memo %v, pass %d): staged (%s) %s %v, full %s %v", token, req.Action, memo, pass, staged.Stage,
							staged.Decision, staged.Reasons, full.Decision, full.Reasons)
					}
				}
			}
		}
	}
	if kinds[StageMemo] == 0 {
		t.Errorf("stage kinds = %v, want some answers from the decision memo", kinds)
	}
	if kinds[StageConstant] == 0 || kinds[StageResidual] == 0 {
		t.Errorf("stage kinds over the scenarios = %v, want both constant and residual payloads", kinds)
	}
}

func TestStageKinds(t *testing.T) {
	ctx := context.Background()
	set := shippedSet(t)
	for token, want := range map[string]StageKind{
		"demo-human":  StageConstant, // no rule can fire, whatever the action
		"demo-bot":    StageConstant, // bad bot: denied on every action
		"demo-tor":    StageResidual, // the effect depends on the action
		"demo-vpn":    StageResidual, // the checkout amount matters
		"demo-tamper": StageResidual,
	} {
		if st := set.stage(ctx, cachedPayload(t, token), false); st.kind != want {
			t.Errorf("%s staged as %s (%s), want %s", token, st.kind, st.why, want)
		}
	}
	stale := cachedPayload(t, "demo-human")
	stale.Origin = OriginStale
	if st := set.stage(ctx, stale, false); st.kind != StageFull {
		t.Errorf("a stale payload staged as %s, want full", st.kind)
	}
	if got := set.Staging(ctx, Datapoints{Status: StatusNotFound, Origin: OriginUpstream}); got.Kind != StageFull || got.Why == "" {
		t.Errorf("Staging without a payload = %+v, want full, with why", got)
	}
	if got := set.Staging(ctx, stale); got.Kind != StageConstant {
		t.Errorf("Staging reports as served from the cache: got %+v for a payload last served stale, want constant", got)
	}
}

// TestReach checks which rules make a staged answer vary per call.
func TestReach(t *testing.T) {
	ctx := context.Background()
	const head = "package verdict\n\ndefault decision := \"allow\"\n\n"
	tests := []struct {
		name           string
		policy         string
		want           StageKind
		decisionVaries bool
		// readsPayload: the residual reads input.datapoints or
		// input.fingerprint_id, so its evaluation needs the payload's
		// parsed form.
		readsPayload bool
	}{
		{"datapoints only", `reasons contains {"code": "x", "effect": "deny", "message": "m"} if input.datapoints.bot.result == "notDetected"`, StageConstant, false, false},
		{"decision reads the action", `decision := "deny" if input.action.type == "payout"
reasons := set()`, StageResidual, true, false},
		{"decision reads all of the input", `decision := "deny" if count(input) > 99
reasons := set()`, StageResidual, true, true},
		{"decision reads the upstream object", `decision := "deny" if input.upstream.age_seconds > 5
reasons := set()`, StageResidual, true, false},
		{"decision reads the upstream status", `decision := "deny" if input.upstream.status == "gone"
reasons := set()`, StageConstant, false, false},
		{"decision reads the clock", `decision := "deny" if time.now_ns() < 0
reasons := set()`, StageResidual, true, false},
		{"decision reads the action through a function", `decision := effect(1)
effect(_) := "deny" if input.action.type == "payout"
reasons := set()`, StageResidual, true, false},
		{"dynamic input ref", `k := "action"
decision := "deny" if input[k].type == "payout"
reasons := set()`, StageResidual, true, true}, // input[k]: any part of the input, as far as reach knows
		{"reason reads the action", `reasons contains {"code": "x", "effect": "deny", "message": input.action.type} if input.datapoints.bot.result == "notDetected"`, StageResidual, false, false},
		{"decision reads the fingerprint and the action", `decision := "deny" if {
	input.fingerprint_id != null
	input.action.type == "payout"
}
reasons := set()`, StageResidual, true, true},
		{"reason prints all of the input", `reasons contains {"code": "x", "effect": "deny", "message": sprintf("%d", [count(input)])} if input.action.type == "payout"`, StageResidual, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := Compile(ctx, fstest.MapFS{"p.rego": {Data: []byte(head + tt.policy + "\n")}})
			if err != nil {
				t.Fatal(err)
			}
			dp := cachedPayload(t, "demo-human")
			st := set.stage(ctx, dp, false)
			// The decision memo is on when decision, the reasons given, reads
			// nothing that varies.
			if fixed := !tt.decisionVaries; set.stager.decisionFixed != fixed {
				t.Errorf("decisionFixed = %v, want %v", set.stager.decisionFixed, fixed)
			}
			// The set-wide decision table needs a decision that reads no
			// input at all: the upstream status is fixed per payload, not
			// per policy set.
			pure := tt.name == "datapoints only" || strings.HasPrefix(tt.name, "reason ")
			if set.stager.decisionPure != pure || (set.byReasons != nil) != pure {
				t.Errorf("decisionPure = %v, table %v; want %v", set.stager.decisionPure, set.byReasons != nil, pure)
			}
			if st.kind != tt.want {
				t.Errorf("staged as %s (%s), want %s", st.kind, st.why, tt.want)
			}
			if st.kind == StageResidual {
				if free := !tt.readsPayload; st.residual.full.payloadFree != free || st.residual.reasons.payloadFree != free {
					t.Errorf("residual payloadFree = %v (reasons %v), want %v", st.residual.full.payloadFree, st.residual.reasons.payloadFree, free)
				}
			}
			for _, req := range actionMatrix() {
				if diff, err := set.checkFastPaths(ctx, req, dp); err != nil || diff != "" {
					t.Errorf("%v: %v %s", req.Action, err, diff)
				}
			}
		})
	}
}

// TestEvalStagedLifecycle follows one cached payload: full evaluation for
// its first uses, staged after, restaged under a new policy set, never
// staged when served stale.
func TestEvalStagedLifecycle(t *testing.T) {
	ctx := context.Background()
	set, other := shippedSet(t), shippedSet(t)
	dp := cachedPayload(t, "demo-tor")
	req := Request{Action: map[string]any{"type": "signup"}}
	var kinds []StageKind
	for range StageAfterUses + 2 {
		d, err := set.evalStaged(ctx, req, dp, false)
		if err != nil {
			t.Fatal(err)
		}
		if d.Decision != Deny {
			t.Fatalf("decision = %s, want deny", d.Decision)
		}
		kinds = append(kinds, d.Stage)
	}
	want := []StageKind{StageFull, StageResidual, StageResidual, StageResidual}
	if !slices.Equal(kinds, want) {
		t.Errorf("stages = %v, want %v", kinds, want)
	}
	if d, _ := other.evalStaged(ctx, req, dp, false); d.Stage != StageResidual {
		t.Errorf("under a new policy set: stage %s, want an immediate restage", d.Stage)
	}
	if st := dp.Payload.stage.cur.Load(); st.set != other {
		t.Error("the payload did not keep the new set's staging")
	}
	stale := dp
	stale.Origin = OriginStale
	if d, _ := set.evalStaged(ctx, req, stale, false); d.Stage != StageFull || !d.Degraded {
		t.Errorf("stale: stage %s degraded %v, want full and degraded", d.Stage, d.Degraded)
	}
}

// BenchmarkStage is staging one payload, from the optimized reasons (as
// served) and, alternately in the same process, from the rules as written.
func BenchmarkStage(b *testing.B) {
	ctx := context.Background()
	set := shippedSet(b)
	l, err := load(policies.FS())
	if err != nil {
		b.Fatal(err)
	}
	written, err := newStager(ctx, l) // l has no optimized reasons
	if err != nil {
		b.Fatal(err)
	}
	for _, token := range []string{"demo-human", "demo-vpn"} {
		for _, st := range []struct {
			name string
			s    *stager
		}{{"optimized", set.stager}, {"written", written}} {
			b.Run(token+"/from="+st.name, func(b *testing.B) {
				dp := cachedPayload(b, token)
				b.ReportAllocs()
				for b.Loop() {
					st.s.stage(ctx, set, dp, false)
				}
			})
		}
	}
}

// BenchmarkEvalStaged is BenchmarkEval on the serving path: the payload is
// staged first, as it is from its StageAfterUses-th decision on.
func BenchmarkEvalStaged(b *testing.B) {
	ctx := context.Background()
	set := shippedSet(b)
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
		for _, memo := range []bool{false, true} {
			name := bc.name
			if memo {
				name += "/memo"
			}
			b.Run(name, func(b *testing.B) {
				dp := cachedPayload(b, bc.token)
				req := Request{Token: bc.token, Action: bc.action, ExternalIDs: map[string]string{"accountId": "1234567890"}}
				for range StageAfterUses {
					if _, err := set.evalStaged(ctx, req, dp, memo); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportAllocs()
				for b.Loop() {
					if _, err := set.evalStaged(ctx, req, dp, memo); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}

// TestEvalStagedConcurrent stages many payloads from many goroutines at
// once (run it with -race): the residual table and the shared compiler.
func TestEvalStagedConcurrent(t *testing.T) {
	ctx := context.Background()
	set := shippedSet(t)
	tokens := []string{"demo-human", "demo-vpn", "demo-bot", "demo-tor", "demo-tamper"}
	want := map[string]Decision{}
	req := Request{Action: map[string]any{"type": "checkout", "amount": json.Number("900")}}
	for _, tok := range tokens {
		d, err := set.Eval(ctx, req, cachedPayload(t, tok))
		if err != nil {
			t.Fatal(err)
		}
		want[tok] = d
	}
	var wg sync.WaitGroup
	errs := make(chan error, 16*len(tokens))
	shared := map[string]Datapoints{}
	for _, tok := range tokens {
		shared[tok] = cachedPayload(t, tok)
	}
	for i := range 16 {
		for _, tok := range tokens {
			dp := shared[tok] // half the goroutines share a payload per token (staging and memos contended), half have their own
			if i%2 == 0 {
				dp = cachedPayload(t, tok)
			}
			wg.Go(func() {
				for range 20 {
					d, err := set.evalStaged(ctx, req, dp, true)
					if err == nil && (d.Decision != want[tok].Decision || !slices.Equal(d.Reasons, want[tok].Reasons)) {
						err = fmt.Errorf("%s: staged (%s) %s %v, full %s %v", tok, d.Stage, d.Decision, d.Reasons, want[tok].Decision, want[tok].Reasons)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

func TestDecisionMemo(t *testing.T) {
	ctx := context.Background()
	set := shippedSet(t)
	for token, want := range map[string]string{
		"demo-tor":    "input.action.type",
		"demo-tamper": "input.action.type",
		"demo-vpn":    "input.action.amount input.action.currency input.action.type",
	} {
		st := set.stage(ctx, cachedPayload(t, token), true)
		var got []string
		for _, r := range st.residual.reads {
			got = append(got, r.String())
		}
		if strings.Join(got, " ") != want {
			t.Errorf("%s: the residual reads %v, want %s", token, got, want)
		}
	}

	dp := cachedPayload(t, "demo-vpn")
	st := set.stage(ctx, dp, true)
	checkout := func(amount string) Request {
		return Request{Action: map[string]any{"type": "checkout", "amount": json.Number(amount), "currency": "EUR"}}
	}
	var stages []StageKind
	for _, amount := range []string{"900", "900", "901", "900", "900.0"} {
		d, err := st.eval(ctx, checkout(amount), dp)
		if err != nil {
			t.Fatal(err)
		}
		stages = append(stages, d.Stage)
	}
	if want := []StageKind{StageResidual, StageMemo, StageResidual, StageMemo, StageResidual}; !slices.Equal(stages, want) {
		t.Errorf("stages = %v, want %v (a new amount, even 900.0 for 900, is a new key)", stages, want)
	}
	for i := range 2 * maxMemoPerPayload {
		if _, err := st.eval(ctx, checkout(fmt.Sprint(1000+i)), dp); err != nil {
			t.Fatal(err)
		}
	}
	if len(st.memo) != maxMemoPerPayload {
		t.Errorf("memo holds %d answers, want the bound %d", len(st.memo), maxMemoPerPayload)
	}

	clock, err := Compile(ctx, fstest.MapFS{"p.rego": {Data: []byte(`package verdict

default decision := "allow"

reasons contains {"code": "late", "effect": "challenge", "message": input.action.type} if time.now_ns() > 0
`)}})
	if err != nil {
		t.Fatal(err)
	}
	if st := clock.stage(ctx, dp, true); st.kind != StageResidual || st.memo != nil {
		t.Errorf("a residual reading the clock: %s with memo %v, want residual without a memo", st.kind, st.memo != nil)
	}
}

// TestValueAt reads the unknown parts of the input from a request as
// buildInput would place them, undefined where Rego would find nothing.
func TestValueAt(t *testing.T) {
	req := Request{
		Action:      map[string]any{"type": "checkout", "amount": json.Number("900"), "items": []any{"a", map[string]any{"sku": "b"}}},
		ExternalIDs: map[string]string{"accountId": "42"},
	}
	dp := cachedPayload(t, "demo-human")
	dp.Age = 90 * time.Second
	tests := []struct {
		ref     string
		want    any
		defined bool
	}{
		{"input.action.type", "checkout", true},
		{"input.action.amount", json.Number("900"), true},
		{"input.action.items[1].sku", "b", true},
		{"input.action.items[2]", nil, false},
		{"input.action.items.sku", nil, false},
		{"input.action[0]", nil, false},
		{"input.action.missing", nil, false},
		{"input.action.type.deeper", nil, false},
		{"input.external_ids.accountId", "42", true},
		{"input.external_ids.email", nil, false},
		{"input.upstream.age_seconds", 90, true},
	}
	for _, tt := range tests {
		got, ok := valueAt(ast.MustParseRef(tt.ref), req, dp)
		if ok != tt.defined || fmt.Sprint(got) != fmt.Sprint(tt.want) {
			t.Errorf("valueAt(%s) = %v, %v; want %v, %v", tt.ref, got, ok, tt.want, tt.defined)
		}
	}
	if _, ok := valueAt(ast.MustParseRef("input.upstream.age_seconds"), req, Datapoints{Status: StatusNotFound}); ok {
		t.Error("age_seconds is defined without a payload")
	}
}

// TestUpstreamOf: a payload's decisions share input.upstream only while
// its status, origin and age in seconds are the same.
func TestUpstreamOf(t *testing.T) {
	dp := cachedPayload(t, "demo-vpn")
	steps := []struct {
		status Status
		origin Origin
		age    time.Duration
		want   string
	}{
		{StatusOK, OriginUpstream, 0, `{"age_seconds": 0, "source": "upstream", "status": "ok"}`},
		{StatusOK, OriginCache, 1500 * time.Millisecond, `{"age_seconds": 1, "source": "cache", "status": "ok"}`},
		{StatusOK, OriginCache, 1900 * time.Millisecond, `{"age_seconds": 1, "source": "cache", "status": "ok"}`},
		{StatusOK, OriginCache, 2 * time.Second, `{"age_seconds": 2, "source": "cache", "status": "ok"}`},
		{StatusOK, OriginStale, 2 * time.Second, `{"age_seconds": 2, "source": "stale", "status": "ok"}`},
		{StatusUnavailable, OriginStale, 2 * time.Second, `{"age_seconds": 2, "source": "stale", "status": "unavailable"}`},
	}
	var prev *ast.Term
	for i, s := range steps {
		dp.Status, dp.Origin, dp.Age = s.status, s.origin, s.age
		got := upstreamOf(dp)
		if got.String() != s.want {
			t.Errorf("step %d: input.upstream = %v, want %s", i, got, s.want)
		}
		if shared := got == prev; shared != (i == 2) {
			t.Errorf("step %d: shared the previous term: %v, want %v", i, shared, i == 2)
		}
		prev = got
	}
	if got := upstreamOf(Datapoints{Status: StatusNotFound, Origin: OriginUpstream}); got.String() != `{"source": "upstream", "status": "not_found"}` {
		t.Errorf("without a payload: input.upstream = %v", got)
	}
	// Cached tokens of one age share one term; past maxSharedAge each
	// decision builds its own.
	for _, age := range []time.Duration{3 * time.Second, (maxSharedAge - 1) * time.Second, maxSharedAge * time.Second} {
		a, b := cachedPayload(t, "demo-vpn"), cachedPayload(t, "demo-bot")
		a.Age, b.Age = age, age
		ta, tb := upstreamOf(a), upstreamOf(b)
		want := fmt.Sprintf(`{"age_seconds": %d, "source": "cache", "status": "ok"}`, int(age/time.Second))
		if ta.String() != want || tb.String() != want {
			t.Errorf("age %v: input.upstream = %v and %v, want %s", age, ta, tb, want)
		}
		if shared := ta == tb; shared != (age < maxSharedAge*time.Second) {
			t.Errorf("age %v: two tokens share a term: %v", age, shared)
		}
	}
}

func TestExternalIDsOf(t *testing.T) {
	defer debug.SetGCPercent(debug.SetGCPercent(-1)) // as in TestUpstreamOf
	p := cachedPayload(t, "demo-vpn").Payload
	ids := map[string]string{"accountId": "1234567890"}
	first := externalIDsOf(ids, p)
	if first.String() != `{"accountId": "1234567890"}` {
		t.Fatalf("input.external_ids = %v", first)
	}
	if again := externalIDsOf(map[string]string{"accountId": "1234567890"}, p); again != first {
		t.Error("the same IDs again: a new term, want the payload's")
	}
	ids["accountId"] = "changed by the caller after the decision"
	if got := externalIDsOf(map[string]string{"accountId": "1234567890"}, p); got != first || got.String() != `{"accountId": "1234567890"}` {
		t.Errorf("after the caller changed its map: %v (shared %v), want the first term", got, got == first)
	}
	other := externalIDsOf(map[string]string{"accountId": "1234567890", "email": "a@example.com"}, p)
	if other == first || other.String() != `{"accountId": "1234567890", "email": "a@example.com"}` {
		t.Errorf("other IDs: %v (shared %v)", other, other == first)
	}
	if got := externalIDsOf(nil, p); got != emptyObject {
		t.Errorf("no IDs: %v, want the shared empty object", got)
	}
	if a, b := externalIDsOf(ids, nil), externalIDsOf(ids, nil); a == b || a.String() != b.String() {
		t.Errorf("without a payload: %v and %v, want equal terms, not shared", a, b)
	}
}

// TestEvalCancel: topdown is told to stop once the context ends or, within
// deadlineEvery questions, once the evaluation deadline has passed; never
// without either.
func TestEvalCancel(t *testing.T) {
	ask := func(c *evalCancel) int { // questions until Cancelled, 0 if never in 1000
		for i := 1; i <= 1000; i++ {
			if c.Cancelled() {
				return i
			}
		}
		return 0
	}
	done := make(chan struct{})
	if n := ask(&evalCancel{done: done}); n != 0 {
		t.Errorf("no deadline, context live: cancelled after %d questions", n)
	}
	if n := ask(&evalCancel{done: done, deadline: time.Now().Add(time.Hour)}); n != 0 {
		t.Errorf("deadline an hour away: cancelled after %d questions", n)
	}
	past := &evalCancel{done: done, deadline: time.Now().Add(-time.Millisecond)}
	if n := ask(past); n == 0 || n > deadlineEvery || !past.expired {
		t.Errorf("deadline passed: cancelled after %d questions (expired %v), want at most %d", n, past.expired, deadlineEvery)
	}
	close(done)
	if n := ask(&evalCancel{done: done}); n != 1 {
		t.Errorf("context ended: cancelled after %d questions, want 1", n)
	}
}

// TestStagingIgnoresTheEvalDeadline: staging runs on a decision's path but
// is bounded by stageTimeout, not by the decision's evaluation deadline.
func TestStagingIgnoresTheEvalDeadline(t *testing.T) {
	set := shippedSet(t)
	ctx := withEvalDeadline(context.Background(), time.Now().Add(-time.Second))
	for _, token := range []string{"demo-bot", "demo-vpn"} {
		if st := set.stage(ctx, cachedPayload(t, token), false); st.kind == StageFull {
			t.Errorf("%s: staged as %s (%s) under a passed evaluation deadline", token, st.kind, st.why)
		}
	}
}

// TestResidualQueryFoldsConstantReasons: a residual query that only binds a
// constant reason becomes a member of a set literal; anything else stays a
// comprehension, evaluated per call.
func TestResidualQueryFoldsConstantReasons(t *testing.T) {
	tests := []struct {
		queries []string
		want    string // the union bound to reasons
	}{
		{[]string{`__verdict_reason__ = {"code": "a"}`, `__verdict_reason__ = {"code": "b"}`},
			`{{"code": "a"}, {"code": "b"}}`},
		{[]string{`__verdict_reason__ = {"code": "a"}`, `input.action.type = "login"; __verdict_reason__ = {"code": "b"}`},
			`or({{"code": "a"}}, {__verdict_reason__ | input.action.type = "login"; __verdict_reason__ = {"code": "b"}})`},
		{[]string{`__verdict_reason__ = {"code": sprintf("%s", ["a"])}`},
			`{__verdict_reason__ | __verdict_reason__ = {"code": sprintf("%s", ["a"])}}`},
		{[]string{`__verdict_reason__ = {"m": input.action.type}`, `__verdict_reason__ = {"code": "a"} with input.x as 1`},
			`or({__verdict_reason__ | __verdict_reason__ = {"m": input.action.type}}, {__verdict_reason__ | __verdict_reason__ = {"code": "a"} with input.x as 1})`},
		{nil, `set()`},
	}
	for _, tt := range tests {
		queries := make([]ast.Body, len(tt.queries))
		for i, q := range tt.queries {
			queries[i] = ast.MustParseBody(q)
		}
		body := residualQuery(queries)
		want := ast.MustParseBody("x = " + tt.want)[0].Operand(1)
		if got := body[0].Operand(1); !got.Equal(want) {
			t.Errorf("residualQuery(%q) binds reasons to %v, want %v", tt.queries, got, want)
		}
	}
}

// TestPayloadTreeIsWeak: a cached payload does not keep its parsed tree
// alive (a full cache would be a heap of small objects for every
// collection to mark); full evaluation parses it again when it is gone, and
// staged residuals never need it.
func TestPayloadTreeIsWeak(t *testing.T) {
	ctx := context.Background()
	set := shippedSet(t)
	dp := cachedPayload(t, "demo-vpn")
	want := func() string {
		parsed, err := dp.Payload.parsed()
		if err != nil {
			t.Fatal(err)
		}
		return parsed.tree.String() + " " + parsed.fingerprint.String()
	}()
	collected := func() bool {
		for range 5 { // topdown's pools may hold the last input for a cycle or two
			runtime.GC()
			if dp.Payload.tree.Load() == nil {
				return true
			}
		}
		return false
	}
	req := Request{Action: map[string]any{"type": "checkout", "amount": json.Number("900"), "currency": "USD"}}
	full, err := set.Eval(ctx, req, dp)
	if err != nil {
		t.Fatal(err)
	}
	if !collected() {
		t.Fatal("the payload's parsed tree outlived five collections after a full evaluation: the payload holds it")
	}
	again, err := set.Eval(ctx, req, dp)
	if err != nil || again.Decision != full.Decision || !slices.Equal(again.Reasons, full.Reasons) {
		t.Fatalf("full evaluation after the tree was collected = %s %v (%v), want %s %v", again.Decision, again.Reasons, err, full.Decision, full.Reasons)
	}
	if parsed := dp.Payload.tree.Load(); parsed == nil || parsed.tree.String()+" "+parsed.fingerprint.String() != want {
		t.Errorf("the payload parsed again = %v, want %s", parsed, want)
	}

	st := set.stage(ctx, dp, false)
	if st.kind != StageResidual {
		t.Fatalf("demo-vpn staged as %s (%s), want residual", st.kind, st.why)
	}
	if !collected() {
		t.Fatal("the payload's parsed tree outlived five collections after staging")
	}
	staged, err := st.eval(ctx, req, dp)
	if err != nil || staged.Decision != full.Decision || !slices.Equal(staged.Reasons, full.Reasons) {
		t.Fatalf("staged = %s %v (%v), want %s %v", staged.Decision, staged.Reasons, err, full.Decision, full.Reasons)
	}
	if dp.Payload.tree.Load() != nil {
		t.Error("a staged residual's evaluation parsed the payload again: residuals read no datapoints")
	}
}
