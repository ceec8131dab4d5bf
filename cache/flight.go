package cache

import (
	"context"
	"sync"
)

// flightGroup coalesces concurrent fetches of one key: the first caller
// starts the fetch, callers arriving while it runs wait for its result. It
// is singleflight with one difference that matters on a request path: the
// fetch runs under a context detached from every caller's, cancelled only
// when the last caller still waiting stops waiting. A caller whose request
// ends does not cancel the fetch for the others, and a fetch nobody waits
// for any more does not keep running.
type flightGroup[T any] struct {
	mu    sync.Mutex
	calls map[string]*flight[T]
}

type flight[T any] struct {
	done    chan struct{}
	val     T
	waiters int
	cancel  context.CancelFunc
}

// do returns the result of fn for key, shared with concurrent callers, and
// whether this caller joined a fetch another started. fn receives the
// fetch's context, which keeps ctx's values. When ctx ends first, do returns
// ctx's error and the zero T.
func (g *flightGroup[T]) do(ctx context.Context, key string, fn func(context.Context) T) (T, bool, error) {
	g.mu.Lock()
	if f, ok := g.calls[key]; ok {
		f.waiters++
		g.mu.Unlock()
		return g.wait(ctx, key, f, true)
	}
	if g.calls == nil {
		g.calls = map[string]*flight[T]{}
	}
	fctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	f := &flight[T]{done: make(chan struct{}), waiters: 1, cancel: cancel}
	g.calls[key] = f
	g.mu.Unlock()

	go func() {
		defer cancel()
		f.val = fn(fctx)
		g.forget(key, f)
		close(f.done)
	}()
	return g.wait(ctx, key, f, false)
}

func (g *flightGroup[T]) wait(ctx context.Context, key string, f *flight[T], shared bool) (T, bool, error) {
	select {
	case <-f.done:
		return f.val, shared, nil
	case <-ctx.Done():
	}
	g.mu.Lock()
	f.waiters--
	last := f.waiters == 0
	if last && g.calls[key] == f {
		// Nobody wants this result: newcomers start a fresh fetch.
		delete(g.calls, key)
	}
	g.mu.Unlock()
	if last {
		f.cancel()
	}
	var zero T
	return zero, shared, ctx.Err()
}

func (g *flightGroup[T]) forget(key string, f *flight[T]) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.calls[key] == f {
		delete(g.calls, key)
	}
}
