package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"testing"
	"time"
)

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func TestParseServeFlags(t *testing.T) {
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		check   func(serveConfig) bool
		wantErr string // "" means success
	}{
		{name: "defaults", check: func(c serveConfig) bool {
			return c.addr == ":8080" && c.csideURL == "https://api.cside.com" && c.clientPath == "/token/v1/client" &&
				c.clientIDPath == "/token/v1/clientId" && c.cacheMaxBytes == 256<<20 && c.hotPayloads == 0 && time.Duration(c.cacheTTL) == 5*time.Minute &&
				time.Duration(c.notFoundTTL) == 30*time.Second && time.Duration(c.upstreamTimeout) == 800*time.Millisecond && !c.demo
		}},
		{name: "flags", args: []string{"--addr", "127.0.0.1:9000", "--cache-max-bytes", "64MiB", "--cache-ttl", "1m", "--upstream-timeout", "250ms",
			"--cside-url", "http://localhost:8081/", "--cside-header", "Authorization: Bearer k", "--cache-hot-payloads", "500"},
			check: func(c serveConfig) bool {
				return c.addr == "127.0.0.1:9000" && c.cacheMaxBytes == 64<<20 && c.hotPayloads == 500 && time.Duration(c.cacheTTL) == time.Minute &&
					time.Duration(c.upstreamTimeout) == 250*time.Millisecond && c.csideURL == "http://localhost:8081" &&
					c.csideHeader.name == "Authorization" && c.csideHeader.value == "Bearer k"
			}},
		{name: "environment twins", env: map[string]string{"VERDICT_CACHE_TTL": "2m", "VERDICT_DEMO": "true", "VERDICT_CSIDE_CLIENTID_PATH": "/v2/id"},
			check: func(c serveConfig) bool {
				return time.Duration(c.cacheTTL) == 2*time.Minute && c.demo && c.clientIDPath == "/v2/id"
			}},
		{name: "flag beats environment", args: []string{"--cache-ttl", "3m"}, env: map[string]string{"VERDICT_CACHE_TTL": "2m"},
			check: func(c serveConfig) bool { return time.Duration(c.cacheTTL) == 3*time.Minute }},
		{name: "resilience defaults", check: func(c serveConfig) bool {
			b := c.breaker
			return time.Duration(c.staleGrace) == time.Hour && time.Duration(b.window) == 10*time.Second &&
				time.Duration(b.openFor) == 5*time.Second && b.halfOpenProbes == 3 && b.consecutiveFailures == 5 &&
				b.failureRatio == 0.5 && b.minRequests == 10
		}},
		{name: "resilience flags and twins", args: []string{"--cache-stale-grace", "0", "--breaker-failure-ratio", "0.25"},
			env: map[string]string{"VERDICT_BREAKER_OPEN_FOR": "30s", "VERDICT_BREAKER_MIN_REQUESTS": "50"},
			check: func(c serveConfig) bool {
				return c.staleGrace == 0 && c.breaker.failureRatio == 0.25 && time.Duration(c.breaker.openFor) == 30*time.Second &&
					c.breaker.minRequests == 50
			}},
		{name: "pprof without admin listener", args: []string{"--pprof", "--admin-addr", "off"}, wantErr: "-pprof"},
		{name: "staging on, decision memo off by default", check: func(c serveConfig) bool { return c.staging && !c.decisionMemo }},
		{name: "decision memo", args: []string{"--decision-memo"}, check: func(c serveConfig) bool { return c.decisionMemo }},
		{name: "staging off", env: map[string]string{"VERDICT_STAGING": "false"}, check: func(c serveConfig) bool { return !c.staging }},
		{name: "pprof", args: []string{"--pprof"}, check: func(c serveConfig) bool { return c.pprof }},
		{name: "GC heap floor 64 MiB by default", check: func(c serveConfig) bool { return c.gcHeapFloor == 64<<20 }},
		{name: "GC heap floor", args: []string{"--gc-heap-floor", "256MiB"}, check: func(c serveConfig) bool { return c.gcHeapFloor == 256<<20 }},
		{name: "GC heap floor off", args: []string{"--gc-heap-floor", "0"}, check: func(c serveConfig) bool { return c.gcHeapFloor == 0 }},
		{name: "GC heap floor off, twin", env: map[string]string{"VERDICT_GC_HEAP_FLOOR": "off"}, check: func(c serveConfig) bool { return c.gcHeapFloor == 0 }},
		{name: "bad GC heap floor", args: []string{"--gc-heap-floor", "lots"}, wantErr: "-gc-heap-floor"},
		{name: "tiny GC heap floor", args: []string{"--gc-heap-floor", "1KB"}, wantErr: "or 0 (off)"},
		{name: "GC sweep poll 500us by default", check: func(c serveConfig) bool { return time.Duration(c.gcSweepPoll) == 500*time.Microsecond }},
		{name: "GC sweep poll", args: []string{"--gc-sweep-poll", "2ms"}, check: func(c serveConfig) bool { return time.Duration(c.gcSweepPoll) == 2*time.Millisecond }},
		{name: "GC sweep poll off", env: map[string]string{"VERDICT_GC_SWEEP_POLL": "off"}, check: func(c serveConfig) bool { return c.gcSweepPoll == 0 }},
		{name: "GC sweep poll 0", args: []string{"--gc-sweep-poll", "0"}, check: func(c serveConfig) bool { return c.gcSweepPoll == 0 }},
		{name: "GC sweep poll too often", args: []string{"--gc-sweep-poll", "10us"}, wantErr: "want 50us to 10ms, or 0 (off)"},
		{name: "GC sweep poll too rare", args: []string{"--gc-sweep-poll", "20ms"}, wantErr: "-gc-sweep-poll"},
		{name: "bad GC sweep poll", args: []string{"--gc-sweep-poll", "often"}, wantErr: "want a duration such as 500us"},
		{name: "negative stale grace", args: []string{"--cache-stale-grace", "-1m"}, wantErr: "-cache-stale-grace"},
		{name: "ratio above 1", args: []string{"--breaker-failure-ratio", "1.5"}, wantErr: "-breaker-failure-ratio"},
		{name: "zero probes", args: []string{"--breaker-half-open-probes", "0"}, wantErr: "-breaker-half-open-probes"},
		{name: "fractional count", env: map[string]string{"VERDICT_BREAKER_CONSECUTIVE_FAILURES": "2.5"}, wantErr: "VERDICT_BREAKER_CONSECUTIVE_FAILURES"},
		{name: "zero breaker window", args: []string{"--breaker-window", "0s"}, wantErr: "-breaker-window"},
		{name: "bad duration", args: []string{"--cache-ttl", "soon"}, wantErr: "-cache-ttl"},
		{name: "zero duration", args: []string{"--upstream-timeout", "0s"}, wantErr: "-upstream-timeout"},
		{name: "bad size", args: []string{"--cache-max-bytes", "lots"}, wantErr: "-cache-max-bytes"},
		{name: "tiny size", args: []string{"--cache-max-bytes", "10KB"}, wantErr: "-cache-max-bytes"},
		{name: "no hot payloads", args: []string{"--cache-hot-payloads", "0"}, wantErr: "-cache-hot-payloads"},
		{name: "bad URL scheme", args: []string{"--cside-url", "ftp://x"}, wantErr: "-cside-url"},
		{name: "URL without host", args: []string{"--cside-url", "http://"}, wantErr: "-cside-url"},
		{name: "relative path", args: []string{"--cside-client-path", "token/v1/client"}, wantErr: "-cside-client-path"},
		{name: "bad header", args: []string{"--cside-header", "Authorization"}, wantErr: "-cside-header"},
		{name: "bad addr", args: []string{"--addr", "8080"}, wantErr: "-addr"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantErr: "-log-level"},
		{name: "unknown flag", args: []string{"--cache-size", "1"}, wantErr: "cache-size"},
		{name: "stray argument", args: []string{"policies/"}, wantErr: "no arguments"},
		{name: "bad environment twin", env: map[string]string{"VERDICT_CACHE_NOTFOUND_TTL": "-1s"}, wantErr: "VERDICT_CACHE_NOTFOUND_TTL"},
		{name: "missing policy directory", args: []string{"--policies", "/does/not/exist"}, wantErr: "-policies"},
		{name: "demo with cside-url", args: []string{"--demo", "--cside-url", "http://x"}, wantErr: "-demo and -cside-url"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := parseServeFlags(tt.args, env(tt.env), io.Discard)
			if tt.wantErr != "" {
				if !errors.Is(err, errUsage) || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parseServeFlags(%q) error = %v, want a usage error naming %q", tt.args, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseServeFlags(%q) error = %v", tt.args, err)
			}
			if !tt.check(cfg) {
				t.Errorf("parseServeFlags(%q) = %+v: check failed", tt.args, cfg)
			}
		})
	}
}

func TestSecretHeaderNeverEchoed(t *testing.T) {
	_, err := parseServeFlags(nil, env(map[string]string{"VERDICT_CSIDE_HEADER": "s3cr3t-no-colon"}), io.Discard)
	if err == nil || strings.Contains(err.Error(), "s3cr3t") {
		t.Errorf("error = %v, want an error that does not echo the header value", err)
	}
	cfg, err := parseServeFlags([]string{"--cside-header", "X-Api-Key: s3cr3t"}, env(nil), io.Discard)
	if err != nil || strings.Contains(cfg.csideHeader.String(), "s3cr3t") {
		t.Errorf("header String() = %q (err %v), want the value redacted", cfg.csideHeader.String(), err)
	}
}

func TestRunCommands(t *testing.T) {
	tests := []struct {
		args     []string
		wantCode int
		wantOut  string
	}{
		{[]string{"version"}, 0, "verdict "},
		{[]string{"help"}, 0, "verdict serve"},
		{nil, 2, ""},
		{[]string{"frobnicate"}, 2, ""},
		{[]string{"serve", "--cache-ttl", "x"}, 2, ""},
		{[]string{"serve", "-h"}, 0, ""},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), tt.args, env(nil), &out, io.Discard)
			if code := exitCode(err); code != tt.wantCode {
				t.Errorf("run(%q) exit code = %d (err %v), want %d", tt.args, code, err, tt.wantCode)
			}
			if !strings.Contains(out.String(), tt.wantOut) {
				t.Errorf("run(%q) output = %q, want it to contain %q", tt.args, out.String(), tt.wantOut)
			}
		})
	}
}

func TestServeFailsOnBadPolicies(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir+"/p.rego", "package verdict\n\ndecision := \"allow\"\n")
	err := run(context.Background(), []string{"serve", "--demo", "--addr", "127.0.0.1:0", "--admin-addr", "off", "--policies", dir}, env(nil), io.Discard, io.Discard)
	if err == nil || exitCode(err) != 3 || !strings.Contains(err.Error(), "data.verdict.reasons") {
		t.Errorf("serve with a policy set lacking reasons: %v, want exit 3 naming data.verdict.reasons", err)
	}
}

func writeFile(t *testing.T, name, content string) {
	t.Helper()
	if err := os.WriteFile(name, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
}
