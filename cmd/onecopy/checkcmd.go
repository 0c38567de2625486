// onecopy check: re-judge a kept run from its history alone.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/onecopy/onecopy/report"
)

func checkCmd(_ context.Context, args []string, stdout, stderr io.Writer) int {
	fset := newFlagSet("onecopy check", stderr)
	out := fset.String("report", "", "write the JSON report to `FILE`")
	html := fset.String("html", "", "write the HTML report to `FILE`")
	quiet := fset.Bool("quiet", false, "print only the verdict line")
	fset.Usage = func() {
		fmt.Fprint(stderr, "Usage: onecopy check [flags] WORKDIR\n\n"+
			"Re-judges a run kept with --work-dir from its history.jsonl and its recipient list alone,\n"+
			"and prints (and with --report writes) the same report the run produced.\n\nFlags:\n")
		fset.PrintDefaults()
	}
	if code, ok := parseFlags(fset, args); !ok {
		return code
	}
	if fset.NArg() != 1 {
		return failed(stderr, usageErr("check takes one work dir (the --work-dir of a run), got %d arguments", fset.NArg()))
	}
	dir := fset.Arg(0)
	path := filepath.Join(dir, "history.jsonl")
	if _, err := os.Stat(path); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return failed(stderr, usageErr("%s: no history.jsonl here: give the --work-dir of a run", dir))
		}
		return failed(stderr, usageErr("%v", err))
	}
	rep, err := report.Load(path)
	if err != nil {
		return failed(stderr, usageErr("%s: %v", dir, err))
	}
	if *quiet {
		fmt.Fprintf(stdout, "%s (expected %s, seed %d)\n", rep.Verdict, rep.Expect, rep.Seed)
	} else {
		rep.Summary(stdout)
	}
	if *out != "" {
		if err := rep.WriteJSON(*out); err != nil {
			return failed(stderr, err)
		}
	}
	if *html != "" {
		if err := rep.WriteHTML(*html); err != nil {
			return failed(stderr, err)
		}
	}
	return exitFor(rep)
}

// exitFor is the exit code a report calls for: 0 pass, 1 short of the
// level, 3 not judged because the harness or the sender's set-up failed,
// 130 interrupted.
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
