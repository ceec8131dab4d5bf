package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"go.uber.org/goleak"
)

// TestMain lets a test re-execute this test binary as the real verdict
// command: with VERDICT_TEST_MAIN=1 it runs main with the remaining args.
func TestMain(m *testing.M) {
	if os.Getenv("VERDICT_TEST_MAIN") == "1" {
		os.Args = append([]string{"verdict"}, strings.Fields(os.Getenv("VERDICT_TEST_ARGS"))...)
		main()
		return
	}
	code := m.Run()
	if code == 0 {
		code = scanForSecrets()
	}
	// Idle keep-alive connections of the tests' own HTTP clients are not
	// leaks; everything else still running once every server stopped is.
	http.DefaultTransport.(*http.Transport).CloseIdleConnections()
	if code == 0 {
		// lumberjack (the decision log's file rotation) starts one goroutine
		// per file logger that its Close does not stop: a known limitation of
		// v2.2.1, one goroutine per serve, not a leak that grows.
		if err := goleak.Find(goleak.IgnoreTopFunction("gopkg.in/natefinch/lumberjack%2ev2.(*Logger).millRun")); err != nil {
			fmt.Fprintln(os.Stderr, "goroutine leak:", err)
			code = 1
		}
	}
	os.Exit(code)
}

// everyLog holds the logs of every server the tests started, for
// scanForSecrets.
var everyLog struct {
	sync.Mutex
	logs []*logLines
}

// secrets are what no log line may ever contain: the session tokens and
// API keys the tests send (exact demo tokens, and the prefixes of the
// generated ones).
var secrets = append(csidetest.Tokens(), "demo-human-", "tok-", "tok_", "ck_live_", "ops_key_")

// scanForSecrets checks every log line of every server started by the
// tests (e2e, chaos, reload, auth) for a token or key; it returns the exit
// code.
func scanForSecrets() int {
	everyLog.Lock()
	defer everyLog.Unlock()
	lines := 0
	for _, l := range everyLog.logs {
		all := l.all()
		lines += strings.Count(all, "\n") + 1
		for _, s := range secrets {
			if i := strings.Index(all, s); i >= 0 {
				fmt.Fprintf(os.Stderr, "secret %q in a server log: ...%s...\n", s, all[max(0, i-80):min(len(all), i+80)])
				return 1
			}
		}
	}
	// A full run starts dozens of servers: fewer means the scan is broken.
	if flag.Lookup("test.run").Value.String() == "" && (len(everyLog.logs) < 10 || lines < 100) {
		fmt.Fprintf(os.Stderr, "scanForSecrets saw %d logs, %d lines: too few for the suites\n", len(everyLog.logs), lines)
		return 1
	}
	return 0
}

// logLines collects a server's JSON log lines and announces its address.
type logLines struct {
	mu    sync.Mutex
	lines []string
	addr  chan string
	admin string        // the admin listener's address, once logged
	eof   chan struct{} // closed when consume has read everything
}

// consume collects r's lines until r ends. Serve buffers its log lines and
// writes the last ones as it exits: wait on eof before reading them.
func (l *logLines) consume(r io.Reader) {
	defer close(l.eof)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		l.mu.Lock()
		l.lines = append(l.lines, line)
		l.mu.Unlock()
		var entry struct {
			Msg  string `json:"msg"`
			Addr string `json:"addr"`
		}
		if json.Unmarshal([]byte(line), &entry) == nil {
			switch entry.Msg {
			case "admin listening": // logged before "verdict listening"
				l.mu.Lock()
				l.admin = entry.Addr
				l.mu.Unlock()
			case "verdict listening":
				l.addr <- entry.Addr
			}
		}
	}
}

// newLogLines returns a collector registered for scanForSecrets.
func newLogLines() *logLines {
	l := &logLines{addr: make(chan string, 1), eof: make(chan struct{})}
	everyLog.Lock()
	everyLog.logs = append(everyLog.logs, l)
	everyLog.Unlock()
	return l
}

func (l *logLines) adminAddr() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.admin
}

func (l *logLines) all() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// startServe runs `verdict serve --demo` in-process on a free port and
// returns its base URL, its logs and a function that stops it and returns
// serve's error.
func startServe(t *testing.T, extra ...string) (string, *logLines, func() error) {
	t.Helper()
	return startServeArgs(t, append([]string{"serve", "--demo", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0"}, extra...)...)
}

// startServeArgs runs verdict with args in-process, as startServe does.
func startServeArgs(t *testing.T, args ...string) (string, *logLines, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	logs := newLogLines()
	go logs.consume(pr)
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, args, func(string) string { return "" }, io.Discard, pw)
		_ = pw.Close()
	}()
	var once sync.Once
	var stopErr error
	stop := func() error { // idempotent: tests stop early, cleanups again
		once.Do(func() {
			cancel()
			stopErr = <-done
			<-logs.eof // every line serve wrote is in logs
		})
		return stopErr
	}
	select {
	case addr := <-logs.addr:
		return "http://" + addr, logs, stop
	case err := <-done:
		t.Fatalf("serve exited before listening: %v\n%s", err, logs.all())
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not start listening within 30s\n%s", logs.all())
	}
	return "", nil, nil
}

func post(t *testing.T, url, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	var out map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("POST %s: decoding: %v", url, err)
	}
	return resp.StatusCode, out
}

func TestServeDemoEndToEnd(t *testing.T) {
	base, logs, stop := startServe(t)

	tests := []struct {
		name, path, body string
		wantStatus       int
		want             map[string]any // top-level fields to compare
		wantReasons      []string
	}{
		{"human login", "/decide", `{"token":"demo-human","action":{"type":"login"}}`, 200,
			map[string]any{"decision": "allow", "fingerprint_id": "fp_8Zq2kL0vXr7tN4mWb1Yc", "degraded": false}, []string{}},
		{"vpn checkout", "/decide", `{"token":"demo-vpn","action":{"type":"checkout","amount":900,"currency":"USD"}}`, 200,
			map[string]any{"decision": "challenge"}, []string{"anonymizing_proxy"}},
		{"bot", "/decide", `{"token":"demo-bot","action":{"type":"signup"}}`, 200,
			map[string]any{"decision": "deny"}, []string{"bot_detected", "high_suspect_score"}},
		{"tor", "/decide", `{"token":"demo-tor","action":{"type":"checkout","amount":10}}`, 200,
			map[string]any{"decision": "deny"}, []string{"ip_blocklisted", "tor_exit"}},
		{"upstream error", "/decide", `{"token":"demo-error","action":{"type":"login"}}`, 200,
			map[string]any{"decision": "allow", "degraded": true, "fingerprint_id": nil}, []string{"datapoints_unavailable"}},
		{"unknown token", "/decide", `{"token":"demo-unknown","action":{"type":"signup"}}`, 200,
			map[string]any{"decision": "challenge", "degraded": false}, []string{"unknown_fingerprint"}},
		{"identify", "/identify", `{"token":"demo-goodbot"}`, 200,
			map[string]any{"fingerprint_id": "fp_G00gleB0t000000001"}, nil},
		{"bad request", "/decide", `{"token":"demo-human"}`, 400, nil, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, got := post(t, base+tt.path, tt.body)
			if status != tt.wantStatus {
				t.Fatalf("POST %s %s = %d %v, want %d", tt.path, tt.body, status, got, tt.wantStatus)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("%s = %v, want %v", k, got[k], v)
				}
			}
			if tt.wantReasons != nil {
				var codes []string
				for _, r := range got["reasons"].([]any) {
					codes = append(codes, r.(map[string]any)["code"].(string))
				}
				if fmt.Sprint(codes) != fmt.Sprint(tt.wantReasons) && len(codes)+len(tt.wantReasons) > 0 {
					t.Errorf("reason codes = %v, want %v", codes, tt.wantReasons)
				}
			}
		})
	}

	t.Run("second call is cached", func(t *testing.T) {
		_, got := post(t, base+"/decide", `{"token":"demo-human","action":{"type":"checkout","amount":5}}`)
		if dp := got["datapoints"].(map[string]any); dp["source"] != "cache" {
			t.Errorf("datapoints = %v, want source cache", dp)
		}
	})

	for _, path := range []string{"/healthz", "/readyz"} {
		resp, err := http.Get(base + path)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("GET %s = %d, want 200", path, resp.StatusCode)
		}
	}

	if err := stop(); err != nil {
		t.Errorf("serve returned %v after shutdown, want nil", err)
	}
	all := logs.all()
	for _, token := range []string{"demo-human", "demo-vpn", "demo-bot", "demo-tor", "demo-error", "demo-unknown", "demo-goodbot"} {
		if strings.Contains(all, token) {
			t.Errorf("logs contain the raw token %s:\n%s", token, all)
		}
	}
	if !strings.Contains(all, "shut down cleanly") {
		t.Errorf("no clean shutdown in the logs:\n%s", all)
	}
}

// TestGracefulShutdownFinishesInFlight holds a request in the upstream,
// shuts the server down while it waits there, and expects the request to
// complete with a decision once the upstream answers.
func TestGracefulShutdownFinishesInFlight(t *testing.T) {
	arrived, release := make(chan struct{}), make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		payload, _ := csidetest.Payload("demo-human")
		_, _ = w.Write(payload)
	}))
	defer upstream.Close()
	base, _, stop := startServeArgs(t, "serve", "--addr", "127.0.0.1:0", "--admin-addr", "off", "--insecure-no-auth", "--cside-url", upstream.URL)

	type result struct {
		status int
		body   map[string]any
		err    error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Post(base+"/decide", "application/json", strings.NewReader(`{"token":"tok_inflight","action":{"type":"login"}}`))
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		var body map[string]any
		err = json.NewDecoder(resp.Body).Decode(&body)
		res <- result{resp.StatusCode, body, err}
	}()
	<-arrived

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	// Shutdown closes the listener first: wait until new connections fail.
	for {
		resp, err := http.Get(base + "/healthz")
		if err != nil {
			break
		}
		resp.Body.Close()
		time.Sleep(5 * time.Millisecond)
	}
	close(release)

	r := <-res
	if r.err != nil || r.status != 200 || r.body["decision"] != "allow" {
		t.Errorf("in-flight request = %d %v (%v), want 200 allow", r.status, r.body, r.err)
	}
	if err := <-stopped; err != nil {
		t.Errorf("serve returned %v, want nil", err)
	}
}

// TestSIGTERMExitsZero runs the real binary (this test binary re-executed
// as main) and stops it with SIGTERM.
func TestSIGTERMExitsZero(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "VERDICT_TEST_MAIN=1", "VERDICT_TEST_ARGS=serve --demo --addr 127.0.0.1:0 --admin-addr 127.0.0.1:0")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	logs := newLogLines()
	go logs.consume(stderr)
	select {
	case <-logs.addr:
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("no listening line within 30s:\n%s", logs.all())
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if errors.As(err, &exit) || err != nil {
		t.Errorf("verdict serve after SIGTERM: %v, want exit code 0\n%s", err, logs.all())
	}
}

// TestDecisionLogEndToEnd runs serve with a decision log file: every
// decision is in it exactly once, with its payload, and no token appears in
// it or in the server's logs; replay of the file changes nothing.
func TestDecisionLogEndToEnd(t *testing.T) {
	path := filepath.Join(t.TempDir(), "decisions.jsonl")
	base, logs, stop := startServe(t, "--decision-log", path, "--decision-log-datapoints")
	tokens := []string{"demo-human", "demo-vpn", "demo-bot", "demo-tor", "demo-error", "demo-unknown"}
	ids := map[string]bool{}
	for i := range 60 {
		status, got := post(t, base+"/decide", fmt.Sprintf(`{"token":%q,"action":{"type":"checkout","amount":%d}}`, tokens[i%len(tokens)], i*20))
		if status != 200 {
			t.Fatalf("POST /decide = %d %v", status, got)
		}
		ids[got["decision_id"].(string)] = true
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	logged := map[string]bool{}
	for _, line := range lines {
		var e struct {
			DecisionID string `json:"decision_id"`
		}
		if err := json.Unmarshal([]byte(line), &e); err != nil || !ids[e.DecisionID] || logged[e.DecisionID] {
			t.Fatalf("line %.80q: not a decision answered exactly once (err %v)", line, err)
		}
		logged[e.DecisionID] = true
	}
	if len(logged) != len(ids) {
		t.Errorf("%d decisions logged, want %d", len(logged), len(ids))
	}
	for _, token := range tokens {
		if strings.Contains(string(b), `"`+token+`"`) || strings.Contains(logs.all(), token) {
			t.Errorf("the token %s appears in the decision log or the logs", token)
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"replay", "--log", path, "--policies", "../../policies"}, env(nil), &out, io.Discard); err != nil {
		t.Fatalf("replay: %v", err)
	}
	if !strings.Contains(out.String(), "replayed 60 of 60 decisions") || !strings.Contains(out.String(), "changed: 0 (0.00%)") {
		t.Errorf("replay of the shipped policies on their own log:\n%s", out.String())
	}
}
