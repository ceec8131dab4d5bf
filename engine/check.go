package engine

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"slices"
	"strings"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/format"
)

// ErrContract is wrapped when a policy set breaks the output contract in a
// way visible without evaluating it (see CheckContract).
var ErrContract = errors.New("policy set breaks the output contract")

// Problem is one thing wrong with a policy file, at a place in it.
type Problem struct {
	File    string
	Row     int
	Message string
}

func (p Problem) String() string {
	if p.Row > 0 {
		return fmt.Sprintf("%s:%d: %s", p.File, p.Row, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.File, p.Message)
}

func problemAt(loc *ast.Location, format string, args ...any) Problem {
	p := Problem{Message: fmt.Sprintf(format, args...)}
	if loc != nil {
		p.File, p.Row = loc.File, loc.Row
	}
	return p
}

// contractErr joins problems into one error wrapping ErrContract.
func contractErr(problems []Problem) error {
	if len(problems) == 0 {
		return nil
	}
	lines := make([]string, len(problems))
	for i, p := range problems {
		lines[i] = p.String()
	}
	return fmt.Errorf("%w:\n%s", ErrContract, strings.Join(lines, "\n"))
}

// CheckContract compiles fsys in strict mode and checks, statically, the
// output contract of every rule defining data.verdict.decision or
// data.verdict.reasons: both defined; decision a complete rule whose
// constant values (else branches included) are allow, challenge or deny;
// reasons a set whose literal elements are objects with code, effect and
// message, constant effects within allow/challenge/deny. Values computed at
// run time are checked on every evaluation instead. A load or compile error
// is returned wrapping ErrPolicyLoad; contract problems are returned as
// Problems.
func CheckContract(fsys fs.FS) ([]Problem, error) {
	l, err := load(fsys)
	if err != nil {
		return nil, err
	}
	var problems []Problem
	for _, ref := range []ast.Ref{decisionRef, reasonsRef} {
		if len(l.compiler.GetRulesExact(ref)) == 0 {
			problems = append(problems, Problem{File: "(policy set)", Message: ref.String() + " is not defined"})
		}
	}
	for _, name := range sortedKeys(l.modules) {
		m := l.modules[name]
		if !m.Package.Path.Equal(ast.MustParseRef("data.verdict")) {
			continue
		}
		for _, r := range m.Rules {
			switch r.Head.Ref().String() {
			case "decision":
				problems = append(problems, checkDecisionRule(r)...)
			case "reasons":
				problems = append(problems, checkReasonsRule(r)...)
			}
		}
	}
	return problems, nil
}

func checkDecisionRule(r *ast.Rule) []Problem {
	if len(r.Head.Args) > 0 || r.Head.Key != nil {
		return []Problem{problemAt(r.Location, "decision must be a complete rule (decision := ...), not a function or a set")}
	}
	var problems []Problem
	for ; r != nil; r = r.Else {
		if r.Head.Value == nil {
			continue
		}
		if v, ok := r.Head.Value.Value.(ast.String); ok && !validEffect(string(v)) {
			problems = append(problems, problemAt(r.Head.Value.Location, "decision %s is not one of allow, challenge, deny", v))
		} else if !ok && ast.IsConstant(r.Head.Value.Value) {
			problems = append(problems, problemAt(r.Head.Value.Location, "decision %v is not a string", r.Head.Value))
		}
	}
	return problems
}

func checkReasonsRule(r *ast.Rule) []Problem {
	switch {
	case len(r.Head.Args) > 0:
		return []Problem{problemAt(r.Location, "reasons must be a set, not a function")}
	case r.Head.Key != nil: // reasons contains X if ...
		return checkReason(r.Head.Key)
	}
	var problems []Problem
	for ; r != nil; r = r.Else {
		if r.Head.Value == nil {
			continue
		}
		switch v := r.Head.Value.Value.(type) {
		case ast.Set:
			v.Foreach(func(t *ast.Term) { problems = append(problems, checkReason(t)...) })
		case *ast.SetComprehension:
			problems = append(problems, checkReason(v.Term)...)
		case ast.Object, *ast.Array, ast.String, ast.Number, ast.Boolean, ast.Null, *ast.ArrayComprehension, *ast.ObjectComprehension:
			problems = append(problems, problemAt(r.Head.Value.Location, "reasons must be a set of objects, not %s", ast.ValueName(v)))
		}
	}
	return problems
}

// checkReason checks one reason term, when it is an object literal.
func checkReason(t *ast.Term) []Problem {
	switch v := t.Value.(type) {
	case ast.Object:
		var problems []Problem
		for _, key := range []string{"code", "effect", "message"} {
			val := v.Get(ast.StringTerm(key))
			switch {
			case val == nil:
				problems = append(problems, problemAt(t.Location, "reason has no %q field", key))
			case ast.IsConstant(val.Value):
				s, ok := val.Value.(ast.String)
				if !ok || s == "" {
					problems = append(problems, problemAt(val.Location, "reason %s must be a non-empty string, got %v", key, val))
				} else if key == "effect" && !validEffect(string(s)) {
					problems = append(problems, problemAt(val.Location, "reason effect %s is not one of allow, challenge, deny", s))
				}
			}
		}
		return problems
	case ast.Var, ast.Ref, ast.Call:
		return nil // computed: checked at evaluation
	default:
		return []Problem{problemAt(t.Location, "a reason must be an object with code, effect and message, not %s", ast.ValueName(v))}
	}
}

// CheckFormat reports every .rego file of fsys that `opa fmt` would change.
func CheckFormat(fsys fs.FS) ([]Problem, error) {
	snap, names, err := snapshot(fsys)
	if err != nil {
		return nil, err
	}
	var problems []Problem
	for _, name := range names {
		if !strings.HasSuffix(name, ".rego") {
			continue
		}
		src := snap[name].Data
		out, err := Format(name, src)
		if err != nil {
			problems = append(problems, Problem{File: name, Message: "cannot be formatted: " + err.Error()})
			continue
		}
		if !bytes.Equal(out, src) {
			problems = append(problems, Problem{File: name, Row: firstDifferentLine(src, out), Message: "not formatted (run verdict fmt -w)"})
		}
	}
	return problems, nil
}

// Format formats one Rego v1 module the way `opa fmt` does.
func Format(name string, src []byte) ([]byte, error) {
	return format.SourceWithOpts(name, src, format.Opts{RegoVersion: ast.RegoV1})
}

func firstDifferentLine(a, b []byte) int {
	al, bl := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := range min(len(al), len(bl)) {
		if !bytes.Equal(al[i], bl[i]) {
			return i + 1
		}
	}
	return min(len(al), len(bl)) + 1
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
