package main

import (
	"log/slog"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"sync/atomic"
)

// maxGCPercent bounds the GOGC a heap floor sets: the next heap goal is at
// most 101 times the live heap, however small that is.
const maxGCPercent = 10_000

// heapFloor keeps the garbage collector from running before the heap
// reaches a floor. Verdict's live heap is small (a few MiB: the compiled
// policies and a cold cache) while every request allocates, so at the
// runtime's default (GOGC=100, a collection whenever the heap doubles) it
// collects several times a second. Each cycle takes a P for its mark
// phase, which on a 2-core machine shows up as a tail of requests waiting
// for it (docs/benchmarks.md, "Where the tail comes from").
//
// After every collection the floor sets GOGC so that the next heap goal is
// the larger of the floor and what the base GOGC gives the live heap
// (live*(1+base/100)). Past the floor it is the base GOGC: a cache that
// fills memory is collected as usual. GOMEMLIMIT still bounds everything.
//
// It reads the live heap from runtime/metrics (/gc/heap/live:bytes, what
// the last cycle marked), which does not stop the world. gctuner
// (bytedance/gopkg) does the same job with runtime.ReadMemStats, which
// does, and with HeapInuse, which right after a cycle can still count
// spans the sweeper has not freed yet (not measured here: the reason the
// floor reads the runtime's own figure for the live heap instead).
type heapFloor struct {
	floor uint64
	base  int
	prev  int // the GOGC to restore on stop

	mu      sync.Mutex
	stopped bool
	sample  []metrics.Sample
}

// applyHeapFloor starts the heap floor --gc-heap-floor asks for (floor
// bytes; 0 for none) unless GOGC is set, and logs what it did. Stop what
// it returns (nil when no floor started) when serve ends.
func applyHeapFloor(log *slog.Logger, floor uint64, getenv func(string) string) *heapFloor {
	switch gogc := getenv("GOGC"); {
	case floor == 0:
		return nil
	case gogc != "":
		log.Info("GOGC is set: the GC heap floor is off", "GOGC", gogc)
		return nil
	}
	h := startHeapFloor(floor, 100)
	if h != nil {
		log.Info("GC heap floor", "bytes", floor)
	}
	return h
}

// floorActive is set while a heapFloor runs: GOGC is the process's, so
// one floor at a time (tests run several servers in one process).
var floorActive atomic.Bool

// startHeapFloor sets GOGC for floor bytes now and after every collection,
// until stop. base is the GOGC in force above the floor (100 by default).
// While another floor runs, it does nothing and returns nil (whose stop
// does nothing).
func startHeapFloor(floor uint64, base int) *heapFloor {
	if !floorActive.CompareAndSwap(false, true) {
		return nil
	}
	h := &heapFloor{floor: floor, base: base, sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	h.prev = debug.SetGCPercent(base)
	h.tune()
	h.arm()
	return h
}

// gcSentinel is allocated for one cycle: its cleanup runs after the first
// collection that finds it unreachable.
type gcSentinel struct{ _ *int }

// arm registers the tuning for the next collection.
func (h *heapFloor) arm() {
	s := new(gcSentinel)
	runtime.AddCleanup(s, func(h *heapFloor) {
		if h.tune() {
			h.arm()
		}
	}, h)
}

// tune sets GOGC from the live heap, and reports whether the floor is still
// on.
func (h *heapFloor) tune() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.stopped {
		return false
	}
	metrics.Read(h.sample)
	live := uint64(0) // unknown: the base GOGC
	if v := h.sample[0].Value; v.Kind() == metrics.KindUint64 {
		live = v.Uint64()
	}
	debug.SetGCPercent(gcPercent(live, h.floor, h.base))
	return true
}

// gcPercent is the GOGC that makes the next heap goal
// max(floor, live*(1+base/100)), at most maxGCPercent.
func gcPercent(live, floor uint64, base int) int {
	if live == 0 || live >= floor {
		return base
	}
	p := min(floor/live*100+(floor%live)*100/live-100, maxGCPercent)
	return max(int(p), base) // #nosec G115 -- p <= maxGCPercent
}

// stop restores the GOGC in force before start.
func (h *heapFloor) stop() {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.stopped {
		h.stopped = true
		debug.SetGCPercent(h.prev)
		floorActive.Store(false)
	}
}
