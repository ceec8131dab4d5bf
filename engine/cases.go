package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"time"

	"sigs.k8s.io/yaml"
)

// ErrInvalidCase is wrapped by errors about golden decision case files.
var ErrInvalidCase = errors.New("invalid decision case")

// Case is one golden decision case: datapoints (from a scenario token, an
// inline payload, or an upstream status alone) plus an action, and the
// decision and reason codes the policy set must produce. Cases are written
// in YAML files:
//
//	cases:
//	  - name: vpn on a large checkout is challenged
//	    scenario: demo-vpn            # token looked up through a Source
//	    action: {type: checkout, amount: 900, currency: USD}
//	    want: {decision: challenge, reasons: [anonymizing_proxy]}
//	  - name: cside down on login falls back to allow
//	    upstream: unavailable         # no datapoints: not_found, unavailable or rejected
//	    action: {type: login}
//	    want: {decision: allow, reasons: [datapoints_unavailable]}
//	  - name: inline payload
//	    datapoints: {bot: {result: bad}}
//	    action: {type: login}
//	    want: {decision: deny, reasons: [bot_detected]}
//	  - name: stale data on checkout
//	    scenario: demo-human
//	    stale_seconds: 1200           # served stale (cside down), this old
//	    action: {type: checkout, amount: 10}
//	    want: {decision: challenge, reasons: [stale_datapoints]}
type Case struct {
	Name       string          `json:"name"`
	Scenario   string          `json:"scenario,omitempty"`
	Datapoints json.RawMessage `json:"datapoints,omitempty"`
	Upstream   Status          `json:"upstream,omitempty"`
	// StaleSeconds, with a scenario or datapoints, serves them as stale
	// data of that age, as the cache does while cside is unavailable.
	StaleSeconds int               `json:"stale_seconds,omitempty"`
	Action       map[string]any    `json:"action"`
	ExternalIDs  map[string]string `json:"external_ids,omitempty"`
	Want         CaseWant          `json:"want"`
	// File is the file the case was read from, set by LoadCases.
	File string `json:"-"`
}

// CaseWant is a case's expected outcome. Reasons lists reason codes, in any
// order; an empty list means no reason may fire.
type CaseWant struct {
	Decision string   `json:"decision"`
	Reasons  []string `json:"reasons"`
}

type caseFile struct {
	Cases []Case `json:"cases"`
}

// LoadCases reads every *.yaml and *.yml file directly in dir of fsys. A
// missing dir yields no cases. Each case is checked: a name, an action with
// a type, exactly one of scenario, datapoints or upstream, and a valid
// expected decision.
func LoadCases(fsys fs.FS, dir string) ([]Case, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidCase, err)
	}
	var cases []Case
	for _, e := range entries {
		if e.IsDir() || (path.Ext(e.Name()) != ".yaml" && path.Ext(e.Name()) != ".yml") {
			continue
		}
		name := path.Join(dir, e.Name())
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrInvalidCase, err)
		}
		fileCases, err := parseCases(name, b)
		if err != nil {
			return nil, err
		}
		cases = append(cases, fileCases...)
	}
	return cases, nil
}

func parseCases(name string, b []byte) ([]Case, error) {
	js, err := yaml.YAMLToJSON(b)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCase, name, err)
	}
	dec := json.NewDecoder(bytes.NewReader(js))
	dec.UseNumber()
	dec.DisallowUnknownFields()
	var f caseFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%w: %s: %w", ErrInvalidCase, name, err)
	}
	seen := map[string]bool{}
	for i := range f.Cases {
		c := &f.Cases[i]
		c.File = name
		if err := c.validate(); err != nil {
			return nil, fmt.Errorf("%w: %s: case %d (%q): %w", ErrInvalidCase, name, i+1, c.Name, err)
		}
		if seen[c.Name] {
			return nil, fmt.Errorf("%w: %s: case name %q used twice", ErrInvalidCase, name, c.Name)
		}
		seen[c.Name] = true
	}
	return f.Cases, nil
}

func (c *Case) validate() error {
	sources := 0
	for _, set := range []bool{c.Scenario != "", len(c.Datapoints) > 0, c.Upstream != ""} {
		if set {
			sources++
		}
	}
	switch {
	case c.Name == "":
		return errors.New("name is required")
	case sources != 1:
		return errors.New("exactly one of scenario, datapoints or upstream is required")
	case c.Upstream != "" && !slices.Contains([]Status{StatusNotFound, StatusUnavailable, StatusRejected}, c.Upstream):
		return fmt.Errorf("upstream %q must be not_found, unavailable or rejected", c.Upstream)
	case c.StaleSeconds < 0 || (c.StaleSeconds > 0 && c.Upstream != ""):
		return errors.New("stale_seconds must be positive and goes with scenario or datapoints")
	case c.Action == nil:
		return errors.New("action is required")
	case !validEffect(c.Want.Decision):
		return fmt.Errorf("want.decision %q must be allow, challenge or deny", c.Want.Decision)
	}
	if _, ok := c.Action["type"].(string); !ok {
		return errors.New("action.type must be a string")
	}
	return nil
}

// datapoints returns what the policy sees for the case; scenarios are
// looked up through src.
func (c *Case) datapoints(ctx context.Context, src Source) (Datapoints, error) {
	switch {
	case c.Scenario != "":
		if src == nil {
			return Datapoints{}, fmt.Errorf("case %q: scenario %q needs a datapoint source", c.Name, c.Scenario)
		}
		return src.Datapoints(ctx, c.Scenario), nil
	case len(c.Datapoints) > 0:
		p, err := ParsePayload(c.Datapoints)
		if err != nil {
			return Datapoints{}, fmt.Errorf("case %q: datapoints: %w", c.Name, err)
		}
		return Datapoints{Status: StatusOK, Origin: OriginUpstream, Payload: p}, nil
	case c.Upstream == StatusNotFound || c.Upstream == StatusRejected:
		return Datapoints{Status: c.Upstream, Origin: OriginUpstream}, nil // cside answered
	default:
		return Datapoints{Status: c.Upstream, Origin: OriginNone}, nil
	}
}

// RunCase evaluates c on the policy set, looking scenarios up through src,
// and returns the decision and a description of every way it differs from
// c.Want (none when the case passes).
func (p *PolicySet) RunCase(ctx context.Context, c Case, src Source) (Decision, []string, error) {
	dp, err := c.datapoints(ctx, src)
	if err != nil {
		return Decision{}, nil, err
	}
	if c.StaleSeconds > 0 {
		if dp.Status != StatusOK {
			return Decision{}, nil, fmt.Errorf("case %q: stale_seconds needs datapoints, the scenario gave %s", c.Name, dp.Status)
		}
		dp.Origin, dp.Age = OriginStale, time.Duration(c.StaleSeconds)*time.Second
	}
	req := Request{Token: c.Scenario, Action: c.Action, ExternalIDs: c.ExternalIDs}
	d, err := p.Eval(ctx, req, dp)
	if err != nil {
		return Decision{}, nil, fmt.Errorf("case %q: %w", c.Name, err)
	}
	var diffs []string
	if diff, err := p.checkFastPaths(ctx, req, dp); err != nil {
		return Decision{}, nil, fmt.Errorf("case %q: %w", c.Name, err)
	} else if diff != "" {
		diffs = append(diffs, diff)
	}
	if d.Decision != c.Want.Decision {
		diffs = append(diffs, fmt.Sprintf("decision = %s, want %s", d.Decision, c.Want.Decision))
	}
	got := ReasonCodes(d.Reasons)
	want := slices.Clone(c.Want.Reasons)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		diffs = append(diffs, fmt.Sprintf("reasons = [%s], want [%s]", strings.Join(got, " "), strings.Join(want, " ")))
	}
	return d, diffs, nil
}

// checkFastPaths evaluates req on dp with the decision query itself, and
// through each shortcut the serving path takes: the decision table (all
// decisions) and staging (a payload served from the cache). It describes
// any difference ("" when none): the proof, case by case, that the
// shortcuts do not change answers.
func (p *PolicySet) checkFastPaths(ctx context.Context, req Request, dp Datapoints) (string, error) {
	want, err := p.evalQuery(ctx, p.query, StageFull, req, dp, nil)
	if err != nil {
		return "", err
	}
	same := func(d Decision) bool { return d.Decision == want.Decision && slices.Equal(d.Reasons, want.Reasons) }
	if p.byReasons != nil {
		// The table answers a set of reasons it has not seen with the
		// decision query, which would hide a difference here.
		input, err := buildInput(req, dp, true)
		if err != nil {
			return "", err
		}
		if reasons, err := evalReasons(ctx, p.byReasons.reasons, input); err != nil || !slices.Equal(reasons, want.Reasons) {
			return fmt.Sprintf("full evaluation's reasons query %v = %v (error: %v), the decision query's = %v: a Verdict bug",
				p.byReasons.reasons.source, reasons, err, want.Reasons), nil
		}
	}
	if d, err := p.eval(ctx, req, dp, nil); err != nil || !same(d) {
		return fmt.Sprintf("evaluation through the decision table = %s %v (error: %v), the decision query = %s %v: a Verdict bug",
			d.Decision, d.Reasons, err, want.Decision, want.Reasons), nil
	}
	if p.stager == nil || dp.Payload == nil || dp.Origin == OriginStale {
		return "", nil // never staged
	}
	dp.Origin = OriginCache
	if want, err = p.evalQuery(ctx, p.query, StageFull, req, dp, nil); err != nil {
		return "", err
	}
	st := p.stage(ctx, dp, false)
	staged, err := st.eval(ctx, req, dp)
	if err != nil {
		return "", fmt.Errorf("staged (%s) evaluation: %w", st.kind, err)
	}
	if same(staged) {
		return "", nil
	}
	return fmt.Sprintf("staged evaluation (%s) = %s %v, full evaluation = %s %v: a Verdict bug (serve --staging=false avoids it)",
		st.kind, staged.Decision, staged.Reasons, want.Decision, want.Reasons), nil
}
