// onecopy sender: the built-in senders as programs under the contract.

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"

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
		return failed(stderr, err)
	}
	if *batch < 1 || *conns < 1 {
		return failed(stderr, &harness.UsageError{Msg: fmt.Sprintf("--batch %d --connections %d: want 1 or more", *batch, *conns)})
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
		return failed(stderr, err)
	}
	return senders.Run(ctx, s, os.Getenv, stderr)
}
