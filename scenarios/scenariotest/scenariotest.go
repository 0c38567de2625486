// Package scenariotest registers onecopy's scenario catalog as Ginkgo specs
// in a user's own suite, and offers Gomega matchers for reports. It is the
// Go face of `onecopy gate`: the same scenarios, the same code path.
//
//	var _ = scenariotest.Describe("my sender", scenariotest.Config{
//		Command: []string{"./bin/my-sender"},
//	})
package scenariotest

import (
	"fmt"
	"strings"
	"time"

	"github.com/onsi/ginkgo/v2"
	"github.com/onsi/gomega"

	"github.com/onecopy/onecopy/scenarios"
	"github.com/onecopy/onecopy/verdict"
)

// Config says which sender to gate and how.
type Config struct {
	// Command is the sender under test, started under the environment
	// contract (a Go sender is a binary built with senders.Main). A func
	// is accepted too, for commands known only once the suite runs (a
	// binary built in BeforeSuite).
	Command     []string
	CommandFunc func() []string
	// Env is added to the sender's environment.
	Env []string
	// Seed for every scenario; 0 uses Ginkgo's random seed, so
	// `ginkgo --seed N` replays a run.
	Seed uint64
	// Scale multiplies list sizes; 0 means 1.
	Scale float64
	// Only and Skip select scenarios by name or label.
	Only, Skip []string
	// Expect overrides a scenario's level by name, for a sender that
	// knowingly promises less.
	Expect map[string]verdict.Level
	// Timeout per scenario; default 2 minutes.
	Timeout time.Duration
}

// Describe registers one spec per selected scenario of the catalog.
func Describe(text string, cfg Config) bool {
	selected, err := scenarios.Select(scenarios.Catalog(), cfg.Only, cfg.Skip)
	if err != nil {
		panic(fmt.Sprintf("scenariotest.Describe: %v", err))
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = 2 * time.Minute
	}
	entries := make([]any, 0, len(selected))
	for _, s := range selected {
		entries = append(entries, ginkgo.Entry(fmt.Sprintf("%s: %s (%s)", s.Name, s.Mode, s.Chaos()), s, ginkgo.Label(s.Labels...), ginkgo.NodeTimeout(timeout+30*time.Second)))
	}
	return ginkgo.Describe(text, func() {
		run := func(ctx ginkgo.SpecContext, s scenarios.Scenario) {
			if l, ok := cfg.Expect[s.Name]; ok {
				s.Expect = l
			}
			command := cfg.Command
			if cfg.CommandFunc != nil {
				command = cfg.CommandFunc()
			}
			seed := cfg.Seed
			if seed == 0 {
				seed = uint64(ginkgo.GinkgoRandomSeed())
			}
			ginkgo.By(fmt.Sprintf("running %s with seed %d: %s", s.Name, seed, s.Chaos()))
			rep, err := scenarios.Run(ctx, s, scenarios.Options{
				Command: command, Env: cfg.Env, Seed: seed, Scale: cfg.Scale, Timeout: timeout,
				WorkDir: ginkgo.GinkgoT().TempDir(),
				Replay: func(s scenarios.Scenario, seed uint64) string {
					return fmt.Sprintf("ginkgo --seed %d --focus %q  (or: onecopy gate --only %s --seed %d -- %s)",
						seed, s.Name, s.Name, seed, strings.Join(command, " "))
				},
			})
			gomega.Expect(err).NotTo(gomega.HaveOccurred(), "the harness itself failed")
			ginkgo.By(fmt.Sprintf("judged %s: %d copies for %d recipients, %d in-doubt events", rep.Verdict, rep.Copies, rep.Recipients, rep.InDoubt))
			gomega.Expect(rep).To(ReachLevel(s.Expect), "scenario %s (failure mode: %s)", s.Name, s.Mode)
		}
		ginkgo.DescribeTable("chaos scenario", append([]any{run}, entries...)...)
	})
}
