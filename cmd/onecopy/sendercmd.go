// onecopy sender: the built-in senders as programs under the contract.

package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/senders"
	"github.com/onecopy/onecopy/senders/builtin"
)

func checkSenderName(name string) error {
	if !slices.Contains(builtin.Names(), name) {
		return &harness.UsageError{Msg: fmt.Sprintf("unknown built-in sender %q: want one of %s", name, strings.Join(builtin.Names(), ", "))}
	}
	return nil
}

func senderCmd(ctx context.Context, args []string, stderr io.Writer) int {
	fs := newFlagSet("onecopy sender", stderr)
	timeout := fs.Duration("timeout", builtin.DefaultTimeout, "deadline for each SMTP command and its reply")
	verbose := fs.Bool("v", false, "log every step to stderr")
	batch := fs.Int("batch", 1, "ledger senders: recipients per SMTP transaction (keep it the same across restarts)")
	conns := fs.Int("connections", 1, "ledger senders: parallel SMTP connections")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: onecopy sender [flags] NAME\n\nBuilt-in senders:\n")
		for _, name := range builtin.Names() {
			what := ""
			if in, ok := builtin.Describe(name); ok && in.Correct {
				what = "correct"
			} else if ok {
				what = "bug: " + in.Bug
			}
			fmt.Fprintf(stderr, "  %-17s %s\n", name, what)
		}
		fmt.Fprint(stderr, "They read ONECOPY_SMTP_ADDR, ONECOPY_RECIPIENTS, ONECOPY_STATE_DIR, ONECOPY_CAMPAIGN,\n"+
			"ONECOPY_ATTEMPT and ONECOPY_INSTANCE (set by onecopy run).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	// Accept flags before or after the name.
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		args = append(args[1:], args[0])
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return exitUsage
	}
	name := fs.Arg(0)
	if err := checkSenderName(name); err != nil {
		return failed(stderr, nil, err)
	}
	if *batch < 1 || *conns < 1 {
		return failed(stderr, nil, &harness.UsageError{Msg: fmt.Sprintf("--batch %d --connections %d: want 1 or more", *batch, *conns)})
	}
	opts := builtin.Options{Timeout: *timeout}
	// Left at 0 when not given: each sender keeps its own default shape.
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "batch":
			opts.Batch = *batch
		case "connections":
			opts.Connections = *conns
		}
	})
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := builtin.New(name, opts)
	if err != nil {
		return failed(stderr, nil, err)
	}
	return senders.Run(ctx, s, os.Getenv, stderr)
}

// senderCommand runs a built-in sender under the contract; it parses its
// own flags (the senders' options), so cobra hands it the arguments whole.
func senderCommand(code *int) *cobra.Command {
	return &cobra.Command{
		Use:                "sender [flags] NAME",
		Short:              "run a built-in sender under the environment contract",
		Long:               "Runs a built-in sender (" + strings.Join(builtin.Names(), ", ") + ") under the environment contract, as onecopy run --sender builtin:NAME does. See onecopy sender -h for its flags.",
		DisableFlagParsing: true,
		RunE: func(cmd *cobra.Command, args []string) error {
			*code = senderCmd(cmd.Context(), args, cmd.ErrOrStderr())
			return nil
		},
	}
}

// newFlagSet is a flag set of the standard library's flag package, for the
// senders' own options.
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
