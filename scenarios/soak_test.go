// Specs for scenarios.Soak and ParseChaos: the loop in-process, with its
// metrics on a fresh registry.

package scenarios_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/scenarios"
	"github.com/onecopy/onecopy/verdict"
)

// gathered sums a gathered metric's samples whose labels include pairs.
func gathered(g prometheus.Gatherer, name string, pairs ...string) float64 {
	GinkgoHelper()
	mfs, err := g.Gather()
	Expect(err).NotTo(HaveOccurred())
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(pairs); i += 2 {
				if have[pairs[i]] != pairs[i+1] {
					continue next
				}
			}
			sum += m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
		}
	}
	return sum
}

func newMetrics() (*prometheus.Registry, *harness.Metrics) {
	GinkgoHelper()
	reg := prometheus.NewRegistry()
	m, err := harness.NewMetrics(reg)
	Expect(err).NotTo(HaveOccurred())
	return reg, m
}

var _ = Describe("ParseChaos", func() {
	It("takes scenario names and labels, and run flags as custom scenarios", func() {
		pool, err := scenarios.ParseChaos("random-kills, cut-after-dot; instances ;--kill random=2 --fault tempfail=0.1 --recipients 50 --expect effectively-once")
		Expect(err).NotTo(HaveOccurred())
		var names []string
		for _, s := range pool {
			names = append(names, s.Name)
		}
		Expect(names).To(Equal([]string{"random-kills", "cut-after-dot", "paused-worker", "second-worker", "two-instances", "double-trigger", "custom1"}))
		c := pool[6]
		Expect(c.Recipients).To(Equal(50))
		Expect(c.Kills).To(Equal([]string{"random=2"}))
		Expect(c.Faults).To(Equal([]string{"tempfail=0.1"}))
		Expect(c.Expect).To(Equal(verdict.EffectivelyOnce))
		Expect(c.Replay(7, 1, "--sender builtin:ledger")).To(Equal("onecopy run --recipients 50 --kill random=2 --fault tempfail=0.1 --expect effectively-once --seed 7 --sender builtin:ledger"))
		Expect(pool[0].Replay(7, 2, "-- ./s")).To(Equal("onecopy gate --only random-kills --seed 7 --scale 2 -- ./s"))
	})

	DescribeTable("refuses bad input with a usage error that names it",
		func(spec, want string) {
			_, err := scenarios.ParseChaos(spec)
			var ue *harness.UsageError
			Expect(err).To(BeAssignableToTypeOf(ue))
			Expect(err).To(MatchError(ContainSubstring(want)))
		},
		Entry("unknown scenario", "random-kills,nope", `"nope"`),
		Entry("bad kill", "--kill sometimes", "sometimes"),
		Entry("bad fault", "--fault flaky=1", "flaky"),
		Entry("unknown flag", "--kill random=1 --bogus", "bogus"),
		Entry("stray word", "--kill random=1 extra", "extra"),
		Entry("bad level", "--expect twice", "twice"),
		Entry("empty", " ; ", "no scenario"),
	)
})

var _ = Describe("Soak", func() {
	ledger := func() []string { return []string{onecopyBin, "sender", "ledger", "--timeout", "1s"} }

	It("runs campaign after campaign until the duration is over, keeps each report and feeds one registry", func(ctx SpecContext) {
		reg, m := newMetrics()
		dir := GinkgoT().TempDir()
		pool, err := scenarios.ParseChaos("kill,cut-during-data,connection-limit")
		Expect(err).NotTo(HaveOccurred())
		var seen []scenarios.SoakCampaign
		res, err := scenarios.Soak(ctx, scenarios.SoakOptions{
			Options:    scenarios.Options{Command: ledger(), Seed: 11, Scale: 0.25},
			Duration:   1500 * time.Millisecond,
			Chaos:      pool,
			ReportDir:  dir,
			Metrics:    m,
			OnCampaign: func(c scenarios.SoakCampaign) { seen = append(seen, c) },
		})
		Expect(err).NotTo(HaveOccurred())
		res.WriteTable(GinkgoWriter)

		By("checking every campaign ran to its end and reached its level")
		Expect(len(res.Campaigns)).To(BeNumerically(">=", 2))
		Expect(res.Campaigns).To(Equal(seen))
		Expect(res.Pass()).To(BeTrue())
		Expect(res.Failed()).To(BeZero())
		Expect(res.Interrupted).To(BeFalse())
		Expect(res.Duration).To(BeNumerically(">=", 1500*time.Millisecond))

		By("checking each campaign has its own seed, campaign id and kept report")
		seeds := map[uint64]bool{}
		campaignIDs := map[string]bool{}
		for i, c := range res.Campaigns {
			Expect(c.Index).To(Equal(i + 1))
			Expect(seeds).NotTo(HaveKey(c.Seed))
			seeds[c.Seed] = true
			Expect(campaignIDs).NotTo(HaveKey(c.Report.Campaign))
			campaignIDs[c.Report.Campaign] = true
			Expect(c.Report.Seed).To(Equal(c.Seed))
			Expect(c.ReportFile).To(Equal(filepath.Join(dir, fmt.Sprintf("%04d-%s-seed%d.json", c.Index, c.Scenario, c.Seed))))
			Expect(c.ReportFile).To(BeARegularFile())
			Expect(c.Report.Replay).To(HavePrefix(fmt.Sprintf("onecopy gate --only %s --seed %d --scale 0.25 -- ", c.Scenario, c.Seed)))
		}
		entries, err := os.ReadDir(dir)
		Expect(err).NotTo(HaveOccurred())
		Expect(entries).To(HaveLen(len(res.Campaigns)))

		By("checking the registry counted every campaign, and no duplicate nothing explains")
		Expect(gathered(reg, "onecopy_campaigns_total")).To(BeNumerically("==", len(res.Campaigns)))
		Expect(gathered(reg, "onecopy_campaigns_total", "pass", "true")).To(BeNumerically("==", len(res.Campaigns)))
		Expect(gathered(reg, "onecopy_duplicate_copies_total", "in_doubt", "false")).To(BeZero())
		Expect(gathered(reg, "onecopy_missing_recipients_total")).To(BeZero())
		Expect(gathered(reg, "onecopy_campaign_running")).To(BeZero())
		Expect(gathered(reg, "onecopy_smtp_transactions_total", "result", "accepted")).To(BeNumerically(">", 0))
		var copies int64
		for _, c := range res.Campaigns {
			copies += c.Report.Copies
		}
		Expect(gathered(reg, "onecopy_copies_total")).To(BeNumerically("==", copies))
	}, NodeTimeout(60*time.Second))

	It("draws the same campaigns from the same seed, each scenario once per round", func(ctx SpecContext) {
		// A sender that exits at once: every campaign fails fast, which is
		// all the draw needs.
		pool := scenarios.Catalog()[:5]
		draw := func(seed uint64, n int) []scenarios.SoakCampaign {
			c, cancel := context.WithCancel(ctx)
			defer cancel()
			got := 0
			res, err := scenarios.Soak(c, scenarios.SoakOptions{
				Options:  scenarios.Options{Command: []string{"true"}, Seed: seed},
				Duration: time.Hour, Chaos: pool,
				OnCampaign: func(scenarios.SoakCampaign) {
					if got++; got == n {
						cancel()
					}
				},
			})
			Expect(err).NotTo(HaveOccurred())
			Expect(res.Interrupted).To(BeTrue())
			Expect(res.Campaigns).To(HaveLen(n))
			for _, c := range res.Campaigns {
				Expect(c.Pass()).To(BeFalse(), "a sender that sends nothing")
			}
			return res.Campaigns
		}
		a, b := draw(5, 2*len(pool)), draw(5, 2*len(pool))
		names := func(cs []scenarios.SoakCampaign) (out []string) {
			for _, c := range cs {
				out = append(out, fmt.Sprintf("%s/%d", c.Scenario, c.Seed))
			}
			return out
		}
		Expect(names(a)).To(Equal(names(b)))
		var round []string
		for _, c := range a[:len(pool)] {
			round = append(round, c.Scenario)
		}
		slices.Sort(round)
		var want []string
		for _, s := range pool {
			want = append(want, s.Name)
		}
		slices.Sort(want)
		Expect(round).To(Equal(want))
		Expect(names(draw(6, 2))).NotTo(Equal(names(a)[:2]))
	}, NodeTimeout(30*time.Second))

	It("cancels the campaign under way when its context ends, and does not judge it", func(ctx SpecContext) {
		reg, m := newMetrics()
		c, cancel := context.WithCancel(ctx)
		defer cancel()
		type result struct {
			res scenarios.SoakResult
			err error
		}
		done := make(chan result, 1)
		started := filepath.Join(GinkgoT().TempDir(), "started")
		go func() {
			defer GinkgoRecover()
			res, err := scenarios.Soak(c, scenarios.SoakOptions{
				Options:  scenarios.Options{Command: []string{"/bin/sh", "-c", `touch "$0" && exec sleep 60`, started}, Seed: 1},
				Duration: time.Hour,
				Metrics:  m,
			})
			done <- result{res, err}
		}()
		Eventually(started).WithContext(ctx).Should(BeAnExistingFile(), "the sender runs")
		Expect(gathered(reg, "onecopy_campaign_running")).To(BeNumerically("==", 1))
		cancel()
		var r result
		Eventually(done).WithTimeout(10 * time.Second).Should(Receive(&r))
		Expect(r.err).NotTo(HaveOccurred())
		Expect(r.res.Interrupted).To(BeTrue())
		Expect(r.res.Pass()).To(BeFalse())
		Expect(r.res.Campaigns).To(HaveLen(1))
		Expect(r.res.Campaigns[0].Interrupted).To(BeTrue())
		Expect(r.res.Campaigns[0].Report).NotTo(BeNil())
		Expect(r.res.Campaigns[0].Report.Ended).To(Equal("interrupted"))
		Expect(r.res.Campaigns[0].Report.Attempts).To(BeNumerically(">=", 1))
		Expect(gathered(reg, "onecopy_sender_attempt_duration_seconds")).To(BeNumerically("==", r.res.Campaigns[0].Report.Attempts), "every attempt was stopped and reaped")
		Expect(gathered(reg, "onecopy_campaigns_total")).To(BeZero(), "an interrupted campaign is not judged")
		Expect(gathered(reg, "onecopy_missing_recipients_total")).To(BeZero())
		Expect(gathered(reg, "onecopy_campaign_running")).To(BeZero())
	}, NodeTimeout(30*time.Second))
})
