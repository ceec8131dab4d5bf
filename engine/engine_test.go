package engine_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/verdict-engine/verdict/cache"
	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
	"github.com/verdict-engine/verdict/policies"
)

// minimal is a valid policy set: allow, no reasons.
const minimal = `package verdict

default decision := "allow"

reasons := set()
`

// files is a policy directory of the named files' contents.
var files = engine.PolicyFS

func TestCompileRejectsBadPolicySets(t *testing.T) {
	tests := []struct {
		name    string
		fs      fstest.MapFS
		wantMsg string
	}{
		{"no rego files", files("data.json", `{}`), "no .rego files"},
		{"syntax error", files("p.rego", "package verdict\n\ndecision := \n"), "p.rego:"},
		{"v0 syntax", files("p.rego", "package verdict\n\ndecision = \"allow\" { true }\nreasons := set()\n"), "p.rego:"},
		{"no decision", files("p.rego", "package verdict\n\nreasons := set()\n"), "data.verdict.decision"},
		{"no reasons", files("p.rego", "package verdict\n\ndecision := \"allow\"\n"), "data.verdict.reasons"},
		{"neither rule", files("p.rego", "package other\n\nx := 1\n"), "data.verdict.decision and data.verdict.reasons"},
		{"strict: unused variable", files("p.rego", minimal+"\nf if { x := 1 }\n"), "p.rego:"},
		{"compile error", files("p.rego", minimal+"\ny := undefined_function(1)\n"), "undefined function"},
		{"invalid data json", files("p.rego", minimal, "data.json", `{"a": `), "data.json"},
		{"invalid data yaml", files("p.rego", minimal, "data.yaml", "a: [1,\n"), "data.yaml"},
		{"error in a test file", files("p.rego", minimal, "p_test.rego", "package verdict_test\n\ntest_x if {\n"), "p_test.rego:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := engine.Compile(context.Background(), tt.fs)
			if !errors.Is(err, engine.ErrPolicyLoad) {
				t.Fatalf("Compile() error = %v, want ErrPolicyLoad", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("Compile() error = %q, want it to mention %q", err, tt.wantMsg)
			}
		})
	}
}

func TestRevision(t *testing.T) {
	ctx := context.Background()
	rev := func(fs fstest.MapFS) string {
		t.Helper()
		set, err := engine.Compile(ctx, fs)
		if err != nil {
			t.Fatalf("Compile: %v", err)
		}
		return set.Revision()
	}
	base := rev(files("p.rego", minimal, "data.json", `{"x": 1}`))
	if len(base) != 12 || strings.Trim(base, "0123456789abcdef") != "" {
		t.Fatalf("revision %q is not 12 hex digits", base)
	}
	tests := []struct {
		name string
		fs   fstest.MapFS
		same bool
	}{
		{"same files", files("p.rego", minimal, "data.json", `{"x": 1}`), true},
		{"non-policy files ignored", files("p.rego", minimal, "data.json", `{"x": 1}`, "README.md", "hi", "testdata/c.yaml", "cases: []"), true},
		{"data changed", files("p.rego", minimal, "data.json", `{"x": 2}`), false},
		{"rule changed", files("p.rego", minimal+"\n# comment\n", "data.json", `{"x": 1}`), false},
		{"file renamed", files("q.rego", minimal, "data.json", `{"x": 1}`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := rev(tt.fs); (got == base) != tt.same {
				t.Errorf("revision = %s, base %s, want same=%v", got, base, tt.same)
			}
		})
	}
}

func TestDataMountedLikeOPA(t *testing.T) {
	// data.json at the root lands at data.*, sub/data.yaml at data.sub.*,
	// exactly as `opa run DIR` mounts them.
	fs := files(
		"p.rego", `package verdict

default decision := "allow"

decision := "deny" if data.limits.max < 10 * data.sub.factor

reasons := {{"code": "c", "effect": "deny", "message": sprintf("%v", [data.sub.factor])}} if decision == "deny"
else := set()
`,
		"data.json", `{"limits": {"max": 5}}`,
		"sub/data.yaml", "factor: 1\n",
	)
	set, err := engine.Compile(context.Background(), fs)
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	d, err := set.Eval(context.Background(), engine.Request{Action: map[string]any{"type": "login"}}, engine.Datapoints{Status: engine.StatusNotFound})
	if err != nil {
		t.Fatalf("Eval: %v", err)
	}
	if d.Decision != "deny" || len(d.Reasons) != 1 || d.Reasons[0].Message != "1" {
		t.Errorf("Eval() = %+v, want deny with message 1", d)
	}
}

func TestEvalRejectsBrokenOutput(t *testing.T) {
	tests := []struct {
		name, policy, wantMsg string
	}{
		{"decision not an effect", `decision := "maybe"
reasons := set()`, "decision must be one of"},
		{"decision not a string", `decision := 1
reasons := set()`, "decision must be one of"},
		{"decision undefined", `decision := "allow" if input.action.type == "never"
reasons := set()`, "undefined"},
		{"reasons not a set", `decision := "allow"
reasons := "none"`, "reasons must be a set"},
		{"reason not an object", `decision := "allow"
reasons := {"x"}`, "reasons[0] must be an object"},
		{"reason without message", `decision := "deny"
reasons := {{"code": "c", "effect": "deny"}}`, "reasons[0].message"},
		{"reason with numeric code", `decision := "deny"
reasons := {{"code": 1, "effect": "deny", "message": "m"}}`, "reasons[0].code"},
		{"reason with unknown effect", `decision := "deny"
reasons := {{"code": "c", "effect": "block", "message": "m"}}`, "effect must be one of"},
		{"conflicting decisions", `decision := "allow" if input.action.type == "login"
decision := "deny" if input.action.type == "login"
reasons := set()`, "conflict"},
		{"builtin error", `decision := "allow" if to_number("x") > 1
reasons := set()`, "undefined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := engine.Compile(context.Background(), files("p.rego", "package verdict\n\n"+tt.policy+"\n"))
			if err != nil {
				t.Fatalf("Compile: %v", err)
			}
			_, err = set.Eval(context.Background(), engine.Request{Action: map[string]any{"type": "login"}}, engine.Datapoints{Status: engine.StatusOK})
			if !errors.Is(err, engine.ErrPolicy) {
				t.Fatalf("Eval() error = %v, want ErrPolicy", err)
			}
			if !strings.Contains(err.Error(), tt.wantMsg) || !strings.Contains(err.Error(), set.Revision()) {
				t.Errorf("Eval() error = %q, want it to mention %q and the revision", err, tt.wantMsg)
			}
		})
	}
}

// echo is a policy that returns its whole input as the message of one
// reason, so tests see exactly what policies see.
const echo = `package verdict

decision := "allow"

reasons := {{"code": "echo", "effect": "allow", "message": json.marshal(input)}}
`

func TestPolicyInput(t *testing.T) {
	set, err := engine.Compile(context.Background(), files("p.rego", echo))
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	payload, err := engine.ParsePayload([]byte(`{"identification": {"fingerprintId": "fp_1"}, "ip": {"vpn": true}}`))
	if err != nil {
		t.Fatalf("ParsePayload: %v", err)
	}
	action := map[string]any{"type": "checkout", "amount": json.Number("129.99"), "big": json.Number("123456789012345678901234567890"), "items": []any{"a"}}
	tests := []struct {
		name string
		req  engine.Request
		dp   engine.Datapoints
		want string
	}{
		{
			name: "with datapoints",
			req:  engine.Request{Action: action, ExternalIDs: map[string]string{"email": "a@b.c"}},
			dp:   engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginCache, Payload: payload},
			want: `{"action":{"amount":129.99,"big":123456789012345678901234567890,"items":["a"],"type":"checkout"},"datapoints":{"identification":{"fingerprintId":"fp_1"},"ip":{"vpn":true}},"external_ids":{"email":"a@b.c"},"fingerprint_id":"fp_1","upstream":{"age_seconds":0,"source":"cache","status":"ok"}}`,
		},
		{
			name: "stale datapoints carry their age",
			req:  engine.Request{Action: map[string]any{"type": "login"}},
			dp:   engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginStale, Payload: payload, Age: 754*time.Second + 900*time.Millisecond},
			want: `{"action":{"type":"login"},"datapoints":{"identification":{"fingerprintId":"fp_1"},"ip":{"vpn":true}},"external_ids":{},"fingerprint_id":"fp_1","upstream":{"age_seconds":754,"source":"stale","status":"ok"}}`,
		},
		{
			name: "without datapoints",
			req:  engine.Request{Action: map[string]any{"type": "login"}},
			dp:   engine.Datapoints{Status: engine.StatusUnavailable, Origin: engine.OriginNone, Err: errors.New("boom")},
			want: `{"action":{"type":"login"},"datapoints":null,"external_ids":{},"fingerprint_id":null,"upstream":{"source":"none","status":"unavailable"}}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := set.Eval(context.Background(), tt.req, tt.dp)
			if err != nil {
				t.Fatalf("Eval: %v", err)
			}
			if got := d.Reasons[0].Message; got != tt.want {
				t.Errorf("input =\n%s\nwant\n%s", got, tt.want)
			}
			wantDegraded := tt.dp.Status == engine.StatusUnavailable || tt.dp.Origin == engine.OriginStale
			if d.Degraded != wantDegraded || d.Status != tt.dp.Status || d.Origin != tt.dp.Origin {
				t.Errorf("Eval() = %+v, want degraded=%v status=%s origin=%s", d, wantDegraded, tt.dp.Status, tt.dp.Origin)
			}
		})
	}
}

func TestReasonsSortedByCode(t *testing.T) {
	set, err := engine.Compile(context.Background(), files("p.rego", `package verdict

decision := "deny"

reasons contains {"code": c, "effect": "deny", "message": "m"} if some c in ["zeta", "alpha", "mid"]
`))
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	d, err := set.Eval(context.Background(), engine.Request{Action: map[string]any{"type": "x"}}, engine.Datapoints{Status: engine.StatusOK})
	if err != nil {
		t.Fatalf("Eval: %v", err)
	}
	var codes []string
	for _, r := range d.Reasons {
		codes = append(codes, r.Code)
	}
	if got := strings.Join(codes, ","); got != "alpha,mid,zeta" {
		t.Errorf("reason codes = %s, want alpha,mid,zeta", got)
	}
}

func TestParsePayload(t *testing.T) {
	tests := []struct {
		raw    string
		wantID string
		ok     bool
	}{
		{`{"identification": {"fingerprintId": "fp_1"}}`, "fp_1", true},
		{`{"identification": {"fingerprintId": ""}}`, "", true},
		{`{"identification": {"fingerprintId": 7}}`, "", true},
		{`{"identification": "fp_1"}`, "", true},
		{`{}`, "", true},
		{`[]`, "", false},
		{`"x"`, "", false},
		{`{"a": `, "", false},
		{``, "", false},
	}
	for _, tt := range tests {
		p, err := engine.ParsePayload([]byte(tt.raw))
		if (err == nil) != tt.ok {
			t.Errorf("ParsePayload(%s) error = %v, want ok=%v", tt.raw, err, tt.ok)
			continue
		}
		if err != nil {
			if !errors.Is(err, engine.ErrInvalidPayload) {
				t.Errorf("ParsePayload(%s) error = %v, want ErrInvalidPayload", tt.raw, err)
			}
			continue
		}
		if p.FingerprintID() != tt.wantID {
			t.Errorf("ParsePayload(%s).FingerprintID() = %q, want %q", tt.raw, p.FingerprintID(), tt.wantID)
		}
		if string(p.Raw()) != tt.raw {
			t.Errorf("ParsePayload(%s).Raw() = %s, want the raw bytes", tt.raw, p.Raw())
		}
	}

	// The payload keeps a copy: the caller's buffer is its own again, and
	// appending to Raw() does not reach the fingerprint ID stored after it.
	raw := []byte(`{"identification": {"fingerprintId": "fp_1"}}`)
	p, err := engine.ParsePayload(raw)
	if err != nil {
		t.Fatal(err)
	}
	copy(raw, `{"identification": {"fingerprintId": "XX_X"}}`)
	_ = append(p.Raw(), "trailing bytes"...)
	if got := string(p.Raw()); got != `{"identification": {"fingerprintId": "fp_1"}}` || p.FingerprintID() != "fp_1" {
		t.Errorf("after the caller reused its buffer: Raw() = %s, FingerprintID() = %q", got, p.FingerprintID())
	}
}

func TestLoadCasesRejectsBadFiles(t *testing.T) {
	tests := []struct{ name, yaml, wantMsg string }{
		{"unknown field", "cases:\n- name: a\n  upstream: not_found\n  action: {type: login}\n  want: {decision: allow}\n  wnat: 1\n", "unknown field"},
		{"no source", "cases:\n- name: a\n  action: {type: login}\n  want: {decision: allow}\n", "exactly one of"},
		{"two sources", "cases:\n- name: a\n  scenario: demo-human\n  upstream: not_found\n  action: {type: login}\n  want: {decision: allow}\n", "exactly one of"},
		{"bad upstream", "cases:\n- name: a\n  upstream: ok\n  action: {type: login}\n  want: {decision: allow}\n", "upstream"},
		{"bad decision", "cases:\n- name: a\n  upstream: not_found\n  action: {type: login}\n  want: {decision: block}\n", "want.decision"},
		{"no action type", "cases:\n- name: a\n  upstream: not_found\n  action: {amount: 1}\n  want: {decision: allow}\n", "action.type"},
		{"duplicate name", "cases:\n- name: a\n  upstream: not_found\n  action: {type: login}\n  want: {decision: allow}\n- name: a\n  upstream: not_found\n  action: {type: login}\n  want: {decision: allow}\n", "used twice"},
		{"stale without datapoints", "cases:\n- name: a\n  upstream: unavailable\n  stale_seconds: 5\n  action: {type: login}\n  want: {decision: allow}\n", "stale_seconds"},
		{"not yaml", "cases: [\n", "c.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := engine.LoadCases(files("testdata/c.yaml", tt.yaml), "testdata")
			if !errors.Is(err, engine.ErrInvalidCase) || !strings.Contains(err.Error(), tt.wantMsg) {
				t.Errorf("LoadCases() error = %v, want ErrInvalidCase mentioning %q", err, tt.wantMsg)
			}
		})
	}
}

// ExamplePolicySet_Eval evaluates a policy set on an inline payload, the
// way golden cases and offline tools do.
func ExamplePolicySet_Eval() {
	policy := fstest.MapFS{"verdict.rego": {Data: []byte(`package verdict

reasons contains {"code": "bot_detected", "effect": "deny", "message": "bad bot"} if {
	input.datapoints.bot.result == "bad"
}

default decision := "allow"

decision := "deny" if {
	some r in reasons
	r.effect == "deny"
}
`)}}
	set, err := engine.Compile(context.Background(), policy)
	if err != nil {
		fmt.Println(err)
		return
	}
	payload, _ := engine.ParsePayload([]byte(`{"bot": {"result": "bad"}}`))
	d, err := set.Eval(context.Background(),
		engine.Request{Action: map[string]any{"type": "login"}},
		engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginUpstream, Payload: payload})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(d.Decision, d.Reasons)
	// Output: deny [{bot_detected deny bad bot}]
}

func TestReloadSwapsOnlyOnSuccess(t *testing.T) {
	ctx := context.Background()
	dir := files("p.rego", minimal)
	e, err := engine.New(ctx, engine.Config{Policies: dir, Source: realSource(t)})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	first := e.Revision()
	req := engine.Request{Token: "t", Action: map[string]any{"type": "login"}}

	denyAll := "package verdict\n\ndecision := \"deny\"\n\nreasons := {{\"code\": \"all\", \"effect\": \"deny\", \"message\": \"m\"}}\n"
	broken := []struct {
		name  string
		files fstest.MapFS
		want  error
	}{
		{"syntax error", files("p.rego", "package verdict\n\ndecision := \n"), engine.ErrPolicyLoad},
		{"contract break", files("p.rego", "package verdict\n\ndecision := \"maybe\"\n\nreasons := set()\n"), engine.ErrContract},
		{"failing test", files("p.rego", denyAll, "p_test.rego", "package verdict_test\n\nimport data.verdict\n\ntest_allows if verdict.decision == \"allow\"\n"), engine.ErrTestsFailed},
		// Serving compiles without the tests (servingModules); the gate compiles them.
		{"compile error in a test file", files("p.rego", denyAll, "p_test.rego", "package verdict_test\n\ntest_x if undefined_function(1)\n"), engine.ErrPolicyLoad},
		{"failing golden case", files("p.rego", denyAll, "testdata/c.yaml", "cases:\n- name: allow login\n  upstream: not_found\n  action: {type: login}\n  want: {decision: allow}\n"), engine.ErrTestsFailed},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			clear(dir)
			maps.Copy(dir, b.files)
			r := e.Reload(ctx).Live
			if r.OK || !errors.Is(r.Err, b.want) || r.Revision != first {
				t.Fatalf("Reload() = %+v, want refused with %v and revision %s still serving", r, b.want, first)
			}
			if last := e.Live().LastReload(); last == nil || last.OK || last.Err == nil {
				t.Errorf("LastReload() = %+v, want the failure kept", last)
			}
			if d, err := e.Decide(ctx, req); err != nil || d.Decision != "allow" || d.Revision != first {
				t.Fatalf("Decide after a refused reload = %+v, %v; want the old set's allow", d, err)
			}
		})
	}

	clear(dir)
	maps.Copy(dir, files("p.rego", denyAll))
	r := e.Reload(ctx).Live
	if !r.OK || r.Revision == first {
		t.Fatalf("Reload(valid) = %+v, want a new revision", r)
	}
	d, err := e.Decide(ctx, req)
	if err != nil || d.Decision != "deny" || d.Revision != r.Revision {
		t.Errorf("Decide after reload = %+v, %v; want deny from revision %s", d, err, r.Revision)
	}
}

// realSource is the production pipeline over a fake cside: cache, client.
func realSource(t *testing.T) *cache.Cache {
	t.Helper()
	fake := csidetest.NewServer()
	t.Cleanup(fake.Close)
	client, err := csideclient.New(csideclient.Config{BaseURL: fake.URL})
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

func TestCheckContract(t *testing.T) {
	tests := []struct {
		name   string
		policy string
		want   []string // substrings of the problems, in order
	}{
		{"shipped shape passes", minimal, nil},
		{"constant decision outside the contract", "package verdict\n\ndecision := \"block\"\n\nreasons := set()\n", []string{"p.rego:3: decision \"block\" is not one of"}},
		{"else branch outside the contract", "package verdict\n\ndecision := \"deny\" if input.x else := \"maybe\"\n\nreasons := set()\n", []string{"decision \"maybe\""}},
		{"decision as a set", "package verdict\n\ndecision contains \"allow\"\n\nreasons := set()\n", []string{"complete rule"}},
		{"reason without message", "package verdict\n\ndecision := \"allow\"\n\nreasons contains {\"code\": \"c\", \"effect\": \"deny\"} if input.x\n", []string{`p.rego:5: reason has no "message" field`}},
		{"reason with a bad effect", "package verdict\n\ndecision := \"allow\"\n\nreasons contains {\"code\": \"c\", \"effect\": \"block\", \"message\": \"m\"} if input.x\n", []string{"reason effect \"block\""}},
		{"reason not an object", "package verdict\n\ndecision := \"allow\"\n\nreasons contains \"bot\" if input.x\n", []string{"must be an object"}},
		{"reasons not a set", "package verdict\n\ndecision := \"allow\"\n\nreasons := [1]\n", []string{"reasons must be a set"}},
		{"no decision", "package verdict\n\nreasons := set()\n", []string{"data.verdict.decision is not defined"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			problems, err := engine.CheckContract(files("p.rego", tt.policy))
			if err != nil {
				t.Fatalf("CheckContract: %v", err)
			}
			if len(problems) != len(tt.want) {
				t.Fatalf("CheckContract() = %v, want %d problems", problems, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(problems[i].String(), w) {
					t.Errorf("problem %d = %q, want it to contain %q", i, problems[i], w)
				}
			}
		})
	}
}

func TestCheckFormat(t *testing.T) {
	problems, err := engine.CheckFormat(files("ok.rego", minimal, "bad.rego", "package verdict\n\ndecision:=\"allow\"\nreasons := set()\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) != 1 || problems[0].File != "bad.rego" || problems[0].Row != 3 {
		t.Errorf("CheckFormat() = %v, want bad.rego:3 only", problems)
	}
}

func TestShadow(t *testing.T) {
	ctx := context.Background()
	// Live denies checkouts, shadow challenges them; both allow the rest.
	policy := func(checkout string) fstest.MapFS {
		return files("p.rego", fmt.Sprintf(`package verdict

default decision := "allow"

decision := %q if input.action.type == "checkout"

reasons contains {"code": "checkout", "effect": %q, "message": "m"} if input.action.type == "checkout"
`, checkout, checkout))
	}
	var mu sync.Mutex
	var disagreements []engine.Disagreement
	e, err := engine.New(ctx, engine.Config{
		Policies: policy("deny"), ShadowPolicies: policy("challenge"), Source: realSource(t),
		OnDisagreement: func(d engine.Disagreement) { mu.Lock(); disagreements = append(disagreements, d); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	mix := map[string]int{"checkout": 7, "login": 5, "signup": 3}
	for action, n := range mix {
		for range n {
			if _, err := e.Decide(ctx, engine.Request{Token: "demo-unknown", Action: map[string]any{"type": action}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	e.Close() // drains the queue
	st, ok := e.ShadowStats()
	if !ok || st.Total != 15 || st.Agreed != 8 || st.Dropped != 0 || st.Errors != 0 ||
		st.Matrix["deny"]["challenge"] != 7 || st.Matrix["allow"]["allow"] != 8 {
		t.Errorf("ShadowStats() = %+v, want 15 total, 8 agreed, deny×challenge 7, allow×allow 8", st)
	}
	if len(disagreements) != 7 || disagreements[0].Live != "deny" || disagreements[0].Shadow != "challenge" ||
		disagreements[0].LiveRevision == disagreements[0].ShadowRevision || disagreements[0].DecisionID == "" {
		t.Errorf("disagreements = %+v, want 7 deny/challenge with both revisions and the decision ID", disagreements)
	}
}

func TestShadowDropsWhenQueueFullWithoutBlocking(t *testing.T) {
	ctx := context.Background()
	policy := func(effect string) fstest.MapFS {
		return files("p.rego", fmt.Sprintf("package verdict\n\ndecision := %q\n\nreasons := set()\n", effect))
	}
	block := make(chan struct{})
	entered := make(chan struct{}, 10)
	e, err := engine.New(ctx, engine.Config{
		Policies: policy("allow"), ShadowPolicies: policy("deny"), ShadowQueue: 1, Source: realSource(t),
		OnDisagreement: func(engine.Disagreement) { entered <- struct{}{}; <-block },
	})
	if err != nil {
		t.Fatal(err)
	}
	req := engine.Request{Token: "demo-unknown", Action: map[string]any{"type": "login"}}
	decide := func() {
		t.Helper()
		if _, err := e.Decide(ctx, req); err != nil {
			t.Fatal(err)
		}
	}
	decide()
	<-entered // the shadow evaluator is busy with the first decision
	decide()  // waits in the queue
	for range 3 {
		decide() // the queue is full: dropped, and Decide does not wait
	}
	close(block)
	e.Close()
	st, _ := e.ShadowStats()
	if st.Total != 2 || st.Dropped != 3 || st.Matrix["allow"]["deny"] != 2 {
		t.Errorf("ShadowStats() = %+v, want 2 evaluated and 3 dropped", st)
	}
}

func TestDeterministic(t *testing.T) {
	for _, tt := range []struct {
		policy string
		want   bool
	}{
		{minimal, true},
		{minimal + "\nnow := time.now_ns()\n", false},
		{minimal + "\nr := rand.intn(\"x\", 10)\n", false},
		{minimal + "\nn := count([1, 2])\n", true},
	} {
		set, err := engine.Compile(context.Background(), files("p.rego", tt.policy))
		if err != nil {
			t.Fatal(err)
		}
		if set.Deterministic() != tt.want {
			t.Errorf("Deterministic() of\n%s= %v, want %v", tt.policy, set.Deterministic(), tt.want)
		}
	}
}

func TestNetworkAndHostBuiltinsRefused(t *testing.T) {
	for _, call := range []string{`http.send({"method": "GET", "url": "http://example.com"})`, `net.lookup_ip_addr("example.com")`, `opa.runtime()`} {
		_, err := engine.Compile(context.Background(), files("p.rego", minimal+"\nx := "+call+"\n"))
		if !errors.Is(err, engine.ErrPolicyLoad) || !strings.Contains(err.Error(), "disabled") {
			t.Errorf("Compile(policy calling %s) = %v, want ErrPolicyLoad saying it is disabled", call, err)
		}
	}
}

func TestEvalTimeout(t *testing.T) {
	ctx := context.Background()
	slow := "package verdict\n\ndefault decision := \"allow\"\n\ndecision := \"deny\" if count([1 | some _ in numbers.range(1, 100000000)]) == 0\n\nreasons := set()\n"
	e, err := engine.New(ctx, engine.Config{Policies: files("p.rego", slow), Source: realSource(t), EvalTimeout: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = e.Decide(ctx, engine.Request{Token: "demo-unknown", Action: map[string]any{"type": "login"}})
	if !errors.Is(err, engine.ErrPolicy) || !strings.Contains(err.Error(), "exceeded 50ms") || !strings.Contains(err.Error(), e.Revision()) {
		t.Errorf("Decide(slow policy) = %v, want ErrPolicy saying the evaluation exceeded 50ms, with the revision", err)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("Decide(slow policy) took %v, want it cut off near 50ms", took)
	}
}

// TestDecideStages follows a token through Engine.Decide: fetched, served
// from the cache in full, then staged; with NoStaging, always in full.
func TestDecideStages(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		token     string
		noStaging bool
		want      []engine.StageKind
	}{
		{"demo-tor", false, []engine.StageKind{engine.StageFull, engine.StageFull, engine.StageResidual, engine.StageResidual}},
		{"demo-tor", true, []engine.StageKind{engine.StageFull, engine.StageFull, engine.StageFull, engine.StageFull}},
		{"demo-bot", false, []engine.StageKind{engine.StageFull, engine.StageFull, engine.StageConstant, engine.StageConstant}},
		{"demo-bot", true, []engine.StageKind{engine.StageFull, engine.StageFull, engine.StageFull, engine.StageFull}},
	} {
		src := realSource(t)
		e, err := engine.New(ctx, engine.Config{Policies: policies.FS(), Source: src, CaseSource: src, NoStaging: tt.noStaging})
		if err != nil {
			t.Fatal(err)
		}
		var got []engine.StageKind
		var first engine.Decision
		for i := range tt.want {
			d, err := e.Decide(ctx, engine.Request{Token: tt.token, Action: map[string]any{"type": "signup"}})
			if err != nil {
				t.Fatal(err)
			}
			src.Wait()
			got = append(got, d.Stage)
			if i == 0 {
				first = d
			} else if d.Decision != first.Decision || !slices.Equal(d.Reasons, first.Reasons) || d.FingerprintID != first.FingerprintID ||
				d.Revision != first.Revision || d.Origin != engine.OriginCache || d.Payload == nil || d.ID == first.ID {
				t.Errorf("%s, NoStaging %v, decision %d (%s): %+v, want the first decision's answer from the cache, with an ID of its own: %+v",
					tt.token, tt.noStaging, i+1, d.Stage, d, first)
			}
		}
		if !slices.Equal(got, tt.want) {
			t.Errorf("%s, NoStaging %v: stages %v, want %v", tt.token, tt.noStaging, got, tt.want)
		}
		e.Close()
	}
}
