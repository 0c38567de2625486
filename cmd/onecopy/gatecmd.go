// onecopy gate: the scenario catalog against a sender, as a CI gate.

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/scenarios"
)

func gateCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("onecopy gate", stderr)
	var only, skip multiFlag
	fs.Var(&only, "only", "run only this scenario or label (repeatable)")
	fs.Var(&skip, "skip", "skip this scenario or label (repeatable)")
	junit := fs.String("junit", "", "write a JUnit XML report (one test case per scenario) to `FILE`")
	reportDir := fs.String("report-dir", "", "write one JSON and one HTML report per scenario into `DIR`")
	seed := fs.Uint64("seed", 0, "seed for every scenario (default: a random seed, printed)")
	scale := fs.Float64("scale", 1, "multiply every list size by `F`")
	timeout := fs.Duration("timeout", 2*time.Minute, "time limit per scenario")
	sender := fs.String("sender", "", "a built-in sender instead of a command: builtin:NAME")
	list := fs.Bool("list", false, "list the scenarios and exit")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: onecopy gate [flags] -- COMMAND [ARGS...]\n\nRuns every chaos scenario of the catalog against the sender; exits 0 only if each reaches its level.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *list {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SCENARIO\tFAILURE MODE\tCHAOS\tLEVEL\tLABELS")
		for _, s := range scenarios.Catalog() {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.Mode, s.Chaos(), s.Expect, strings.Join(s.Labels, ","))
		}
		tw.Flush()
		return exitPass
	}
	seedSet := false
	fs.Visit(func(f *flag.Flag) { seedSet = seedSet || f.Name == "seed" })
	if !seedSet {
		*seed = rand.Uint64() % 1_000_000_000
	}
	var f runFlags
	f.sender = *sender
	cfg, err := f.senderCommand(fs.Args())
	if err != nil {
		return failed(stderr, err)
	}
	if *scale <= 0 {
		return failed(stderr, usageErr("--scale %v: want a positive factor", *scale))
	}
	selected, err := scenarios.Select(scenarios.Catalog(), only, skip)
	if err != nil {
		return failed(stderr, err)
	}
	if *reportDir != "" {
		if err := os.MkdirAll(*reportDir, 0o755); err != nil {
			return failed(stderr, fmt.Errorf("--report-dir: %w", err))
		}
	}
	senderArgs := strings.Join(quoteAll(fs.Args()), " ")
	if *sender != "" {
		senderArgs = "--sender " + *sender
	}
	opts := scenarios.Options{
		Command: cfg.Command, Seed: *seed, Scale: *scale, Timeout: *timeout,
		Replay: func(s scenarios.Scenario, seed uint64) string {
			r := fmt.Sprintf("onecopy gate --only %s --seed %d", s.Name, seed)
			if *scale != 1 {
				r += fmt.Sprintf(" --scale %g", *scale)
			}
			if *sender != "" {
				return r + " " + senderArgs
			}
			return r + " -- " + senderArgs
		},
	}
	fmt.Fprintf(stdout, "onecopy gate: %d scenarios, seed %d, sender %s\n", len(selected), *seed, senderArgs)
	row := "%-20s %-18s %-18s %-5s %6s  %s\n"
	fmt.Fprintf(stdout, row, "SCENARIO", "VERDICT", "EXPECTED", "PASS", "TIME", "FAILURE MODE")
	var cases []report.Case
	failures := 0
	start := time.Now()
	for _, s := range selected {
		if ctx.Err() != nil {
			cases = append(cases, report.Case{Name: s.Name, Class: s.Mode, Skipped: "interrupted"})
			continue
		}
		rep, err := scenarios.Run(ctx, s, opts)
		if err != nil {
			return failed(stderr, fmt.Errorf("scenario %s: %w", s.Name, err))
		}
		mark := "ok"
		if !rep.Pass {
			mark = "FAIL"
			failures++
		}
		fmt.Fprintf(stdout, row, s.Name, rep.Verdict, rep.Expect, mark, fmt.Sprintf("%.1fs", rep.DurationSeconds), s.Mode)
		cases = append(cases, report.Case{Name: s.Name, Class: s.Mode, Report: rep})
		if *reportDir != "" {
			if err := rep.WriteJSON(filepath.Join(*reportDir, s.Name+".json")); err != nil {
				return failed(stderr, err)
			}
			if err := rep.WriteHTML(filepath.Join(*reportDir, s.Name+".html")); err != nil {
				return failed(stderr, err)
			}
		}
	}
	if *junit != "" {
		if err := report.WriteJUnit(*junit, "onecopy gate", cases); err != nil {
			return failed(stderr, err)
		}
	}
	fmt.Fprintf(stdout, "%d of %d scenarios reached their level in %.1fs (seed %d)\n", len(selected)-failures, len(selected), time.Since(start).Seconds(), *seed)
	for _, c := range cases {
		if c.Report != nil && !c.Report.Pass {
			fmt.Fprintf(stdout, "\n--- %s (%s)\n", c.Name, c.Class)
			c.Report.Summary(stdout)
		}
	}
	switch {
	case ctx.Err() != nil:
		return exitInterrupt
	case failures > 0:
		return exitShort
	}
	return exitPass
}

func quoteAll(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return out
}
