package scenarios_test

import (
	"context"
	"slices"
	"testing"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/onecopy/onecopy/scenarios"
	"github.com/onecopy/onecopy/scenarios/scenariotest"
)

func TestScenarios(t *testing.T) {
	RegisterFailHandler(Fail)
	RunSpecs(t, "scenarios")
}

var onecopyBin string

var _ = SynchronizedBeforeSuite(func() []byte {
	bin, err := gexec.Build("github.com/onecopy/onecopy/cmd/onecopy")
	Expect(err).NotTo(HaveOccurred())
	return []byte(bin)
}, func(bin []byte) { onecopyBin = string(bin) })

var _ = SynchronizedAfterSuite(func() {}, func() { gexec.CleanupBuildArtifacts() })

// The correct built-in sender reaches every scenario's level.
var _ = scenariotest.Describe("the ledger sender", scenariotest.Config{
	CommandFunc: func() []string { return []string{onecopyBin, "sender", "ledger", "--timeout", "1s"} },
	Seed:        42,
})

// The naive sender must fail where the catalog exposes its bug.
var _ = Describe("the naive sender", func() {
	mustFail := []string{"crash-and-retry", "one-bad-address", "send-then-record", "random-kills",
		"two-instances", "throttled", "greylisted", "connection-limit", "outage", "case-variants"}
	entries := []any{func(ctx SpecContext, name string) {
		all, err := scenarios.Select(scenarios.Catalog(), []string{name}, nil)
		Expect(err).NotTo(HaveOccurred())
		rep, err := scenarios.Run(ctx, all[0], scenarios.Options{Command: []string{onecopyBin, "sender", "naive"}, Seed: 42})
		Expect(err).NotTo(HaveOccurred())
		Expect(rep).NotTo(scenariotest.ReachLevel(all[0].Expect))
	}}
	for _, n := range mustFail {
		entries = append(entries, Entry(n, n, NodeTimeout(time.Minute)))
	}
	DescribeTable("falls short", entries...)
})

var _ = Describe("the catalog", func() {
	It("parses, names a failure mode for each scenario and covers the failure modes it promises", func() {
		covered := map[int]bool{}
		names := map[string]bool{}
		for _, s := range scenarios.Catalog() {
			Expect(names[s.Name]).To(BeFalse(), "duplicate scenario name %s", s.Name)
			names[s.Name] = true
			Expect(s.Mode).NotTo(BeEmpty(), s.Name)
			_, err := s.Config(scenarios.Options{Command: []string{"true"}})
			Expect(err).NotTo(HaveOccurred())
			for _, r := range s.Rows {
				covered[r] = true
			}
		}
		Expect(len(names)).To(BeNumerically(">=", 15))
		for _, row := range []int{1, 2, 3, 6, 7, 9, 10, 11, 12, 13, 15, 17, 18, 20} {
			Expect(covered).To(HaveKey(row), "docs/failure-modes.md row %d has no scenario", row)
		}
	})

	It("selects by name and label and refuses unknown ones", func() {
		got, err := scenarios.Select(scenarios.Catalog(), []string{"instances"}, []string{"double-trigger"})
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, s := range got {
			names = append(names, s.Name)
		}
		Expect(names).To(ConsistOf("paused-worker", "second-worker", "two-instances"))
		_, err = scenarios.Select(scenarios.Catalog(), []string{"nope"}, nil)
		Expect(err).To(MatchError(ContainSubstring(`"nope"`)))
	})

	It("scales list sizes", func() {
		s := scenarios.Catalog()[0]
		cfg, err := s.Config(scenarios.Options{Command: []string{"true"}, Scale: 3})
		Expect(err).NotTo(HaveOccurred())
		Expect(cfg.Recipients).To(HaveLen(3 * s.Recipients))
		Expect(slices.Contains(cfg.Recipients, "rcpt000001@onecopy.test")).To(BeTrue())
	})

	It("stops a scenario when its context ends", func(ctx SpecContext) {
		c, cancel := context.WithCancel(ctx)
		cancel()
		rep, err := scenarios.Run(c, scenarios.Catalog()[0], scenarios.Options{Command: []string{onecopyBin, "sender", "ledger"}, Seed: 1})
		if err == nil {
			Expect(rep.Pass).To(BeFalse())
		}
	}, NodeTimeout(30*time.Second))
})
