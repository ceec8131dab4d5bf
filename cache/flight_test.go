package cache

import (
	"context"
	"errors"
	"testing"
	"time"
)

func (g *flightGroup[T]) waiters(key string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	if f, ok := g.calls[key]; ok {
		return f.waiters
	}
	return 0
}

// TestInitiatorLeavingKeepsTheFetch: the caller that started a fetch gives
// up while another waits for it; the fetch goes on, uncancelled, and the
// other gets its result.
func TestInitiatorLeavingKeepsTheFetch(t *testing.T) {
	var g flightGroup[string]
	started, release := make(chan struct{}), make(chan struct{})
	fetchErr := make(chan error, 1)
	fn := func(ctx context.Context) string {
		close(started)
		<-release
		fetchErr <- ctx.Err()
		return "value"
	}
	initiatorCtx, leave := context.WithCancel(context.Background())
	initiator := make(chan error, 1)
	go func() { _, _, err := g.do(initiatorCtx, "k", fn); initiator <- err }()
	<-started
	joiner := make(chan string, 1)
	go func() { v, _, _ := g.do(context.Background(), "k", fn); joiner <- v }()
	for deadline := time.Now().Add(5 * time.Second); g.waiters("k") != 2; {
		if time.Now().After(deadline) {
			t.Fatal("the second caller never joined")
		}
		time.Sleep(time.Millisecond)
	}
	leave()
	if err := <-initiator; !errors.Is(err, context.Canceled) {
		t.Errorf("initiator got %v, want context.Canceled", err)
	}
	close(release)
	if v := <-joiner; v != "value" {
		t.Errorf("joiner got %q, want the shared value", v)
	}
	if err := <-fetchErr; err != nil {
		t.Errorf("the fetch's context ended (%v) although a caller still waited", err)
	}
}
