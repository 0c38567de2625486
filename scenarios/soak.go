// Soaks: campaign after campaign against one sender, each with its chaos
// drawn from the catalog (or a --chaos list) by the soak's seed, for as
// long as it takes a rare bug to show. Every campaign is judged and kept,
// so a failing one can be replayed by its own seed; the metrics of every
// campaign go to one registry that Prometheus scrapes for the whole soak.

package scenarios

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

// SoakOptions say how to soak a sender. The embedded Options say how each
// campaign runs (Seed is the soak's seed; each campaign's own seed is
// derived from it).
type SoakOptions struct {
	Options
	// Duration is how long to start new campaigns for; the campaign under
	// way when it is over runs to its end.
	Duration time.Duration
	// Chaos is what campaigns draw from, in rounds: each round runs every
	// scenario once, in an order shuffled by the seed. Nil: Catalog().
	Chaos []Scenario
	// ReportDir, when set, receives each campaign's JSON report, named
	// NNNN-SCENARIO-seedS.json.
	ReportDir string
	// Metrics receive every campaign's metrics; nil: none.
	Metrics *harness.Metrics
	// Progress, when set, receives a live progress line (for terminals).
	Progress io.Writer
	// OnCampaign, when set, is called after each campaign.
	OnCampaign func(SoakCampaign)
}

// SoakCampaign is one campaign of a soak.
type SoakCampaign struct {
	Index    int    // 1-based
	Scenario string // the scenario it drew
	Seed     uint64 // its own seed: `onecopy gate --only SCENARIO --seed SEED` replays it
	Report   *report.Report
	// ReportFile is where its JSON report was written, if anywhere.
	ReportFile string
	// Interrupted is set when the soak was stopped during this campaign:
	// it was cancelled, not judged.
	Interrupted bool
}

// Pass reports whether the campaign ran to its end and reached its level.
func (c SoakCampaign) Pass() bool { return !c.Interrupted && c.Report != nil && c.Report.Pass }

// SoakResult is the outcome of a soak.
type SoakResult struct {
	Seed      uint64
	Campaigns []SoakCampaign
	Duration  time.Duration
	// Interrupted is set when ctx ended the soak.
	Interrupted bool
}

// Failed counts the campaigns that ran to their end and fell short.
func (r SoakResult) Failed() int {
	n := 0
	for _, c := range r.Campaigns {
		if !c.Interrupted && !c.Pass() {
			n++
		}
	}
	return n
}

// Pass reports whether the soak ran at least one campaign to its end, every
// campaign reached its level, and nothing interrupted it.
func (r SoakResult) Pass() bool {
	if r.Interrupted || len(r.Campaigns) == 0 {
		return false
	}
	for _, c := range r.Campaigns {
		if !c.Pass() {
			return false
		}
	}
	return true
}

// WriteTable writes one row per campaign and a closing line.
func (r SoakResult) WriteTable(w io.Writer) {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "CAMPAIGN\tSCENARIO\tVERDICT\tEXPECTED\tPASS\tSEED\tTIME")
	done := 0
	for _, c := range r.Campaigns {
		verdict, expect, pass, took := "interrupted", "-", "-", "-"
		if c.Report != nil {
			expect = string(c.Report.Expect)
			took = fmt.Sprintf("%.1fs", c.Report.DurationSeconds)
		}
		if !c.Interrupted && c.Report != nil {
			done++
			verdict, pass = string(c.Report.Verdict), "ok"
			if !c.Report.Pass {
				pass = "FAIL"
			}
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%s\n", c.Index, c.Scenario, verdict, expect, pass, c.Seed, took)
	}
	tw.Flush()
	fmt.Fprintf(w, "%d of %d campaigns reached their level in %s (soak seed %d)", done-r.Failed(), done, r.Duration.Round(100*time.Millisecond), r.Seed)
	if r.Interrupted {
		fmt.Fprint(w, "; interrupted")
	}
	fmt.Fprintln(w)
}

// Soak runs campaigns against opts.Command until opts.Duration is over or
// ctx ends. Each campaign has its own campaign id, a fresh state dir, a
// seed derived from opts.Seed and the chaos of the scenario it drew. A
// campaign that falls short is data in the result; an error means a
// campaign could not be run at all (a bad --chaos, a port, a disk), and
// comes with the campaigns run so far.
func Soak(ctx context.Context, opts SoakOptions) (res SoakResult, err error) {
	res.Seed = opts.Seed
	if len(opts.Command) == 0 {
		return res, &harness.UsageError{Msg: "no sender: give a command after -- or --sender builtin:NAME"}
	}
	if opts.Duration <= 0 {
		return res, &harness.UsageError{Msg: fmt.Sprintf("--duration %v: want a positive duration, like 10m", opts.Duration)}
	}
	pool := opts.Chaos
	if len(pool) == 0 {
		pool = Catalog()
	}
	if opts.ReportDir != "" {
		if err := os.MkdirAll(opts.ReportDir, 0o755); err != nil {
			return res, fmt.Errorf("creating the report directory: %w", err)
		}
	}
	rng := rand.New(rand.NewPCG(opts.Seed, 0x50a4))
	var order []int
	start := time.Now()
	prog := &soakProgress{w: opts.Progress, start: start, duration: opts.Duration}
	defer func() { res.Duration = time.Since(start) }()
	for k := 1; k == 1 || time.Since(start) < opts.Duration; k++ {
		if ctx.Err() != nil {
			res.Interrupted = true
			return res, nil
		}
		if len(order) == 0 {
			order = rng.Perm(len(pool))
		}
		s := pool[order[0]]
		order = order[1:]
		seed := rng.Uint64() % 1_000_000_000

		o := opts.Options
		o.Seed = seed
		o.WorkDir = ""
		cfg, err := s.Config(o)
		if err != nil {
			return res, err
		}
		if opts.WorkDir != "" {
			cfg.WorkDir = filepath.Join(opts.WorkDir, fmt.Sprintf("%04d-%s", k, s.Name))
		}
		cfg.Campaign = fmt.Sprintf("soak-%d-%d-%s", opts.Seed, k, s.Name)
		if opts.Replay == nil {
			cfg.Replay = s.Replay(seed, opts.Scale, "-- "+strings.Join(opts.Command, " "))
		}
		cfg.Metrics = opts.Metrics
		if opts.Progress != nil {
			prog.campaign(k, s.Name, res)
			cfg.Progress = prog
		}
		rep, err := harness.Run(ctx, cfg)
		if err != nil && ctx.Err() != nil {
			// Stopped while starting a sender: an interruption, not a
			// harness failure.
			res.Campaigns = append(res.Campaigns, SoakCampaign{Index: k, Scenario: s.Name, Seed: seed, Interrupted: true})
			res.Interrupted = true
			return res, nil
		}
		if err != nil {
			return res, fmt.Errorf("campaign %d (%s, seed %d): %w", k, s.Name, seed, err)
		}
		c := SoakCampaign{Index: k, Scenario: s.Name, Seed: seed, Report: rep, Interrupted: rep.Ended == "interrupted"}
		if opts.ReportDir != "" {
			c.ReportFile = filepath.Join(opts.ReportDir, fmt.Sprintf("%04d-%s-seed%d.json", k, s.Name, seed))
			if err := rep.WriteJSON(c.ReportFile); err != nil {
				return res, err
			}
		}
		res.Campaigns = append(res.Campaigns, c)
		if opts.OnCampaign != nil {
			opts.OnCampaign(c)
		}
		if c.Interrupted || ctx.Err() != nil {
			res.Interrupted = true
			return res, nil
		}
	}
	return res, nil
}

// soakProgress puts the soak's state in front of each campaign's progress
// line.
type soakProgress struct {
	w        io.Writer
	start    time.Time
	duration time.Duration

	mu     sync.Mutex
	prefix string
}

func (p *soakProgress) campaign(k int, name string, res SoakResult) {
	p.mu.Lock()
	defer p.mu.Unlock()
	failed := res.Failed()
	p.prefix = fmt.Sprintf("soak %%s/%s · #%d %s · %d ok %d failed · ", p.duration, k, name, len(res.Campaigns)-failed, failed)
}

const clearLine = "\r\x1b[K"

func (p *soakProgress) Write(b []byte) (int, error) {
	rest, ok := bytes.CutPrefix(b, []byte(clearLine))
	if !ok || len(rest) == 0 {
		return p.w.Write(b)
	}
	p.mu.Lock()
	prefix := fmt.Sprintf(p.prefix, time.Since(p.start).Round(time.Second))
	p.mu.Unlock()
	if _, err := io.WriteString(p.w, clearLine+prefix); err != nil {
		return 0, err
	}
	if _, err := p.w.Write(rest); err != nil {
		return 0, err
	}
	return len(b), nil
}

// size is the list size at a scale.
func (s Scenario) size(scale float64) int {
	if scale == 0 {
		scale = 1
	}
	return max(10, int(math.Round(float64(s.Recipients)*scale)))
}

// RunArgs are the `onecopy run` flags of the scenario's chaos at a scale
// (a scenario that shapes its list, like case-variants, has no such
// flags: replay it with `onecopy gate --only NAME`).
func (s Scenario) RunArgs(scale float64) []string {
	args := []string{"--recipients", strconv.Itoa(s.size(scale))}
	for _, k := range s.Kills {
		args = append(args, "--kill", k)
	}
	if s.Signal != "" && s.Signal != harness.SigKill {
		args = append(args, "--signal", string(s.Signal))
	}
	if s.Grace > 0 {
		args = append(args, "--grace", s.Grace.String())
	}
	if s.Pause > 0 {
		args = append(args, "--pause", s.Pause.String())
	}
	for _, f := range s.Faults {
		args = append(args, "--fault", f)
	}
	if s.Instances > 1 {
		args = append(args, "--instances", strconv.Itoa(s.Instances))
	}
	if s.Stagger > 0 {
		args = append(args, "--stagger", s.Stagger.String())
	}
	if s.Retries > 0 {
		args = append(args, "--retries", strconv.Itoa(s.Retries))
	}
	if s.Expect != "" {
		args = append(args, "--expect", string(s.Expect))
	}
	return args
}

// Replay is the command line that replays the scenario with a seed; sender
// ends it ("--sender builtin:NAME" or "-- COMMAND ARGS"). Catalog scenarios
// replay with onecopy gate, custom ones (from ParseChaos) with onecopy run.
func (s Scenario) Replay(seed uint64, scale float64, sender string) string {
	if slices.Contains(s.Labels, customLabel) {
		return fmt.Sprintf("onecopy run %s --seed %d %s", strings.Join(s.RunArgs(scale), " "), seed, sender)
	}
	r := fmt.Sprintf("onecopy gate --only %s --seed %d", s.Name, seed)
	if scale != 0 && scale != 1 {
		r += fmt.Sprintf(" --scale %g", scale)
	}
	return r + " " + sender
}

const customLabel = "custom"

// ChaosForms says what ParseChaos accepts, for usage messages.
const ChaosForms = "entries separated by ';', each scenario names or labels separated by ',' (random-kills,cut-after-dot or kill), or onecopy run flags (--kill random=3 --fault tempfail=0.1 --expect effectively-once)"

// ParseChaos turns a --chaos value into the scenarios a soak draws from.
// Entries are separated by ';'. An entry is either names or labels of the
// catalog separated by ',' ("random-kills,cut-after-dot", "kill"), or, when
// it starts with '-', a set of `onecopy run` flags that makes a custom
// scenario: --recipients N (default 200), --kill, --fault (repeatable),
// --signal, --grace, --pause, --instances, --stagger, --retries and
// --expect (default exactly-once). Custom scenarios are named custom1,
// custom2, ... in the order given.
func ParseChaos(spec string) ([]Scenario, error) {
	var pool []Scenario
	custom := 0
	for entry := range strings.SplitSeq(spec, ";") {
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		if !strings.HasPrefix(entry, "-") {
			var names []string
			for n := range strings.SplitSeq(entry, ",") {
				if n = strings.TrimSpace(n); n != "" {
					names = append(names, n)
				}
			}
			got, err := Select(Catalog(), names, nil)
			if err != nil {
				return nil, &harness.UsageError{Msg: fmt.Sprintf("--chaos %q: %v", entry, err)}
			}
			pool = append(pool, got...)
			continue
		}
		custom++
		s, err := parseCustom(entry, custom)
		if err != nil {
			return nil, &harness.UsageError{Msg: fmt.Sprintf("--chaos %q: %v (want %s)", entry, err, ChaosForms)}
		}
		pool = append(pool, s)
	}
	if len(pool) == 0 {
		return nil, &harness.UsageError{Msg: fmt.Sprintf("--chaos %q: no scenario (want %s)", spec, ChaosForms)}
	}
	return pool, nil
}

type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, " ") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func parseCustom(entry string, n int) (Scenario, error) {
	s := Scenario{Name: fmt.Sprintf("custom%d", n), Mode: entry, Labels: []string{customLabel}}
	fs := flag.NewFlagSet("--chaos", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var kills, faults listFlag
	var signal, expect string
	fs.IntVar(&s.Recipients, "recipients", 200, "")
	fs.Var(&kills, "kill", "")
	fs.Var(&faults, "fault", "")
	fs.StringVar(&signal, "signal", "KILL", "")
	fs.DurationVar(&s.Grace, "grace", 0, "")
	fs.DurationVar(&s.Pause, "pause", 0, "")
	fs.IntVar(&s.Instances, "instances", 1, "")
	fs.DurationVar(&s.Stagger, "stagger", 0, "")
	fs.IntVar(&s.Retries, "retries", 0, "")
	fs.StringVar(&expect, "expect", string(verdict.ExactlyOnce), "")
	if err := fs.Parse(strings.Fields(entry)); err != nil {
		return s, err
	}
	if fs.NArg() > 0 {
		return s, fmt.Errorf("unexpected %q", strings.Join(fs.Args(), " "))
	}
	var err error
	if s.Signal, err = harness.ParseSignal(signal); err != nil {
		return s, err
	}
	if s.Expect, err = verdict.ParseLevel(expect); err != nil {
		return s, err
	}
	switch {
	case s.Recipients < 1:
		return s, fmt.Errorf("--recipients %d: want 1 or more", s.Recipients)
	case s.Instances < 1 || s.Instances > 64:
		return s, fmt.Errorf("--instances %d: want 1 to 64", s.Instances)
	case s.Retries < 0 || s.Grace < 0 || s.Pause < 0 || s.Stagger < 0:
		return s, fmt.Errorf("negative --retries, --grace, --pause or --stagger")
	}
	s.Kills, s.Faults = kills, faults
	if _, err := s.Config(Options{Command: []string{"true"}}); err != nil {
		return s, err
	}
	return s, nil
}
