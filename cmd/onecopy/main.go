// Command onecopy is a chaos-testing harness for email senders: it runs a
// sender under kills and SMTP faults against a counting fake SMTP server
// and says whether every recipient got exactly one copy.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/onecopy/onecopy/harness"
)

// Exit codes (docs/cli.md).
const (
	exitPass      = 0
	exitShort     = 1
	exitUsage     = 2
	exitHarness   = 3
	exitInterrupt = 130
)

const usage = `onecopy: chaos tests for email senders — does every recipient get exactly one copy?

Usage:
  onecopy run [flags] -- COMMAND [ARGS...]   run a sender under kills and faults, judge it
  onecopy run [flags] --sender builtin:NAME  the same with a built-in sender
  onecopy gate [flags] -- COMMAND [ARGS...]  run the scenario catalog against a sender (CI gate, JUnit)
  onecopy soak --duration D [flags] -- CMD    campaign after campaign for Prometheus to watch (or --sender builtin:NAME)
  onecopy check WORKDIR                      re-judge a run kept with --work-dir from its history alone
  onecopy repro                              reproduce the 4-copies bug with the naive sender
  onecopy fakesmtp [flags]                   the counting fake SMTP server on its own
  onecopy sender NAME                        run a built-in sender under the environment contract

Run 'onecopy COMMAND -h' for the flags of a command.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "run":
		return runCmd(ctx, rest, stdout, stderr)
	case "gate":
		return gateCmd(ctx, rest, stdout, stderr)
	case "soak":
		return soakCmd(ctx, rest, stdout, stderr)
	case "repro":
		return reproCmd(ctx, rest, stdout, stderr)
	case "check":
		return checkCmd(ctx, rest, stdout, stderr)
	case "fakesmtp":
		return fakesmtpCmd(ctx, rest, stdout, stderr)
	case "sender":
		return senderCmd(ctx, rest, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return exitPass
	}
	fmt.Fprintf(stderr, "onecopy: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// failed maps an error to an exit code with a message.
func failed(stderr io.Writer, err error) int {
	var ue *harness.UsageError
	if errors.As(err, &ue) {
		fmt.Fprintf(stderr, "onecopy: %v\n", err)
		return exitUsage
	}
	fmt.Fprintf(stderr, "onecopy: %v\n", err)
	return exitHarness
}

// multiFlag is a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

// parseFlags parses and maps -h to exit 0 and bad flags to exit 2.
func parseFlags(fs *flag.FlagSet, args []string) (int, bool) {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitPass, false
		}
		return exitUsage, false
	}
	return 0, true
}
