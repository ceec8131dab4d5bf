package engine

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// DefaultShadowQueue is how many decisions may wait for shadow evaluation
// before new ones are dropped (and counted).
const DefaultShadowQueue = 1024

// shadowTimeout bounds one shadow evaluation.
const shadowTimeout = time.Second

// effectIndex orders decisions for the live×shadow matrix.
var effectIndex = map[string]int{Allow: 0, Challenge: 1, Deny: 2}

// Disagreement is a decision the shadow set made differently from the live
// one: another decision, or other reason codes.
type Disagreement struct {
	DecisionID     string
	Live, Shadow   string
	LiveReasons    []string
	ShadowReasons  []string
	LiveRevision   string
	ShadowRevision string
}

// ShadowStats counts shadow evaluations.
type ShadowStats struct {
	Revision string
	// Total counts evaluated decisions; Agreed those with the same decision
	// and reason codes; Errors shadow evaluations that failed; Dropped
	// decisions not evaluated because the queue was full.
	Total, Agreed, Errors, Dropped uint64
	// Matrix[live][shadow] counts decisions by live and shadow decision.
	Matrix map[string]map[string]uint64
}

type shadowJob struct {
	req  Request
	dp   Datapoints
	live Decision
}

// shadow evaluates a second policy set off the request path.
type shadow struct {
	slot       *Slot
	queue      chan shadowJob
	onDisagree func(Disagreement)
	done       sync.WaitGroup

	total, agreed, errors, dropped atomic.Uint64
	matrix                         [3][3]atomic.Uint64
}

func newShadow(slot *Slot, queue int, onDisagree func(Disagreement)) *shadow {
	s := &shadow{slot: slot, queue: make(chan shadowJob, queue), onDisagree: onDisagree}
	s.done.Go(s.work)
	return s
}

// offer queues a decision for shadow evaluation without ever blocking.
func (s *shadow) offer(req Request, dp Datapoints, live Decision) {
	select {
	case s.queue <- shadowJob{req, dp, live}:
	default:
		s.dropped.Add(1)
	}
}

func (s *shadow) work() {
	for job := range s.queue {
		s.evaluate(job)
	}
}

// evaluate evaluates one decision with the shadow set, counts it, reports a
// disagreement, and returns the shadow decision (false when it failed).
func (s *shadow) evaluate(job shadowJob) (Decision, bool) {
	ctx, cancel := context.WithTimeout(context.Background(), shadowTimeout)
	defer cancel()
	set := s.slot.Current()
	d, err := set.Eval(ctx, job.req, job.dp)
	s.total.Add(1)
	if err != nil {
		s.errors.Add(1)
		return Decision{}, false
	}
	d.ID = job.live.ID
	s.matrix[effectIndex[job.live.Decision]][effectIndex[d.Decision]].Add(1)
	liveCodes, shadowCodes := ReasonCodes(job.live.Reasons), ReasonCodes(d.Reasons)
	if job.live.Decision == d.Decision && slices.Equal(liveCodes, shadowCodes) {
		s.agreed.Add(1)
		return d, true
	}
	if s.onDisagree != nil {
		s.onDisagree(Disagreement{
			DecisionID: job.live.ID, Live: job.live.Decision, Shadow: d.Decision,
			LiveReasons: liveCodes, ShadowReasons: shadowCodes,
			LiveRevision: job.live.Revision, ShadowRevision: set.revision,
		})
	}
	return d, true
}

// close stops taking work and waits for the queue to drain.
func (s *shadow) close() {
	close(s.queue)
	s.done.Wait()
}

func (s *shadow) stats() ShadowStats {
	st := ShadowStats{
		Revision: s.slot.Current().revision,
		Total:    s.total.Load(), Agreed: s.agreed.Load(), Errors: s.errors.Load(), Dropped: s.dropped.Load(),
		Matrix: map[string]map[string]uint64{},
	}
	for live, i := range effectIndex {
		st.Matrix[live] = map[string]uint64{}
		for sh, j := range effectIndex {
			st.Matrix[live][sh] = s.matrix[i][j].Load()
		}
	}
	return st
}

// ReasonCodes returns the distinct codes of rs, sorted.
func ReasonCodes(rs []Reason) []string {
	codes := make([]string, 0, len(rs))
	for _, r := range rs {
		if !slices.Contains(codes, r.Code) {
			codes = append(codes, r.Code)
		}
	}
	slices.Sort(codes) // a no-op on a Decision's reasons, sorted already
	return codes
}
