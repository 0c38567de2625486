// Specs for the checker against senders written apart from onecopy, in Go
// (examples/senders/go/ledger) and Python (examples/senders/python/ledger.py): correct senders of
// every shape (batches of 10 recipients per transaction, 4 connections at
// once) reach effectively-once under every in-doubt chaos, and the same
// senders with a bug on purpose are caught, the repeats no in-doubt
// transaction explains named in the reason.

package harness_test

import (
	"context"
	"os/exec"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

var _ = Describe("The checker, against senders of every shape", func() {
	run := func(ctx context.Context, cfg harness.Config) *report.Report {
		GinkgoHelper()
		cfg.WorkDir = GinkgoT().TempDir()
		rep, err := harness.Run(ctx, cfg)
		Expect(err).NotTo(HaveOccurred())
		rep.Summary(GinkgoWriter)
		return rep
	}
	summary := func(rep *report.Report) string {
		var b strings.Builder
		rep.Summary(&b)
		return b.String()
	}
	faults := func(specs ...string) []fakesmtp.FaultSpec {
		GinkgoHelper()
		var out []fakesmtp.FaultSpec
		for _, s := range specs {
			f, err := fakesmtp.ParseFault(s)
			Expect(err).NotTo(HaveOccurred())
			out = append(out, f)
		}
		return out
	}
	sender := func(lang string, args ...string) []string {
		GinkgoHelper()
		if lang == "python" {
			py, err := exec.LookPath("python3")
			if err != nil {
				Skip("python3 is not installed: the Python sender cannot run here")
			}
			return append([]string{py, example("python/ledger.py")}, args...)
		}
		return append([]string{goLedgerBin}, args...)
	}
	flag := func(lang, name string) string {
		if lang == "python" {
			return "--" + name
		}
		return "-" + name
	}

	DescribeTable("a correct ledger sender reaches effectively-once",
		func(ctx SpecContext, lang, shape, chaos string) {
			var args []string
			switch shape {
			case "batch":
				args = []string{flag(lang, "batch"), "10"}
			case "pool":
				args = []string{flag(lang, "connections"), "4"}
			}
			cfg := harness.Config{Command: sender(lang, args...), Recipients: harness.Synthetic(200), Seed: 11,
				Expect: verdict.EffectivelyOnce, Timeout: time.Minute}
			switch chaos {
			case "in-doubt":
				cfg.Kills = kills("in-doubt=2")
			case "drop-after-data":
				cfg.Faults = faults("drop-after-data=0.1")
			case "at":
				cfg.Kills = kills("at=30%,60%")
			}
			By("running " + lang + " " + shape + " under " + chaos)
			rep := run(ctx, cfg)
			Expect(rep.Pass).To(BeTrue(), "%s", summary(rep))
			Expect(rep.Unexplained).To(BeZero())
			if chaos != "at" {
				Expect(rep.InDoubt).To(BeNumerically(">", 0), "the chaos left nothing in doubt: the spec proves nothing")
			}
		},
		func(lang, shape, chaos string) string {
			return lang + ", " + map[string]string{"batch": "10 recipients per transaction", "pool": "4 connections"}[shape] + ", " + chaos
		},
		Entry(nil, "go", "batch", "in-doubt", entryTimeout),
		Entry(nil, "go", "batch", "drop-after-data", entryTimeout),
		Entry(nil, "go", "batch", "at", entryTimeout),
		Entry(nil, "go", "pool", "in-doubt", entryTimeout),
		Entry(nil, "go", "pool", "drop-after-data", entryTimeout),
		Entry(nil, "go", "pool", "at", entryTimeout),
		Entry(nil, "python", "batch", "in-doubt", entryTimeout),
		Entry(nil, "python", "batch", "drop-after-data", entryTimeout),
		Entry(nil, "python", "batch", "at", entryTimeout),
		Entry(nil, "python", "pool", "in-doubt", entryTimeout),
		Entry(nil, "python", "pool", "drop-after-data", entryTimeout),
		Entry(nil, "python", "pool", "at", entryTimeout),
	)

	DescribeTable("a sender that re-sends an address it had recorded is caught under during-data kills",
		func(ctx SpecContext, lang string) {
			rep := run(ctx, harness.Config{Command: sender(lang, flag(lang, "bug"), "resend-recorded"), Recipients: harness.Synthetic(200),
				Seed: 11, Kills: kills("during-data=3"), Expect: verdict.EffectivelyOnce, Timeout: time.Minute})
			Expect(rep.Pass).To(BeFalse(), "%s", summary(rep))
			Expect(rep.Verdict).To(Equal(verdict.AtLeastOnce))
			Expect(rep.Unexplained).To(Equal(3), "one re-sent address per restart")
			Expect(rep.Worst).NotTo(BeEmpty())
			Expect(rep.Reason).To(ContainSubstring("unexplained, e.g. " + rep.Worst[0].Address))
			Expect(rep.Worst[0].Unexplained).To(Equal(3))
		},
		Entry("go", "go", entryTimeout),
		Entry("python", "python", entryTimeout),
	)

	DescribeTable("a record-before-send sender still reaches at-most-once",
		func(ctx SpecContext, lang string) {
			rep := run(ctx, harness.Config{Command: sender(lang, flag(lang, "bug"), "record-before", flag(lang, "batch"), "5"), Recipients: harness.Synthetic(200),
				Seed: 11, Kills: kills("during-data=3"), Expect: verdict.AtMostOnce, Timeout: time.Minute})
			Expect(rep.Pass).To(BeTrue(), "%s", summary(rep))
			Expect(rep.Missing).To(BeNumerically(">", 0), "the kills lost nothing: the spec proves nothing")
			Expect(rep.MissingExplained).To(Equal(rep.Missing))
		},
		Entry("go", "go", entryTimeout),
		Entry("python", "python", entryTimeout),
	)
})
