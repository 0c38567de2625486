// onecopy run and onecopy repro.

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/senders/builtin"
	"github.com/onecopy/onecopy/verdict"
)

// runFlags are the flags of onecopy run (docs/cli.md).
type runFlags struct {
	recipients  int
	list        string
	kills       []string
	signal      string
	grace       time.Duration
	pause       time.Duration
	faults      []string
	instances   int
	stagger     time.Duration
	staggerAt   string
	retries     int
	expect      string
	seed        uint64
	timeout     time.Duration
	report      string
	junit       string
	html        string
	metricsAddr string
	sender      string
	workDir     string
	quiet       bool
	target      string
	containment string
	summary     string
}

func (f *runFlags) register(fs *pflag.FlagSet) {
	fs.IntVar(&f.recipients, "recipients", 0, "a synthetic list of `N` addresses")
	fs.StringVar(&f.list, "list", "", "a recipient list `FILE`, one address per line")
	fs.StringArrayVar(&f.kills, "kill", nil, "kill schedule (repeatable): at=25%,50% | every=N | random=K | in-doubt=K | during-data=K")
	fs.StringVar(&f.signal, "signal", "KILL", "how kills hit the sender: KILL, TERM or STOP")
	fs.DurationVar(&f.grace, "grace", 5*time.Second, "with --signal TERM: wait this long, then KILL")
	fs.DurationVar(&f.pause, "pause", 3*time.Second, "with --signal STOP: pause this long, then CONT")
	fs.StringArrayVar(&f.faults, "fault", nil, "SMTP fault (repeatable): "+fakesmtp.FaultForms)
	fs.IntVar(&f.instances, "instances", 1, "run `N` sender instances at once")
	fs.DurationVar(&f.stagger, "stagger", 0, "start instance k at (k-1) x `DUR`")
	fs.StringVar(&f.staggerAt, "stagger-at", "", "start instance k once (k-1) x `P%` of the list has a copy, while the others run (a job redelivered to a second worker)")
	fs.IntVar(&f.retries, "retries", 5, "restarts allowed after failed attempts")
	fs.StringVar(&f.expect, "expect", "exactly-once", "level the run must reach: exactly-once | effectively-once | at-least-once | at-most-once")
	fs.Uint64Var(&f.seed, "seed", 0, "seed for every random choice (default: a random seed, printed)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "end the run after this long; a run that hits it never passes")
	fs.StringVar(&f.report, "report", "", "write the JSON report to `FILE`")
	fs.StringVar(&f.junit, "junit", "", "write a JUnit XML report to `FILE`")
	fs.StringVar(&f.summary, "summary", "", "write the report as Markdown (for $GITHUB_STEP_SUMMARY) to `FILE`")
	fs.StringVar(&f.html, "html", "", "write a self-contained HTML report (timeline, histogram, duplicates traced to attempts) to `FILE`")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on `ADDR` during the run")
	fs.StringVar(&f.sender, "sender", "", "a built-in sender instead of a command: builtin:NAME ("+strings.Join(builtin.Names(), ", ")+")")
	fs.StringVar(&f.workDir, "work-dir", "", "keep the state dir, list, history and sender logs in `DIR` (re-judge it with onecopy check DIR)")
	fs.BoolVar(&f.quiet, "quiet", false, "print only the verdict line")
	fs.StringVar(&f.target, "target", "all", "which running instances a kill or pause hits: all | one | sending | instance=K")
	fs.StringVar(&f.containment, "containment", "", "force how attempts are contained: cgroup-v2 | cgroup-v1 | subreaper (default: the best this machine allows)")
}

func runCommand(code *int) *cobra.Command {
	var f runFlags
	cmd := &cobra.Command{
		Use:   "run [flags] -- COMMAND [ARGS...]",
		Short: "run a sender under kills and faults, and judge it",
		Long: `Runs the sender COMMAND (or --sender builtin:NAME) under the environment contract
(ONECOPY_SMTP_ADDR, ONECOPY_API_URL, ONECOPY_RECIPIENTS, ONECOPY_STATE_DIR, ONECOPY_CAMPAIGN,
ONECOPY_ATTEMPT, ONECOPY_INSTANCE; docs/contract.md), against a fake SMTP server that counts every
copy, with the kills and faults asked for; restarts it as a job runner would, and judges the run.

Containment: every process an attempt starts, daemons included, is killed and paused with it
({containment}).

` + exitCodes,
		Example: `  onecopy run --recipients 1000 --kill at=25%,50%,75% --sender builtin:naive
  onecopy run --recipients 1000 --kill in-doubt=3 --expect effectively-once --report out.json -- python3 examples/senders/python/ledger.py
  onecopy run --list examples/senders/subscribers.txt --signal TERM --grace 5s --kill random=3 --seed 7 -- sh examples/senders/shell/naive.sh
  onecopy run --recipients 200 --instances 2 --kill during-data=1 --signal STOP --pause 1s --target sending --sender builtin:ledger`,
		RunE: func(cmd *cobra.Command, args []string) error {
			seedSet := cmd.Flags().Changed("seed")
			if !seedSet {
				f.seed = rand.Uint64() % 1_000_000_000
			}
			cfg, err := f.config(args)
			if err != nil {
				return err
			}
			cfg.Replay = replayLine(rawArgs(cmd, args), f.seed, seedSet)
			_, *code = execute(cmd.Context(), cfg, f, cmd.OutOrStdout(), cmd.ErrOrStderr())
			return nil
		},
	}
	f.register(cmd.Flags())
	withContainment(cmd)
	return cmd
}

// withContainment fills in, when help is shown and only then, which
// containment this machine gives (finding out starts a process).
func withContainment(cmd *cobra.Command) {
	help := (&cobra.Command{}).HelpFunc()
	cmd.SetHelpFunc(func(c *cobra.Command, args []string) {
		c.Long = strings.Replace(c.Long, "{containment}", containmentWords(), 1)
		help(c, args)
	})
}

// rawArgs is the command line of cmd as typed, flags and all, for the
// replay line.
func rawArgs(cmd *cobra.Command, args []string) []string {
	var out []string
	cmd.Flags().Visit(func(fl *pflag.Flag) {
		if sv, ok := fl.Value.(pflag.SliceValue); ok {
			for _, v := range sv.GetSlice() {
				out = append(out, "--"+fl.Name, v)
			}
			return
		}
		if fl.Value.Type() == "bool" {
			out = append(out, "--"+fl.Name)
			return
		}
		out = append(out, "--"+fl.Name, fl.Value.String())
	})
	if len(args) > 0 {
		out = append(append(out, "--"), args...)
	}
	return out
}

// containmentWords says which containment this machine gives.
func containmentWords() string {
	for _, m := range []string{"cgroup-v2", "cgroup-v1", "subreaper"} {
		if harness.ContainmentAvailable(m) {
			return "here: " + m + "; see docs/containment.md"
		}
	}
	return "see docs/containment.md"
}

// checkWritable fails early, before anything runs, when path cannot be
// written: a report lost after an hour's run is worse than no run.
func checkWritable(flag, path string) error {
	if path == "" {
		return nil
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, ".onecopy-check-*")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return usageErr("%s %s: cannot write there (%v): give a path in a directory that exists and is writable", flag, path, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// config turns the flags into a harness.Config; every problem is a
// *harness.UsageError naming the flag and the accepted forms.
func (f *runFlags) config(command []string) (harness.Config, error) {
	cfg, err := f.senderCommand(command)
	if err != nil {
		return cfg, err
	}
	for flag, path := range map[string]string{"--report": f.report, "--junit": f.junit, "--html": f.html, "--summary": f.summary} {
		if err := checkWritable(flag, path); err != nil {
			return cfg, err
		}
	}
	switch {
	case f.list != "" && f.recipients != 0:
		return cfg, usageErr("give either --recipients N or --list FILE, not both")
	case f.list != "":
		if cfg.Recipients, err = harness.ReadList(f.list); err != nil {
			return cfg, err
		}
	case f.recipients > 0:
		if f.recipients > 50_000_000 {
			return cfg, usageErr("--recipients %d: want at most 50,000,000", f.recipients)
		}
		cfg.Recipients = harness.Synthetic(f.recipients)
	default:
		return cfg, usageErr("no recipients: give --recipients N (N > 0) or --list FILE")
	}
	for _, k := range f.kills {
		spec, err := harness.ParseKill(k)
		if err != nil {
			return cfg, err
		}
		cfg.Kills = append(cfg.Kills, spec)
	}
	for _, s := range f.faults {
		spec, err := fakesmtp.ParseFault(s)
		if err != nil {
			return cfg, usageErr("%v", err)
		}
		cfg.Faults = append(cfg.Faults, spec)
	}
	if cfg.Signal, err = harness.ParseSignal(f.signal); err != nil {
		return cfg, err
	}
	if cfg.Target, err = harness.ParseTarget(f.target); err != nil {
		return cfg, err
	}
	if cfg.Expect, err = verdict.ParseLevel(f.expect); err != nil {
		return cfg, usageErr("--expect: %v", err)
	}
	if f.instances < 1 {
		return cfg, usageErr("--instances %d: want 1 or more", f.instances)
	}
	if f.retries < 0 {
		return cfg, usageErr("--retries %d: want 0 or more", f.retries)
	}
	for name, d := range map[string]time.Duration{"--grace": f.grace, "--pause": f.pause, "--timeout": f.timeout} {
		if d <= 0 {
			return cfg, usageErr("%s %v: want a positive duration, like 5s", name, d)
		}
	}
	if f.stagger < 0 {
		return cfg, usageErr("--stagger %v: want a duration of 0 or more", f.stagger)
	}
	cfg.Grace, cfg.Pause, cfg.Timeout, cfg.Stagger = f.grace, f.pause, f.timeout, f.stagger
	if f.staggerAt != "" {
		p, err := strconv.ParseFloat(strings.TrimSuffix(f.staggerAt, "%"), 64)
		if err != nil || !strings.HasSuffix(f.staggerAt, "%") || p <= 0 || p >= 100 {
			return cfg, usageErr("--stagger-at %q: want a share of the list like 30%%", f.staggerAt)
		}
		cfg.StaggerAt = p
	}
	cfg.Instances, cfg.Retries, cfg.Seed, cfg.WorkDir = f.instances, f.retries, f.seed, f.workDir
	switch f.containment {
	case "", "cgroup-v2", "cgroup-v1", "subreaper":
		cfg.Containment = f.containment
	default:
		return cfg, usageErr("--containment %q: want cgroup-v2, cgroup-v1 or subreaper", f.containment)
	}
	return cfg, nil
}

// senderCommand resolves --sender builtin:NAME or the command after --.
func (f *runFlags) senderCommand(command []string) (harness.Config, error) {
	var cfg harness.Config
	switch {
	case f.sender != "" && len(command) > 0:
		return cfg, usageErr("give either --sender builtin:NAME or a command after --, not both")
	case f.sender != "":
		name, ok := strings.CutPrefix(f.sender, "builtin:")
		if !ok || name == "" {
			return cfg, usageErr("--sender %q: want builtin:NAME (%s)", f.sender, strings.Join(builtin.Names(), ", "))
		}
		if err := checkSenderName(name); err != nil {
			return cfg, err
		}
		exe, err := os.Executable()
		if err != nil {
			return cfg, fmt.Errorf("finding the onecopy binary for --sender: %w", err)
		}
		cfg.Command = []string{exe, "sender", name}
	case len(command) > 0:
		cfg.Command = command
	default:
		return cfg, usageErr("no sender: give a command after -- (onecopy run --recipients 100 -- ./my-sender) or --sender builtin:NAME")
	}
	return cfg, nil
}

// execute runs cfg, prints the summary and writes the reports.
func execute(ctx context.Context, cfg harness.Config, f runFlags, stdout, stderr io.Writer) (*report.Report, int) {
	if isTerminal(stdout) && !f.quiet {
		cfg.Progress = stdout
	}
	if f.metricsAddr != "" {
		m, stop, err := serveMetrics(f.metricsAddr, stderr)
		if err != nil {
			return nil, failed(stderr, nil, err)
		}
		defer stop()
		cfg.Metrics = m
	}
	rep, err := harness.Run(ctx, cfg)
	if rep == nil {
		return nil, failed(stderr, nil, err)
	}
	if f.quiet {
		fmt.Fprintf(stdout, "%s (expected %s, seed %d)\n", rep.Verdict, rep.Expect, rep.Seed)
	} else {
		rep.Summary(stdout)
	}
	if f.report != "" {
		if werr := rep.WriteJSON(f.report); werr != nil {
			fmt.Fprintf(stderr, "onecopy: %v\n", werr)
			return rep, exitHarness
		}
	}
	if f.html != "" {
		if werr := rep.WriteHTML(f.html); werr != nil {
			fmt.Fprintf(stderr, "onecopy: %v\n", werr)
			return rep, exitHarness
		}
	}
	if f.summary != "" {
		var b strings.Builder
		rep.Markdown(&b)
		if werr := os.WriteFile(f.summary, []byte(b.String()), 0o644); werr != nil {
			fmt.Fprintf(stderr, "onecopy: --summary: %v\n", werr)
			return rep, exitHarness
		}
	}
	if f.junit != "" {
		if werr := report.WriteJUnit(f.junit, "onecopy run", []report.Case{{Name: "run", Report: rep}}); werr != nil {
			fmt.Fprintf(stderr, "onecopy: %v\n", werr)
			return rep, exitHarness
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "onecopy: %v\n", err)
		return rep, exitHarness
	}
	return rep, exitFor(rep)
}

// replayLine is the one-line command that reproduces a run.
func replayLine(args []string, seed uint64, seedSet bool) string {
	parts := []string{"onecopy", "run"}
	if !seedSet {
		parts = append(parts, "--seed", strconv.FormatUint(seed, 10))
	}
	for _, a := range args {
		parts = append(parts, shellQuote(a))
	}
	return strings.Join(parts, " ")
}

// reproCommand reproduces the bug onecopy exists for: 1,000 recipients,
// the 501st rejected for good, the naive sender, 3 retries.
func reproCommand(code *int) *cobra.Command {
	var seed uint64
	var reportFile, html, api string
	cmd := &cobra.Command{
		Use:   "repro",
		Short: "reproduce the 4-copies bug with the built-in naive sender",
		Long: `A marketing job sends one email to each of 1,000 subscribers. The 501st address is rejected
with 550, the job throws, and the job runner retries it from the top, 3 times: the first
half of the list gets 4 copies, the rest none. repro runs exactly that, over SMTP, or over
a provider's HTTP API with --api (the same bug behind an SDK).

Exit code 0 when the bug was reproduced.`,
		Example: `  onecopy repro
  onecopy repro --html repro.html
  onecopy repro --api resend`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
			sender := "builtin:naive"
			switch api {
			case "":
			case "resend":
				sender = "builtin:naive-http"
			default:
				return usageErr("--api %q: want resend (the built-in naive sender's provider over HTTP)", api)
			}
			runArgs := []string{"--recipients", "1000", "--fault", "reject=rcpt000501@onecopy.test", "--retries", "3",
				"--seed", strconv.FormatUint(seed, 10), "--sender", sender}
			var f runFlags
			rfs := pflag.NewFlagSet("onecopy run", pflag.ContinueOnError)
			f.register(rfs)
			if err := rfs.Parse(runArgs); err != nil {
				return err
			}
			f.report, f.html = reportFile, html
			cfg, err := f.config(nil)
			if err != nil {
				return err
			}
			cfg.Replay = replayLine(runArgs, seed, true)
			*code = reproduce(cmd.Context(), cfg, f, stdout, stderr)
			return nil
		},
	}
	cmd.Flags().Uint64Var(&seed, "seed", 1, "seed (the bug needs no randomness; kept for the report)")
	cmd.Flags().StringVar(&reportFile, "report", "", "write the JSON report to `FILE`")
	cmd.Flags().StringVar(&html, "html", "", "write the HTML report to `FILE`")
	cmd.Flags().StringVar(&api, "api", "", "reproduce it over a provider's HTTP API instead of SMTP: resend")
	return cmd
}

func reproduce(ctx context.Context, cfg harness.Config, f runFlags, stdout, stderr io.Writer) int {
	fmt.Fprint(stdout, "A marketing job sends one email to each of 1,000 subscribers. The 501st address is rejected\n"+
		"with 550, the job throws, and the job runner retries it from the top, 3 times.\n\n")
	rep, code := execute(ctx, cfg, f, stdout, stderr)
	if rep == nil || code == exitHarness || code == exitInterrupt {
		return code
	}
	fmt.Fprintln(stdout)
	var got []string
	for n := 2; n <= rep.Attempts; n++ {
		if c := rep.Histogram[strconv.Itoa(n)]; c > 0 {
			got = append(got, fmt.Sprintf("%d addresses got %d copies", c, n))
		}
	}
	if c := rep.Histogram["1"]; c > 0 {
		got = append(got, fmt.Sprintf("%d got one", c))
	}
	got = append(got, fmt.Sprintf("%d got none", rep.Missing), fmt.Sprintf("%d bounced", rep.Bounced))
	if rep.Duplicated == 0 || rep.Missing == 0 {
		fmt.Fprintf(stdout, "NOT reproduced: %s. The naive sender should have duplicated the head of the list and lost its tail.\n", strings.Join(got, ", "))
		return exitShort
	}
	fmt.Fprintf(stdout, "Reproduced: %s, after %d attempts.\n", strings.Join(got, ", "), rep.Attempts)
	fmt.Fprintf(stdout, "That was shorthand for:\n  %s\n", rep.Replay)
	fmt.Fprintln(stdout, "Point it at your own sender with: onecopy run --recipients 1000 --fault reject-nth=501 --retries 3 -- ./your-sender")
	return exitPass
}
