package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-engine/verdict/engine"
)

// variant writes into dir a small policy set whose checkout decision is
// effect, with a Rego test and a golden case that hold only for it.
func variant(t *testing.T, dir, effect string) string {
	t.Helper()
	files := map[string]string{
		"verdict.rego": fmt.Sprintf(`package verdict

default decision := "allow"

decision := %[1]q if some _ in reasons

reasons contains {"code": "checkout_rule", "effect": %[1]q, "message": "checkout is %[1]s"} if input.action.type == "checkout"
`, effect),
		"verdict_test.rego": fmt.Sprintf(`package verdict_test

import data.verdict

test_checkout if verdict.decision == %q with input as {"action": {"type": "checkout"}}

test_login if verdict.decision == "allow" with input as {"action": {"type": "login"}}
`, effect),
		"testdata/cases.yaml": fmt.Sprintf(`cases:
  - name: checkout without datapoints
    upstream: unavailable
    action: {type: checkout}
    want: {decision: %s, reasons: [checkout_rule]}
`, effect),
	}
	for name, content := range files {
		path := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		// Write then rename: a reload never reads half a file.
		if err := os.WriteFile(path+".tmp", []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	set, err := engine.Compile(context.Background(), os.DirFS(dir))
	if err != nil {
		t.Fatalf("variant %s: %v", effect, err)
	}
	return set.Revision()
}

func (c *chaos) getJSON(path string, v any) int {
	c.t.Helper()
	base := c.base
	if strings.HasPrefix(path, "/admin/") || path == "/metrics" {
		base = c.admin
	}
	resp, err := c.client.Get(base + path)
	if err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		c.t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode
}

type reloadAnswer struct {
	Error *struct{ Code string } `json:"error"`
	Live  struct {
		OK       bool    `json:"ok"`
		Revision string  `json:"revision"`
		Error    *string `json:"error"`
	} `json:"live"`
}

func (c *chaos) reload() (int, reloadAnswer) {
	c.t.Helper()
	resp, err := c.client.Post(c.admin+"/admin/policies/reload", "application/json", nil)
	if err != nil {
		c.t.Fatalf("POST /admin/policies/reload: %v", err)
	}
	defer resp.Body.Close()
	var a reloadAnswer
	if err := json.NewDecoder(resp.Body).Decode(&a); err != nil {
		c.t.Fatal(err)
	}
	return resp.StatusCode, a
}

type policiesAnswer struct {
	Revision string   `json:"revision"`
	Files    []string `json:"files"`
	FullEval struct {
		Optimized bool `json:"optimized"`
	} `json:"full_evaluation"`
	LastReload *struct {
		OK    bool    `json:"ok"`
		Error *string `json:"error"`
	} `json:"last_reload"`
}

// TestReloadUnderLoad makes 50 reloads, alternating two policy sets, while
// clients hammer /decide: every answer is a 200 made entirely by one of the
// two revisions (its decision is that revision's), and the datapoint cache
// survives every reload.
func TestReloadUnderLoad(t *testing.T) {
	dir := t.TempDir()
	revDeny := variant(t, dir, "deny")
	c := startChaos(t, "--policies", dir)
	revChallenge := variant(t, t.TempDir(), "challenge")
	want := map[string]string{revDeny: "deny", revChallenge: "challenge"}

	var stop atomic.Bool
	var total, bad atomic.Int64
	var seen sync.Map
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for !stop.Load() {
				body := fmt.Sprintf(`{"token":"demo-human","action":{"type":"checkout","amount":%d}}`, total.Add(1))
				resp, err := c.client.Post(c.base+"/decide", "application/json", strings.NewReader(body))
				if err != nil {
					bad.Add(1)
					continue
				}
				var d struct {
					Decision string `json:"decision"`
					Policy   struct{ Revision string }
				}
				err = json.NewDecoder(resp.Body).Decode(&d)
				resp.Body.Close()
				if err != nil || resp.StatusCode != 200 || want[d.Policy.Revision] != d.Decision {
					if bad.Add(1) <= 3 {
						t.Errorf("answer %d %+v (err %v): want a 200 whose decision is its revision's", resp.StatusCode, d, err)
					}
					continue
				}
				seen.Store(d.Policy.Revision, true)
			}
		})
	}

	start := time.Now()
	for i := range 50 {
		effect, rev := "challenge", revChallenge
		if i%2 == 1 {
			effect, rev = "deny", revDeny
		}
		variant(t, dir, effect)
		status, a := c.reload()
		if status != 200 || !a.Live.OK || a.Live.Revision != rev {
			t.Fatalf("reload %d = %d %+v, want revision %s", i, status, a, rev)
		}
	}
	elapsed := time.Since(start)
	stop.Store(true)
	wg.Wait()

	n := total.Load()
	t.Logf("50 reloads in %v under %d requests (%.0f req/s)", elapsed, n, float64(n)/elapsed.Seconds())
	if bad.Load() > 0 {
		t.Errorf("%d of %d answers failed or were mixed", bad.Load(), n)
	}
	if float64(n)/elapsed.Seconds() < 100 {
		t.Errorf("only %.0f req/s: the test wants hundreds during the reloads", float64(n)/elapsed.Seconds())
	}
	for _, rev := range []string{revDeny, revChallenge} {
		if _, ok := seen.Load(rev); !ok {
			t.Errorf("no answer from revision %s", rev)
		}
	}
	if got := c.fake.ClientRequests(); got != 1 {
		t.Errorf("upstream requests = %d, want 1: the datapoint cache survives reloads", got)
	}
}

// TestBrokenPolicyNeverGoesLive tries a syntax error, a failing Rego test, a
// failing golden case and a contract break, through the admin route and
// through the file watcher: the previous set keeps serving every time, and
// the failure is kept.
func TestBrokenPolicyNeverGoesLive(t *testing.T) {
	dir := t.TempDir()
	rev := variant(t, dir, "deny")
	c := startChaos(t, "--policies", dir)

	broken := []struct{ name, file, content, wantErr string }{
		{"syntax error", "verdict.rego", "package verdict\n\ndecision := \n", "verdict.rego:"},
		{"failing test", "extra_test.rego", "package verdict_test\n\nimport data.verdict\n\ntest_never if verdict.decision == \"challenge\" with input as {\"action\": {\"type\": \"checkout\"}}\n", "extra_test.rego:"},
		{"failing golden case", "testdata/more.yaml", "cases:\n  - name: wrong\n    upstream: unavailable\n    action: {type: login}\n    want: {decision: deny}\n", "wrong"},
		{"contract break", "contract.rego", "package verdict\n\nreasons contains {\"code\": \"c\", \"effect\": \"block\", \"message\": \"m\"} if input.x\n", "block"},
	}
	for _, b := range broken {
		t.Run(b.name, func(t *testing.T) {
			variant(t, dir, "deny")
			path := filepath.Join(dir, b.file)
			if err := os.WriteFile(path, []byte(b.content), 0o644); err != nil {
				t.Fatal(err)
			}
			defer func() {
				if b.file != "verdict.rego" {
					_ = os.Remove(path)
				}
			}()
			status, a := c.reload()
			if status != http.StatusUnprocessableEntity || a.Live.OK || a.Live.Revision != rev || a.Error == nil ||
				a.Live.Error == nil || !strings.Contains(*a.Live.Error, b.wantErr) {
				t.Fatalf("reload = %d %+v, want 422 naming %q with revision %s serving", status, a, b.wantErr, rev)
			}
			var p policiesAnswer
			c.getJSON("/admin/policies", &p)
			if p.Revision != rev || p.LastReload == nil || p.LastReload.OK || !p.FullEval.Optimized {
				t.Errorf("GET /admin/policies = %+v, want revision %s, the failed reload kept, full evaluation optimized", p, rev)
			}
			if r := c.decide("demo-human", `{"type":"checkout"}`); r.status != 200 || r.body.Decision != "deny" {
				t.Errorf("decision after the refused reload = %d %+v, want deny from the old set", r.status, r.body)
			}
		})
	}

	t.Run("watcher reloads a good set and refuses a broken one", func(t *testing.T) {
		_ = os.Remove(filepath.Join(dir, "contract.rego"))
		revChallenge := variant(t, dir, "challenge")
		var p policiesAnswer
		until(t, "the watcher loads the new set", 10*time.Second, func() bool {
			c.getJSON("/admin/policies", &p)
			return p.Revision == revChallenge
		})
		if err := os.WriteFile(filepath.Join(dir, "verdict.rego"), []byte("package verdict\n\ndecision := \n"), 0o644); err != nil {
			t.Fatal(err)
		}
		until(t, "the watcher refuses the broken set", 10*time.Second, func() bool {
			c.getJSON("/admin/policies", &p)
			return p.LastReload != nil && !p.LastReload.OK
		})
		if p.Revision != revChallenge {
			t.Errorf("revision after a refused watcher reload = %s, want %s", p.Revision, revChallenge)
		}
	})
}

// TestShadowCounts runs a scripted traffic mix with a shadow set that
// challenges what the live set denies, and checks the counts exactly.
func TestShadowCounts(t *testing.T) {
	live, shadow := t.TempDir(), t.TempDir()
	revLive, revShadow := variant(t, live, "deny"), variant(t, shadow, "challenge")
	c := startChaos(t, "--policies", live, "--shadow-policies", shadow)

	mix := map[string]int{"checkout": 30, "login": 15, "signup": 5}
	for action, n := range mix {
		c.drive(n, 4, func(int) result { return c.decide("demo-human", fmt.Sprintf(`{"type":%q}`, action)) })
	}
	var st struct {
		Revision string                       `json:"revision"`
		Total    uint64                       `json:"total"`
		Agreed   uint64                       `json:"agreed"`
		Dropped  uint64                       `json:"dropped"`
		Matrix   map[string]map[string]uint64 `json:"matrix"`
	}
	until(t, "shadow evaluated every decision", 10*time.Second, func() bool {
		c.getJSON("/admin/shadow", &st)
		return st.Total+st.Dropped >= 50
	})
	if st.Total != 50 || st.Agreed != 20 || st.Dropped != 0 || st.Revision != revShadow ||
		st.Matrix["deny"]["challenge"] != 30 || st.Matrix["allow"]["allow"] != 20 {
		t.Errorf("GET /admin/shadow = %+v, want 50 total, 20 agreed, deny×challenge 30, allow×allow 20", st)
	}
	// INFO lines reach the log within logFlushEvery.
	until(t, "every disagreement logged", 5*time.Second, func() bool {
		return strings.Count(c.logs.all(), `"msg":"shadow policies disagree"`) >= 30
	})
	disagreements := strings.Count(c.logs.all(), `"msg":"shadow policies disagree"`)
	if disagreements != 30 {
		t.Errorf("%d disagreement log lines, want 30", disagreements)
	}
	for _, want := range []string{`"live":"deny"`, `"shadow":"challenge"`, `"live_revision":"` + revLive + `"`, `"shadow_revision":"` + revShadow + `"`, `"decision_id":"`} {
		if !strings.Contains(c.logs.all(), want) {
			t.Errorf("disagreement log lines lack %s", want)
		}
	}

	var p struct {
		Revision string `json:"revision"`
		Shadow   *struct {
			Revision string `json:"revision"`
		} `json:"shadow"`
	}
	c.getJSON("/admin/policies", &p)
	if p.Revision != revLive || p.Shadow == nil || p.Shadow.Revision != revShadow {
		t.Errorf("GET /admin/policies = %+v, want live %s and shadow %s", p, revLive, revShadow)
	}
}

func TestNoShadowIs404(t *testing.T) {
	c := startChaos(t)
	var e errorAnswer
	if status := c.getJSON("/admin/shadow", &e); status != 404 || e.Error.Code != "no_shadow" {
		t.Errorf("GET /admin/shadow without shadow policies = %d %+v, want 404 no_shadow", status, e)
	}
}

type errorAnswer struct {
	Error struct{ Code, Message string } `json:"error"`
}

// TestSIGHUPReloads runs the real binary, changes its policy directory and
// sends SIGHUP: the log shows the reload triggered by the signal.
func TestSIGHUPReloads(t *testing.T) {
	dir := t.TempDir()
	variant(t, dir, "deny")
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "VERDICT_TEST_MAIN=1", "VERDICT_TEST_ARGS=serve --demo --addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --policies "+dir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	logs := newLogLines()
	go logs.consume(stderr)
	select {
	case <-logs.addr:
	case <-time.After(30 * time.Second):
		t.Fatalf("no listening line within 30s:\n%s", logs.all())
	}
	rev := variant(t, dir, "challenge")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	want := `"trigger":"SIGHUP","revision":"` + rev + `"`
	until(t, "a SIGHUP reload in the log", 10*time.Second, func() bool { return strings.Contains(logs.all(), want) })
	_ = cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v, want exit 0", err)
	}
}

// TestShadowInDecisionLog: with a decision log, each line carries the
// shadow decision, and the shadow set is evaluated once per decision.
func TestShadowInDecisionLog(t *testing.T) {
	live, shadow := t.TempDir(), t.TempDir()
	revLive, revShadow := variant(t, live, "deny"), variant(t, shadow, "challenge")
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	c := startChaos(t, "--policies", live, "--shadow-policies", shadow, "--decision-log", path)
	for _, action := range []string{"checkout", "login", "checkout"} {
		if r := c.decide("demo-human", fmt.Sprintf(`{"type":%q}`, action)); r.status != 200 {
			t.Fatalf("decide: %d", r.status)
		}
	}
	var st struct {
		Total, Agreed uint64
	}
	until(t, "the shadow evaluated every decision", 10*time.Second, func() bool {
		c.getJSON("/admin/shadow", &st)
		return st.Total >= 3
	})
	if err := c.stop(); err != nil { // flushes the decision log
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var shadows []string
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var e struct {
			Policy struct{ Revision string }
			Shadow *struct {
				Decision string
				Policy   struct{ Revision string }
			}
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil || e.Shadow == nil || e.Policy.Revision != revLive || e.Shadow.Policy.Revision != revShadow {
			t.Fatalf("line %s: want the live and the shadow decision with their revisions", line)
		}
		shadows = append(shadows, e.Shadow.Decision)
	}
	if strings.Join(shadows, ",") != "challenge,allow,challenge" || st.Total != 3 || st.Agreed != 1 {
		t.Errorf("shadow decisions %v, stats %+v; want challenge,allow,challenge and 3 evaluated once each, 1 agreed", shadows, st)
	}
}
