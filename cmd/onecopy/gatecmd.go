// onecopy gate: the scenario catalog against a sender, as a CI gate; and
// --self-test, the catalog proving itself against the built-in mutants.

package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/scenarios"
	"github.com/onecopy/onecopy/senders/builtin"
	"github.com/onecopy/onecopy/verdict"
)

type gateFlags struct {
	only, skip, expect []string
	junit, reportDir   string
	seed               uint64
	scale              float64
	timeout            time.Duration
	sender, workDir    string
	transport          string
	list, selfTest     bool
	parallel           int
	config             string
	summary            string
}

func gateCommand(code *int) *cobra.Command {
	var f gateFlags
	cmd := &cobra.Command{
		Use:   "gate [flags] -- COMMAND [ARGS...]",
		Short: "run the scenario catalog against a sender (CI gate, JUnit)",
		Long: `Runs every scenario of the catalog (one per real failure mode: docs/failure-modes.md)
against the sender, each with its own fake server and work dir, --parallel at once, and
exits 0 only if each reaches the level every correct sender reaches there.

--self-test runs the catalog against the built-in correct senders in every shape (they must
pass everything) and against the built-in mutants each scenario is named for (each must be
caught): the matrix of docs/mutants.md.

` + exitCodes,
		Example: `  onecopy gate --list
  onecopy gate --junit gate.xml --report-dir reports -- ./my-sender
  onecopy gate --only kill --skip slow-ack --seed 7 --scale 10 -- python3 examples/senders/python/ledger.py
  onecopy gate --expect slow-ack=at-least-once -- ./my-sender
  onecopy gate --self-test`,
		RunE: func(cmd *cobra.Command, args []string) error {
			*code = gate(cmd, f, args)
			return nil
		},
	}
	fs := cmd.Flags()
	fs.StringArrayVar(&f.only, "only", nil, "run only this scenario or label (repeatable)")
	fs.StringArrayVar(&f.skip, "skip", nil, "skip this scenario or label (repeatable)")
	fs.StringArrayVar(&f.expect, "expect", nil, "expect `SCENARIO=LEVEL` instead of the scenario's own level (repeatable), for a sender that knowingly promises less")
	fs.StringVar(&f.junit, "junit", "", "write a JUnit XML report (one test case per scenario) to `FILE`")
	fs.StringVar(&f.reportDir, "report-dir", "", "write one JSON and one HTML report per scenario, and an index.html, into `DIR`")
	fs.StringVar(&f.summary, "summary", "", "write a Markdown summary (for $GITHUB_STEP_SUMMARY or a merge-request comment) to `FILE`")
	fs.Uint64Var(&f.seed, "seed", 0, "seed for every scenario (default: a random seed, printed)")
	fs.Float64Var(&f.scale, "scale", 1, "multiply every list size by `F`")
	fs.DurationVar(&f.timeout, "timeout", 2*time.Minute, "time limit per scenario")
	fs.StringVar(&f.sender, "sender", "", "a built-in sender instead of a command: builtin:NAME")
	fs.StringVar(&f.workDir, "work-dir", "", "keep each scenario's state dir, logs and history under `DIR`/SCENARIO")
	fs.StringVar(&f.transport, "transport", "smtp", "smtp, or http: the sender sends through the providers' APIs (the self-test then uses the HTTP built-ins)")
	fs.BoolVar(&f.list, "list", false, "list the selected scenarios and exit")
	fs.BoolVar(&f.selfTest, "self-test", false, "run the catalog against the built-in correct senders and mutants (no sender argument)")
	fs.IntVar(&f.parallel, "parallel", runtime.NumCPU(), "run `N` scenarios at once")
	fs.StringVar(&f.config, "config", "", "read the sender, scenarios, levels, seed and scale from `FILE` (onecopy.yaml; flags win; docs/config.md)")
	return cmd
}

func gate(cmd *cobra.Command, f gateFlags, args []string) int {
	ctx, stdout, stderr := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	fail := func(err error) int { return failed(stderr, cmd, err) }
	var file *fileConfig
	if f.config != "" {
		var err error
		if file, err = loadConfig(f.config); err != nil {
			return fail(err)
		}
		file.fill(cmd, &f, &args)
	}
	if f.transport != "smtp" && f.transport != "http" {
		return fail(usageErr("--transport %q: want smtp or http", f.transport))
	}
	if f.scale <= 0 {
		return fail(usageErr("--scale %v: want a positive factor", f.scale))
	}
	if f.parallel < 1 {
		return fail(usageErr("--parallel %d: want 1 or more", f.parallel))
	}
	if f.timeout <= 0 {
		return fail(usageErr("--timeout %v: want a positive duration", f.timeout))
	}
	selected, err := scenarios.Select(scenarios.Catalog(), f.only, f.skip)
	if err != nil {
		return fail(err)
	}
	selected = file.apply(selected)
	overrides := map[string]verdict.Level{}
	for _, e := range f.expect {
		name, level, err := scenarios.ParseExpect(e)
		if err != nil {
			return fail(usageErr("%v", err))
		}
		if _, err := scenarios.Select(scenarios.Catalog(), []string{name}, nil); err != nil {
			return fail(err)
		}
		overrides[name] = level
	}
	for i := range selected {
		if l, ok := overrides[selected[i].Name]; ok {
			selected[i].Expect = l
		}
	}
	if f.list {
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SCENARIO\tFAILURE MODE\tCHAOS\tLEVEL\tCATCHES\tLABELS")
		for _, s := range selected {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.Mode, s.Chaos(), s.Expect, strings.Join(s.Mutants, ","), strings.Join(s.Labels, ","))
		}
		tw.Flush()
		return exitPass
	}
	if !cmd.Flags().Changed("seed") {
		f.seed = rand.Uint64() % 1_000_000_000
	}
	for flag, p := range map[string]string{"--junit": f.junit, "--summary": f.summary} {
		if err := checkWritable(flag, p); err != nil {
			return fail(err)
		}
	}
	if f.reportDir != "" {
		if err := os.MkdirAll(f.reportDir, 0o755); err != nil {
			return fail(usageErr("--report-dir: %v", err))
		}
	}
	if f.selfTest {
		if len(args) > 0 || f.sender != "" {
			return fail(usageErr("--self-test runs the built-in senders: give no sender"))
		}
		return selfTest(cmd, f, selected)
	}
	var rf runFlags
	rf.sender = f.sender
	cfg, err := rf.senderCommand(args)
	if err != nil {
		return fail(err)
	}
	senderArgs := "-- " + strings.Join(quoteAll(args), " ")
	if f.sender != "" {
		senderArgs = "--sender " + f.sender
	}
	opts := scenarios.Options{
		Command: cfg.Command, Seed: f.seed, Scale: f.scale, Timeout: f.timeout, WorkDir: f.workDir,
		Replay: func(s scenarios.Scenario, seed uint64) string { return gateReplay(s, seed, f, senderArgs) },
	}
	fmt.Fprintf(stdout, "onecopy gate: %d scenarios, seed %d, %d at once, sender %s\n", len(selected), f.seed, f.parallel, senderArgs)
	row := "%-20s %-18s %-18s %-5s %6s  %s\n"
	fmt.Fprintf(stdout, row, "SCENARIO", "VERDICT", "EXPECTED", "PASS", "TIME", "FAILURE MODE")
	jobs := make([]scenarios.Job, len(selected))
	for i, s := range selected {
		jobs[i] = scenarios.Job{Scenario: s, Options: opts}
	}
	start := time.Now()
	failures, errs := 0, 0
	var cases []report.Case
	results := scenarios.RunAll(ctx, jobs, f.parallel, func(r scenarios.Result) {
		s := r.Scenario
		switch {
		case r.Err != nil && ctx.Err() != nil:
			cases = append(cases, report.Case{Name: s.Name, Class: s.Mode, Skipped: "interrupted before it ran"})
			fmt.Fprintf(stdout, row, s.Name, "-", s.Expect, "-", "-", "interrupted")
		case r.Err != nil:
			errs++
			cases = append(cases, report.Case{Name: s.Name, Class: s.Mode, Error: r.Err.Error()})
			fmt.Fprintf(stdout, row, s.Name, "ERROR", s.Expect, "ERROR", "-", r.Err.Error())
		default:
			mark := "ok"
			if !r.Report.Pass {
				mark = "FAIL"
				failures++
			}
			if r.Report.Outcome != report.OutcomeJudged {
				mark = strings.ToUpper(string(r.Report.Outcome))
			}
			fmt.Fprintf(stdout, row, s.Name, r.Report.Verdict, r.Report.Expect, mark, fmt.Sprintf("%.1fs", r.Report.DurationSeconds), s.Mode)
			cases = append(cases, report.Case{Name: s.Name, Class: s.Mode, Report: r.Report})
		}
	})
	if f.junit != "" {
		if err := report.WriteJUnit(f.junit, "onecopy gate", cases); err != nil {
			return fail(err)
		}
	}
	entries := indexEntries(results, f.reportDir != "")
	if f.reportDir != "" {
		if err := writeReports(f.reportDir, results); err != nil {
			return fail(err)
		}
		if err := report.WriteIndex(filepath.Join(f.reportDir, "index.html"), "onecopy gate, seed "+strconv.FormatUint(f.seed, 10), entries); err != nil {
			return fail(err)
		}
	}
	if f.summary != "" {
		if err := writeSummary(f.summary, "onecopy gate, seed "+strconv.FormatUint(f.seed, 10), entries); err != nil {
			return fail(err)
		}
	}
	fmt.Fprintf(stdout, "%d of %d scenarios reached their level in %.1fs (seed %d)\n", len(selected)-failures-errs, len(selected), time.Since(start).Seconds(), f.seed)
	for _, r := range results {
		if r.Report != nil && !r.Report.Pass {
			fmt.Fprintf(stdout, "\n--- %s (%s)\n", r.Scenario.Name, r.Scenario.Mode)
			r.Report.Summary(stdout)
		}
	}
	switch {
	case ctx.Err() != nil:
		return exitInterrupt
	case errs > 0:
		for _, r := range results {
			if r.Err != nil {
				fmt.Fprintf(stderr, "onecopy: scenario %s: %v\n", r.Scenario.Name, r.Err)
				break
			}
		}
		return exitHarness
	case failures > 0:
		return exitShort
	}
	return exitPass
}

// gateReplay is the command that replays one scenario with every flag that
// shaped the run.
func gateReplay(s scenarios.Scenario, seed uint64, f gateFlags, sender string) string {
	r := fmt.Sprintf("onecopy gate --only %s --seed %d", s.Name, seed)
	if f.scale != 1 {
		r += fmt.Sprintf(" --scale %g", f.scale)
	}
	if f.timeout != 2*time.Minute {
		r += " --timeout " + f.timeout.String()
	}
	for _, e := range f.expect {
		if strings.HasPrefix(e, s.Name+"=") {
			r += " --expect " + e
		}
	}
	return r + " " + sender
}

// indexEntries are the gate's results for the index and the summary.
func indexEntries(results []scenarios.Result, files bool) []report.IndexEntry {
	var out []report.IndexEntry
	for _, r := range results {
		e := report.IndexEntry{Name: r.Scenario.Name, Class: r.Scenario.Mode, Report: r.Report}
		switch {
		case r.Err != nil && r.Report == nil:
			e.Error = r.Err.Error()
		case r.Report != nil && files:
			e.JSON, e.HTML = r.Scenario.Name+".json", r.Scenario.Name+".html"
		}
		out = append(out, e)
	}
	return out
}

// writeSummary writes the Markdown table of entries to path.
func writeSummary(path, title string, entries []report.IndexEntry) error {
	var b strings.Builder
	report.MarkdownTable(&b, title, entries)
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return fmt.Errorf("--summary: %w", err)
	}
	return nil
}

// writeReports writes each scenario's JSON and HTML report into dir.
func writeReports(dir string, results []scenarios.Result) error {
	for _, r := range results {
		if r.Report == nil {
			continue
		}
		if err := r.Report.WriteJSON(filepath.Join(dir, r.Scenario.Name+".json")); err != nil {
			return err
		}
		if err := r.Report.WriteHTML(filepath.Join(dir, r.Scenario.Name+".html")); err != nil {
			return err
		}
	}
	return nil
}

func selfTest(cmd *cobra.Command, f gateFlags, selected []scenarios.Scenario) int {
	ctx, stdout, stderr := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
	exe, err := os.Executable()
	if err != nil {
		return failed(stderr, cmd, fmt.Errorf("finding the onecopy binary for the built-in senders: %w", err))
	}
	var mutants []string
	for _, n := range builtin.Names() {
		// The HTTP built-ins are the mutants of the HTTP self-test only.
		if info, ok := builtin.Describe(n); ok && !info.Correct && strings.HasSuffix(n, "-http") == (f.transport == "http") {
			mutants = append(mutants, n)
		}
	}
	opts := scenarios.Options{Command: []string{exe, "sender"}, Seed: f.seed, Scale: f.scale, Timeout: f.timeout, WorkDir: f.workDir}
	fmt.Fprintf(stdout, "onecopy gate --self-test: %d scenarios × (%d correct shapes + their mutants), seed %d, %d at once\n",
		len(selected), len(scenarios.CorrectShapes(f.transport)), f.seed, f.parallel)
	n := 0
	st := scenarios.RunSelfTest(ctx, selected, opts, f.transport, mutants, f.parallel, func(r scenarios.Result) {
		n++
		if isTerminal(stdout) {
			fmt.Fprintf(stdout, "\r\x1b[K%d runs done (%s, %s)", n, r.Scenario.Name, r.Sender)
		}
	})
	if isTerminal(stdout) {
		fmt.Fprint(stdout, "\r\x1b[K")
	}
	io.WriteString(stdout, st.Matrix())
	for _, m := range st.Unnamed {
		fmt.Fprintf(stdout, "mutant %s is named by no selected scenario\n", m)
	}
	for _, r := range st.Rows {
		for _, c := range r.Cells {
			if !c.OK() {
				fmt.Fprintf(stdout, "\n--- %s against %s: %s\n", r.Scenario.Name, c.Sender, c.Word())
				if c.Result.Err != nil {
					fmt.Fprintf(stdout, "  %v\n", c.Result.Err)
				} else {
					c.Result.Report.Summary(stdout)
				}
			}
		}
	}
	switch {
	case ctx.Err() != nil:
		return exitInterrupt
	case !st.OK():
		fmt.Fprintln(stdout, "self-test FAILED")
		return exitShort
	}
	fmt.Fprintln(stdout, "self-test passed: every correct sender reached every level, every mutant was caught")
	return exitPass
}
