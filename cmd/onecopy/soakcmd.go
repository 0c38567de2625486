// onecopy soak: campaign after campaign against a sender, for Prometheus to
// watch. The loop is scenarios.Soak; this file is flags and printing.

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/onecopy/onecopy/scenarios"
)

func soakCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("onecopy soak", stderr)
	duration := fs.Duration("duration", 0, "start new campaigns for this long, like 30s or 8h (the last one runs to its end)")
	metricsAddr := fs.String("metrics-addr", "", "serve Prometheus /metrics on `ADDR` for the whole soak (127.0.0.1:0 picks a port)")
	reportDir := fs.String("report-dir", "", "keep each campaign's JSON report in `DIR` (NNNN-SCENARIO-seedS.json)")
	chaos := fs.String("chaos", "", "what campaigns draw from (default: the whole catalog): "+scenarios.ChaosForms)
	seed := fs.Uint64("seed", 0, "soak seed: picks the scenarios and each campaign's seed (default: a random seed, printed)")
	scale := fs.Float64("scale", 1, "multiply every list size by `F`")
	timeout := fs.Duration("timeout", 2*time.Minute, "time limit per campaign")
	sender := fs.String("sender", "", "a built-in sender instead of a command: builtin:NAME")
	workDir := fs.String("work-dir", "", "keep each campaign's state dir, logs and history under `DIR`")
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: onecopy soak --duration D [flags] -- COMMAND [ARGS...]\n       onecopy soak --duration D [flags] --sender builtin:NAME\n\n"+
			"Runs campaign after campaign, each with chaos drawn from the scenario catalog by the seed, until the\n"+
			"duration is over or Ctrl-C; prints a table and exits 0 only if every campaign reached its level.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if *duration <= 0 {
		return failed(stderr, usageErr("--duration: want a positive duration, like --duration 30s or --duration 8h"))
	}
	if *scale <= 0 {
		return failed(stderr, usageErr("--scale %v: want a positive factor", *scale))
	}
	if *timeout <= 0 {
		return failed(stderr, usageErr("--timeout %v: want a positive duration", *timeout))
	}
	seedSet := false
	fs.Visit(func(f *flag.Flag) { seedSet = seedSet || f.Name == "seed" })
	if !seedSet {
		*seed = rand.Uint64() % 1_000_000_000
	}
	var rf runFlags
	rf.sender = *sender
	cfg, err := rf.senderCommand(fs.Args())
	if err != nil {
		return failed(stderr, err)
	}
	var pool []scenarios.Scenario
	if *chaos != "" {
		if pool, err = scenarios.ParseChaos(*chaos); err != nil {
			return failed(stderr, err)
		}
	}
	senderArgs := "-- " + strings.Join(quoteAll(fs.Args()), " ")
	if *sender != "" {
		senderArgs = "--sender " + *sender
	}
	opts := scenarios.SoakOptions{
		Options: scenarios.Options{
			Command: cfg.Command, Seed: *seed, Scale: *scale, Timeout: *timeout, WorkDir: *workDir,
			Replay: func(s scenarios.Scenario, seed uint64) string { return s.Replay(seed, *scale, senderArgs) },
		},
		Duration:  *duration,
		Chaos:     pool,
		ReportDir: *reportDir,
	}
	if *metricsAddr != "" {
		m, stop, err := serveMetrics(*metricsAddr, stderr)
		if err != nil {
			return failed(stderr, err)
		}
		defer stop()
		opts.Metrics = m
	}
	if isTerminal(stdout) {
		opts.Progress = stdout
	} else {
		// A log, not a live line: one line per campaign as it ends.
		opts.OnCampaign = func(c scenarios.SoakCampaign) {
			if c.Report == nil || c.Interrupted {
				fmt.Fprintf(stdout, "campaign %d %s (seed %d): interrupted\n", c.Index, c.Scenario, c.Seed)
				return
			}
			mark := "ok"
			if !c.Pass() {
				mark = "FAIL"
			}
			fmt.Fprintf(stdout, "campaign %d %s (seed %d): %s, expected %s: %s\n", c.Index, c.Scenario, c.Seed, c.Report.Verdict, c.Report.Expect, mark)
		}
	}
	fmt.Fprintf(stdout, "onecopy soak: %s, seed %d, sender %s\n", *duration, *seed, senderArgs)
	res, err := scenarios.Soak(ctx, opts)
	fmt.Fprintln(stdout)
	res.WriteTable(stdout)
	for _, c := range res.Campaigns {
		if c.Report != nil && !c.Interrupted && !c.Pass() {
			fmt.Fprintf(stdout, "\n--- campaign %d: %s\n", c.Index, c.Scenario)
			c.Report.Summary(stdout)
		}
	}
	if *reportDir != "" {
		fmt.Fprintf(stdout, "reports in %s\n", *reportDir)
	}
	switch {
	case err != nil:
		return failed(stderr, err)
	case ctx.Err() != nil || res.Interrupted:
		return exitInterrupt
	case !res.Pass():
		return exitShort
	}
	return exitPass
}
