// Package scenarios is the catalog of named chaos scenarios: each reproduces
// a real way email senders duplicate or lose mail (docs/failure-modes.md) and
// names the delivery level a correct sender reaches there. The same data
// drives `onecopy gate` and the Ginkgo suite in scenariotest.
package scenarios

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

// Scenario is one named chaos configuration, the level every correct
// sender reaches under it, and the buggy senders it must catch.
type Scenario struct {
	Name   string
	Mode   string // the failure mode it reproduces
	Rows   []int  // rows of the table in docs/failure-modes.md
	Labels []string
	// Recipients is the list size at scale 1.
	Recipients int
	// List shapes the list from n synthetic addresses; nil keeps them.
	List      func(n int) []string
	Kills     []string
	Signal    harness.Signal
	Grace     time.Duration
	Pause     time.Duration
	Target    harness.TargetKind
	Faults    []string
	Instances int
	Stagger   time.Duration
	StaggerAt float64
	Retries   int
	// Expect is the level every correct sender reaches here, whatever its
	// shape (one connection or a pool, one recipient per transaction or
	// batches, one process or a daemon); Why says why not more.
	Expect verdict.Level
	Why    string
	// Mutants are the built-in senders (senders/builtin) with the bug this
	// scenario is named for: each must fall short of Expect here.
	Mutants []string
}

// Catalog returns every scenario, in a stable order.
func Catalog() []Scenario {
	const (
		doubt  = "a kill or a cut leaves transactions in doubt: at best, each is sent again with its Message-ID"
		noDoub = "no transaction is left in doubt: nothing may be sent twice or lost"
	)
	return []Scenario{
		{Name: "crash-and-retry", Mode: "whole-job retry after a crash", Rows: []int{1}, Labels: []string{"kill"},
			Recipients: 200, Kills: []string{"at=25%,50%,75%"}, Expect: verdict.EffectivelyOnce, Why: doubt,
			Mutants: []string{"naive", "checkpoint-every"}},
		{Name: "one-bad-address", Mode: "one bad recipient fails the whole job", Rows: []int{1, 15}, Labels: []string{"fault"},
			Recipients: 200, Faults: []string{"reject-nth=101"}, Retries: 3, Expect: verdict.ExactlyOnce, Why: noDoub,
			Mutants: []string{"naive", "batch-resend"}},
		{Name: "send-then-record", Mode: "killed after the 250, before recording it", Rows: []int{2}, Labels: []string{"kill", "in-doubt"},
			Recipients: 150, Kills: []string{"in-doubt=3"}, Expect: verdict.EffectivelyOnce, Why: doubt,
			Mutants: []string{"checkpoint", "fresh-id"}},
		{Name: "killed-during-data", Mode: "record (or ack) before send: a kill mid-DATA", Rows: []int{3}, Labels: []string{"kill"},
			Recipients: 150, Kills: []string{"during-data=3"}, Expect: verdict.EffectivelyOnce,
			Why:     "the message killed mid-DATA is not counted, but a pooled sender's other connections may be between the count and the 250",
			Mutants: []string{"early"}},
		{Name: "random-kills", Mode: "crash at arbitrary moments", Rows: []int{1, 2}, Labels: []string{"kill", "in-doubt"},
			Recipients: 200, Kills: []string{"random=3"}, Expect: verdict.EffectivelyOnce, Why: doubt,
			Mutants: []string{"naive", "checkpoint"}},
		{Name: "slow-ack", Mode: "client timeout shorter than the server's post-DATA work", Rows: []int{6}, Labels: []string{"fault", "in-doubt"},
			Recipients: 40, Faults: []string{"slow-ack=300ms@0.2"}, Expect: verdict.EffectivelyOnce,
			Why:     "a client that waits less than the held 250 leaves its transaction in doubt",
			Mutants: []string{"short-timeout"}},
		{Name: "cut-after-dot", Mode: "connection drops after the final dot", Rows: []int{7}, Labels: []string{"fault", "in-doubt"},
			Recipients: 150, Faults: []string{"drop-after-data=0.05"}, Expect: verdict.EffectivelyOnce, Why: doubt,
			Mutants: []string{"fresh-id", "checkpoint"}},
		{Name: "cut-during-data", Mode: "connection drops while DATA streams", Rows: []int{7}, Labels: []string{"fault"},
			Recipients: 150, Faults: []string{"drop-during-data=0.05"}, Expect: verdict.ExactlyOnce,
			Why:     "a message cut before its final dot is not counted: sending it again is its first copy",
			Mutants: []string{"early"}},
		{Name: "paused-worker", Mode: "lease expires while a worker is paused; a second worker takes over", Rows: []int{9, 10}, Labels: []string{"pause", "instances"},
			Recipients: 150, Instances: 2, Kills: []string{"during-data=1"}, Signal: harness.SigStop, Pause: time.Second, Target: harness.TargetSending,
			// Frozen mid-message, the worker holds no lock but the lease; at a
			// count it would be recording the 250 and could hold the ledger's
			// write lock, stalling its successor until the thaw.
			Expect: verdict.ExactlyOnce, Why: "only the sending worker is frozen, mid-message and past a short lease, while the other runs: " + noDoub,
			Mutants: []string{"lease"}},
		{Name: "second-worker", Mode: "the job redelivered to a second worker while the first still runs (visibility timeout)", Rows: []int{9, 13}, Labels: []string{"instances"},
			Recipients: 200, Instances: 2, StaggerAt: 30, Expect: verdict.ExactlyOnce, Why: noDoub,
			Mutants: []string{"no-lock"}},
		{Name: "graceful-shutdown", Mode: "deploy sends SIGTERM with enough grace", Rows: []int{11}, Labels: []string{"kill", "term"},
			Recipients: 25, Kills: []string{"at=30%,60%"}, Signal: harness.SigTerm, Grace: time.Second, Faults: []string{"slow-ack=100ms"},
			Expect: verdict.ExactlyOnce, Why: "a second of grace outlasts the message in hand (each 250 is held 100ms): finish it, record it, exit",
			Mutants: []string{"term-ignore", "term-exit"}},
		{Name: "short-grace", Mode: "shutdown grace shorter than the batch", Rows: []int{11}, Labels: []string{"kill", "term", "in-doubt"},
			Recipients: 200, Kills: []string{"at=30%,60%"}, Signal: harness.SigTerm, Grace: time.Millisecond, Expect: verdict.EffectivelyOnce,
			Why: "the KILL after 1ms of grace can land mid-transaction", Mutants: []string{"naive"}},
		{Name: "two-instances", Mode: "two instances at once (overlapping cron ticks)", Rows: []int{12}, Labels: []string{"instances"},
			Recipients: 200, Instances: 2, Expect: verdict.ExactlyOnce, Why: noDoub, Mutants: []string{"no-lock", "naive"}},
		{Name: "double-trigger", Mode: "the job enqueued twice, a moment apart", Rows: []int{13}, Labels: []string{"instances"},
			Recipients: 200, Instances: 2, Stagger: 100 * time.Millisecond, Expect: verdict.ExactlyOnce, Why: noDoub,
			Mutants: []string{"naive"}},
		{Name: "throttled", Mode: "4xx treated as final", Rows: []int{17}, Labels: []string{"fault"},
			Recipients: 150, Faults: []string{"tempfail=0.1"}, Expect: verdict.ExactlyOnce, Why: noDoub,
			Mutants: []string{"tempfail-final", "exit-early"}},
		{Name: "greylisted", Mode: "greylisting: the first try of each address gets 451", Rows: []int{17}, Labels: []string{"fault"},
			Recipients: 100, Faults: []string{"greylist"}, Expect: verdict.ExactlyOnce, Why: noDoub,
			Mutants: []string{"tempfail-final"}},
		{Name: "refused-connections", Mode: "server refuses connections with 421", Rows: []int{17, 18}, Labels: []string{"fault"},
			Recipients: 150, Faults: []string{"refuse=0.3", "conn-limit=20"}, Expect: verdict.ExactlyOnce, Why: noDoub,
			Mutants: []string{"naive"}},
		{Name: "connection-limit", Mode: "reused connection closed after N messages", Rows: []int{18}, Labels: []string{"fault"},
			Recipients: 150, Faults: []string{"conn-limit=7"}, Expect: verdict.ExactlyOnce, Why: noDoub,
			Mutants: []string{"naive"}},
		{Name: "outage", Mode: "the SMTP server goes away mid-campaign and comes back", Rows: []int{17, 18}, Labels: []string{"fault"},
			Recipients: 150, Faults: []string{"outage=500ms@50%"}, Expect: verdict.ExactlyOnce,
			Why:     "an outage closes idle sessions only between transactions, where nothing needs sending again",
			Mutants: []string{"naive"}},
		{Name: "case-variants", Mode: "the same person twice in the list", Rows: []int{20}, Labels: []string{"list"},
			Recipients: 150, List: caseVariants, Expect: verdict.ExactlyOnce, Why: noDoub,
			Mutants: []string{"case-sensitive", "off-list"}},
		{Name: "partial-rcpt", Mode: "some RCPTs of one transaction accepted, others refused", Rows: []int{15, 16}, Labels: []string{"fault", "batch"},
			Recipients: 200, Faults: []string{"reject-nth=15", "reject-nth=107", "tempfail=0.05"}, Expect: verdict.ExactlyOnce,
			Why:     "a batching sender must send the message to the accepted recipients and retry only the refused ones: " + noDoub,
			Mutants: []string{"batch-resend"}},
		{Name: "high-water", Mode: "a high-water mark with concurrent workers", Rows: []int{5}, Labels: []string{"kill", "fault"},
			Recipients: 200, Kills: []string{"at=50%"}, Faults: []string{"tempfail=0.1"}, Expect: verdict.EffectivelyOnce, Why: doubt,
			Mutants: []string{"high-water"}},
	}
}

// caseVariants repeats every fifth address in upper case and every
// seventh as is, as merged lists do.
func caseVariants(n int) []string {
	list := harness.Synthetic(n)
	out := slices.Clone(list)
	for i, a := range list {
		if i%5 == 0 {
			out = append(out, strings.ToUpper(a))
		}
		if i%7 == 0 {
			out = append(out, a)
		}
	}
	return out
}

// Select keeps the scenarios named or labelled in only (all when empty)
// and drops those named or labelled in skip. Unknown names are an error.
func Select(all []Scenario, only, skip []string) ([]Scenario, error) {
	known := map[string]bool{}
	for _, s := range all {
		known[s.Name] = true
		for _, l := range s.Labels {
			known[l] = true
		}
	}
	for _, n := range append(slices.Clone(only), skip...) {
		if !known[n] {
			return nil, &harness.UsageError{Msg: fmt.Sprintf("no scenario or label %q (see onecopy gate --list)", n)}
		}
	}
	match := func(s Scenario, names []string) bool {
		for _, n := range names {
			if n == s.Name || slices.Contains(s.Labels, n) {
				return true
			}
		}
		return false
	}
	var out []Scenario
	for _, s := range all {
		if (len(only) == 0 || match(s, only)) && !match(s, skip) {
			out = append(out, s)
		}
	}
	return out, nil
}

// Options say how to run scenarios against a sender.
type Options struct {
	// Command is the sender under test.
	Command []string
	// Env is added to the sender's environment.
	Env []string
	// Seed for every scenario (the same seed replays the same chaos).
	Seed uint64
	// Scale multiplies list sizes; 0 means 1.
	Scale float64
	// Timeout per scenario; default 2 minutes.
	Timeout time.Duration
	// WorkDir, when set, keeps each scenario's work dir under WorkDir/NAME.
	WorkDir string
	// Replay builds the replay command of a scenario; nil: a `onecopy gate` line.
	Replay func(s Scenario, seed uint64) string
	// SMTP sets the fake server's options.
	SMTP fakesmtp.Options
}

// Config turns a scenario into a harness run of opts.Command.
func (s Scenario) Config(opts Options) (harness.Config, error) {
	scale := opts.Scale
	if scale == 0 {
		scale = 1
	}
	n := max(10, int(math.Round(float64(s.Recipients)*scale)))
	cfg := harness.Config{
		Command:   opts.Command,
		Env:       opts.Env,
		Signal:    s.Signal,
		Grace:     s.Grace,
		Pause:     s.Pause,
		Target:    harness.Target{Kind: s.Target},
		Instances: s.Instances,
		Stagger:   s.Stagger,
		StaggerAt: s.StaggerAt,
		Retries:   s.Retries,
		Expect:    s.Expect,
		Seed:      opts.Seed,
		Timeout:   opts.Timeout,
		SMTP:      opts.SMTP,
		Campaign:  fmt.Sprintf("%s-%d", s.Name, opts.Seed),
	}
	if cfg.Retries == 0 {
		cfg.Retries = 5
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = 2 * time.Minute
	}
	if s.List != nil {
		cfg.Recipients = s.List(n)
	} else {
		cfg.Recipients = harness.Synthetic(n)
	}
	for _, k := range s.Kills {
		spec, err := harness.ParseKill(k)
		if err != nil {
			return cfg, fmt.Errorf("scenario %s: %w", s.Name, err)
		}
		cfg.Kills = append(cfg.Kills, spec)
	}
	for _, f := range s.Faults {
		spec, err := fakesmtp.ParseFault(f)
		if err != nil {
			return cfg, fmt.Errorf("scenario %s: %w", s.Name, err)
		}
		if spec.Kind == "reject-nth" && s.Recipients > 0 {
			// The same place in a scaled list: the 101st of 200 is the 51st of 100.
			spec.N = max(1, min(n, int(math.Ceil(float64(spec.N)*float64(n)/float64(s.Recipients)))))
		}
		cfg.Faults = append(cfg.Faults, spec)
	}
	if opts.WorkDir != "" {
		cfg.WorkDir = opts.WorkDir + "/" + s.Name
	}
	if opts.Replay != nil {
		cfg.Replay = opts.Replay(s, opts.Seed)
	} else {
		cfg.Replay = fmt.Sprintf("onecopy gate --only %s --seed %d -- %s", s.Name, opts.Seed, strings.Join(opts.Command, " "))
	}
	return cfg, nil
}

// Run runs one scenario against opts.Command.
func Run(ctx context.Context, s Scenario, opts Options) (*report.Report, error) {
	cfg, err := s.Config(opts)
	if err != nil {
		return nil, err
	}
	return harness.Run(ctx, cfg)
}

// Chaos describes a scenario's chaos in one line, for tables and specs.
func (s Scenario) Chaos() string {
	var parts []string
	for _, k := range s.Kills {
		p := "kill " + k
		if s.Signal != "" && s.Signal != harness.SigKill {
			p += " with SIG" + string(s.Signal)
		}
		if s.Target != "" && s.Target != harness.TargetAll {
			p += " (target " + string(s.Target) + ")"
		}
		parts = append(parts, p)
	}
	for _, f := range s.Faults {
		parts = append(parts, "fault "+f)
	}
	if s.Instances > 1 {
		p := fmt.Sprintf("%d instances", s.Instances)
		if s.Stagger > 0 {
			p += " staggered " + s.Stagger.String()
		}
		if s.StaggerAt > 0 {
			p += fmt.Sprintf(", the second started at %g%%", s.StaggerAt)
		}
		parts = append(parts, p)
	}
	if s.List != nil {
		parts = append(parts, "list with repeats")
	}
	return strings.Join(parts, ", ")
}
