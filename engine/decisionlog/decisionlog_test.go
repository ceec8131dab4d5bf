package decisionlog_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
	"github.com/verdict-engine/verdict/engine/decisionlog"
	"github.com/verdict-engine/verdict/policies"
)

func shipped(t testing.TB) *engine.PolicySet {
	t.Helper()
	set, err := engine.Compile(context.Background(), policies.FS())
	if err != nil {
		t.Fatal(err)
	}
	return set
}

// withData returns the shipped policies with data.json edited by edit.
func withData(t testing.TB, edit func(cfg map[string]any)) *engine.PolicySet {
	t.Helper()
	m := fstest.MapFS{}
	err := fs.WalkDir(policies.FS(), ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(policies.FS(), p)
		m[p] = &fstest.MapFile{Data: b}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	var data map[string]map[string]any
	if err := json.Unmarshal(m["data.json"].Data, &data); err != nil {
		t.Fatal(err)
	}
	edit(data["verdict_config"])
	m["data.json"].Data, _ = json.Marshal(data)
	set, err := engine.Compile(context.Background(), m)
	if err != nil {
		t.Fatal(err)
	}
	return set
}

func payload(t testing.TB, token string) *engine.Payload {
	t.Helper()
	raw, ok := csidetest.Payload(token)
	if !ok {
		t.Fatalf("no payload for %s", token)
	}
	p, err := engine.ParsePayload(raw)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// decide makes a real decision with set, as the engine does for /decide.
func decide(t testing.TB, set *engine.PolicySet, id string, req engine.Request, dp engine.Datapoints) engine.Decision {
	t.Helper()
	d, err := set.Eval(context.Background(), req, dp)
	if err != nil {
		t.Fatal(err)
	}
	d.ID = id
	return d
}

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []map[string]any
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

func TestEveryDecisionExactlyOnceWithoutSecrets(t *testing.T) {
	set := shipped(t)
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	var stdout bytes.Buffer
	l, err := decisionlog.New(decisionlog.Config{File: path, Stdout: &stdout, IncludeDatapoints: true,
		Masks: []decisionlog.Mask{{Pointer: "/action/card"}, {Pointer: "/action/email", Hash: true}, {Pointer: "/datapoints/payload/ip/address"}}})
	if err != nil {
		t.Fatal(err)
	}
	const n = 500
	token := "tok_SECRET_session_token_value"
	for i := range n {
		req := engine.Request{Token: token,
			Action:      map[string]any{"type": "checkout", "amount": json.Number(fmt.Sprint(i)), "card": "4111111111111111", "email": "jane@example.com"},
			ExternalIDs: map[string]string{"email": "jane@example.com"}}
		d := decide(t, set, fmt.Sprintf("id-%d", i), req, engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginCache, Payload: payload(t, "demo-vpn"), Age: 42 * time.Second})
		l.Log(decisionlog.Record{Decision: d, Request: req, RequestID: "req", KeyName: "checkout-service", At: time.Now(), Elapsed: time.Millisecond})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if l.Written() != n || l.Dropped() != 0 {
		t.Fatalf("written %d, dropped %d, want %d and 0", l.Written(), l.Dropped(), n)
	}
	all, _ := os.ReadFile(path)
	if !bytes.Equal(all, stdout.Bytes()) {
		t.Errorf("file and stdout sinks differ")
	}
	for _, secret := range []string{token, "jane@example.com", "4111111111111111", "94.142", "185.220.13.77"} {
		if bytes.Contains(all, []byte(secret)) {
			t.Errorf("the decision log contains %q", secret)
		}
	}
	lines := readLines(t, path)
	seen := map[string]bool{}
	for _, m := range lines {
		id := m["decision_id"].(string)
		if seen[id] {
			t.Fatalf("decision %s logged twice", id)
		}
		seen[id] = true
	}
	if len(seen) != n {
		t.Fatalf("%d distinct decisions logged, want %d", len(seen), n)
	}
	first := lines[0]
	action := first["action"].(map[string]any)
	dp := first["datapoints"].(map[string]any)
	switch {
	case first["token_hash"] != decisionlog.Hash(token):
		t.Errorf("token_hash = %v, want %s", first["token_hash"], decisionlog.Hash(token))
	case first["external_ids"].(map[string]any)["email"] != decisionlog.Hash("jane@example.com"):
		t.Errorf("external_ids = %v, want hashed values", first["external_ids"])
	case action["card"] != nil || action["email"] != decisionlog.Hash("jane@example.com") || action["type"] != "checkout":
		t.Errorf("action = %v, want card removed, email hashed, the rest kept", action)
	case dp["payload"] == nil || dp["payload"].(map[string]any)["ip"].(map[string]any)["address"] != nil:
		t.Errorf("datapoints = %v, want the payload without ip.address", dp)
	case dp["status"] != "ok" || dp["source"] != "cache" || dp["age_seconds"] != 42.0:
		t.Errorf("datapoints = %v, want ok/cache aged 42 s", dp)
	case first["decision"] != "allow" || first["policy"].(map[string]any)["revision"] != set.Revision() || first["request_id"] != "req" || first["key"] != "checkout-service":
		t.Errorf("line = %v", first)
	}
}

// TestLinesShareNothing: the writer reuses its scratch space from line to
// line; no line shows what an earlier one held (external IDs, fingerprint,
// age), on the fast path and on encoding/json's.
func TestLinesShareNothing(t *testing.T) {
	set := shipped(t)
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	l, err := decisionlog.New(decisionlog.Config{File: path})
	if err != nil {
		t.Fatal(err)
	}
	withIDs := engine.Request{Token: "t1", Action: map[string]any{"type": "login"},
		ExternalIDs: map[string]string{"email": "jane@example.com", "accountId": "42"}}
	noIDs := engine.Request{Token: "t2", Action: map[string]any{"type": "login"}}
	escaped := engine.Request{Token: "t3", Action: map[string]any{"type": "login", "note": "<b>"}, // encoding/json's path
		ExternalIDs: map[string]string{"phone": "555"}}
	cached := engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginCache, Payload: payload(t, "demo-vpn"), Age: 42 * time.Second}
	none := engine.Datapoints{Status: engine.StatusUnavailable, Origin: engine.OriginNone}
	for i, c := range []struct {
		req engine.Request
		dp  engine.Datapoints
	}{{withIDs, cached}, {noIDs, none}, {escaped, cached}, {noIDs, none}} {
		l.Log(decisionlog.Record{Decision: decide(t, set, fmt.Sprint(i), c.req, c.dp), Request: c.req, At: time.Now()})
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := readLines(t, path)
	want := []struct {
		ids         string
		fingerprint any
		age         any
	}{
		{`{"accountId":"` + decisionlog.Hash("42") + `","email":"` + decisionlog.Hash("jane@example.com") + `"}`, "fp_VpnUser00000000001", 42.0},
		{`{}`, nil, nil},
		{`{"phone":"` + decisionlog.Hash("555") + `"}`, "fp_VpnUser00000000001", 42.0},
		{`{}`, nil, nil},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d", len(lines), len(want))
	}
	for i, w := range want {
		ids, _ := json.Marshal(lines[i]["external_ids"])
		dp := lines[i]["datapoints"].(map[string]any)
		if string(ids) != w.ids || lines[i]["fingerprint_id"] != w.fingerprint || dp["age_seconds"] != w.age {
			t.Errorf("line %d: external_ids %s, fingerprint_id %v, age_seconds %v; want %s, %v, %v",
				i, ids, lines[i]["fingerprint_id"], dp["age_seconds"], w.ids, w.fingerprint, w.age)
		}
	}
}

// blockingWriter blocks every write until released.
type blockingWriter struct{ release chan struct{} }

func (w blockingWriter) Write(p []byte) (int, error) { <-w.release; return len(p), nil }

func TestDropsCountedWhenTheSinkBlocks(t *testing.T) {
	set := shipped(t)
	w := blockingWriter{make(chan struct{})}
	l, err := decisionlog.New(decisionlog.Config{Stdout: w, Buffer: 8})
	if err != nil {
		t.Fatal(err)
	}
	req := engine.Request{Token: "t", Action: map[string]any{"type": "login"}}
	d := decide(t, set, "x", req, engine.Datapoints{Status: engine.StatusNotFound, Origin: engine.OriginUpstream})
	start := time.Now()
	const n = 10_000
	for range n {
		l.Log(decisionlog.Record{Decision: d, Request: req, At: time.Now()})
	}
	perLog := time.Since(start) / n
	close(w.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Log with the sink blocked: %v per call; %d written, %d dropped", perLog, l.Written(), l.Dropped())
	// Written before the sink blocks: the lines that fit the logger's 64 KiB
	// write buffer (about 130 of these), then the queue of 8.
	if l.Written()+l.Dropped() != n || l.Dropped() < n-500 {
		t.Errorf("written %d + dropped %d, want %d with nearly all dropped", l.Written(), l.Dropped(), n)
	}
	if perLog > 50*time.Microsecond {
		t.Errorf("Log took %v per call with the sink blocked, want it not to wait", perLog)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := decisionlog.New(decisionlog.Config{}); err == nil {
		t.Error("New without a sink succeeded")
	}
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := decisionlog.New(decisionlog.Config{File: filepath.Join(notADir, "y.jsonl")}); err == nil {
		t.Error("New with an unwritable file succeeded")
	}
	for _, bad := range []string{"action/email", "/a=wipe", "="} {
		if _, err := decisionlog.ParseMasks(bad); err == nil {
			t.Errorf("ParseMasks(%q) succeeded", bad)
		}
	}
	m, err := decisionlog.ParseMasks("/action/email=hash, /datapoints/payload")
	if err != nil || len(m) != 2 || !m[0].Hash || m[1].Hash || m[1].Pointer != "/datapoints/payload" {
		t.Errorf("ParseMasks = %+v, %v", m, err)
	}
}

// TestReplaySummaryExact logs a scripted mix of real decisions, replays it
// with a candidate that lowers the checkout amount from which a VPN is
// challenged (500 → 100), and checks every count of the summary.
func TestReplaySummaryExact(t *testing.T) {
	live := shipped(t)
	candidate := withData(t, func(cfg map[string]any) {
		cfg["anonymizing_proxy"].(map[string]any)["checkout_min_amount"] = 100
	})
	dir := t.TempDir()
	withPayloads, without := filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "b.jsonl")
	logA, err := decisionlog.New(decisionlog.Config{File: withPayloads, IncludeDatapoints: true})
	if err != nil {
		t.Fatal(err)
	}
	logB, err := decisionlog.New(decisionlog.Config{File: without})
	if err != nil {
		t.Fatal(err)
	}

	// 400 vpn checkouts with amounts 0, 2, ... 798: from 500 up already
	// challenged (150), from 100 to 499 changed by the candidate (200), below
	// 100 allowed (50); 100 human checkouts, 50 logins without datapoints,
	// 50 not_found signups, 30 tor logins logged without their payload.
	wantChanged := 0
	n := 0
	log := func(l *decisionlog.Logger, token string, action map[string]any, dp engine.Datapoints) {
		n++
		req := engine.Request{Token: token, Action: action}
		d := decide(t, live, fmt.Sprintf("d-%d", n), req, dp)
		l.Log(decisionlog.Record{Decision: d, Request: req, At: time.Now()})
	}
	for i := range 400 {
		amount := i * 2 // 0..798
		if amount >= 100 && amount < 500 {
			wantChanged++
		}
		log(logA, "demo-vpn", map[string]any{"type": "checkout", "amount": json.Number(fmt.Sprint(amount))},
			engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginUpstream, Payload: payload(t, "demo-vpn")})
	}
	for i := range 100 {
		log(logA, "demo-human", map[string]any{"type": "checkout", "amount": json.Number(fmt.Sprint(i * 10))},
			engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginCache, Payload: payload(t, "demo-human")})
	}
	for range 50 {
		log(logA, "t", map[string]any{"type": "login"}, engine.Datapoints{Status: engine.StatusUnavailable, Origin: engine.OriginNone})
	}
	for range 50 {
		log(logB, "t", map[string]any{"type": "signup"}, engine.Datapoints{Status: engine.StatusNotFound, Origin: engine.OriginUpstream})
	}
	for range 30 { // ok decisions logged without their payload: not replayable
		log(logB, "demo-tor", map[string]any{"type": "login"},
			engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginUpstream, Payload: payload(t, "demo-tor")})
	}
	if err := errors(logA.Close(), logB.Close()); err != nil {
		t.Fatal(err)
	}
	f, _ := os.OpenFile(without, os.O_APPEND|os.O_WRONLY, 0)
	_, _ = f.WriteString("not a decision\n{\"decision_id\": \"\"}\n")
	f.Close()

	var changes []decisionlog.Change
	var mu sync.Mutex
	a, _ := os.Open(withPayloads)
	b, _ := os.Open(without)
	defer a.Close()
	defer b.Close()
	s, err := decisionlog.Replay(context.Background(), []io.Reader{a, b}, decisionlog.ReplayOptions{
		Candidate: candidate, Workers: 3,
		Changed: func(c decisionlog.Change) { mu.Lock(); changes = append(changes, c); mu.Unlock() },
	})
	if err != nil {
		t.Fatal(err)
	}
	wantMatrix := map[string]map[string]int{
		"allow":     {"allow": 400 - 150 - wantChanged + 100 + 50, "challenge": wantChanged},
		"challenge": {"challenge": 150 + 50},
	}
	if s.Lines != 632 || s.Replayed != 600 || s.Skipped != 30 || s.Invalid != 2 || s.Changed != wantChanged ||
		fmt.Sprint(s.Matrix) != fmt.Sprint(wantMatrix) || len(s.Reasons) != 1 ||
		s.Reasons[0] != (decisionlog.CodeCount{Code: "anonymizing_proxy", Count: wantChanged}) {
		t.Errorf("Summary = %+v\nwant 632 lines, 600 replayed, 30 skipped, 2 invalid, %d changed, matrix %v, reasons [anonymizing_proxy %d]",
			s, wantChanged, wantMatrix, wantChanged)
	}
	if len(changes) != wantChanged || changes[0].Baseline != "allow" || changes[0].Candidate != "challenge" ||
		strings.Join(changes[0].CandidateReasons, ",") != "anonymizing_proxy" {
		t.Errorf("%d changes, first %+v; want %d allow→challenge by anonymizing_proxy", len(changes), changes[0], wantChanged)
	}

	// Against the candidate itself as baseline, nothing changes.
	a.Seek(0, io.SeekStart)
	b.Seek(0, io.SeekStart)
	s, err = decisionlog.Replay(context.Background(), []io.Reader{a, b}, decisionlog.ReplayOptions{Candidate: candidate, Baseline: candidate})
	if err != nil || s.Changed != 0 || s.Replayed != 600 {
		t.Errorf("Replay(candidate vs itself) = %+v, %v; want 600 replayed, 0 changed", s, err)
	}
}

func errors(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
