// Command verdict is Verdict's one binary. `verdict serve` runs the decision
// service; `verdict version` prints the version. Run `verdict help` for the
// flags.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "verdict:", err)
	}
	os.Exit(exitCode(err))
}

// exitCode maps run's error to the process exit code: 0 ok, 2 bad usage
// (flags, environment, arguments), 3 policies that do not compile or break
// the output contract, 4 failed policy tests, 1 anything else.
func exitCode(err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, errUsage):
		return 2
	case errors.Is(err, errPolicyInvalid):
		return 3
	case errors.Is(err, errTestsFailed):
		return 4
	default:
		return 1
	}
}
