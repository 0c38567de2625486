// Command onecopy is a chaos-testing harness for email senders: it runs a
// sender under kills and faults against a counting fake SMTP server and
// says whether every recipient got exactly one copy.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/report"
)

// Exit codes (docs/cli.md).
const (
	exitPass      = 0
	exitShort     = 1
	exitUsage     = 2
	exitHarness   = 3
	exitInterrupt = 130
)

const exitCodes = `Exit codes:
  0    the run reached --expect
  1    it fell short (or hit --timeout with the sender still running)
  2    bad usage or input: nothing ran; the message names the flag or file:line
  3    the harness failed, or the sender never connected, or escaped the chaos
  130  interrupted (Ctrl-C): the report is written, no verdict is claimed`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run runs the command line args and returns the exit code.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	code := exitPass
	root := newRoot(ctx, stdout, stderr, &code)
	root.SetArgs(args)
	cmd, err := root.ExecuteC()
	if err != nil {
		return failed(stderr, cmd, err)
	}
	return code
}

// newRoot is the command tree. A command's RunE sets *code; an error it
// returns is mapped by failed.
func newRoot(ctx context.Context, stdout, stderr io.Writer, code *int) *cobra.Command {
	root := &cobra.Command{
		Use:   "onecopy",
		Short: "chaos tests for email senders: does every recipient get exactly one copy?",
		Long: `onecopy runs your email sender (any language) against a fake SMTP server that counts every copy
per recipient, kills and pauses it at the worst moments, injects the faults real mail servers
produce, plays the job runner that retries it, and says which delivery guarantee it really gives:
exactly-once, effectively-once, at-least-once, at-most-once, or none.`,
		Example: `  onecopy repro                                                       # the 4-copies bug in one second
  onecopy run --recipients 1000 --kill at=50% --sender builtin:naive
  onecopy run --recipients 1000 --kill in-doubt=3 --expect effectively-once -- python3 examples/senders/python/ledger.py
  onecopy gate --junit gate.xml -- ./my-sender
  onecopy check ./work`,
		Version:       version(),
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetContext(ctx)
	root.SetFlagErrorFunc(flagError)
	root.CompletionOptions.HiddenDefaultCmd = false
	root.AddCommand(runCommand(code), reproCommand(code), gateCommand(code), soakCommand(code),
		checkCommand(code), fakesmtpCommand(code), senderCommand(code))
	for _, c := range root.Commands() {
		c.SetFlagErrorFunc(flagError)
	}
	return root
}

// version is the module version and VCS stamp of the binary.
func version() string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "(unknown)"
	}
	v := bi.Main.Version
	var rev, dirty, when string
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "+dirty"
			}
		case "vcs.time":
			when = s.Value
		}
	}
	if rev != "" && !strings.Contains(v, rev[:min(12, len(rev))]) {
		v += fmt.Sprintf(" (%.12s%s %s)", rev, dirty, when)
	}
	return v + " " + bi.GoVersion
}

// failed maps an error to an exit code with a message.
func failed(stderr io.Writer, cmd *cobra.Command, err error) int {
	var ue *harness.UsageError
	if errors.As(err, &ue) || isCobraUsage(err) {
		fmt.Fprintf(stderr, "onecopy: %v\n", err)
		if cmd != nil && isCobraUsage(err) {
			fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
		}
		return exitUsage
	}
	fmt.Fprintf(stderr, "onecopy: %v\n", err)
	return exitHarness
}

// isCobraUsage tells cobra's own usage errors (an unknown command or
// argument count) from a failure.
func isCobraUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command") || strings.Contains(msg, "accepts ") || strings.HasPrefix(msg, "requires ")
}

// flagError turns a flag parse error into a usage error, suggesting the
// flag that was probably meant.
func flagError(cmd *cobra.Command, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "unknown flag: --"); ok {
		if s := closest(name, cmd.Flags()); s != "" {
			msg += "; did you mean --" + s + "?"
		}
	}
	return &harness.UsageError{Msg: msg + " (see " + cmd.CommandPath() + " --help)"}
}

// closest is the flag of fs nearest to name by edit distance, if near.
func closest(name string, fs *pflag.FlagSet) string {
	best, bestD := "", 3
	fs.VisitAll(func(f *pflag.Flag) {
		if d := distance(name, f.Name); d < bestD {
			best, bestD = f.Name, d
		}
	})
	return best
}

// distance is the Levenshtein distance of a and b.
func distance(a, b string) int {
	prev := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur := make([]int, len(b)+1)
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev = cur
	}
	return prev[len(b)]
}

func usageErr(format string, args ...any) error {
	return &harness.UsageError{Msg: fmt.Sprintf(format, args...)}
}

// exitFor is the exit code a report calls for.
func exitFor(rep *report.Report) int {
	switch rep.Outcome {
	case report.OutcomeInterrupted:
		return exitInterrupt
	case report.OutcomeNeverConnected, report.OutcomeEscaped, report.OutcomeShort, report.OutcomeError:
		return exitHarness
	}
	if rep.Pass {
		return exitPass
	}
	return exitShort
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=./:,%@+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return out
}
