package main

import (
	"log/slog"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"time"
)

func TestGCPercent(t *testing.T) {
	const mib = 1 << 20
	for _, tc := range []struct {
		name              string
		live, floor       uint64
		base, wantPercent int
	}{
		{"live heap unknown", 0, 64 * mib, 100, 100},
		{"live heap past the floor", 80 * mib, 64 * mib, 100, 100},
		{"live heap at the floor", 64 * mib, 64 * mib, 100, 100},
		{"past half the floor: the base", 40 * mib, 64 * mib, 100, 100},
		{"6 MiB live, 64 MiB floor", 6 * mib, 64 * mib, 100, 966},
		{"exactly a tenth", 64 * mib / 10, 64 * mib, 100, 900},
		{"tiny live heap: capped", 1024, 64 * mib, 100, maxGCPercent},
		{"a higher base wins", 40 * mib, 64 * mib, 200, 200},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := gcPercent(tc.live, tc.floor, tc.base); got != tc.wantPercent {
				t.Errorf("gcPercent(%d, %d, %d) = %d, want %d", tc.live, tc.floor, tc.base, got, tc.wantPercent)
			}
		})
	}
}

// TestHeapFloor runs a floor on this process: after a collection, GOGC is
// what gcPercent gives the live heap; a second floor does not start while
// one runs; stop restores GOGC.
func TestHeapFloor(t *testing.T) {
	read := func() (gogc, live uint64) {
		s := []metrics.Sample{{Name: "/gc/gogc:percent"}, {Name: "/gc/heap/live:bytes"}}
		metrics.Read(s)
		return s[0].Value.Uint64(), s[1].Value.Uint64()
	}
	before, _ := read()
	const floor = 1 << 30
	h := startHeapFloor(floor, 100)
	if h == nil {
		t.Fatal("startHeapFloor returned nil with no floor running")
	}
	if second := startHeapFloor(floor, 100); second != nil {
		second.stop()
		h.stop()
		t.Fatal("a second floor started while one runs")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		runtime.GC()
		time.Sleep(10 * time.Millisecond) // the cleanup runs on its own goroutine
		gogc, live := read()
		want := uint64(gcPercent(live, floor, 100)) // #nosec G115 -- positive
		if gogc == want && want > 100 {
			break
		}
		if time.Now().After(deadline) {
			h.stop()
			t.Fatalf("GOGC %d with %d bytes live, want %d (> 100)", gogc, live, want)
		}
	}
	h.stop()
	h.stop() // twice is fine
	runtime.GC()
	time.Sleep(10 * time.Millisecond)
	if after, _ := read(); after != before {
		t.Errorf("GOGC %d after stop, want %d as before", after, before)
	}
	if again := startHeapFloor(floor, 100); again == nil {
		t.Error("no floor starts after the previous one stopped")
	} else {
		again.stop()
	}
}

func TestApplyHeapFloor(t *testing.T) {
	for _, tc := range []struct {
		name      string
		floor     uint64
		gogc      string
		wantFloor bool
		wantLog   string
	}{
		{"off", 0, "", false, ""},
		{"GOGC set", 64 << 20, "200", false, `"msg":"GOGC is set: the GC heap floor is off","GOGC":"200"`},
		{"on", 64 << 20, "", true, `"msg":"GC heap floor","bytes":67108864`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var logs strings.Builder
			log := slog.New(slog.NewJSONHandler(&logs, nil))
			h := applyHeapFloor(log, tc.floor, func(name string) string {
				if name == "GOGC" {
					return tc.gogc
				}
				return ""
			})
			running := floorActive.Load()
			h.stop()
			if (h != nil) != tc.wantFloor || running != tc.wantFloor {
				t.Errorf("floor started: %v (running %v), want %v", h != nil, running, tc.wantFloor)
			}
			if floorActive.Load() {
				t.Error("a floor still runs after stop")
			}
			if got := logs.String(); !strings.Contains(got, tc.wantLog) || (tc.wantLog == "") != (got == "") {
				t.Errorf("logged %q, want a line with %q", got, tc.wantLog)
			}
		})
	}
}
