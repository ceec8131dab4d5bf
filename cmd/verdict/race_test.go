//go:build race

package main

// raceEnabled: the race detector slows every goroutine several times, so
// timing bounds get the slack it costs; .ci/run also runs the chaos suite
// without it, where the bounds are exact.
const raceEnabled = true
