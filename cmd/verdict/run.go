package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
)

// errUsage is wrapped by every error about how verdict was invoked.
var errUsage = errors.New("usage")

// version is set at build time with -ldflags "-X main.version=v1.2.3"; when
// unset, the module version from the build info is used.
var version = ""

const usage = `Verdict decides allow, challenge or deny for a cside session token.

Usage:
  verdict serve [flags]          run the decision service (verdict serve -h for flags)
  verdict test [flags] [DIR]     run the Rego tests and golden cases of a policy directory
  verdict check [DIR]            compile strictly, check the output contract and formatting
  verdict fmt [-w] [DIR]         format Rego files as opa fmt does
  verdict eval --action JSON ... evaluate one decision offline
  verdict replay --log FILE ...  re-evaluate logged decisions with a policy set
  verdict version                print the version
  verdict help                   print this help

DIR defaults to ./policies. Exit codes: 0 ok, 1 internal error, 2 bad usage,
3 policies do not compile or break the output contract, 4 tests failed.
`

// run executes one verdict command. Only run (and main) read flags and the
// environment; getenv is os.Getenv outside tests.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: no command given", errUsage)
	}
	err := dispatch(ctx, args, getenv, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func dispatch(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], getenv, stdout, stderr)
	case "test":
		return testCmd(ctx, args[1:], stdout, stderr)
	case "check":
		return checkCmd(args[1:], stdout, stderr)
	case "fmt":
		return fmtCmd(args[1:], stdout, stderr)
	case "eval":
		return evalCmd(ctx, args[1:], stdout, stderr)
	case "replay":
		return replayCmd(ctx, args[1:], stdout, stderr)
	case "version":
		fmt.Fprintf(stdout, "verdict %s (%s)\n", buildVersion(), runtime.Version())
		return nil
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("%w: unknown command %q", errUsage, args[0])
	}
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "dev"
}
