// onecopy run and onecopy repro.

package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

// runFlags are the flags of onecopy run (docs/cli.md).
type runFlags struct {
	recipients  int
	list        string
	kills       multiFlag
	signal      string
	grace       time.Duration
	pause       time.Duration
	faults      multiFlag
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
}

func (f *runFlags) register(fs *flag.FlagSet) {
	fs.IntVar(&f.recipients, "recipients", 0, "a synthetic list of `N` addresses")
	fs.StringVar(&f.list, "list", "", "a recipient list `FILE`, one address per line")
	fs.Var(&f.kills, "kill", "kill schedule (repeatable): at=25%,50% | every=N | random=K | in-doubt=K | during-data=K")
	fs.StringVar(&f.signal, "signal", "KILL", "how kills hit the sender: KILL, TERM or STOP")
	fs.DurationVar(&f.grace, "grace", 5*time.Second, "with --signal TERM: wait this long, then KILL")
	fs.DurationVar(&f.pause, "pause", 3*time.Second, "with --signal STOP: pause this long, then CONT")
	fs.Var(&f.faults, "fault", "SMTP fault (repeatable): "+fakesmtp.FaultForms)
	fs.IntVar(&f.instances, "instances", 1, "run `N` sender instances at once")
	fs.DurationVar(&f.stagger, "stagger", 0, "start instance k at (k-1) x `DUR`")
	fs.StringVar(&f.staggerAt, "stagger-at", "", "start instance k once (k-1) x `P%` of the list has a copy, while the others run (a job redelivered to a second worker)")
	fs.IntVar(&f.retries, "retries", 5, "restarts allowed after failed attempts")
	fs.StringVar(&f.expect, "expect", "exactly-once", "level the run must reach: exactly-once | effectively-once | at-least-once | at-most-once")
	fs.Uint64Var(&f.seed, "seed", 0, "seed for every random choice (default: a random seed, printed)")
	fs.DurationVar(&f.timeout, "timeout", 10*time.Minute, "end the run after this long")
	fs.StringVar(&f.report, "report", "", "write the JSON report to `FILE`")
	fs.StringVar(&f.junit, "junit", "", "write a JUnit XML report to `FILE`")
	fs.StringVar(&f.html, "html", "", "write a self-contained HTML report (timeline, histogram, duplicates traced to attempts) to `FILE`")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve Prometheus /metrics on `ADDR` during the run")
	fs.StringVar(&f.sender, "sender", "", "a built-in sender instead of a command: builtin:NAME")
	fs.StringVar(&f.workDir, "work-dir", "", "keep the state dir, list, history and sender logs in `DIR`")
	fs.BoolVar(&f.quiet, "quiet", false, "print only the verdict line")
	fs.StringVar(&f.target, "target", "all", "which running instances a kill or pause hits: all | one | sending | instance=K")
	fs.StringVar(&f.containment, "containment", "", "force how attempts are contained: cgroup-v2 | cgroup-v1 | subreaper (default: the best this machine allows)")
}

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("onecopy run", stderr)
	var f runFlags
	f.register(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, "Usage: onecopy run [flags] -- COMMAND [ARGS...]\n       onecopy run [flags] --sender builtin:NAME\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	seedSet := false
	fs.Visit(func(fl *flag.Flag) { seedSet = seedSet || fl.Name == "seed" })
	if !seedSet {
		f.seed = rand.Uint64() % 1_000_000_000
	}
	cfg, err := f.config(fs.Args())
	if err != nil {
		return failed(stderr, err)
	}
	cfg.Replay = replayLine(args, f.seed, seedSet)
	_, code := execute(ctx, cfg, f, stdout, stderr)
	return code
}

// config turns the flags into a harness.Config; every problem is a
// *harness.UsageError naming the flag and the accepted forms.
func (f *runFlags) config(command []string) (harness.Config, error) {
	cfg, err := f.senderCommand(command)
	if err != nil {
		return cfg, err
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
			return cfg, usageErr("--sender %q: want builtin:NAME (naive, ledger, checkpoint, early)", f.sender)
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

func usageErr(format string, args ...any) error {
	return &harness.UsageError{Msg: fmt.Sprintf(format, args...)}
}

// execute runs cfg, prints the summary and writes the reports.
func execute(ctx context.Context, cfg harness.Config, f runFlags, stdout, stderr io.Writer) (*report.Report, int) {
	if isTerminal(stdout) && !f.quiet {
		cfg.Progress = stdout
	}
	if f.metricsAddr != "" {
		m, stop, err := serveMetrics(f.metricsAddr, stderr)
		if err != nil {
			return nil, failed(stderr, err)
		}
		defer stop()
		cfg.Metrics = m
	}
	rep, err := harness.Run(ctx, cfg)
	if rep == nil {
		return nil, failed(stderr, err)
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

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("-_=./:,%@+", r))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// reproCmd reproduces the blog post's bug: 1,000 recipients, the 501st
// rejected for good, the naive sender, 3 retries.
func reproCmd(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := newFlagSet("onecopy repro", stderr)
	seed := fs.Uint64("seed", 1, "seed (the bug needs no randomness; kept for the report)")
	report := fs.String("report", "", "write the JSON report to `FILE`")
	html := fs.String("html", "", "write the HTML report to `FILE`")
	if code, ok := parseFlags(fs, args); !ok {
		return code
	}
	if fs.NArg() > 0 {
		return failed(stderr, usageErr("repro takes no arguments (got %q); use onecopy run for your own sender", fs.Args()))
	}
	runArgs := []string{"--recipients", "1000", "--fault", "reject=rcpt000501@onecopy.test", "--retries", "3",
		"--seed", strconv.FormatUint(*seed, 10), "--sender", "builtin:naive"}
	var f runFlags
	rfs := newFlagSet("onecopy run", stderr)
	f.register(rfs)
	if err := rfs.Parse(runArgs); err != nil {
		return exitHarness
	}
	cfg, err := f.config(nil)
	if err != nil {
		return failed(stderr, err)
	}
	cfg.Replay = replayLine(runArgs, *seed, true)
	f.report, f.html = *report, *html
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
