package engine

// The memos: the decision by reasons, for a whole policy set (byReasons,
// when the decision rule is a function of the reasons alone) and for one
// staged payload (when it reads nothing else that varies per call), and the
// decision memo (Config.DecisionMemo), by the values of what a staged
// residual reads.

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
)

// byReasons is a policy set's decision table. When data.verdict.decision,
// the reasons given, reads no input and calls no nondeterministic builtin
// (stager.decisionPure), it is a function of the reasons: full evaluation
// then evaluates only data.verdict.reasons and looks the decision up, and
// evaluates the decision rule only for a set of reasons not seen before.
// The decision rule was a quarter to a third of a full evaluation.
type byReasons struct {
	reasons   *query // reasons = data.verdict.reasons
	decisions *decisionTable
}

// decisionTable maps sets of reasons (reasonsKey) to the decision the
// policy's decision rule makes on them; it stops growing at max entries.
// It is safe for concurrent use.
type decisionTable struct {
	mu  sync.RWMutex
	m   map[string]string
	max int
}

func newDecisionTable(max int) *decisionTable {
	return &decisionTable{m: map[string]string{}, max: max}
}

func (t *decisionTable) get(key string) (string, bool) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	d, ok := t.m[key]
	return d, ok
}

func (t *decisionTable) put(key, decision string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.m) < t.max {
		t.m[key] = decision
	}
}

// maxDecisionsPerSet bounds a policy set's decision table.
const maxDecisionsPerSet = 4096

// evalByReasons is full evaluation through the set's decision table.
func (p *PolicySet) evalByReasons(ctx context.Context, req Request, dp Datapoints) (Decision, error) {
	return p.decideByReasons(ctx, p.byReasons.reasons, p.query, p.byReasons.decisions, StageFull, req, dp)
}

// decideByReasons evaluates reasonsQ, which binds only the reasons, and
// looks the decision up in table; only for a set of reasons the table does
// not know does it evaluate fullQ, which binds both, and remember its
// decision.
func (p *PolicySet) decideByReasons(ctx context.Context, reasonsQ, fullQ *query, table *decisionTable, kind StageKind, req Request, dp Datapoints) (Decision, error) {
	input, err := buildInput(req, dp, !reasonsQ.payloadFree)
	if err != nil {
		return Decision{}, err
	}
	start := time.Now()
	reasons, err := evalReasons(ctx, reasonsQ, input)
	if err != nil {
		return Decision{}, p.policyErr(ctx, err)
	}
	if decision, ok := table.get(reasonsKey(reasons)); ok {
		return p.decision(decision, reasons, kind, dp, time.Since(start)), nil
	}
	d, err := p.evalQuery(ctx, fullQ, kind, req, dp, nil)
	if err == nil {
		table.put(reasonsKey(d.Reasons), d.Decision)
	}
	return d, err
}

// evalReasons evaluates q, which binds only the reasons, on input, and
// checks them.
func evalReasons(ctx context.Context, q *query, input ast.Value) ([]Reason, error) {
	_, reasonsT, err := q.eval(ctx, input, nil)
	if err != nil {
		return nil, err
	}
	return parseReasons(reasonsT)
}

// maxDecisionsPerPayload bounds the decisions a staged payload keeps by
// their reasons.
const maxDecisionsPerPayload = 16

// answer is a policy output.
type answer struct {
	decision string
	reasons  []Reason
}

// maxMemoPerPayload bounds the answers a staged payload keeps in the
// decision memo.
const maxMemoPerPayload = 64

// evalResidual answers one call on a staged payload's residual: from the
// decision memo when it is on and has the call's key, else by evaluating.
func (st *staged) evalResidual(ctx context.Context, req Request, dp Datapoints) (Decision, error) {
	if st.memo == nil {
		return st.evalResidualOnce(ctx, req, dp)
	}
	start := time.Now()
	key := memoKey(st.residual.reads, req, dp)
	st.mu.Lock()
	a, ok := st.memo[key]
	st.mu.Unlock()
	if ok {
		return st.set.decision(a.decision, a.reasons, StageMemo, dp, time.Since(start)), nil
	}
	d, err := st.evalResidualOnce(ctx, req, dp)
	if err == nil {
		st.mu.Lock()
		if len(st.memo) < maxMemoPerPayload {
			st.memo[key] = answer{d.Decision, d.Reasons}
		}
		st.mu.Unlock()
	}
	return d, err
}

// evalResidualOnce evaluates the residual for one call. When the decision
// rule reads nothing but the reasons that varies, it evaluates only the
// reasons, and the decision rule only for a set of reasons not seen before
// on this payload.
func (st *staged) evalResidualOnce(ctx context.Context, req Request, dp Datapoints) (Decision, error) {
	if st.decisions == nil {
		return st.set.evalQuery(ctx, st.residual.full, StageResidual, req, dp, nil)
	}
	return st.set.decideByReasons(ctx, st.residual.reasons, st.residual.full, st.decisions, StageResidual, req, dp)
}

// memoKey renders the values a call gives the refs a residual reads, each
// length-prefixed and typed, so that two calls share a key only when the
// residual reads the same values in both. It reads the request's Go values
// directly: building the policy input costs more.
func memoKey(reads []ast.Ref, req Request, dp Datapoints) string {
	b := make([]byte, 0, 64)
	for _, ref := range reads {
		v, ok := valueAt(ref, req, dp)
		b = appendValue(b, v, ok)
	}
	return string(b)
}

// valueAt returns the value of ref, an input ref under input.action,
// input.external_ids or input.upstream.age_seconds, as buildInput would
// give it, and false when it is undefined.
func valueAt(ref ast.Ref, req Request, dp Datapoints) (any, bool) {
	var v any
	switch ref[1].Value.(ast.String) {
	case "action":
		v = req.Action
	case "external_ids":
		ids := make(map[string]any, len(req.ExternalIDs))
		for k, id := range req.ExternalIDs {
			ids[k] = id
		}
		v = ids
	case "upstream": // input.upstream.age_seconds
		if dp.Payload == nil {
			return nil, false
		}
		return int(dp.Age / time.Second), true
	}
	for _, part := range ref[2:] {
		switch cur := v.(type) {
		case map[string]any:
			k, isString := part.Value.(ast.String)
			if !isString {
				return nil, false
			}
			var ok bool
			if v, ok = cur[string(k)]; !ok {
				return nil, false
			}
		case []any:
			n, ok := part.Value.(ast.Number)
			i, isInt := n.Int()
			if !ok || !isInt || i < 0 || i >= len(cur) {
				return nil, false
			}
			v = cur[i]
		default:
			return nil, false
		}
	}
	return v, true
}

// appendValue renders one value for memoKey.
func appendValue(b []byte, v any, defined bool) []byte {
	field := func(tag byte, s string) []byte {
		b = append(b, tag)
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		return append(b, s...)
	}
	switch x := v.(type) {
	case nil:
		if !defined {
			return append(b, 'u')
		}
		return append(b, 'z')
	case string:
		return field('s', x)
	case json.Number:
		return field('n', string(x))
	case int:
		return field('i', strconv.Itoa(x))
	default: // objects, arrays, booleans: decoded JSON always marshals
		j, _ := json.Marshal(x)
		return field('j', string(j))
	}
}

// reasonsKey identifies a sorted set of reasons.
func reasonsKey(reasons []Reason) string {
	var b strings.Builder
	for _, r := range reasons {
		b.WriteString(r.Code)
		b.WriteByte(0)
		b.WriteString(r.Effect)
		b.WriteByte(0)
		b.WriteString(r.Message)
		b.WriteByte(0)
	}
	return b.String()
}
