package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"

	"github.com/verdict-engine/verdict/engine"
	"github.com/verdict-engine/verdict/engine/decisionlog"
)

// replayCmd runs `verdict replay`.
func replayCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	flags := flag.NewFlagSet("replay", flag.ContinueOnError)
	flags.SetOutput(stderr)
	logs := flags.String("log", "", "decision log files, comma-separated (required; written with --decision-log-datapoints)")
	dir := flags.String("policies", "", "the candidate policy directory (required)")
	baselineDir := flags.String("baseline-policies", "", "compare with this policy directory instead of the logged decisions")
	out := flags.String("out", "", "write the changed decisions to this file, as JSON lines")
	workers := flags.Int("workers", 0, "evaluations in parallel (default: one per CPU)")
	flags.Usage = func() {
		fmt.Fprintf(flags.Output(), "Usage: verdict replay --log FILE[,FILE...] --policies DIR [--baseline-policies DIR] [--out FILE]\n\nRe-evaluates logged decisions with a policy set and summarizes what would change.\n\n")
		flags.PrintDefaults()
	}
	if err := parseFlags(flags, args); err != nil {
		return err
	}
	switch {
	case flags.NArg() > 0:
		return fmt.Errorf("%w: replay takes no arguments, got %q", errUsage, flags.Args())
	case *logs == "" || *dir == "":
		return fmt.Errorf("%w: -log and -policies are required", errUsage)
	case *workers < 0:
		return fmt.Errorf("%w: -workers %d: must be positive", errUsage, *workers)
	}
	opts := decisionlog.ReplayOptions{Workers: *workers}
	var err error
	if opts.Candidate, err = compileDir(ctx, *dir); err != nil {
		return err
	}
	if *baselineDir != "" {
		if opts.Baseline, err = compileDir(ctx, *baselineDir); err != nil {
			return err
		}
	}

	var readers []io.Reader
	var total int64
	for _, name := range strings.Split(*logs, ",") {
		f, err := os.Open(strings.TrimSpace(name))
		if err != nil {
			return fmt.Errorf("%w: -log: %w", errUsage, err)
		}
		defer f.Close()
		if st, err := f.Stat(); err == nil {
			total += st.Size()
		}
		readers = append(readers, f)
	}
	if *out != "" {
		f, err := os.Create(*out)
		if err != nil {
			return fmt.Errorf("%w: -out: %w", errUsage, err)
		}
		defer f.Close()
		enc := json.NewEncoder(f)
		opts.Changed = func(c decisionlog.Change) { _ = enc.Encode(c) }
	}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		bar := progressbar.DefaultBytes(total, "replaying")
		opts.Progress = func(n int64) { _ = bar.Set64(n) }
		defer func() { _ = bar.Finish(); fmt.Fprintln(stderr) }()
	}

	s, err := decisionlog.Replay(ctx, readers, opts)
	if err != nil {
		return err
	}
	printSummary(stdout, s, *baselineDir != "")
	return nil
}

func compileDir(ctx context.Context, dir string) (*engine.PolicySet, error) {
	fsys, err := openDir(dir)
	if err != nil {
		return nil, err
	}
	set, err := engine.Compile(ctx, fsys)
	if err != nil {
		return nil, policyErr(fmt.Errorf("%s: %w", dir, err))
	}
	return set, nil
}

func printSummary(w io.Writer, s decisionlog.Summary, baselinePolicies bool) {
	fmt.Fprintf(w, "replayed %d of %d decisions in %.1fs (%d without datapoints skipped, %d invalid lines)\n",
		s.Replayed, s.Lines, s.Elapsed.Seconds(), s.Skipped, s.Invalid)
	pct := 0.0
	if s.Replayed > 0 {
		pct = 100 * float64(s.Changed) / float64(s.Replayed)
	}
	fmt.Fprintf(w, "changed: %d (%.2f%%)\n", s.Changed, pct)
	baseline := "logged"
	if baselinePolicies {
		baseline = "baseline"
	}
	effects := []string{engine.Allow, engine.Challenge, engine.Deny}
	fmt.Fprintf(w, "%s (rows) x candidate (columns):\n%12s", baseline, "")
	for _, c := range effects {
		fmt.Fprintf(w, " %10s", c)
	}
	fmt.Fprintln(w)
	for _, b := range effects {
		fmt.Fprintf(w, "%12s", b)
		for _, c := range effects {
			fmt.Fprintf(w, " %10d", s.Matrix[b][c])
		}
		fmt.Fprintln(w)
	}
	if len(s.Reasons) > 0 {
		fmt.Fprintln(w, "reason codes behind the changes:")
		for i, r := range s.Reasons {
			if i == 10 {
				break
			}
			fmt.Fprintf(w, "  %-28s %d\n", r.Code, r.Count)
		}
	}
}
