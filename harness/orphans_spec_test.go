// Specs for process supervision: no sender, nor anything it started, outlives
// a run, whether the run times out, is cancelled, or the harness itself is
// killed; and Ctrl-C still writes the report (docs/containment.md).

package harness_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/report"
)

var _ = Describe("Process supervision", func() {
	var markDir string

	BeforeEach(func() {
		markDir = GinkgoT().TempDir()
		// Whatever a failing spec leaves behind is ours: kill it by pid.
		DeferCleanup(func() {
			for _, name := range []string{"child.pid", "grandchild.pid"} {
				if pid, err := readPID(filepath.Join(markDir, name)); err == nil {
					killIfOurs(pid)
				}
			}
		})
	})

	orphanSender := func() []string { return []string{"/bin/sh", testdata("orphan.sh")} }

	// pids waits until the orphan script has written both pids.
	pids := func(ctx context.Context) (child, grandchild int) {
		GinkgoHelper()
		Eventually(func() (int, error) { return readPID(filepath.Join(markDir, "child.pid")) }).
			WithContext(ctx).WithTimeout(10 * time.Second).Should(BeNumerically(">", 0))
		Eventually(func() (int, error) { return readPID(filepath.Join(markDir, "grandchild.pid")) }).
			WithContext(ctx).WithTimeout(10 * time.Second).Should(BeNumerically(">", 0))
		child, _ = readPID(filepath.Join(markDir, "child.pid"))
		grandchild, _ = readPID(filepath.Join(markDir, "grandchild.pid"))
		return child, grandchild
	}

	// allGone waits until none of pids runs (a zombie nobody reaped is dead).
	allGone := func(ctx context.Context, pids ...int) {
		GinkgoHelper()
		for _, pid := range pids {
			Eventually(alive).WithContext(ctx).WithArguments(pid).WithTimeout(10*time.Second).
				Should(BeFalse(), "process %d outlived the run", pid)
		}
	}

	It("leaves no process behind after --timeout", func(ctx SpecContext) {
		By("running a sender that sleeps forever beside a grandchild, with a 1s timeout")
		rep, err := harness.Run(ctx, harness.Config{
			Command:    orphanSender(),
			Env:        []string{"MARK_DIR=" + markDir},
			Recipients: harness.Synthetic(10),
			Timeout:    time.Second,
		})
		Expect(err).NotTo(HaveOccurred())
		Expect(rep.Ended).To(HavePrefix("timeout"))
		Expect(rep.Attempts).To(Equal(1))

		By("checking the sender and its grandchild are dead")
		child, grandchild := pids(ctx)
		allGone(ctx, child, grandchild)
	}, NodeTimeout(60*time.Second))

	It("leaves no process behind after its context is cancelled, and still returns the report", func(ctx SpecContext) {
		runCtx, cancel := context.WithCancel(ctx)
		defer cancel()
		type result struct {
			rep *report.Report
			err error
		}
		done := make(chan result, 1)

		By("starting a run of a sender that never finishes")
		go func() {
			defer GinkgoRecover()
			rep, err := harness.Run(runCtx, harness.Config{
				Command:    orphanSender(),
				Env:        []string{"MARK_DIR=" + markDir},
				Recipients: harness.Synthetic(10),
				Timeout:    time.Minute,
				// A sender the context killed must not pass for a failed
				// attempt and be restarted.
				Retries: 5,
			})
			done <- result{rep, err}
		}()
		child, grandchild := pids(ctx)
		Expect(alive(child)).To(BeTrue())
		Expect(alive(grandchild)).To(BeTrue())

		By("cancelling the context mid-run, as Ctrl-C does")
		cancel()
		var res result
		Eventually(done).WithContext(ctx).WithTimeout(10 * time.Second).Should(Receive(&res))
		Expect(res.err).NotTo(HaveOccurred())
		Expect(res.rep).NotTo(BeNil())
		Expect(res.rep.Ended).To(Equal("interrupted"))
		Expect(res.rep.Attempts).To(Equal(1), "an interruption is not a failed attempt to restart")

		By("checking the sender and its grandchild are dead")
		allGone(ctx, child, grandchild)
	}, NodeTimeout(60*time.Second))

	It("keeps in the history every copy the sender was told about when the harness itself is SIGKILLed", func(ctx SpecContext) {
		work := GinkgoT().TempDir()
		ledger := filepath.Join(work, "state", "ledger.log")
		By("running a sender that records each message after its 250, on a long list")
		cmd := exec.Command(onecopyBin, "run", "--recipients", "100000", "--timeout", "1m", "--work-dir", work, "--", goLedgerBin)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { session.Kill() })
		Eventually(func() int { b, _ := os.ReadFile(ledger); return strings.Count(string(b), "\n") }).
			WithContext(ctx).WithTimeout(20 * time.Second).Should(BeNumerically(">=", 300))

		By("killing the harness with SIGKILL mid-run: nothing is flushed on the way out")
		session.Kill()
		Eventually(session).WithContext(ctx).WithTimeout(10 * time.Second).Should(gexec.Exit())
		// The watchdog kills the sender: once its ledger stops growing, it
		// has recorded all it will.
		var acked []byte
		Eventually(func() bool {
			b, _ := os.ReadFile(ledger)
			same := len(b) == len(acked)
			acked = b
			return same
		}).WithContext(ctx).WithTimeout(10 * time.Second).WithPolling(200 * time.Millisecond).Should(BeTrue())

		By("checking every message the sender saw acknowledged is a copy in the history")
		copied := map[string]bool{}
		for _, ev := range readHistory(filepath.Join(work, "history.jsonl")) {
			for _, r := range ev.Recipients {
				copied[r] = true
			}
		}
		n := 0
		for _, line := range strings.Fields(string(acked)) {
			k, err := strconv.Atoi(line)
			Expect(err).NotTo(HaveOccurred())
			Expect(copied).To(HaveKey(fmt.Sprintf("rcpt%06d@onecopy.test", k+1)), "batch %d was acknowledged to the sender but is not in the history", k)
			n++
		}
		Expect(n).To(BeNumerically(">=", 300))
	}, NodeTimeout(60*time.Second))

	It("leaves no process behind when the harness itself is SIGKILLed", func(ctx SpecContext) {
		By("running the CLI in its own process group on a sender that never finishes")
		cmd := exec.Command(onecopyBin, "run", "--recipients", "10", "--timeout", "1m", "--", "sh", testdata("orphan.sh"))
		cmd.Env = append(os.Environ(), "MARK_DIR="+markDir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { session.Kill() })
		child, grandchild := pids(ctx)

		By("killing the harness with SIGKILL: no chance to clean up")
		session.Kill()
		Eventually(session).WithContext(ctx).WithTimeout(10 * time.Second).Should(gexec.Exit())

		By("checking the sender and its grandchild died with it")
		allGone(ctx, child, grandchild)
	}, NodeTimeout(60*time.Second))

	It("writes the report and exits 130 on SIGINT, killing the sender", func(ctx SpecContext) {
		report := filepath.Join(GinkgoT().TempDir(), "report.json")

		By("running the CLI on a sender that never finishes")
		cmd := exec.Command(onecopyBin, "run", "--recipients", "10", "--timeout", "1m", "--report", report, "--", "sh", testdata("orphan.sh"))
		cmd.Env = append(os.Environ(), "MARK_DIR="+markDir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { session.Kill() })
		child, grandchild := pids(ctx)

		By("sending SIGINT to the harness alone, as a terminal's Ctrl-C would reach it")
		session.Interrupt()
		Eventually(session).WithContext(ctx).WithTimeout(10 * time.Second).Should(gexec.Exit(130))

		By("checking the report was written and says the run was interrupted")
		b, err := os.ReadFile(report)
		Expect(err).NotTo(HaveOccurred())
		var rep map[string]any
		Expect(json.Unmarshal(b, &rep)).To(Succeed())
		Expect(rep).To(HaveKeyWithValue("ended", "interrupted"))
		Expect(rep).To(HaveKeyWithValue("pass", false))

		By("checking the sender and its grandchild are dead")
		allGone(ctx, child, grandchild)
	}, NodeTimeout(60*time.Second))
})

// readPID reads a pid file the orphan script wrote.
func readPID(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// procStat returns the command name and state of pid from /proc/PID/stat.
func procStat(pid int) (comm string, state byte, ok bool) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", 0, false
	}
	// "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
	s := string(b)
	open, end := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || end < open || end+2 >= len(s) {
		return "", 0, false
	}
	return s[open+1 : end], s[end+2], true
}

// alive reports whether pid exists and is not a zombie: a killed orphan
// whose new parent (PID 1 here) has not reaped it yet is dead all the same.
func alive(pid int) bool {
	_, state, ok := procStat(pid)
	return ok && state != 'Z' && state != 'X'
}

// killIfOurs SIGKILLs pid if it is still one of the orphan script's sleeps.
func killIfOurs(pid int) {
	if comm, _, ok := procStat(pid); ok && comm == "sleep" && alive(pid) {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
