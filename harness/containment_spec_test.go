// Specs for containment with a sender that daemonises (testdata/daemon.sh:
// setsid and a double fork, as `postfix start` or `celery --detach` do), in
// every containment mode this machine offers, each forced in turn: a kill
// really stops the daemon at each kill point, a pause really freezes it,
// and nothing is left behind after a normal end, a --timeout, a Ctrl-C or
// a SIGKILL of onecopy itself.

package harness_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/harness/contain"
	"github.com/onecopy/onecopy/history"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

var _ = Describe("Containment of a daemonising sender", func() {
	for _, mode := range contain.Modes() {
		Describe("in mode "+string(mode), func() {
			var markDir string
			BeforeEach(func() {
				if err := contain.Probe(mode); err != nil {
					Skip("containment mode " + string(mode) + " is not available here: " + err.Error())
				}
				markDir = GinkgoT().TempDir()
			})
			daemon := func(args ...string) []string {
				return append([]string{"/bin/sh", testdata("daemon.sh")}, args...)
			}
			run := func(ctx context.Context, cfg harness.Config) *report.Report {
				GinkgoHelper()
				cfg.WorkDir, cfg.Containment = GinkgoT().TempDir(), string(mode)
				cfg.Env = append(cfg.Env, "MARK_DIR="+markDir)
				rep, err := harness.Run(ctx, cfg)
				Expect(err).NotTo(HaveOccurred())
				rep.Summary(GinkgoWriter)
				Expect(rep.Containment).To(Equal(string(mode)))
				return rep
			}
			daemonGone := func(ctx context.Context) {
				GinkgoHelper()
				pid, err := readPID(filepath.Join(markDir, "daemon.pid"))
				Expect(err).NotTo(HaveOccurred(), "the daemon never started")
				Eventually(alive).WithContext(ctx).WithArguments(pid).WithTimeout(10*time.Second).
					Should(BeFalse(), "the daemon %d outlived the run", pid)
			}

			It("kills the daemon for real at each kill point: no copy from a killed attempt after its kill", func(ctx SpecContext) {
				rep := run(ctx, harness.Config{Command: daemon(builtin("ledger")...), Recipients: harness.Synthetic(300),
					Kills: kills("at=30%,60%"), Expect: verdict.EffectivelyOnce})
				Expect(rep.Pass).To(BeTrue(), rep.Reason)
				Expect(rep.Kills).To(Equal(2))
				Expect(rep.Escaped).To(BeEmpty())
				// The kill is recorded before it is sent, and a message whose
				// final dot was on its way may still be counted while the
				// signal lands; once the attempt has ended (no process of it
				// left), nothing of it may deliver.
				killed, ended := map[[2]int]bool{}, map[[2]int]bool{}
				for _, ev := range readHistory(rep.History) {
					who := [2]int{ev.Instance, ev.Attempt}
					switch ev.Kind {
					case history.KindSignal:
						for _, t := range ev.Signal.Targets {
							killed[[2]int{t.Instance, t.Attempt}] = true
						}
					case history.KindExit:
						ended[who] = true
					case history.KindCopy:
						Expect(ev.Attempt).NotTo(BeZero(), "a copy from a session no attempt holds: the daemon escaped its attempt")
						Expect(ended[who]).To(BeFalse(), "attempt %d delivered after it had ended", ev.Attempt)
					}
				}
				Expect(killed).To(HaveLen(2))
				daemonGone(ctx)
			}, NodeTimeout(60*time.Second))

			It("freezes the daemon for real during a pause", func(ctx SpecContext) {
				rep := run(ctx, harness.Config{Command: daemon(builtin("ledger")...), Recipients: harness.Synthetic(200),
					Kills: kills("at=50%"), Signal: harness.SigStop, Pause: 500 * time.Millisecond})
				Expect(rep.Pass).To(BeTrue(), rep.Reason)
				Expect(rep.Pauses).To(Equal(1))
				var stop, cont time.Time
				var copies []time.Time
				for _, ev := range readHistory(rep.History) {
					switch {
					case ev.Kind == history.KindSignal && ev.Signal.Name == "SIGSTOP":
						stop = ev.T
					case ev.Kind == history.KindSignal && ev.Signal.Name == "SIGCONT":
						cont = ev.T
					case ev.Kind == history.KindCopy:
						copies = append(copies, ev.T)
					}
				}
				Expect(cont.Sub(stop)).To(BeNumerically(">=", 500*time.Millisecond))
				// A message whose final dot was on the wire when the freeze
				// came may still be counted: allow the first few ms.
				for _, t := range copies {
					Expect(t.After(stop.Add(50*time.Millisecond)) && t.Before(cont)).To(BeFalse(), "a copy at %v, during the pause", t.Sub(stop))
				}
				daemonGone(ctx)
			}, NodeTimeout(60*time.Second))

			It("leaves nothing behind after a normal end", func(ctx SpecContext) {
				// The wrapper exits 0 as soon as its daemon has; a daemon of the
				// daemon is left for the containment to kill.
				rep := run(ctx, harness.Config{Command: daemon("/bin/sh", "-c", "setsid sleep 300 & echo $! >\"$MARK_DIR/grandchild.pid\"; exec "+shellJoin(builtin("ledger"))),
					Recipients: harness.Synthetic(20)})
				Expect(rep.Pass).To(BeTrue(), rep.Reason)
				daemonGone(ctx)
				pid, err := readPID(filepath.Join(markDir, "grandchild.pid"))
				Expect(err).NotTo(HaveOccurred())
				Eventually(alive).WithContext(ctx).WithArguments(pid).WithTimeout(10 * time.Second).Should(BeFalse())
			}, NodeTimeout(60*time.Second))

			It("leaves nothing behind after --timeout", func(ctx SpecContext) {
				rep := run(ctx, harness.Config{Command: daemon("sleep", "300"), Recipients: harness.Synthetic(10), Timeout: time.Second})
				Expect(rep.Outcome).To(Equal(report.OutcomeTimeout))
				Expect(rep.Pass).To(BeFalse())
				daemonGone(ctx)
			}, NodeTimeout(60*time.Second))

			It("leaves nothing behind after Ctrl-C", func(ctx SpecContext) {
				cctx, cancel := context.WithCancel(ctx)
				done := make(chan *report.Report, 1)
				go func() {
					defer GinkgoRecover()
					done <- run(cctx, harness.Config{Command: daemon("sleep", "300"), Recipients: harness.Synthetic(10)})
				}()
				Eventually(func() error { _, err := readPID(filepath.Join(markDir, "daemon.pid")); return err }).
					WithContext(ctx).WithTimeout(10 * time.Second).Should(Succeed())
				cancel()
				var rep *report.Report
				Eventually(done).WithContext(ctx).WithTimeout(10 * time.Second).Should(Receive(&rep))
				Expect(rep.Outcome).To(Equal(report.OutcomeInterrupted))
				daemonGone(ctx)
			}, NodeTimeout(60*time.Second))

			It("leaves nothing behind after a SIGKILL of onecopy", func(ctx SpecContext) {
				cmd := exec.Command(onecopyBin, "run", "--recipients", "10", "--timeout", "1m", "--containment", string(mode), "--", "/bin/sh", testdata("daemon.sh"), "sleep", "300")
				cmd.Env = append(os.Environ(), "MARK_DIR="+markDir)
				cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
				session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
				Expect(err).NotTo(HaveOccurred())
				DeferCleanup(func() { session.Kill() })
				Eventually(func() error { _, err := readPID(filepath.Join(markDir, "daemon.pid")); return err }).
					WithContext(ctx).WithTimeout(10 * time.Second).Should(Succeed())
				session.Kill()
				Eventually(session).WithContext(ctx).WithTimeout(10 * time.Second).Should(gexec.Exit())
				daemonGone(ctx)
			}, NodeTimeout(60*time.Second))
		})
	}
})

// shellJoin quotes argv for sh -c.
func shellJoin(argv []string) string {
	out := ""
	for i, a := range argv {
		if i > 0 {
			out += " "
		}
		out += "'" + a + "'"
	}
	return out
}

// A real MTA as the sender: a throwaway Postfix (testdata/postfix-sender.sh)
// started with `postfix start`, which daemonises. Every kill point must
// really kill its master and every daemon, and nothing may be left after.
// Postfix promises at-least-once: killed while moving a message from its
// maildrop to its queue it can queue it twice, and both copies are
// acknowledged, so the checker rightly calls some runs at-least-once.
var _ = Describe("A throwaway Postfix as the sender", func() {
	BeforeEach(func() {
		if _, err := exec.LookPath("postfix"); err != nil {
			Skip("Postfix is not installed (Debian's postfix package; .ci/run installs it)")
		}
		if os.Geteuid() != 0 {
			Skip("a private Postfix instance needs root to start")
		}
	})

	// inWorkDir lists the processes whose working directory is under dir:
	// Postfix's daemons all work in their queue directory.
	inWorkDir := func(dir string) []string {
		var left []string
		entries, _ := os.ReadDir("/proc")
		for _, e := range entries {
			if cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd")); err == nil && strings.HasPrefix(cwd, dir) {
				cmd, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
				left = append(left, e.Name()+" "+strings.ReplaceAll(string(cmd), "\x00", " "))
			}
		}
		return left
	}

	DescribeTable("is killed for real at every kill point and leaves nothing behind",
		func(ctx SpecContext, kill string) {
			work := GinkgoT().TempDir()
			rep, err := harness.Run(ctx, harness.Config{Command: []string{"/bin/sh", testdata("postfix-sender.sh")},
				Recipients: harness.Synthetic(100), Kills: kills(kill), Expect: verdict.AtLeastOnce, WorkDir: work, Timeout: 90 * time.Second})
			Expect(err).NotTo(HaveOccurred())
			rep.Summary(GinkgoWriter)
			Expect(rep.Pass).To(BeTrue(), "Postfix is at-least-once: %s", rep.Reason)
			Expect(rep.Kills).To(Equal(2))
			Expect(rep.MissedKills).To(BeEmpty())
			Expect(rep.Escaped).To(BeEmpty())
			ended := map[[2]int]bool{}
			for _, ev := range readHistory(rep.History) {
				switch ev.Kind {
				case history.KindExit:
					ended[[2]int{ev.Instance, ev.Attempt}] = true
				case history.KindCopy:
					Expect(ev.Attempt).NotTo(BeZero(), "a copy from a Postfix process no attempt holds")
					Expect(ended[[2]int{ev.Instance, ev.Attempt}]).To(BeFalse(), "Postfix delivered for attempt %d after it had ended", ev.Attempt)
				}
			}
			Eventually(inWorkDir).WithArguments(work).WithContext(ctx).WithTimeout(10 * time.Second).Should(BeEmpty())
		},
		Entry(nil, "at=30%,60%", NodeTimeout(2*time.Minute)),
		Entry(nil, "in-doubt=2", NodeTimeout(2*time.Minute)),
		Entry(nil, "during-data=2", NodeTimeout(2*time.Minute)),
	)
})
