package main

import (
	"log/slog"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

func TestSweepTick(t *testing.T) {
	const interval = 500 * time.Microsecond
	base := sweepSample{frees: 100, allocs: 1000, procs: 1}
	for _, tc := range []struct {
		name     string
		cur      sweepSample
		wait     time.Duration
		wantPoll bool
		wantNext time.Duration
	}{
		{"sweeping: poll", sweepSample{frees: 200, allocs: 1000, procs: 1}, interval, true, interval},
		{"sweeping while allocating: poll", sweepSample{frees: 200, allocs: 2000, procs: 1}, interval, true, interval},
		{"sweeping after an idle wait: poll, and tick fast again", sweepSample{frees: 200, allocs: 1000, procs: 1}, 8 * time.Millisecond, true, interval},
		{"allocating, not sweeping: keep ticking", sweepSample{frees: 100, allocs: 2000, procs: 1}, 4 * time.Millisecond, false, interval},
		{"idle: back off", base, interval, false, 2 * interval},
		{"idle: back off up to sweepPollIdle", base, 16 * time.Millisecond, false, sweepPollIdle},
		{"two Ps: never", sweepSample{frees: 200, allocs: 2000, procs: 2}, interval, false, sweepPollIdle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			poll, next := sweepTick(base, tc.cur, tc.wait, interval)
			if poll != tc.wantPoll || next != tc.wantNext {
				t.Errorf("sweepTick = %v, %v; want %v, %v", poll, next, tc.wantPoll, tc.wantNext)
			}
		})
	}
}

// TestSweepPoller runs a poller on this process: with one P it stops the
// world while a collection's garbage is swept, with two it never does.
func TestSweepPoller(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	for _, tc := range []struct {
		procs     int
		wantPolls bool
	}{{1, true}, {2, false}} {
		runtime.GOMAXPROCS(tc.procs)
		p, err := startSweepPoller(100 * time.Microsecond)
		if err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for p.polls.Load() == 0 && time.Now().Before(deadline) {
			collectGarbage(t)
			if !tc.wantPolls {
				break
			}
		}
		p.stop()
		p.stop() // twice is fine
		if polls := p.polls.Load(); (polls > 0) != tc.wantPolls {
			t.Errorf("GOMAXPROCS=%d: %d polls, want any: %v", tc.procs, polls, tc.wantPolls)
		}
	}
}

// collectGarbage leaves 32 MiB of small garbage and waits, sleeping, until
// the collection it brings about is over, so that its sweep runs in the
// background as under load.
func collectGarbage(t *testing.T) {
	t.Helper()
	cycles := []metrics.Sample{{Name: "/gc/cycles/total:gc-cycles"}}
	metrics.Read(cycles)
	before := cycles[0].Value.Uint64()
	for i := 0; i < 1<<20; i++ {
		sink = make([]byte, 32)
	}
	for range 100 {
		if metrics.Read(cycles); cycles[0].Value.Uint64() > before {
			break
		}
		time.Sleep(time.Millisecond)
	}
	time.Sleep(20 * time.Millisecond)
}

var sink []byte

func TestApplySweepPoll(t *testing.T) {
	var logs strings.Builder
	log := slog.New(slog.NewJSONHandler(&logs, nil))
	if p := applySweepPoll(log, 0); p != nil || logs.Len() != 0 {
		t.Errorf("off: started %v, logged %q", p != nil, logs.String())
	}
	p := applySweepPoll(log, time.Millisecond)
	defer p.stop()
	if p == nil || !strings.Contains(logs.String(), `"msg":"GC sweep poll","interval":"1ms"`) {
		t.Errorf("on: started %v, logged %q", p != nil, logs.String())
	}
}

// TestSweepPollWithoutMetrics: a runtime without one of the metrics the
// poller reads gets no poller and a warning, not a panic.
func TestSweepPollWithoutMetrics(t *testing.T) {
	defer func(m []string) { sweepMetrics = m }(sweepMetrics)
	sweepMetrics = []string{"/gc/heap/frees:bytes", "/no/such:metric", "/sched/gomaxprocs:threads"}
	var logs strings.Builder
	p := applySweepPoll(slog.New(slog.NewJSONHandler(&logs, nil)), time.Millisecond)
	if p != nil {
		p.stop()
		t.Fatal("a poller started without its metrics")
	}
	if !strings.Contains(logs.String(), `"msg":"GC sweep poll off","error":"runtime metric /no/such:metric unavailable"`) {
		t.Errorf("logged %q", logs.String())
	}
}
