// Specs for harness.Run under the SMTP fault catalog (issue 4's "done
// when"): the ledger sender stays exactly-once under every fault that leaves
// no doubt, is effectively-once (and no better) under the faults that do,
// the naive sender fails, the report counts each fault kind, and one seed
// gives one run.

package harness_test

import (
	"context"
	"slices"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

var _ = Describe("Faults", func() {
	// faultRun runs cmd over a synthetic list of n under the faults and
	// prints the summary, for a failing spec.
	faultRun := func(ctx context.Context, cmd []string, n int, seed uint64, faults ...string) *report.Report {
		GinkgoHelper()
		var specs []fakesmtp.FaultSpec
		for _, f := range faults {
			spec, err := fakesmtp.ParseFault(f)
			Expect(err).NotTo(HaveOccurred())
			specs = append(specs, spec)
		}
		rep, err := harness.Run(ctx, harness.Config{
			Command:    cmd,
			Recipients: harness.Synthetic(n),
			Faults:     specs,
			Retries:    3,
			Seed:       seed,
			Timeout:    90 * time.Second,
			WorkDir:    GinkgoT().TempDir(),
		})
		Expect(err).NotTo(HaveOccurred())
		rep.Summary(GinkgoWriter)
		return rep
	}

	// exactlyOnce checks a clean run: every deliverable address got one
	// copy, the sender finished, and only these fault kinds fired.
	exactlyOnce := func(rep *report.Report, n, bounced int, kinds ...string) {
		GinkgoHelper()
		Expect(rep.Verdict).To(Equal(verdict.ExactlyOnce), rep.Reason)
		Expect(rep.Pass).To(BeTrue())
		Expect(rep.Ended).To(Equal("completed"))
		Expect(rep.Recipients).To(Equal(n))
		Expect(rep.Bounced).To(Equal(bounced))
		Expect(rep.Missing).To(BeZero())
		Expect(rep.Duplicated).To(BeZero())
		Expect(rep.Unexpected).To(BeZero())
		Expect(rep.Copies).To(BeEquivalentTo(n - bounced))
		if !slices.Contains(kinds, "outage") { // an outage cuts sessions with a 250 maybe unread
			Expect(rep.InDoubt).To(BeZero())
		}
		Expect(rep.Faults).To(HaveLen(len(kinds)))
		for _, k := range kinds {
			Expect(rep.Faults).To(HaveKeyWithValue(k, BeNumerically(">", 0)))
		}
	}

	// effectivelyOnce checks a run that missed exactly-once only because of
	// in-doubt events: each extra copy repeats its Message-ID.
	effectivelyOnce := func(rep *report.Report) {
		GinkgoHelper()
		Expect(rep.Verdict).To(Equal(verdict.EffectivelyOnce), rep.Reason)
		Expect(rep.Holds).NotTo(ContainElement(verdict.ExactlyOnce))
		Expect(rep.Pass).To(BeFalse(), "the run was expected exactly-once")
		Expect(rep.Ended).To(Equal("completed"))
		Expect(rep.Missing).To(BeZero())
		Expect(rep.Unexpected).To(BeZero())
		Expect(rep.InDoubt).To(BeNumerically(">", 0))
		Expect(rep.Extra).To(BeNumerically(">", 0))
		Expect(rep.Extra).To(BeNumerically("<=", rep.InDoubt))
		for _, w := range rep.Worst {
			Expect(w.MessageIDs).To(Equal(1), "a resend with a new Message-ID: %+v", w)
		}
		Expect(rep.Reason).To(ContainSubstring("in-doubt"))
	}

	Describe("the ledger sender stays exactly-once", func() {
		It("under tempfail=0.2: every 4xx is retried, none counts", func(ctx SpecContext) {
			rep := faultRun(ctx, builtin("ledger"), 150, 1, "tempfail=0.2")
			exactlyOnce(rep, 150, 0, "tempfail")
		}, NodeTimeout(2*time.Minute))

		It("under greylist: each address is deferred exactly once", func(ctx SpecContext) {
			rep := faultRun(ctx, builtin("ledger"), 150, 1, "greylist")
			exactlyOnce(rep, 150, 0, "greylist")
			Expect(rep.Faults["greylist"]).To(Equal(150))
		}, NodeTimeout(2*time.Minute))

		It("under refuse=0.3: refused connections are redialled", func(ctx SpecContext) {
			// The ledger keeps one connection; conn-limit=10 makes it dial
			// about 15 times, so some dials meet the 421 greeting.
			rep := faultRun(ctx, builtin("ledger"), 150, 1, "refuse=0.3", "conn-limit=10")
			exactlyOnce(rep, 150, 0, "refuse", "conn-limit")
		}, NodeTimeout(2*time.Minute))

		It("under conn-limit=7: the 421 after 7 messages costs nothing", func(ctx SpecContext) {
			rep := faultRun(ctx, builtin("ledger"), 150, 1, "conn-limit=7")
			exactlyOnce(rep, 150, 0, "conn-limit")
			// One sequential sender: a 421 after every 7th message but the last.
			Expect(rep.Faults["conn-limit"]).To(Equal((150 - 1) / 7))
		}, NodeTimeout(2*time.Minute))

		It("under latency=5ms: every reply is late, none is lost", func(ctx SpecContext) {
			rep := faultRun(ctx, builtin("ledger"), 100, 1, "latency=5ms")
			exactlyOnce(rep, 100, 0, "latency")
			// At least greeting, EHLO, NOOP, then MAIL, RCPT, DATA, dot per message.
			Expect(rep.Faults["latency"]).To(BeNumerically(">=", 3+4*100))
		}, NodeTimeout(2*time.Minute))

		It("under outage=500ms@50%: the port goes down half way and the ledger waits it out", func(ctx SpecContext) {
			rep := faultRun(ctx, builtin("ledger"), 150, 1, "outage=500ms@50%")
			exactlyOnce(rep, 150, 0, "outage")
			Expect(rep.Faults["outage"]).To(Equal(1))
			for _, d := range rep.Doubts {
				Expect(d.Cause).To(BeEquivalentTo("server"), "only the outage may leave a transaction in doubt")
			}
		}, NodeTimeout(2*time.Minute))

		It("under reject=ADDR: the address bounces once and is not missing", func(ctx SpecContext) {
			rep := faultRun(ctx, builtin("ledger"), 150, 1, "reject=rcpt000075@onecopy.test")
			exactlyOnce(rep, 150, 1, "reject")
			Expect(rep.Faults["reject"]).To(Equal(1), "a 5xx is final: the ledger does not retry it")
		}, NodeTimeout(2*time.Minute))

		It("under reject-nth=40: the 40th address of the list bounces", func(ctx SpecContext) {
			rep := faultRun(ctx, builtin("ledger"), 100, 1, "reject-nth=40")
			exactlyOnce(rep, 100, 1, "reject-nth")
			Expect(rep.Faults["reject-nth"]).To(Equal(1))
		}, NodeTimeout(2*time.Minute))

		It("runs the same twice with one seed under tempfail=0.3: the same faults, counted the same", func(ctx SpecContext) {
			// The ledger is sequential and deterministic given the server's
			// replies, so the seeded draws fall on the same commands.
			first := faultRun(ctx, builtin("ledger"), 100, 42, "tempfail=0.3")
			second := faultRun(ctx, builtin("ledger"), 100, 42, "tempfail=0.3")
			exactlyOnce(first, 100, 0, "tempfail")
			exactlyOnce(second, 100, 0, "tempfail")
			Expect(second.Faults).To(Equal(first.Faults))
			Expect(second.Attempts).To(Equal(first.Attempts))
		}, NodeTimeout(3*time.Minute))
	})

	Describe("the ledger sender is effectively-once, not exactly-once", func() {
		It("under drop-after-data=0.1: each cut after the commit is resent with its Message-ID", func(ctx SpecContext) {
			rep := faultRun(ctx, builtin("ledger"), 150, 1, "drop-after-data=0.1")
			effectivelyOnce(rep)
			Expect(rep.Faults).To(HaveLen(1))
			// Every cut leaves one copy the sender cannot know about, and
			// the resend makes exactly that one extra copy.
			Expect(rep.InDoubt).To(Equal(rep.Faults["drop-after-data"]))
			Expect(rep.Extra).To(Equal(rep.InDoubt))
		}, NodeTimeout(2*time.Minute))

		It("under slow-ack=1s@0.1 with a 500ms reply timeout: each held 250 is resent with its Message-ID", func(ctx SpecContext) {
			// Only a share of the 250s is held: with slow-ack=1s every one
			// would be, and a sender that gives up after 500ms could never
			// finish (see the next spec).
			rep := faultRun(ctx, builtin("ledger", "--timeout", "500ms"), 100, 1, "slow-ack=1s@0.1")
			effectivelyOnce(rep)
			Expect(rep.Faults).To(HaveLen(1))
			Expect(rep.Faults["slow-ack"]).To(BeNumerically(">", 0))
			// The ledger hangs up at 500ms, long before the 250 is written
			// at 1s: every held 250 is in doubt and repeated once.
			Expect(rep.InDoubt).To(Equal(rep.Faults["slow-ack"]))
			Expect(rep.Extra).To(Equal(rep.InDoubt))
		}, NodeTimeout(2*time.Minute))

		It("never finishes under slow-ack=1s with a 500ms reply timeout: every 250 comes too late", func(ctx SpecContext) {
			rep, err := harness.Run(ctx, harness.Config{
				Command:    builtin("ledger", "--timeout", "500ms"),
				Recipients: harness.Synthetic(3),
				Faults:     []fakesmtp.FaultSpec{{Kind: "slow-ack", D: time.Second, P: 1}},
				Seed:       1,
				Timeout:    4 * time.Second,
			})
			Expect(err).NotTo(HaveOccurred())
			rep.Summary(GinkgoWriter)
			Expect(rep.Ended).To(HavePrefix("timeout"))
			Expect(rep.Verdict).To(Equal(verdict.Fail))
			Expect(rep.Missing).To(Equal(2), "stuck on the first address")
			Expect(rep.Worst).To(HaveLen(1))
			Expect(rep.Worst[0].Copies).To(BeNumerically(">=", 3))
			Expect(rep.Worst[0].MessageIDs).To(Equal(1))
			Expect(rep.InDoubt).To(BeNumerically(">=", rep.Extra), "every held 250 the ledger gave up on is in doubt")
		}, NodeTimeout(time.Minute))
	})

	Describe("the naive sender fails", func() {
		It("under reject-nth=50: the job reruns from the top and duplicates the head", func(ctx SpecContext) {
			rep := faultRun(ctx, builtin("naive"), 100, 1, "reject-nth=50")
			Expect(rep.Verdict).To(Equal(verdict.Fail), rep.Reason)
			Expect(rep.Pass).To(BeFalse())
			Expect(rep.Bounced).To(Equal(1))
			Expect(rep.Attempts).To(Equal(4))
			Expect(rep.Histogram).To(HaveKeyWithValue("4", 49), "the 49 addresses before the bad one, once per attempt")
			Expect(rep.Missing).To(Equal(50), "the tail after the bad address is never reached")
			Expect(rep.Faults).To(Equal(map[string]int{"reject-nth": 4}))
		}, NodeTimeout(2*time.Minute))

		It("under tempfail=0.2: a 4xx aborts the job, which reruns from the top", func(ctx SpecContext) {
			rep := faultRun(ctx, builtin("naive"), 100, 1, "tempfail=0.2")
			Expect(rep.Verdict).To(Equal(verdict.Fail), rep.Reason)
			Expect(rep.Pass).To(BeFalse())
			Expect(rep.Missing).To(BeNumerically(">", 0))
			Expect(rep.Faults).To(Equal(map[string]int{"tempfail": rep.Attempts}), "one 4xx ends each attempt")
		}, NodeTimeout(2*time.Minute))
	})
})
