// onecopy soak: campaign after campaign against a sender, for Prometheus to
// watch. The loop is scenarios.Soak; this file is flags and printing.

package main

import (
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/scenarios"
)

func soakCommand(code *int) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "soak --duration D [flags] -- COMMAND [ARGS...]",
		Short: "campaign after campaign against a sender, for Prometheus to watch",
		Long: `Runs campaign after campaign against the sender, each with a fresh state dir, its own
campaign id and a seed derived from the soak's, its chaos drawn from the catalog (or
--chaos) by the seed, until --duration is over or Ctrl-C; serves the metrics on
--metrics-addr (docs/prometheus/alerts.yml pages on what matters). Prints a table and
exits 0 only if every campaign reached its level.

` + exitCodes,
		Example: `  onecopy soak --duration 30s --sender builtin:ledger --metrics-addr 127.0.0.1:0 --report-dir /tmp/soak
  onecopy soak --duration 8h --metrics-addr 127.0.0.1:9464 --report-dir soak-reports -- ./my-sender
  onecopy soak --duration 1h --chaos 'kill,cut-after-dot' -- ./my-sender`,
	}
	fs := cmd.Flags()
	var f soakFlags
	fs.DurationVar(&f.duration, "duration", 0, "start new campaigns for this long, like 30s or 8h (the last one runs to its end)")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on `ADDR` for the whole soak (127.0.0.1:0 picks a port)")
	fs.StringVar(&f.reportDir, "report-dir", "", "keep each campaign's JSON report in `DIR` (NNNN-SCENARIO-seedS.json)")
	fs.StringVar(&f.chaos, "chaos", "", "what campaigns draw from (default: the whole catalog): "+scenarios.ChaosForms)
	fs.Uint64Var(&f.seed, "seed", 0, "soak seed: picks the scenarios and each campaign's seed (default: a random seed, printed)")
	fs.Float64Var(&f.scale, "scale", 1, "multiply every list size by `F`")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Minute, "time limit per campaign")
	fs.StringVar(&f.sender, "sender", "", "a built-in sender instead of a command: builtin:NAME")
	fs.StringVar(&f.config, "config", "", "read the sender, seed, scale, duration and chaos from `FILE` (onecopy.yaml; flags win)")
	fs.StringVar(&f.workDir, "work-dir", "", "keep each campaign's state dir, logs and history under `DIR`")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		*code = soak(cmd, args, f)
		return nil
	}
	return cmd
}

type soakFlags struct {
	duration, timeout                              time.Duration
	metricsAddr, reportDir, chaos, sender, workDir string
	config                                         string
	seed                                           uint64
	scale                                          float64
}

func soak(cmd *cobra.Command, args []string, f soakFlags) int {
	ctx, stdout, stderr := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	fail := func(err error) int { return failed(stderr, cmd, err) }
	if f.config != "" {
		file, err := loadConfig(f.config)
		if err != nil {
			return fail(err)
		}
		file.fillSoak(cmd, &f, &args)
	}
	if f.duration <= 0 {
		return fail(usageErr("--duration: want a positive duration, like --duration 30s or --duration 8h"))
	}
	if f.scale <= 0 {
		return fail(usageErr("--scale %v: want a positive factor", f.scale))
	}
	if f.timeout <= 0 {
		return fail(usageErr("--timeout %v: want a positive duration", f.timeout))
	}
	if !cmd.Flags().Changed("seed") {
		f.seed = rand.Uint64() % 1_000_000_000
	}
	var rf runFlags
	rf.sender = f.sender
	cfg, err := rf.senderCommand(args)
	if err != nil {
		return fail(err)
	}
	var pool []scenarios.Scenario
	if f.chaos != "" {
		if pool, err = scenarios.ParseChaos(f.chaos); err != nil {
			return fail(err)
		}
	}
	senderArgs := "-- " + strings.Join(quoteAll(args), " ")
	if f.sender != "" {
		senderArgs = "--sender " + f.sender
	}
	opts := scenarios.SoakOptions{
		Options: scenarios.Options{
			Command: cfg.Command, Seed: f.seed, Scale: f.scale, Timeout: f.timeout, WorkDir: f.workDir,
			Replay: func(s scenarios.Scenario, seed uint64) string { return s.Replay(seed, f.scale, senderArgs) },
		},
		Duration:  f.duration,
		Chaos:     pool,
		ReportDir: f.reportDir,
	}
	if f.metricsAddr != "" {
		m, stop, err := serveMetrics(f.metricsAddr, stderr)
		if err != nil {
			return fail(err)
		}
		defer stop()
		opts.Metrics = m
	}
	if isTerminal(stdout) {
		opts.Progress = stdout
	} else {
		// A log, not a live line: one line per campaign as it ends.
		opts.OnCampaign = func(c scenarios.SoakCampaign) {
			if c.Summary == nil || c.Interrupted {
				fmt.Fprintf(stdout, "campaign %d %s (seed %d): interrupted\n", c.Index, c.Scenario, c.Seed)
				return
			}
			mark := "ok"
			if !c.Pass() {
				mark = "FAIL"
			}
			fmt.Fprintf(stdout, "campaign %d %s (seed %d): %s, expected %s: %s\n", c.Index, c.Scenario, c.Seed, c.Summary.Verdict, c.Summary.Expect, mark)
		}
	}
	fmt.Fprintf(stdout, "onecopy soak: %s, seed %d, sender %s\n", f.duration, f.seed, senderArgs)
	res, err := scenarios.Soak(ctx, opts)
	fmt.Fprintln(stdout)
	res.WriteTable(stdout)
	for _, c := range res.Campaigns {
		if c.Report != nil && !c.Interrupted && !c.Pass() {
			fmt.Fprintf(stdout, "\n--- campaign %d: %s\n", c.Index, c.Scenario)
			c.Report.Summary(stdout)
		}
	}
	if f.reportDir != "" {
		var entries []report.IndexEntry
		for _, c := range res.Campaigns {
			if c.ReportFile == "" {
				continue
			}
			e := report.IndexEntry{Name: fmt.Sprintf("%04d %s", c.Index, c.Scenario), Class: fmt.Sprintf("seed %d", c.Seed), Report: c.Report,
				JSON: filepath.Base(c.ReportFile)}
			if e.Report == nil && c.Summary != nil {
				// A passing campaign: its report is on disk only, and the
				// index needs no more than the summary kept.
				sm := c.Summary
				e.Report = &report.Report{Verdict: sm.Verdict, Expect: sm.Expect, Pass: sm.Pass, Outcome: sm.Outcome,
					Ended: sm.Ended, DurationSeconds: sm.DurationSeconds, Copies: sm.Copies, Attempts: sm.Attempts}
			}
			if !c.Pass() && !c.Interrupted {
				e.HTML = strings.TrimSuffix(e.JSON, ".json") + ".html"
			}
			entries = append(entries, e)
		}
		if err := report.WriteIndex(filepath.Join(f.reportDir, "index.html"), fmt.Sprintf("onecopy soak, seed %d", f.seed), entries); err != nil {
			return fail(err)
		}
		fmt.Fprintf(stdout, "reports in %s (index.html)\n", f.reportDir)
	}
	switch {
	case err != nil:
		return fail(err)
	case ctx.Err() != nil || res.Interrupted:
		return exitInterrupt
	case !res.Pass():
		return exitShort
	}
	return exitPass
}
