// Specs for the CLI as a newcomer meets it: run outcomes that say what
// happened (a timeout never passes, a sender that never connected is not a
// sender that lost mail, Ctrl-C claims no verdict), help that teaches, and
// the config file.

package harness_test

import (
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
)

var _ = Describe("The CLI says what happened", func() {
	It("never passes a run that hit --timeout with the sender still running", func(ctx SpecContext) {
		// Every copy delivered, then the sender hangs: a pass before.
		session := onecopy(ctx, "run", "--recipients", "5", "--timeout", "2s", "--", "/bin/sh", "-c",
			`"$0" sender ledger && exec sleep 300`, onecopyBin)
		Expect(session).To(gexec.Exit(1))
		out := string(session.Out.Contents())
		Expect(out).To(HavePrefix("FAIL: exactly-once"))
		Expect(out).To(ContainSubstring("timeout after 2s with the sender still running"))
	}, NodeTimeout(60*time.Second))

	It("calls a sender that never connected a harness or input error, with its last output, exit 3", func(ctx SpecContext) {
		session := onecopy(ctx, "run", "--recipients", "5", "--retries", "1", "--", "python3", filepath.Join(GinkgoT().TempDir(), "sender.py"))
		Expect(session).To(gexec.Exit(3))
		out := string(session.Out.Contents())
		Expect(out).To(HavePrefix("ERROR: "))
		Expect(out).To(ContainSubstring("the sender never connected"))
		Expect(out).To(ContainSubstring("No such file or directory"), "its last output says why")
		Expect(out).NotTo(HavePrefix("FAIL"), "not a sender that lost mail")
	}, NodeTimeout(60*time.Second))

	It("claims no verdict for a run stopped by Ctrl-C, exit 130", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		junit := filepath.Join(dir, "run.xml")
		cmd := exec.Command(onecopyBin, "run", "--recipients", "5", "--junit", junit, "--", "sleep", "300")
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		session, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		DeferCleanup(func() { session.Kill() })
		Eventually(func() bool { return attemptRunning("sleep 300") }).WithContext(ctx).WithTimeout(10 * time.Second).Should(BeTrue())
		session.Interrupt()
		Eventually(session).WithContext(ctx).WithTimeout(10 * time.Second).Should(gexec.Exit(130))
		Expect(string(session.Out.Contents())).To(HavePrefix("INTERRUPTED: "))
		b, err := os.ReadFile(junit)
		Expect(err).NotTo(HaveOccurred())
		Expect(string(b)).To(ContainSubstring("<skipped"), "JUnit: skipped, not failed")
		Expect(string(b)).NotTo(ContainSubstring("<failure"))
	}, NodeTimeout(60*time.Second))

	It("writes JUnit with errored cases when the gate's sender cannot start", func(ctx SpecContext) {
		junit := filepath.Join(GinkgoT().TempDir(), "gate.xml")
		session := onecopy(ctx, "gate", "--only", "crash-and-retry", "--only", "greylisted", "--junit", junit, "--", "/nonexistent/sender")
		Expect(session).To(gexec.Exit(3))
		b, err := os.ReadFile(junit)
		Expect(err).NotTo(HaveOccurred())
		var suites struct {
			Errors int `xml:"errors,attr"`
			Suite  []struct {
				Cases []struct {
					Name      string    `xml:"name,attr"`
					Classname string    `xml:"classname,attr"`
					Error     *struct{} `xml:"error"`
				} `xml:"testcase"`
			} `xml:"testsuite"`
		}
		Expect(xml.Unmarshal(b, &suites)).To(Succeed())
		Expect(suites.Errors).To(Equal(2))
		for _, c := range suites.Suite[0].Cases {
			Expect(c.Error).NotTo(BeNil(), c.Name)
			Expect(c.Classname).To(Equal("onecopy gate"), "classname is the suite, as Ginkgo writes it")
		}
	}, NodeTimeout(60*time.Second))

	It("refuses an unwritable --report before anything runs", func(ctx SpecContext) {
		session := onecopy(ctx, "run", "--recipients", "5", "--report", "/nonexistent/dir/r.json", "--sender", "builtin:ledger")
		Expect(session).To(gexec.Exit(2))
		Expect(string(session.Err.Contents())).To(ContainSubstring("--report /nonexistent/dir/r.json: cannot write there"))
		Expect(session.Out.Contents()).To(BeEmpty(), "nothing ran")
	}, NodeTimeout(30*time.Second))
})

var _ = Describe("The CLI teaches", func() {
	It("prints help on stdout, with examples and exit codes, for help CMD and CMD --help", func(ctx SpecContext) {
		for _, args := range [][]string{{"help", "run"}, {"run", "--help"}} {
			session := onecopy(ctx, args...)
			Expect(session).To(gexec.Exit(0))
			out := string(session.Out.Contents())
			Expect(out).To(ContainSubstring("Examples:"))
			Expect(out).To(ContainSubstring("Exit codes:"))
			Expect(out).To(ContainSubstring("--kill stringArray"))
			Expect(out).To(ContainSubstring("builtin:NAME (naive"), "the built-in senders are named")
			Expect(session.Err.Contents()).To(BeEmpty())
		}
	}, NodeTimeout(30*time.Second))

	It("has --version, completion scripts, and suggestions for a mistyped command or flag", func(ctx SpecContext) {
		Expect(onecopy(ctx, "--version")).To(gexec.Exit(0))
		for _, shell := range []string{"bash", "zsh", "fish"} {
			s := onecopy(ctx, "completion", shell)
			Expect(s).To(gexec.Exit(0))
			Expect(string(s.Out.Contents())).To(ContainSubstring("onecopy"))
		}
		s := onecopy(ctx, "rnu")
		Expect(s).To(gexec.Exit(2))
		Expect(string(s.Err.Contents())).To(ContainSubstring("Did you mean this?\n\trun"))
		s = onecopy(ctx, "run", "--recipient", "5", "--sender", "builtin:ledger")
		Expect(s).To(gexec.Exit(2))
		Expect(string(s.Err.Contents())).To(ContainSubstring("did you mean --recipients?"))
	}, NodeTimeout(30*time.Second))

	It("lists only the scenarios --only and --skip select", func(ctx SpecContext) {
		s := onecopy(ctx, "gate", "--list", "--only", "kill", "--skip", "short-grace")
		Expect(s).To(gexec.Exit(0))
		out := string(s.Out.Contents())
		Expect(out).To(ContainSubstring("crash-and-retry"))
		Expect(out).NotTo(ContainSubstring("short-grace"))
		Expect(out).NotTo(ContainSubstring("greylisted"))
	}, NodeTimeout(30*time.Second))

	It("reads gate settings from onecopy.yaml, flags winning, and names file:line when it is wrong", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		cfg := filepath.Join(dir, "onecopy.yaml")
		Expect(os.WriteFile(cfg, []byte("version: 1\nsender: [\"builtin:naive\"]\nseed: 3\nscale: 0.2\nonly: [crash-and-retry]\nscenarios:\n  crash-and-retry:\n    expect: at-least-once\n"), 0o644)).To(Succeed())
		s := onecopy(ctx, "gate", "--config", cfg)
		Expect(s).To(gexec.Exit(0), "the naive sender reaches the at-least-once the file asks for")
		Expect(string(s.Out.Contents())).To(ContainSubstring("seed 3"))
		s = onecopy(ctx, "gate", "--config", cfg, "--sender", "builtin:ledger", "--seed", "4")
		Expect(s).To(gexec.Exit(0))
		Expect(string(s.Out.Contents())).To(ContainSubstring("seed 4"))
		Expect(string(s.Out.Contents())).To(ContainSubstring("builtin:ledger"))

		Expect(os.WriteFile(cfg, []byte("version: 1\nsender: [x]\nscenarios:\n  crash-and-retry:\n    expect: sometimes\n"), 0o644)).To(Succeed())
		s = onecopy(ctx, "gate", "--config", cfg)
		Expect(s).To(gexec.Exit(2))
		Expect(string(s.Err.Contents())).To(ContainSubstring("scenarios.crash-and-retry.expect"))
		Expect(os.WriteFile(cfg, []byte("version: 1\n\nbogus: 1\n"), 0o644)).To(Succeed())
		s = onecopy(ctx, "gate", "--config", cfg)
		Expect(s).To(gexec.Exit(2))
		Expect(string(s.Err.Contents())).To(ContainSubstring(cfg + ":3: field bogus not found"))
	}, NodeTimeout(60*time.Second))
})

// attemptRunning reports whether a process with cmdline running runs.
func attemptRunning(cmdline string) bool {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ") == cmdline {
			return true
		}
	}
	return false
}
