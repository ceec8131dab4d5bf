package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"slices"
	"strings"
	"testing/fstest"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/open-policy-agent/opa/v1/loader"
	"github.com/open-policy-agent/opa/v1/storage"
	"github.com/open-policy-agent/opa/v1/storage/inmem"
)

// ErrPolicyLoad is wrapped by every error about a policy set that cannot be
// loaded: unreadable files, parse or compile errors, a missing rule.
var ErrPolicyLoad = errors.New("policy set not loadable")

// The rules the engine queries; a policy set must define both.
var (
	decisionRef = ast.MustParseRef("data.verdict.decision")
	reasonsRef  = ast.MustParseRef("data.verdict.reasons")
)

// decisionQuery binds both outputs in one evaluation; reasonsQuery binds
// only the reasons (see byReasons).
var (
	decisionQuery = ast.MustParseBody("decision = data.verdict.decision; reasons = data.verdict.reasons")
	reasonsQuery  = ast.MustParseBody("reasons = data.verdict.reasons")
)

// PolicySet is a compiled, immutable policy set: the unit hot reload swaps.
type PolicySet struct {
	revision string
	loadedAt time.Time
	files    []string
	query    *query
	stager   *stager // nil: staging does not apply
	// byReasons, when set, is the decision table full evaluation uses.
	byReasons *byReasons
	// unoptimized says why full evaluation queries the rules as written
	// (optimize.go); "" when it queries the optimized reasons.
	unoptimized string
	// deterministic: no module calls a nondeterministic builtin (time.now_ns,
	// rand.intn, http.send, ...), so equal inputs give equal decisions.
	deterministic bool
}

// Deterministic reports whether equal inputs always give equal decisions:
// no module calls a nondeterministic builtin (time.now_ns, rand.intn,
// http.send, uuid.rfc4122, ...). Tools may memoize evaluations only then.
func (p *PolicySet) Deterministic() bool { return p.deterministic }

func deterministic(modules map[string]*ast.Module) bool {
	ok := true
	for _, m := range modules {
		ast.WalkExprs(m, func(e *ast.Expr) bool {
			if e.IsCall() {
				if b, found := ast.BuiltinMap[e.Operator().String()]; found && b.Nondeterministic {
					ok = false
				}
			}
			return !ok
		})
	}
	return ok
}

// Optimized reports whether full evaluation queries the reasons partially
// evaluated against the set's data at load (optimize.go), and if not, why.
func (p *PolicySet) Optimized() (bool, string) { return p.unoptimized == "", p.unoptimized }

// Revision is the first 12 hex digits of a SHA-256 over the loaded files'
// names and contents.
func (p *PolicySet) Revision() string { return p.revision }

// Files lists the loaded files, sorted.
func (p *PolicySet) Files() []string { return slices.Clone(p.files) }

// LoadedAt is when the set was compiled.
func (p *PolicySet) LoadedAt() time.Time { return p.loadedAt }

// disabledBuiltins are refused at load: a policy decides on its input and
// data, and never reaches the network or the host.
var disabledBuiltins = []string{"http.send", "net.lookup_ip_addr", "opa.runtime"}

// capabilities are OPA's, minus disabledBuiltins.
var capabilities = func() *ast.Capabilities {
	caps := ast.CapabilitiesForThisVersion()
	caps.Builtins = slices.DeleteFunc(caps.Builtins, func(b *ast.Builtin) bool {
		return slices.Contains(disabledBuiltins, b.Name)
	})
	return caps
}()

// isPolicyFile reports whether the loader reads name, the way `opa run DIR`
// does: Rego modules, and JSON or YAML data documents.
func isPolicyFile(name string) bool {
	switch path.Ext(name) {
	case ".rego", ".json", ".yaml", ".yml":
		return true
	}
	return false
}

// skipDir reports directories that never hold policy: hidden ones and
// testdata (golden decision cases live there, not data documents).
func skipDir(name string) bool {
	return name != "." && (strings.HasPrefix(name, ".") || name == "testdata")
}

// snapshot reads every policy file of fsys into memory, so the revision is
// computed over exactly the bytes that get compiled, even while an editor
// rewrites the directory.
func snapshot(fsys fs.FS) (fstest.MapFS, []string, error) {
	snap := fstest.MapFS{}
	var names []string
	err := fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if skipDir(d.Name()) {
				return fs.SkipDir
			}
			return nil
		}
		if !isPolicyFile(p) {
			return nil
		}
		b, err := fs.ReadFile(fsys, p)
		if err != nil {
			return err
		}
		snap[p] = &fstest.MapFile{Data: b, Mode: 0o444}
		names = append(names, p)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w: reading policy files: %w", ErrPolicyLoad, err)
	}
	slices.Sort(names)
	return snap, names, nil
}

func revision(snap fstest.MapFS, names []string) string {
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(snap[n].Data))
		h.Write(snap[n].Data)
	}
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// loaded is a policy directory parsed, merged and compiled, before the
// engine's query is prepared on it. The tester shares it.
type loaded struct {
	files    []string
	revision string
	modules  map[string]*ast.Module
	store    storage.Store
	data     map[string]any // the data documents, for a store of one's own
	compiler *ast.Compiler
	// support are the optimized reasons' modules (optimize.go), also in
	// compiler; nil when the set is not optimized.
	support map[string]*ast.Module
}

// newStore holds the data documents as AST values, so that evaluations
// read them without converting them on every read (as opa run
// --optimize-store-for-read-speed does). Evaluations only read them.
func newStore(data map[string]any) storage.Store {
	return inmem.NewFromObjectWithOpts(data, inmem.OptReturnASTValuesOnRead(true))
}

// load reads, parses and compiles the policy files of fsys in strict mode,
// test files included: what the tests and the contract check read. Data
// files are mounted at the root of data, as `opa run DIR` mounts them.
func load(fsys fs.FS) (*loaded, error) { return loadFor(fsys, false) }

// loadServing is load without the test files no decision can reach
// (servingModules): what a policy set serves with. The gate (Verify) still
// compiles and runs them.
func loadServing(fsys fs.FS) (*loaded, error) { return loadFor(fsys, true) }

func loadFor(fsys fs.FS, serving bool) (*loaded, error) {
	snap, names, err := snapshot(fsys)
	if err != nil {
		return nil, err
	}
	if !slices.ContainsFunc(names, func(n string) bool { return path.Ext(n) == ".rego" }) {
		return nil, fmt.Errorf("%w: no .rego files found", ErrPolicyLoad)
	}
	res, err := loader.NewFileLoader().
		WithFS(snap).
		WithRegoVersion(ast.RegoV1).
		WithProcessAnnotation(true).
		All([]string{"."})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrPolicyLoad, err)
	}
	store := newStore(res.Documents)
	modules := res.ParsedModules()
	if serving {
		modules = servingModules(modules)
	}
	compiler := compile(modules)
	if compiler.Failed() {
		for _, name := range disabledBuiltins {
			if strings.Contains(compiler.Errors.Error(), "undefined function "+name) {
				return nil, fmt.Errorf("%w: %w (%s are disabled: policies must not reach the network or the host)",
					ErrPolicyLoad, compiler.Errors, strings.Join(disabledBuiltins, ", "))
			}
		}
		return nil, fmt.Errorf("%w: %w", ErrPolicyLoad, compiler.Errors)
	}
	return &loaded{
		files:    names,
		revision: revision(snap, names),
		modules:  modules,
		store:    store,
		data:     res.Documents,
		compiler: compiler,
	}, nil
}

// servingModules returns modules without the test files (*_test.rego) that
// no decision can reach: those whose package no other file shares, extends
// or refers to. A set's compilations (optimize.go, stage.go) then hold its
// rules, not its tests': the shipped set is 0.76 MB of live heap instead of
// 1.75, which every garbage collection marks, and compiles in a third of
// the time (docs/benchmarks.md, seventh part). A test file that defines
// rules of the policy's own package, or of one the policy reads (directly or
// through another such file), stays.
func servingModules(modules map[string]*ast.Module) map[string]*ast.Module {
	out := make(map[string]*ast.Module, len(modules))
	for name, m := range modules {
		if !strings.HasSuffix(name, "_test.rego") {
			out[name] = m
		}
	}
	for grew := len(out) < len(modules); grew; {
		grew = false
		for name, m := range modules {
			if _, in := out[name]; !in && reached(m.Package.Path, out) {
				out[name], grew = m, true
			}
		}
	}
	return out
}

// reached reports whether any of modules is in package pkg, below or above
// it, or refers to a document of data that pkg's rules may define: a ref
// (an import's path included) whose ground prefix is a prefix of pkg (data,
// data[x]) or under it.
func reached(pkg ast.Ref, modules map[string]*ast.Module) bool {
	for _, m := range modules {
		if m.Package.Path.HasPrefix(pkg) || pkg.HasPrefix(m.Package.Path) {
			return true
		}
		found := false
		ast.WalkRefs(m, func(r ast.Ref) bool {
			found = found || r.HasPrefix(ast.DefaultRootRef) && (r.HasPrefix(pkg) || pkg.HasPrefix(r.GroundPrefix()))
			return found
		})
		if found {
			return true
		}
	}
	return false
}

// compile compiles parsed modules the way every policy set is compiled:
// strict, with Verdict's capabilities, print statements kept.
func compile(modules map[string]*ast.Module) *ast.Compiler {
	return compileModules(modules, true)
}

// compileDerived compiles a policy set's modules with partial evaluation's
// output (optimize.go) among them. Not strict: that output is not held to
// authors' rules (it can leave a default function's argument unused), and
// the policy's own modules passed strict compilation in load.
func compileDerived(modules map[string]*ast.Module) *ast.Compiler {
	return compileModules(modules, false)
}

func compileModules(modules map[string]*ast.Module, strict bool) *ast.Compiler {
	c := ast.NewCompiler().
		WithStrict(strict).
		WithCapabilities(capabilities).
		WithEnablePrintStatements(true)
	c.Compile(modules)
	return c
}

// Compile loads and compiles the policy set in fsys and prepares the
// decision query on it. It fails, wrapping ErrPolicyLoad, when any file does
// not parse or compile, or when data.verdict.decision or data.verdict.reasons
// is not defined.
func Compile(ctx context.Context, fsys fs.FS) (*PolicySet, error) {
	l, err := loadServing(fsys)
	if err != nil {
		return nil, err
	}
	var missing []string
	for _, ref := range []ast.Ref{decisionRef, reasonsRef} {
		if len(l.compiler.GetRulesExact(ref)) == 0 {
			missing = append(missing, ref.String())
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("%w: the policy set must define %s", ErrPolicyLoad, strings.Join(missing, " and "))
	}
	optimized, support, optErr := optimizeReasons(ctx, l)
	if optErr == nil {
		// The policy's rules are the same in the optimized reasons'
		// compiler: it serves every query, and the first is dropped.
		l.compiler, l.support = optimized.compiler, support
	}
	pq, err := newQuery(l.compiler, l.store, decisionQuery)
	if err != nil {
		return nil, fmt.Errorf("%w: preparing the decision query: %w", ErrPolicyLoad, err)
	}
	// A set whose reasons is not a set cannot be staged; full evaluation
	// reports the broken contract on every decision.
	stager, _ := newStager(ctx, l)
	set := &PolicySet{
		revision:      l.revision,
		loadedAt:      time.Now().UTC(),
		files:         l.files,
		query:         pq,
		stager:        stager,
		deterministic: deterministic(l.compiler.Modules),
	}
	switch {
	case stager == nil || !stager.decisionPure:
		set.unoptimized = "the decision rule reads more than the reasons (no decision table)"
	case optErr != nil:
		set.unoptimized = optErr.Error()
		rq, err := newQuery(l.compiler, l.store, reasonsQuery)
		if err != nil {
			return nil, fmt.Errorf("%w: preparing the reasons query: %w", ErrPolicyLoad, err)
		}
		set.byReasons = &byReasons{reasons: rq, decisions: newDecisionTable(maxDecisionsPerSet)}
	default:
		set.byReasons = &byReasons{reasons: optimized, decisions: newDecisionTable(maxDecisionsPerSet)}
	}
	return set, nil
}
