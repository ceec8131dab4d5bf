package main

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// lockedBuffer is a bytes.Buffer safe for the flush goroutine and the test.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

func TestLogWriter(t *testing.T) {
	var out lockedBuffer
	w := newLogWriter(&out)
	log := slog.New(flushingHandler{slog.NewJSONHandler(w, nil), w}).With("component", "test")

	log.Info("request")
	if strings.Contains(out.String(), "request") {
		t.Error("an INFO line was written at once; want it buffered")
	}
	log.Warn("breaker open")
	if got := out.String(); !strings.Contains(got, "request") || !strings.Contains(got, "breaker open") {
		t.Errorf("after a WARN line, the log holds %q; want both lines, in order", got)
	}

	log.Info("later")
	deadline := time.Now().Add(10 * logFlushEvery)
	for !strings.Contains(out.String(), "later") {
		if time.Now().After(deadline) {
			t.Fatalf("an INFO line waited more than %v", 10*logFlushEvery)
		}
		time.Sleep(logFlushEvery / 10)
	}

	log.Info("last")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "last") {
		t.Error("Close did not flush")
	}
	if n := strings.Count(out.String(), `"component":"test"`); n != 4 {
		t.Errorf("%d lines kept the logger's attributes, want 4", n)
	}
}
