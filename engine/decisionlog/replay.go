package decisionlog

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/verdict-engine/verdict/engine"
)

// maxLine bounds one log line: a decision with a 1 MiB payload fits.
const maxLine = 2 << 20

// ReplayOptions configure Replay.
type ReplayOptions struct {
	// Candidate is the policy set the logged decisions are re-evaluated
	// with. Required.
	Candidate *engine.PolicySet
	// Baseline, if set, is re-evaluated too and compared with Candidate;
	// nil compares with the decisions as they were logged.
	Baseline *engine.PolicySet
	// Workers evaluating in parallel. Zero means one per CPU.
	Workers int
	// Progress, if set, is called with the bytes consumed so far, from one
	// goroutine, at most every 100 ms.
	Progress func(bytesRead int64)
	// Changed, if set, is called (from one goroutine) for every decision
	// whose outcome changed.
	Changed func(Change)
}

// Change is one decision that would come out differently.
type Change struct {
	DecisionID       string   `json:"decision_id"`
	Baseline         string   `json:"baseline"`
	Candidate        string   `json:"candidate"`
	BaselineReasons  []string `json:"baseline_reasons"`
	CandidateReasons []string `json:"candidate_reasons"`
}

// CodeCount is a reason code and how many changed decisions it appeared in
// or disappeared from.
type CodeCount struct {
	Code  string
	Count int
}

// Summary is what a replay found.
type Summary struct {
	// Lines read; Replayed of them re-evaluated; Skipped lack the datapoints
	// to replay (logged without --decision-log-datapoints); Invalid are not
	// decision lines.
	Lines, Replayed, Skipped, Invalid int
	// Changed counts replayed decisions whose decision differs.
	Changed int
	// Matrix[baseline][candidate] counts replayed decisions.
	Matrix map[string]map[string]int
	// Reasons are the reason codes behind the changes, most frequent first:
	// codes the candidate adds or drops on changed decisions.
	Reasons []CodeCount
	Elapsed time.Duration
}

// replayLine is the part of a decision line a replay reads.
type replayLine struct {
	DecisionID  string            `json:"decision_id"`
	Action      json.RawMessage   `json:"action"`
	ExternalIDs map[string]string `json:"external_ids"`
	Datapoints  struct {
		Status     engine.Status   `json:"status"`
		Source     engine.Origin   `json:"source"`
		AgeSeconds int             `json:"age_seconds"`
		Payload    json.RawMessage `json:"payload"`
	} `json:"datapoints"`
	Decision string          `json:"decision"`
	Reasons  []engine.Reason `json:"reasons"`
}

// partial is one worker's share of a Summary.
type partial struct {
	replayed, skipped, invalid, changed int
	matrix                              map[string]map[string]int
	reasons                             map[string]int
}

// Replay re-evaluates every decision of the logs that carries what it needs
// (its payload, or no datapoints at all) with opts.Candidate, and
// summarizes what would change.
func Replay(ctx context.Context, logs []io.Reader, opts ReplayOptions) (Summary, error) {
	if opts.Candidate == nil {
		return Summary{}, fmt.Errorf("decisionlog: replay needs a candidate policy set")
	}
	workers := cmp.Or(opts.Workers, runtime.GOMAXPROCS(0))
	start := time.Now()
	lines := make(chan []byte, 4*workers)
	changes := make(chan Change, 256)

	results := make([]partial, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() { results[w] = replayWorker(ctx, lines, changes, opts) })
	}
	var changedWG sync.WaitGroup
	changedWG.Go(func() {
		for c := range changes {
			if opts.Changed != nil {
				opts.Changed(c)
			}
		}
	})

	n, err := readLines(ctx, logs, lines, opts.Progress)
	close(lines)
	wg.Wait()
	close(changes)
	changedWG.Wait()
	if err != nil {
		return Summary{}, err
	}

	s := Summary{Lines: n, Matrix: map[string]map[string]int{}, Elapsed: time.Since(start)}
	reasons := map[string]int{}
	for _, p := range results {
		s.Replayed += p.replayed
		s.Skipped += p.skipped
		s.Invalid += p.invalid
		s.Changed += p.changed
		for b, row := range p.matrix {
			if s.Matrix[b] == nil {
				s.Matrix[b] = map[string]int{}
			}
			for c, k := range row {
				s.Matrix[b][c] += k
			}
		}
		for code, k := range p.reasons {
			reasons[code] += k
		}
	}
	for _, code := range slices.Sorted(maps.Keys(reasons)) {
		s.Reasons = append(s.Reasons, CodeCount{code, reasons[code]})
	}
	slices.SortStableFunc(s.Reasons, func(a, b CodeCount) int { return b.Count - a.Count })
	return s, nil
}

// readLines sends every line of the logs to out and returns how many.
func readLines(ctx context.Context, logs []io.Reader, out chan<- []byte, progress func(int64)) (int, error) {
	n := 0
	var read int64
	last := time.Now()
	for _, r := range logs {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), maxLine)
		for sc.Scan() {
			line := sc.Bytes()
			read += int64(len(line)) + 1
			if len(bytes.TrimSpace(line)) == 0 {
				continue
			}
			n++
			select {
			case out <- bytes.Clone(line):
			case <-ctx.Done():
				return n, ctx.Err()
			}
			if progress != nil && time.Since(last) > 100*time.Millisecond {
				progress(read)
				last = time.Now()
			}
		}
		if err := sc.Err(); err != nil {
			return n, fmt.Errorf("reading the decision log after %d lines: %w", n, err)
		}
	}
	if progress != nil {
		progress(read)
	}
	return n, nil
}

// outcome is a memoized evaluation: decision and sorted reason codes.
type outcome struct {
	decision string
	codes    []string
}

// memo remembers evaluations of one policy set by input: a token decided
// several times for the same action (the cache at work) is evaluated once.
// Only for deterministic sets; bounded.
type memo struct {
	set  *engine.PolicySet
	seen map[[32]byte]outcome
}

func newMemo(set *engine.PolicySet) *memo {
	m := &memo{set: set}
	if set != nil && set.Deterministic() {
		m.seen = map[[32]byte]outcome{}
	}
	return m
}

func (m *memo) eval(ctx context.Context, key [32]byte, req engine.Request, dp engine.Datapoints) (outcome, error) {
	if o, ok := m.seen[key]; ok {
		return o, nil
	}
	d, err := m.set.Eval(ctx, req, dp)
	if err != nil {
		return outcome{}, err
	}
	o := outcome{d.Decision, engine.ReasonCodes(d.Reasons)}
	if m.seen != nil {
		if len(m.seen) >= 200_000 {
			clear(m.seen)
		}
		m.seen[key] = o
	}
	return o, nil
}

func replayWorker(ctx context.Context, lines <-chan []byte, changes chan<- Change, opts ReplayOptions) partial {
	p := partial{matrix: map[string]map[string]int{}, reasons: map[string]int{}}
	payloads := map[[32]byte]*engine.Payload{} // lines of one token repeat its payload
	candidate, baselineSet := newMemo(opts.Candidate), newMemo(opts.Baseline)
	for line := range lines {
		var l replayLine
		if err := json.Unmarshal(line, &l); err != nil || l.DecisionID == "" || l.Decision == "" {
			p.invalid++
			continue
		}
		req, dp, key, ok := l.inputs(payloads)
		if !ok {
			p.skipped++
			continue
		}
		baseline, baseReasons := l.Decision, engine.ReasonCodes(l.Reasons)
		if opts.Baseline != nil {
			o, err := baselineSet.eval(ctx, key, req, dp)
			if err != nil {
				p.invalid++
				continue
			}
			baseline, baseReasons = o.decision, o.codes
		}
		d, err := candidate.eval(ctx, key, req, dp)
		if err != nil {
			p.invalid++
			continue
		}
		p.replayed++
		if p.matrix[baseline] == nil {
			p.matrix[baseline] = map[string]int{}
		}
		p.matrix[baseline][d.decision]++
		if baseline == d.decision {
			continue
		}
		p.changed++
		for _, c := range symmetricDifference(baseReasons, d.codes) {
			p.reasons[c]++
		}
		changes <- Change{DecisionID: l.DecisionID, Baseline: baseline, Candidate: d.decision,
			BaselineReasons: baseReasons, CandidateReasons: d.codes}
	}
	return p
}

// inputs rebuilds the request and datapoints of a logged decision, and a
// key that identifies them (everything the policy input is made of); false
// when the line lacks the payload its decision was made on.
func (l *replayLine) inputs(payloads map[[32]byte]*engine.Payload) (engine.Request, engine.Datapoints, [32]byte, bool) {
	var key [32]byte
	dec := json.NewDecoder(bytes.NewReader(l.Action))
	dec.UseNumber()
	var action map[string]any
	if err := dec.Decode(&action); err != nil || action == nil {
		return engine.Request{}, engine.Datapoints{}, key, false
	}
	h := sha256.New()
	ids, _ := json.Marshal(l.ExternalIDs) // map keys sorted: stable
	fmt.Fprintf(h, "%s\x00%s\x00%s\x00%s\x00%d\x00", l.Action, ids, l.Datapoints.Status, l.Datapoints.Source, l.Datapoints.AgeSeconds)
	dp := engine.Datapoints{Status: l.Datapoints.Status, Origin: l.Datapoints.Source,
		Age: time.Duration(l.Datapoints.AgeSeconds) * time.Second}
	if dp.Status == engine.StatusOK {
		if len(l.Datapoints.Payload) == 0 {
			return engine.Request{}, engine.Datapoints{}, key, false
		}
		pkey := sha256.Sum256(l.Datapoints.Payload)
		p, ok := payloads[pkey]
		if !ok {
			var err error
			if p, err = engine.ParsePayload(bytes.Clone(l.Datapoints.Payload)); err != nil {
				return engine.Request{}, engine.Datapoints{}, key, false
			}
			if len(payloads) >= 10_000 {
				clear(payloads)
			}
			payloads[pkey] = p
		}
		dp.Payload = p
		h.Write(pkey[:])
	}
	h.Sum(key[:0])
	// External ID values are logged hashed: policies see the hashes.
	return engine.Request{Action: action, ExternalIDs: l.ExternalIDs}, dp, key, true
}

func symmetricDifference(a, b []string) []string {
	var out []string
	for _, x := range a {
		if !slices.Contains(b, x) {
			out = append(out, x)
		}
	}
	for _, x := range b {
		if !slices.Contains(a, x) {
			out = append(out, x)
		}
	}
	return out
}
