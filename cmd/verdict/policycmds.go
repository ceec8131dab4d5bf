package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/verdict-engine/verdict/api"
	"github.com/verdict-engine/verdict/cache"
	"github.com/verdict-engine/verdict/csideclient"
	"github.com/verdict-engine/verdict/csideclient/csidetest"
	"github.com/verdict-engine/verdict/engine"
	"github.com/verdict-engine/verdict/policies"
)

// The policy commands' exit codes beyond 0, 1 and 2 (see exitCode).
var (
	// errPolicyInvalid: the policies do not compile, break the output
	// contract, or are not formatted (exit 3).
	errPolicyInvalid = errors.New("policies invalid")
	// errTestsFailed: tests or golden cases failed, or coverage is below the
	// threshold (exit 4).
	errTestsFailed = errors.New("policy tests failed")
)

// policyDir returns the policy directory named by args (at most one), by
// default ./policies.
func policyDir(flags *flag.FlagSet) (string, error) {
	switch flags.NArg() {
	case 0:
		return "./policies", nil
	case 1:
		return flags.Arg(0), nil
	default:
		return "", fmt.Errorf("%w: one policy directory at most, got %q", errUsage, flags.Args())
	}
}

// parseDirArgs parses a policy command's flags and its DIR argument, and
// opens DIR.
func parseDirArgs(flags *flag.FlagSet, args []string) (string, fs.FS, error) {
	if err := parseFlags(flags, args); err != nil {
		return "", nil, err
	}
	dir, err := policyDir(flags)
	if err != nil {
		return "", nil, err
	}
	fsys, err := openDir(dir)
	return dir, fsys, err
}

// openDir checks dir is a readable directory and returns it as a file system.
func openDir(dir string) (fs.FS, error) {
	if st, err := os.Stat(dir); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%w: %q is not a readable directory", errUsage, dir)
	}
	return os.DirFS(dir), nil
}

// parseFlags parses a policy command's flags; -h is not an error.
func parseFlags(flags *flag.FlagSet, args []string) error {
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w: %w", errUsage, err)
	}
	return nil
}

// casePipeline is where golden cases and `eval --scenario` look scenario
// tokens up: the real cside client and cache in front of an in-process fake
// cside. Its breaker never opens: cases that make the fake fail on purpose
// (demo-error, demo-garbage, ...) must not change the answers of the next
// ones. close releases it.
func casePipeline() (src *cache.Cache, close func(), err error) {
	fake := csidetest.NewServer()
	client, err := csideclient.New(csideclient.Config{
		BaseURL: fake.URL,
		Breaker: csideclient.BreakerConfig{ConsecutiveFailures: math.MaxUint32, MinRequests: math.MaxUint32},
	})
	if err != nil {
		fake.Close()
		return nil, nil, err
	}
	c, err := cache.New(cache.Config{MaxCostBytes: 16 << 20}, client)
	if err != nil {
		fake.Close()
		return nil, nil, err
	}
	return c, func() { c.Close(); client.Close(); fake.Close() }, nil
}

// policyErr maps engine errors to the commands' exit-code sentinels.
func policyErr(err error) error {
	switch {
	case errors.Is(err, engine.ErrPolicyLoad), errors.Is(err, engine.ErrContract),
		errors.Is(err, engine.ErrInvalidCase), errors.Is(err, engine.ErrPolicy):
		return fmt.Errorf("%w: %w", errPolicyInvalid, err)
	case errors.Is(err, engine.ErrTestsFailed):
		return fmt.Errorf("%w: %w", errTestsFailed, err)
	}
	return err
}

// testCmd runs `verdict test [flags] [DIR]`.
func testCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("test", flag.ContinueOnError)
	flags.SetOutput(stderr)
	verbose := flags.Bool("v", false, "show print() output of every test")
	run := flags.String("run", "", "run only tests and cases whose name matches this regular expression")
	coverage := flags.Bool("coverage", false, "report line coverage per policy file")
	threshold := flags.Float64("threshold", 0, "fail when total coverage is below this percent (implies -coverage)")
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "Usage: verdict test [flags] [DIR]\n\nRuns the Rego tests and the golden cases (DIR/testdata/*.yaml) of DIR (default ./policies).\n\n")
		flags.PrintDefaults()
	}
	_, fsys, err := parseDirArgs(flags, args)
	if err != nil {
		return err
	}
	if *threshold < 0 || *threshold > 100 {
		return fmt.Errorf("%w: -threshold %v: want a percent from 0 to 100", errUsage, *threshold)
	}
	src, closeSrc, err := casePipeline()
	if err != nil {
		return err
	}
	defer closeSrc()
	suite, err := engine.RunSuite(ctx, fsys, engine.SuiteOptions{
		Run: *run, Coverage: *coverage || *threshold > 0, CaseSource: src,
	})
	if err != nil {
		return policyErr(err)
	}
	printSuite(stdout, suite, *verbose)
	if n := suite.Failed(); n > 0 {
		return fmt.Errorf("%w: %d failed", errTestsFailed, n)
	}
	if suite.Coverage != nil && suite.Coverage.Coverage < *threshold {
		return fmt.Errorf("%w: coverage %.1f%% is below the threshold %.1f%%", errTestsFailed, suite.Coverage.Coverage, *threshold)
	}
	return nil
}

// printSuite writes OPA-style results: one line per test and case, failure
// details indented, coverage, and a summary.
func printSuite(w io.Writer, s *engine.Suite, verbose bool) {
	for _, t := range s.Tests {
		status := "PASS"
		switch {
		case t.Error != nil:
			status = "ERROR"
		case t.Fail:
			status = "FAIL"
		case t.Skip:
			status = "SKIP"
		}
		fmt.Fprintf(w, "%s %s.%s (%s:%d)\n", status, t.Package, t.Name, t.Location.File, t.Location.Row)
		if t.Error != nil {
			fmt.Fprintf(w, "  %v\n", t.Error)
		}
		if t.Fail && t.FailedAt != nil && t.FailedAt.Location != nil {
			fmt.Fprintf(w, "  %s:%d: failed at: %s\n", t.FailedAt.Location.File, t.FailedAt.Location.Row, t.FailedAt.Location.Text)
		}
		if len(t.Output) > 0 && (verbose || t.Fail || t.Error != nil) {
			for line := range strings.Lines(string(t.Output)) {
				fmt.Fprintf(w, "  | %s", line)
			}
		}
	}
	for _, c := range s.Cases {
		status := "PASS"
		if !c.Pass() {
			status = "FAIL"
		}
		fmt.Fprintf(w, "%s case %q (%s)\n", status, c.Case.Name, c.Case.File)
		if c.Err != nil {
			fmt.Fprintf(w, "  %v\n", c.Err)
		}
		for _, d := range c.Diffs {
			fmt.Fprintf(w, "  %s\n", d)
		}
	}
	if s.Coverage != nil {
		fmt.Fprintln(w, "coverage:")
		for _, name := range slices.Sorted(maps.Keys(s.Coverage.Files)) {
			fmt.Fprintf(w, "  %-24s %5.1f%%\n", name, s.Coverage.Files[name].Coverage)
		}
		fmt.Fprintf(w, "  %-24s %5.1f%%\n", "total", s.Coverage.Coverage)
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", s.Passed(), s.Failed())
}

// checkCmd runs `verdict check [DIR]`.
func checkCmd(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("check", flag.ContinueOnError)
	flags.SetOutput(stderr)
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "Usage: verdict check [DIR]\n\nCompiles DIR (default ./policies) in strict mode, checks the output contract and the formatting.\n")
	}
	dir, fsys, err := parseDirArgs(flags, args)
	if err != nil {
		return err
	}
	problems, err := engine.CheckContract(fsys)
	if err != nil {
		fmt.Fprintln(stdout, err)
		if errors.Is(err, engine.ErrPolicyLoad) {
			return fmt.Errorf("%w: %s does not compile", errPolicyInvalid, dir)
		}
		return err
	}
	unformatted, err := engine.CheckFormat(fsys)
	if err != nil {
		return policyErr(err)
	}
	if _, err := engine.LoadCases(fsys, "testdata"); err != nil {
		fmt.Fprintln(stdout, err)
		return fmt.Errorf("%w: %s has invalid golden cases", errPolicyInvalid, dir)
	}
	problems = append(problems, unformatted...)
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("%w: %d problems in %s", errPolicyInvalid, len(problems), dir)
	}
	set, err := engine.Compile(context.Background(), fsys)
	if err != nil {
		return policyErr(err)
	}
	fmt.Fprintf(stdout, "ok: %d files, revision %s\n", len(set.Files()), set.Revision())
	if ok, why := set.Optimized(); !ok {
		fmt.Fprintf(stdout, "note: full evaluation is not optimized at load (docs/policies.md): %s\n", why)
	}
	return nil
}

// fmtCmd runs `verdict fmt [-w] [DIR]`.
func fmtCmd(args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("fmt", flag.ContinueOnError)
	flags.SetOutput(stderr)
	write := flags.Bool("w", false, "rewrite unformatted files in place (default: list them)")
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "Usage: verdict fmt [-w] [DIR]\n\nFormats the .rego files of DIR (default ./policies) as `opa fmt` does.\n\n")
		flags.PrintDefaults()
	}
	dir, fsys, err := parseDirArgs(flags, args)
	if err != nil {
		return err
	}
	problems, err := engine.CheckFormat(fsys)
	if err != nil {
		return policyErr(err)
	}
	var failed error
	for _, p := range problems {
		if p.Row == 0 { // could not be formatted: a syntax error
			fmt.Fprintln(stdout, p)
			failed = fmt.Errorf("%w: %s cannot be formatted", errPolicyInvalid, p.File)
			continue
		}
		if !*write {
			fmt.Fprintln(stdout, p.File)
			continue
		}
		if err := formatInPlace(dir, p.File); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "formatted %s\n", p.File)
	}
	return failed
}

// formatInPlace rewrites one file of dir formatted, keeping its mode. The
// file is opened through os.Root: a name cannot reach outside dir.
func formatInPlace(dir, name string) error {
	root, err := os.OpenRoot(dir)
	if err != nil {
		return err
	}
	defer root.Close()
	st, err := root.Stat(name)
	if err != nil {
		return err
	}
	src, err := root.ReadFile(name)
	if err != nil {
		return err
	}
	out, err := engine.Format(name, src)
	if err != nil {
		return policyErr(err)
	}
	return root.WriteFile(name, out, st.Mode().Perm())
}

// evalOutput is what `verdict eval` prints: the /decide answer, plus the
// rules that fired with --explain.
type evalOutput struct {
	api.DecideResponse
	Explain []engine.RuleHit `json:"explain,omitempty"`
	Staged  *engine.Staging  `json:"staged,omitempty"`
}

// evalCmd runs `verdict eval`.
func evalCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("eval", flag.ContinueOnError)
	flags.SetOutput(stderr)
	actionJSON := flags.String("action", "", `the action object, e.g. '{"type":"checkout","amount":900}' (required)`)
	datapointsFile := flags.String("datapoints", "", "a cside payload (JSON file) to decide on")
	scenario := flags.String("scenario", "", "a demo token of the fake cside (demo-bot, demo-vpn, ...) to decide on")
	upstream := flags.String("upstream-status", "", "decide without datapoints: not_found, unavailable or rejected")
	idsJSON := flags.String("external-ids", "", `external IDs object, e.g. '{"email":"a@b.c"}'`)
	dir := flags.String("policies", "", "policy directory (default: the embedded policies)")
	explain := flags.Bool("explain", false, "also list the rules that fired, with file:line")
	staged := flags.Bool("staged", false, "also show how serve evaluates this token's decisions once it is staged: a constant answer, or the residual query and what it reads")
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "Usage: verdict eval --action JSON [--datapoints FILE | --scenario TOKEN | --upstream-status S] [flags]\n\nEvaluates one decision offline and prints what POST /decide would answer.\n\n")
		flags.PrintDefaults()
	}
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	if flags.NArg() > 0 {
		return fmt.Errorf("%w: eval takes no arguments, got %q", errUsage, flags.Args())
	}
	if *actionJSON == "" {
		return fmt.Errorf("%w: -action is required", errUsage)
	}
	action, err := api.ParseAction([]byte(*actionJSON))
	if err != nil {
		return fmt.Errorf("%w: -action: %w", errUsage, err)
	}
	var ids map[string]string
	if *idsJSON != "" {
		if ids, err = api.ParseExternalIDs([]byte(*idsJSON)); err != nil {
			return fmt.Errorf("%w: -external-ids: %w", errUsage, err)
		}
	}
	given := 0
	for _, v := range []string{*datapointsFile, *scenario, *upstream} {
		if v != "" {
			given++
		}
	}
	if given != 1 {
		return fmt.Errorf("%w: exactly one of -datapoints, -scenario or -upstream-status is required", errUsage)
	}

	var policyFS fs.FS = policies.FS()
	if *dir != "" {
		if policyFS, err = openDir(*dir); err != nil {
			return err
		}
	}
	set, err := engine.Compile(ctx, policyFS)
	if err != nil {
		return policyErr(err)
	}

	var dp engine.Datapoints
	switch {
	case *datapointsFile != "":
		raw, err := os.ReadFile(*datapointsFile)
		if err != nil {
			return fmt.Errorf("%w: -datapoints: %w", errUsage, err)
		}
		p, err := engine.ParsePayload(raw)
		if err != nil {
			return fmt.Errorf("%w: -datapoints %s: %w", errUsage, *datapointsFile, err)
		}
		dp = engine.Datapoints{Status: engine.StatusOK, Origin: engine.OriginUpstream, Payload: p}
	case *scenario != "":
		src, closeSrc, err := casePipeline()
		if err != nil {
			return err
		}
		defer closeSrc()
		dp = src.Datapoints(ctx, *scenario)
	default:
		switch s := engine.Status(*upstream); s {
		case engine.StatusNotFound, engine.StatusRejected:
			dp = engine.Datapoints{Status: s, Origin: engine.OriginUpstream}
		case engine.StatusUnavailable:
			dp = engine.Datapoints{Status: s, Origin: engine.OriginNone}
		default:
			return fmt.Errorf("%w: -upstream-status %q: want not_found, unavailable or rejected", errUsage, *upstream)
		}
	}

	start := time.Now()
	req := engine.Request{Token: *scenario, Action: action, ExternalIDs: ids}
	var out evalOutput
	var d engine.Decision
	if *explain {
		d, out.Explain, err = set.Explain(ctx, req, dp)
	} else {
		d, err = set.Eval(ctx, req, dp)
	}
	if err != nil {
		return policyErr(err)
	}
	id, err := uuid.NewV7()
	if err != nil {
		return err
	}
	d.ID = id.String()
	out.DecideResponse = api.NewDecideResponse(d, time.Since(start))
	if *staged {
		st := set.Staging(ctx, dp)
		out.Staged = &st
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
