// Specs for harness.Run with the built-in senders: what each sender reaches
// under each kill schedule and signal, and the job runner's restarts
// (issue 3's "done when"). Shared helpers for the suite sit at the end.

package harness_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"

	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/history"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

var _ = Describe("Run", func() {
	// run runs cfg in a fresh work directory (so the history is kept) and
	// prints the summary for a failing spec.
	run := func(ctx context.Context, cfg harness.Config) *report.Report {
		GinkgoHelper()
		if cfg.WorkDir == "" {
			cfg.WorkDir = GinkgoT().TempDir()
		}
		if cfg.Timeout == 0 {
			cfg.Timeout = 30 * time.Second
		}
		if cfg.Seed == 0 {
			cfg.Seed = 1
		}
		rep, err := harness.Run(ctx, cfg)
		Expect(err).NotTo(HaveOccurred())
		Expect(rep).NotTo(BeNil())
		rep.Summary(GinkgoWriter)
		Expect(rep.History).To(Equal(filepath.Join(cfg.WorkDir, "history.jsonl")))
		return rep
	}

	Describe("the naive sender", func() {
		It("fails under --kill at=50%: the rerun duplicates the head of the list with new Message-IDs", func(ctx SpecContext) {
			By("killing the naive sender once half of 200 recipients have a copy")
			rep := run(ctx, harness.Config{
				Command:    builtin("naive"),
				Recipients: harness.Synthetic(200),
				Kills:      kills("at=50%"),
			})

			By("checking the run fell short of every once-level")
			Expect(rep.Pass).To(BeFalse())
			Expect(rep.Ended).To(Equal("completed"))
			Expect(rep.Kills).To(Equal(1))
			Expect(rep.Attempts).To(Equal(2))
			// The rerun from recipient 1 covers the tail, so nothing is
			// missing: the strongest level left is at-least-once.
			Expect(rep.Verdict).To(Equal(verdict.AtLeastOnce))
			Expect(rep.Holds).To(Equal([]verdict.Level{verdict.AtLeastOnce}))
			Expect(rep.Missing).To(BeZero())
			Expect(rep.Duplicated).To(BeNumerically(">=", 100))

			By("checking each duplicate came with a new Message-ID")
			Expect(rep.Worst).NotTo(BeEmpty())
			for _, w := range rep.Worst {
				Expect(w.Copies).To(Equal(2), w.Address)
				Expect(w.MessageIDs).To(Equal(w.Copies), w.Address)
			}
			Expect(rep.Reason).To(ContainSubstring("new Message-ID"))
		}, NodeTimeout(60*time.Second))

		It("duplicates everything with --instances 2", func(ctx SpecContext) {
			By("running two naive senders at once, like overlapping cron ticks")
			rep := run(ctx, harness.Config{
				Command:    builtin("naive"),
				Recipients: harness.Synthetic(200),
				Instances:  2,
			})

			By("checking every recipient got two copies")
			Expect(rep.Ended).To(Equal("completed"))
			Expect(rep.Attempts).To(Equal(2))
			Expect(rep.Histogram).To(Equal(map[string]int{"2": 200}))
			Expect(rep.Duplicated).To(Equal(200))
			Expect(rep.Verdict).To(Equal(verdict.AtLeastOnce))
			Expect(rep.Pass).To(BeFalse())
		}, NodeTimeout(60*time.Second))
	})

	Describe("the ledger sender", func() {
		DescribeTable("reaches effectively-once under SIGKILL schedules",
			func(ctx SpecContext, kill string, wantKills int) {
				By("killing the ledger sender with --kill " + kill)
				rep := run(ctx, harness.Config{
					Command:    builtin("ledger"),
					Recipients: harness.Synthetic(400),
					Kills:      kills(kill),
					Seed:       7,
					Expect:     verdict.EffectivelyOnce,
				})

				By("checking it restarted after every kill and completed")
				Expect(rep.Ended).To(Equal("completed"))
				if wantKills > 0 {
					Expect(rep.Kills).To(Equal(wantKills))
					Expect(rep.Restarts).To(Equal(wantKills))
				} else {
					Expect(rep.Kills).To(BeNumerically(">=", 1))
				}

				By("checking effectively-once: nothing missing, repeats only as many as in-doubt events, same Message-ID")
				Expect(rep.Pass).To(BeTrue(), rep.Reason)
				Expect(rep.Holds).To(ContainElement(verdict.EffectivelyOnce))
				Expect(rep.Missing).To(BeZero())
				Expect(rep.Unexpected).To(BeZero())
				Expect(rep.InDoubt).To(BeNumerically(">", 0))
				Expect(rep.Extra).To(BeNumerically("<=", rep.InDoubt))
				for _, w := range rep.Worst {
					Expect(w.MessageIDs).To(Equal(1), w.Address)
				}
			},
			Entry("at=25%,50%,75%", "at=25%,50%,75%", 3, entryTimeout),
			Entry("every=100", "every=100", 3, entryTimeout),
			Entry("random=3 with a seed", "random=3", 0, entryTimeout),
			Entry("in-doubt=3", "in-doubt=3", 3, entryTimeout),
		)

		It("cannot reach exactly-once under in-doubt kills, and the reason says so", func(ctx SpecContext) {
			By("killing the sender three times between the server's count and its 250")
			rep := run(ctx, harness.Config{
				Command:    builtin("ledger"),
				Recipients: harness.Synthetic(200),
				Kills:      kills("in-doubt=3"),
				Expect:     verdict.ExactlyOnce,
			})

			By("checking each in-doubt kill left exactly one repeat of the same message")
			Expect(rep.Kills).To(Equal(3))
			Expect(rep.Extra).To(Equal(3))
			Expect(rep.Duplicated).To(Equal(3))
			Expect(rep.InDoubt).To(BeNumerically(">=", 3))

			By("checking the verdict and why exactly-once was out of reach")
			Expect(rep.Verdict).To(Equal(verdict.EffectivelyOnce))
			Expect(rep.Holds).NotTo(ContainElement(verdict.ExactlyOnce))
			Expect(rep.Pass).To(BeFalse())
			Expect(rep.Reason).To(ContainSubstring("in-doubt"))
			Expect(rep.Reason).To(ContainSubstring("only because of in-doubt transactions"))
		}, NodeTimeout(60*time.Second))

		It("reaches exactly-once under --signal TERM --grace 5s", func(ctx SpecContext) {
			By("terminating the ledger sender at 25%, 50% and 75%")
			rep := run(ctx, harness.Config{
				Command:    builtin("ledger"),
				Recipients: harness.Synthetic(400),
				Kills:      kills("at=25%,50%,75%"),
				Signal:     harness.SigTerm,
				Grace:      5 * time.Second,
			})

			By("checking every TERM was a graceful stop: no escalation, nothing in doubt")
			Expect(rep.Kills).To(Equal(3))
			Expect(rep.Restarts).To(Equal(3))
			Expect(rep.InDoubt).To(BeZero())
			for _, ev := range readHistory(rep.History) {
				if ev.Kind == history.KindSignal {
					Expect(ev.Signal.Name).To(Equal("SIGTERM"), "%+v", ev.Signal)
				}
			}

			By("checking exactly-once")
			Expect(rep.Verdict).To(Equal(verdict.ExactlyOnce), rep.Reason)
			Expect(rep.Pass).To(BeTrue())
			Expect(rep.Copies).To(BeEquivalentTo(400))
		}, NodeTimeout(60*time.Second))

		It("never gets a copy counted from a DATA killed mid-stream (--kill during-data=3)", func(ctx SpecContext) {
			By("killing the sender three times while a message body is streaming")
			rep := run(ctx, harness.Config{
				Command:    builtin("ledger"),
				Recipients: harness.Synthetic(300),
				Kills:      kills("during-data=3"),
			})

			By("checking the ledger resent each killed message once: exactly-once")
			Expect(rep.Kills).To(Equal(3))
			Expect(rep.Verdict).To(Equal(verdict.ExactlyOnce), rep.Reason)
			Expect(rep.Pass).To(BeTrue())
			Expect(rep.Copies).To(BeEquivalentTo(300))

			By("checking in the history that no killed session got its message counted")
			hist := readHistory(rep.History)
			copiesBySession := map[uint64]int{}
			for _, ev := range hist {
				if ev.Kind == history.KindCopy {
					copiesBySession[ev.Session] += 1
				}
			}
			kills := 0
			for i, ev := range hist {
				if ev.Kind != history.KindSignal || ev.Point == nil || ev.Point.Kind != "during-data" {
					continue
				}
				kills++
				Expect(ev.Signal.Name).To(Equal("SIGKILL"))
				Expect(ev.Signal.Sessions).To(HaveLen(1), "%+v", ev.Signal)
				s := ev.Signal.Sessions[0]
				Expect(s.ID).To(Equal(ev.Point.Session))
				Expect(s.Moment).To(Equal("data-streaming"), "%+v", ev.Signal)
				// Every copy of that session was accepted before the kill...
				Expect(copiesBySession[s.ID]).To(Equal(s.Messages), "%+v", ev.Signal)
				// ...and none after it.
				for _, later := range hist[i+1:] {
					if later.Kind == history.KindCopy {
						Expect(later.Session).NotTo(Equal(s.ID), "a copy counted on killed session %d", s.ID)
					}
				}
			}
			Expect(kills).To(Equal(3))
		}, NodeTimeout(60*time.Second))

		It("completes after SIGSTOP and SIGCONT (--signal STOP --pause 300ms) with exactly-once", func(ctx SpecContext) {
			By("pausing the sender for 300ms at 50%")
			rep := run(ctx, harness.Config{
				Command:    builtin("ledger"),
				Recipients: harness.Synthetic(200),
				Kills:      kills("at=50%"),
				Signal:     harness.SigStop,
				Pause:      300 * time.Millisecond,
			})

			By("checking one pause, no kill, no restart")
			Expect(rep.Ended).To(Equal("completed"))
			Expect(rep.Pauses).To(Equal(1))
			Expect(rep.Kills).To(BeZero())
			Expect(rep.Restarts).To(BeZero())
			Expect(rep.Attempts).To(Equal(1))
			Expect(rep.InDoubt).To(BeZero())

			By("checking the history has SIGSTOP, then SIGCONT after the pause")
			var stop, cont time.Time
			for _, ev := range readHistory(rep.History) {
				if ev.Kind != history.KindSignal {
					continue
				}
				switch ev.Signal.Name {
				case "SIGSTOP":
					stop = ev.T
				case "SIGCONT":
					cont = ev.T
				}
			}
			Expect(stop).NotTo(BeZero())
			Expect(cont).NotTo(BeZero())
			Expect(cont.Sub(stop)).To(BeNumerically(">=", 300*time.Millisecond))

			Expect(rep.Verdict).To(Equal(verdict.ExactlyOnce), rep.Reason)
			Expect(rep.Pass).To(BeTrue())
		}, NodeTimeout(60*time.Second))
	})

	Describe("the job runner", func() {
		It("restarts a failing sender exactly --retries times", func(ctx SpecContext) {
			By("running a sender that exits 1 every time, with Retries 2")
			rep := run(ctx, harness.Config{
				Command:    []string{"/bin/sh", testdata("fail.sh")},
				Recipients: harness.Synthetic(10),
				Retries:    2,
			})

			By("checking three attempts, then retries exhausted")
			Expect(rep.Attempts).To(Equal(3))
			Expect(rep.Restarts).To(Equal(2))
			Expect(rep.Ended).To(ContainSubstring("retries exhausted"))
			Expect(rep.Senders).To(HaveLen(3))
			for i, a := range rep.Senders {
				Expect(a.Attempt).To(Equal(i + 1))
				Expect(a.Exit).To(Equal("exit 1"))
				Expect(a.Output).To(ContainElement(ContainSubstring("gives up")))
			}
			Expect(rep.Verdict).To(Equal(verdict.Fail))
			Expect(rep.Missing).To(Equal(10))
		}, NodeTimeout(60*time.Second))

		It("does not count restarts after its own kills against --retries", func(ctx SpecContext) {
			By("killing the ledger sender three times with Retries 0")
			rep := run(ctx, harness.Config{
				Command:    builtin("ledger"),
				Recipients: harness.Synthetic(400),
				Kills:      kills("at=25%,50%,75%"),
				Retries:    0,
			})

			By("checking it was restarted after each kill and completed")
			Expect(rep.Ended).To(Equal("completed"))
			Expect(rep.Kills).To(Equal(3))
			Expect(rep.Restarts).To(Equal(3))
			Expect(rep.Attempts).To(Equal(4))
			Expect(rep.Holds).To(ContainElement(verdict.EffectivelyOnce))
		}, NodeTimeout(60*time.Second))

		It("keeps the ledger sender exactly-once with --instances 2", func(ctx SpecContext) {
			By("running two ledger senders at once on one state directory")
			rep := run(ctx, harness.Config{
				Command:    builtin("ledger"),
				Recipients: harness.Synthetic(300),
				Instances:  2,
			})

			By("checking the second instance sent nothing twice")
			Expect(rep.Ended).To(Equal("completed"))
			Expect(rep.Attempts).To(Equal(2))
			Expect(rep.Verdict).To(Equal(verdict.ExactlyOnce), rep.Reason)
			Expect(rep.Histogram).To(Equal(map[string]int{"1": 300}))
		}, NodeTimeout(60*time.Second))

		It("gives every start ONECOPY_ATTEMPT, ONECOPY_INSTANCE and a stable ONECOPY_CAMPAIGN", func(ctx SpecContext) {
			By("running two instances of a script that logs its environment, then becomes the ledger sender")
			cfg := harness.Config{
				Command:    []string{"/bin/sh", testdata("contract.sh")},
				Env:        []string{"ONECOPY_BIN=" + onecopyBin},
				Recipients: harness.Synthetic(200),
				Kills:      kills("at=50%"),
				Instances:  2,
				Campaign:   "contract-spec",
				WorkDir:    GinkgoT().TempDir(),
			}
			rep := run(ctx, cfg)
			Expect(rep.Ended).To(Equal("completed"))
			Expect(rep.Holds).To(ContainElement(verdict.EffectivelyOnce), rep.Reason)

			By("reading what each start saw")
			f, err := os.Open(filepath.Join(cfg.WorkDir, "state", "contract.log"))
			Expect(err).NotTo(HaveOccurred())
			defer f.Close()
			attempts := map[int][]int{} // instance -> attempts, in start order
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				fields := strings.Fields(sc.Text())
				Expect(fields).To(HaveLen(3), sc.Text())
				instance, err := strconv.Atoi(fields[0])
				Expect(err).NotTo(HaveOccurred(), sc.Text())
				attempt, err := strconv.Atoi(fields[1])
				Expect(err).NotTo(HaveOccurred(), sc.Text())
				Expect(fields[2]).To(Equal("contract-spec"), "ONECOPY_CAMPAIGN must not change across restarts")
				attempts[instance] = append(attempts[instance], attempt)
			}
			Expect(sc.Err()).NotTo(HaveOccurred())

			By("checking both instances were numbered and restarted with the next attempt number after the kill")
			Expect(attempts).To(Equal(map[int][]int{1: {1, 2}, 2: {1, 2}}))
			Expect(rep.Attempts).To(Equal(4))
		}, NodeTimeout(60*time.Second))
	})
})

// entryTimeout bounds a table entry that runs something (a DescribeTable
// itself takes no NodeTimeout).
var entryTimeout = NodeTimeout(60 * time.Second)

// kills parses --kill values.
func kills(specs ...string) []harness.KillSpec {
	GinkgoHelper()
	out := make([]harness.KillSpec, len(specs))
	for i, s := range specs {
		k, err := harness.ParseKill(s)
		Expect(err).NotTo(HaveOccurred())
		out[i] = k
	}
	return out
}

// testdata is the absolute path of a helper under testdata/.
func testdata(name string) string {
	GinkgoHelper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	Expect(err).NotTo(HaveOccurred())
	Expect(p).To(BeAnExistingFile())
	return p
}

// example is the absolute path of a sender under examples/senders.
func example(name string) string {
	GinkgoHelper()
	p, err := filepath.Abs(filepath.Join("..", "examples", "senders", name))
	Expect(err).NotTo(HaveOccurred())
	Expect(p).To(BeAnExistingFile())
	return p
}

// readHistory reads a run's history.jsonl, in the order it was written.
func readHistory(path string) []history.Event {
	GinkgoHelper()
	var evs []history.Event
	Expect(history.File(path).Scan(func(ev history.Event) error { evs = append(evs, ev); return nil })).To(Succeed())
	return evs
}
