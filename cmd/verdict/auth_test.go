package main

import (
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestServeRefusesToStartWithoutKeys(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--addr", "127.0.0.1:0", "--admin-addr", "off"},
		{"serve", "--addr", "127.0.0.1:0", "--admin-addr", "127.0.0.1:0", "--api-keys-file", "testdata/keys.txt"},
	} {
		err := run(context.Background(), args, env(nil), io.Discard, io.Discard)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), "without keys") {
			t.Errorf("run(%q) = %v, want exit 2 refusing to serve without keys", args, err)
		}
	}
}

// TestAuthEndToEnd runs serve with keys from the environment and a key
// file: /decide needs a key, the key's name (never the key) reaches the
// access log, the admin listener needs an admin key, and SIGHUP rotates the
// key file.
func TestAuthEndToEnd(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "keys.txt")
	writeFile(t, keyFile, "checkout-service:ck_live_old_0123456789abcdef\n")
	cmd := execSelf(t, []string{"VERDICT_ADMIN_KEYS=ops:ops_key_0123456789abcdef"},
		"serve --demo --addr 127.0.0.1:0 --admin-addr 127.0.0.1:0 --api-keys-file "+keyFile)
	base, admin, logs := cmd.base, cmd.admin, cmd.logs

	call := func(method, url, body, key string) int {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		if body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if key != "" {
			req.Header.Set("Authorization", "Bearer "+key)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	decide := func(key string) int {
		return call(http.MethodPost, base+"/decide", `{"token":"demo-human","action":{"type":"login"}}`, key)
	}
	get := func(url, key string) int { return call(http.MethodGet, url, "", key) }
	if got := decide(""); got != 401 {
		t.Errorf("/decide without a key = %d, want 401", got)
	}
	if got := decide("ck_live_old_0123456789abcdef"); got != 200 {
		t.Errorf("/decide with the key = %d, want 200", got)
	}
	if got := get(base+"/admin/policies", "ops_key_0123456789abcdef"); got != 404 {
		t.Errorf("admin route on the public listener = %d, want 404", got)
	}
	if got := get(admin+"/admin/policies", ""); got != 401 {
		t.Errorf("admin route without a key = %d, want 401", got)
	}
	if got := get(admin+"/metrics", "ops_key_0123456789abcdef"); got != 200 {
		t.Errorf("/metrics with the admin key = %d, want 200", got)
	}
	until(t, "the access log names the key", 5*time.Second, func() bool {
		return strings.Contains(logs.all(), `"key":"checkout-service"`)
	})

	writeFile(t, keyFile, "checkout-service:ck_live_new_0123456789abcdef\n")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	until(t, "the keys reload", 10*time.Second, func() bool { return strings.Contains(logs.all(), `"msg":"API keys reloaded"`) })
	if got := decide("ck_live_old_0123456789abcdef"); got != 401 {
		t.Errorf("/decide with the removed key = %d, want 401", got)
	}
	if got := decide("ck_live_new_0123456789abcdef"); got != 200 {
		t.Errorf("/decide with the new key = %d, want 200", got)
	}
	cmd.stop(t)
	for _, secret := range []string{"ck_live_old", "ck_live_new", "ops_key_0123", "demo-human"} {
		if strings.Contains(logs.all(), secret) {
			t.Errorf("the logs contain %q", secret)
		}
	}
}

// selfProcess is this test binary re-executed as verdict.
type selfProcess struct {
	*exec.Cmd
	base, admin string
	logs        *logLines
}

// execSelf starts verdict with args (space-separated) and extra
// environment, and waits until it listens.
func execSelf(t *testing.T, extraEnv []string, args string) *selfProcess {
	t.Helper()
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(append(os.Environ(), "VERDICT_TEST_MAIN=1", "VERDICT_TEST_ARGS="+args), extraEnv...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	logs := newLogLines()
	go logs.consume(stderr)
	select {
	case addr := <-logs.addr:
		return &selfProcess{Cmd: cmd, base: "http://" + addr, admin: "http://" + logs.adminAddr(), logs: logs}
	case <-time.After(30 * time.Second):
		t.Fatalf("no listening line within 30s:\n%s", logs.all())
	}
	return nil
}

func (p *selfProcess) stop(t *testing.T) {
	t.Helper()
	_ = p.Process.Signal(syscall.SIGTERM)
	if err := p.Wait(); err != nil {
		t.Errorf("after SIGTERM: %v, want exit 0", err)
	}
}
