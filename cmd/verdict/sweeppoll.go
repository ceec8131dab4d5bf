package main

import (
	"fmt"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"time"
)

// sweepPoller works around golang/go#56060 ("runtime: bgsweep does not
// yield to netpoller-readied goroutines") for a process with one P
// (GOMAXPROCS=1, a container limited to one CPU).
//
// After every collection the runtime's background sweeper walks the heap
// the collection left (~6 ms of CPU for Verdict's 64 MiB floor), yielding
// every few spans with Gosched. Gosched puts it on the global run queue,
// and a P looking for work takes the global run queue before it polls the
// network: with one P, a request that arrives during the sweep waits until
// the sweep ends, or until sysmon polls the network (when it has not been
// polled for 10 ms). On Verdict at half its one-core saturation that was
// most of its p99 above a server as busy without a heap
// (docs/benchmarks.md, eleventh part).
//
// While the sweeper frees memory (/gc/heap/frees:bytes grows from one tick
// to the next) and GOMAXPROCS is 1, the poller stops the world briefly
// (runtime.ReadMemStats) every interval: starting the world polls the
// network and puts the requests it finds ahead of the sweeper. Nothing else
// in the runtime's API polls the network on demand. A poll costs ~2.5 µs on
// one P, and ~8 µs with the allocations after it, which refill the
// allocation caches ReadMemStats flushes; about 30 polls per collection
// under load. Between collections a tick only reads runtime metrics
// (~0.3 µs); when the process allocates nothing (idle), the ticks back off
// to sweepPollIdle.
type sweepPoller struct {
	interval time.Duration
	polls    atomic.Uint64 // stops of the world made

	quit chan struct{}
	done chan struct{}
	once sync.Once
}

// defaultSweepPoll is --gc-sweep-poll's default: the longest a request
// waits behind the sweeper (sysmon's bound is 10 ms).
const defaultSweepPoll = 500 * time.Microsecond

// sweepPollIdle is the longest a tick waits while the process allocates
// nothing: a collection needs allocation, and the ticks speed up again
// from the first tick that sees some.
const sweepPollIdle = 20 * time.Millisecond

// applySweepPoll starts the poller --gc-sweep-poll asks for (0: none) and
// logs it. Stop what it returns (nil when none started) when serve ends.
func applySweepPoll(log *slog.Logger, interval time.Duration) *sweepPoller {
	if interval <= 0 {
		return nil
	}
	p, err := startSweepPoller(interval)
	if err != nil {
		log.Warn("GC sweep poll off", "error", err)
		return nil
	}
	procs := runtime.GOMAXPROCS(0)
	log.Info("GC sweep poll", "interval", interval.String(), "gomaxprocs", procs, "active", procs == 1)
	return p
}

// sweepMetrics are the runtime metrics a tick reads, in sweepSample's order.
var sweepMetrics = []string{"/gc/heap/frees:bytes", "/gc/heap/allocs:bytes", "/sched/gomaxprocs:threads"}

// startSweepPoller starts a poller ticking every interval. It fails when
// the runtime does not provide the metrics it reads.
func startSweepPoller(interval time.Duration) (*sweepPoller, error) {
	samples := make([]metrics.Sample, len(sweepMetrics))
	for i, name := range sweepMetrics {
		samples[i].Name = name
	}
	metrics.Read(samples)
	for _, s := range samples {
		if s.Value.Kind() != metrics.KindUint64 {
			return nil, fmt.Errorf("runtime metric %s unavailable", s.Name)
		}
	}
	p := &sweepPoller{interval: interval, quit: make(chan struct{}), done: make(chan struct{})}
	go p.run(samples)
	return p, nil
}

// sweepSample is what one tick reads.
type sweepSample struct {
	frees, allocs uint64 // /gc/heap/frees:bytes, /gc/heap/allocs:bytes
	procs         uint64 // /sched/gomaxprocs:threads
}

// run ticks until stop; samples are sweepMetrics, checked by
// startSweepPoller.
func (p *sweepPoller) run(samples []metrics.Sample) {
	defer close(p.done)
	read := func() sweepSample {
		metrics.Read(samples)
		return sweepSample{samples[0].Value.Uint64(), samples[1].Value.Uint64(), samples[2].Value.Uint64()}
	}
	var ms runtime.MemStats
	prev, wait := read(), p.interval
	timer := time.NewTimer(wait)
	defer timer.Stop()
	for {
		select {
		case <-p.quit:
			return
		case <-timer.C:
		}
		cur := read()
		var poll bool
		poll, wait = sweepTick(prev, cur, wait, p.interval)
		if poll {
			runtime.ReadMemStats(&ms) // stops and starts the world: starting it polls the network
			p.polls.Add(1)
		}
		prev = cur
		timer.Reset(wait)
	}
}

// sweepTick decides one tick from the samples of the last two: whether to
// poll the network now (the sweeper is freeing memory on a one-P process)
// and how long to wait for the next tick (interval while the process
// allocates or sweeps, else twice the last wait, up to sweepPollIdle).
func sweepTick(prev, cur sweepSample, wait, interval time.Duration) (poll bool, next time.Duration) {
	sweeping := cur.frees != prev.frees
	switch {
	case cur.procs != 1:
		return false, sweepPollIdle // more Ps: an idle one polls the network
	case sweeping || cur.allocs != prev.allocs:
		return sweeping, interval
	default:
		return false, min(2*wait, sweepPollIdle)
	}
}

// Polls returns how many times the poller stopped the world to poll the
// network; 0 for nil.
func (p *sweepPoller) Polls() uint64 {
	if p == nil {
		return 0
	}
	return p.polls.Load()
}

// stop ends the poller and waits for it. Safe on nil and more than once.
func (p *sweepPoller) stop() {
	if p == nil {
		return
	}
	p.once.Do(func() { close(p.quit) })
	<-p.done
}
