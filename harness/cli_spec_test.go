// Specs for the onecopy CLI as users run it: bad input answers exit 2 and
// runs nothing, repro reproduces the 4-copies bug, the JSON report keeps the
// field names of docs/report.md, and one seed gives one schedule.

package harness_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"

	"github.com/onecopy/onecopy/history"
)

// onecopy runs the CLI binary with args and waits for it to exit.
func onecopy(ctx SpecContext, args ...string) *gexec.Session {
	GinkgoHelper()
	session, err := gexec.Start(exec.Command(onecopyBin, args...), GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { session.Kill() })
	Eventually(session).WithContext(ctx).WithTimeout(30 * time.Second).Should(gexec.Exit())
	return session
}

var _ = Describe("The onecopy CLI", func() {
	Describe("onecopy check", func() {
		It("re-judges a kept run from its history to the very same report", func(ctx SpecContext) {
			dir := GinkgoT().TempDir()
			work, runReport, checkReport := filepath.Join(dir, "work"), filepath.Join(dir, "run.json"), filepath.Join(dir, "check.json")
			By("running the ledger under in-doubt and random kills, keeping the work dir")
			session := onecopy(ctx, "run", "--recipients", "300", "--kill", "in-doubt=2", "--kill", "random=2", "--seed", "3",
				"--expect", "effectively-once", "--work-dir", work, "--report", runReport, "--quiet", "--sender", "builtin:ledger")
			Expect(session).To(gexec.Exit(0))

			By("re-judging it with onecopy check")
			check := onecopy(ctx, "check", "--report", checkReport, work)
			Expect(check).To(gexec.Exit(0))
			Expect(string(check.Out.Contents())).To(HavePrefix("PASS: effectively-once"))
			ran, err := os.ReadFile(runReport)
			Expect(err).NotTo(HaveOccurred())
			checked, err := os.ReadFile(checkReport)
			Expect(err).NotTo(HaveOccurred())
			Expect(string(checked)).To(Equal(string(ran)), "byte for byte")
		}, NodeTimeout(60*time.Second))

		It("explains bad input with exit 2", func(ctx SpecContext) {
			dir := GinkgoT().TempDir()
			By("a directory with no history")
			session := onecopy(ctx, "check", dir)
			Expect(session).To(gexec.Exit(2))
			Expect(string(session.Err.Contents())).To(ContainSubstring("no history.jsonl here"))

			By("a history whose list is not the run's")
			Expect(os.WriteFile(filepath.Join(dir, "history.jsonl"), []byte(`{"t":"2026-12-01T10:00:00Z","type":"run","run":{"version":2,"expect":"exactly-once","list":"recipients.txt","recipients":3,"signal":"KILL","instances":1,"retries":5,"timeout":"1m0s"}}`+"\n"), 0o644)).To(Succeed())
			Expect(os.WriteFile(filepath.Join(dir, "recipients.txt"), []byte("a@x.test\n"), 0o644)).To(Succeed())
			session = onecopy(ctx, "check", dir)
			Expect(session).To(gexec.Exit(2))
			Expect(string(session.Err.Contents())).To(ContainSubstring("the list has 1 addresses, the history's run had 3"))

			By("a history that is not one")
			Expect(os.WriteFile(filepath.Join(dir, "history.jsonl"), []byte("hello\n"), 0o644)).To(Succeed())
			session = onecopy(ctx, "check", dir)
			Expect(session).To(gexec.Exit(2))
			Expect(string(session.Err.Contents())).To(ContainSubstring("history.jsonl:1: want one JSON event per line"))
		}, NodeTimeout(60*time.Second))
	})

	Describe("bad input", func() {
		var dir string
		BeforeEach(func() {
			dir = GinkgoT().TempDir()
			Expect(os.WriteFile(filepath.Join(dir, "bad.txt"),
				[]byte("# subscribers\nann@example.com\n\nnot an address\nbob@example.com\n"), 0o644)).To(Succeed())
		})

		DescribeTable("answers exit 2 with a message naming the problem, and runs nothing",
			func(ctx SpecContext, args []string, want string) {
				args = append([]string(nil), args...)
				for i := range args {
					args[i] = strings.ReplaceAll(args[i], "{dir}", dir)
				}
				want = strings.ReplaceAll(want, "{dir}", dir)
				report, workDir := filepath.Join(dir, "report.json"), filepath.Join(dir, "work")

				By("running onecopy run " + strings.Join(args, " "))
				session := onecopy(ctx, append([]string{"run", "--report", report, "--work-dir", workDir}, args...)...)

				By("checking the exit code and the message")
				Expect(session).To(gexec.Exit(2))
				Expect(string(session.Err.Contents())).To(ContainSubstring(want))
				Expect(session.Out.Contents()).To(BeEmpty(), "nothing ran, so there is no summary")

				By("checking nothing ran: no report, no work directory")
				Expect(report).NotTo(BeAnExistingFile())
				Expect(workDir).NotTo(BeAnExistingFile())
			},
			Entry("an unknown flag",
				[]string{"--bogus", "--recipients", "10", "--sender", "builtin:ledger"},
				"unknown flag: --bogus", entryTimeout),
			Entry("--kill bogus",
				[]string{"--recipients", "10", "--kill", "bogus", "--sender", "builtin:ledger"},
				`--kill "bogus": want at=P%`, entryTimeout),
			Entry("--kill at=150%",
				[]string{"--recipients", "10", "--kill", "at=150%", "--sender", "builtin:ledger"},
				`--kill "at=150%": "150%" is not a percentage between 0% and 100%`, entryTimeout),
			Entry("--kill every=0",
				[]string{"--recipients", "10", "--kill", "every=0", "--sender", "builtin:ledger"},
				`--kill "every=0": "0" is not a positive whole number`, entryTimeout),
			Entry("--signal HUP",
				[]string{"--recipients", "10", "--signal", "HUP", "--sender", "builtin:ledger"},
				`--signal "HUP": want KILL, TERM or STOP`, entryTimeout),
			Entry("--fault nonsense",
				[]string{"--recipients", "10", "--fault", "nonsense", "--sender", "builtin:ledger"},
				`--fault "nonsense"`, entryTimeout),
			Entry("--fault tempfail=2",
				[]string{"--recipients", "10", "--fault", "tempfail=2", "--sender", "builtin:ledger"},
				`--fault "tempfail=2": want a probability between 0 and 1`, entryTimeout),
			Entry("--expect sometimes",
				[]string{"--recipients", "10", "--expect", "sometimes", "--sender", "builtin:ledger"},
				`--expect: unknown level "sometimes"`, entryTimeout),
			Entry("--list with a bad line",
				[]string{"--list", "{dir}/bad.txt", "--sender", "builtin:ledger"},
				`{dir}/bad.txt:4: "not an address"`, entryTimeout),
			Entry("--list of a missing file",
				[]string{"--list", "{dir}/missing.txt", "--sender", "builtin:ledger"},
				"--list: open {dir}/missing.txt: no such file or directory", entryTimeout),
			Entry("no sender",
				[]string{"--recipients", "10"},
				"no sender: give a command after --", entryTimeout),
			Entry("both --sender and a command",
				[]string{"--recipients", "10", "--sender", "builtin:ledger", "--", "./my-sender"},
				"give either --sender builtin:NAME or a command after --, not both", entryTimeout),
			Entry("--recipients 0",
				[]string{"--recipients", "0", "--sender", "builtin:ledger"},
				"no recipients: give --recipients N (N > 0)", entryTimeout),
			Entry("--sender builtin:nope",
				[]string{"--recipients", "10", "--sender", "builtin:nope"},
				`unknown built-in sender "nope"`, entryTimeout),
			Entry("--retries -1",
				[]string{"--recipients", "10", "--retries", "-1", "--sender", "builtin:ledger"},
				"--retries -1: want 0 or more", entryTimeout),
			Entry("--target bogus",
				[]string{"--recipients", "10", "--target", "bogus", "--sender", "builtin:ledger"},
				`--target "bogus": want all | one | sending | instance=K`, entryTimeout),
			Entry("--target instance=3 of 2 instances",
				[]string{"--recipients", "10", "--instances", "2", "--target", "instance=3", "--sender", "builtin:ledger"},
				"--target instance=3: the run has instances 1 to 2", entryTimeout),
			Entry("--containment bogus",
				[]string{"--recipients", "10", "--containment", "bogus", "--sender", "builtin:ledger"},
				`--containment "bogus": want cgroup-v2, cgroup-v1 or subreaper`, entryTimeout),
		)
	})

	Describe("onecopy repro", func() {
		It("reproduces the 4-copies bug and exits 0", func(ctx SpecContext) {
			session := onecopy(ctx, "repro")
			Expect(session).To(gexec.Exit(0))
			out := string(session.Out.Contents())
			Expect(out).To(ContainSubstring("500 addresses got 4 copies"))
			Expect(out).To(ContainSubstring("499 got none"))
			Expect(out).To(ContainSubstring("1 bounced"))
		}, NodeTimeout(60*time.Second))

		It("writes a JSON report with the field names of docs/report.md", func(ctx SpecContext) {
			path := filepath.Join(GinkgoT().TempDir(), "report.json")
			By("running onecopy repro --report FILE")
			Expect(onecopy(ctx, "repro", "--report", path)).To(gexec.Exit(0))

			By("reading the report as plain JSON")
			b, err := os.ReadFile(path)
			Expect(err).NotTo(HaveOccurred())
			var rep map[string]any
			Expect(json.Unmarshal(b, &rep)).To(Succeed())

			By("checking every field name of the contract is there")
			for _, key := range []string{"verdict", "expect", "pass", "seed", "holds", "recipients",
				"delivered", "missing", "duplicated", "unexpected", "bounced", "copies", "in_doubt",
				"histogram", "kills", "restarts", "attempts", "faults", "duration_seconds", "reason", "worst"} {
				Expect(rep).To(HaveKey(key))
			}

			By("checking the values of the repro run")
			Expect(rep).To(HaveKeyWithValue("verdict", "fail"))
			Expect(rep).To(HaveKeyWithValue("expect", "exactly-once"))
			Expect(rep).To(HaveKeyWithValue("pass", false))
			Expect(rep).To(HaveKeyWithValue("seed", BeNumerically("==", 1)))
			Expect(rep).To(HaveKeyWithValue("holds", BeEmpty())) // [], not null
			Expect(rep["holds"]).NotTo(BeNil())
			for key, want := range map[string]int{"recipients": 1000, "delivered": 500, "missing": 499,
				"duplicated": 500, "unexpected": 0, "bounced": 1, "copies": 2000, "in_doubt": 0,
				"kills": 0, "restarts": 3, "attempts": 4} {
				Expect(rep).To(HaveKeyWithValue(key, BeNumerically("==", want)), key)
			}
			Expect(rep["histogram"]).To(Equal(map[string]any{"0": 499.0, "4": 500.0}))
			Expect(rep["faults"]).To(Equal(map[string]any{"reject": 4.0}))
			Expect(rep).To(HaveKeyWithValue("duration_seconds", BeNumerically(">", 0)))
			Expect(rep).To(HaveKeyWithValue("reason", Not(BeEmpty())))

			By("checking the worst addresses")
			worst, ok := rep["worst"].([]any)
			Expect(ok).To(BeTrue(), "worst is a list")
			Expect(worst).NotTo(BeEmpty())
			for _, w := range worst {
				Expect(w).To(HaveLen(5), "address, copies, message_ids, unexplained and copies_detail")
				Expect(w).To(HaveKeyWithValue("unexplained", BeNumerically("==", 3)))
				Expect(w).To(HaveKeyWithValue("copies_detail", HaveLen(4)))
				Expect(w).To(HaveKeyWithValue("address", HaveSuffix("@onecopy.test")))
				Expect(w).To(HaveKeyWithValue("copies", BeNumerically("==", 4)))
				Expect(w).To(HaveKeyWithValue("message_ids", BeNumerically("==", 4)))
			}
		}, NodeTimeout(60*time.Second))
	})

	Describe("seeds", func() {

		// killPoints runs the ledger under random=3 with seed and returns
		// the kill points its history records, in order.
		killPoints := func(ctx SpecContext, seed string) []int {
			GinkgoHelper()
			workDir := GinkgoT().TempDir()
			session := onecopy(ctx, "run", "--recipients", "400", "--kill", "random=3", "--seed", seed,
				"--expect", "effectively-once", "--work-dir", workDir, "--quiet", "--sender", "builtin:ledger")
			Expect(session).To(gexec.Exit(0))
			Expect(string(session.Out.Contents())).To(ContainSubstring("seed " + seed))
			var points []int
			for _, ev := range readHistory(filepath.Join(workDir, "history.jsonl")) {
				if ev.Kind != history.KindSignal {
					continue
				}
				Expect(ev.Point).NotTo(BeNil(), "a kill that names no point: %+v", ev.Signal)
				points = append(points, ev.Point.Due)
			}
			Expect(points).To(HaveLen(3))
			return points
		}

		It("gives the same kill points for the same seed, and others for another", func(ctx SpecContext) {
			By("running --kill random=3 --seed 42 twice")
			first := killPoints(ctx, "42")
			Expect(killPoints(ctx, "42")).To(Equal(first))

			By("running it with --seed 43")
			Expect(killPoints(ctx, "43")).NotTo(Equal(first))
		}, NodeTimeout(60*time.Second))
	})
})
