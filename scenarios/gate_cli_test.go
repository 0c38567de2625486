package scenarios_test

import (
	"encoding/json"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	"github.com/onsi/ginkgo/v2/reporters"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
)

var _ = Describe("onecopy gate", func() {
	gate := func(sender string, dir string) *gexec.Session {
		cmd := exec.Command(onecopyBin, "gate", "--seed", "3", "--only", "crash-and-retry", "--only", "one-bad-address",
			"--junit", filepath.Join(dir, "junit.xml"), "--report-dir", filepath.Join(dir, "reports"), "--sender", "builtin:"+sender)
		s, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		return s
	}
	readJUnit := func(dir string) reporters.JUnitTestSuites {
		b, err := os.ReadFile(filepath.Join(dir, "junit.xml"))
		Expect(err).NotTo(HaveOccurred())
		var s reporters.JUnitTestSuites
		Expect(xml.Unmarshal(b, &s)).To(Succeed())
		return s
	}

	It("passes the ledger sender, with a JUnit case and a JSON report per scenario", func() {
		dir := GinkgoT().TempDir()
		s := gate("ledger", dir)
		Eventually(s).WithTimeout(time.Minute).Should(gexec.Exit(0))
		Expect(s.Out).To(gbytes.Say("2 of 2 scenarios reached their level"))
		j := readJUnit(dir)
		Expect(j.Tests).To(Equal(2))
		Expect(j.Failures).To(Equal(0))
		for _, name := range []string{"crash-and-retry", "one-bad-address"} {
			b, err := os.ReadFile(filepath.Join(dir, "reports", name+".json"))
			Expect(err).NotTo(HaveOccurred())
			var rep map[string]any
			Expect(json.Unmarshal(b, &rep)).To(Succeed())
			Expect(rep).To(HaveKeyWithValue("pass", true))
		}
	})

	It("fails the naive sender with exit 1 and failure text that replays the scenario", func() {
		dir := GinkgoT().TempDir()
		s := gate("naive", dir)
		Eventually(s).WithTimeout(time.Minute).Should(gexec.Exit(1))
		j := readJUnit(dir)
		Expect(j.Failures).To(Equal(2))
		Expect(j.TestSuites[0].TestCases[0].Failure.Description).To(ContainSubstring("onecopy gate --only crash-and-retry --seed 3 --sender builtin:naive"))
	})

	It("answers exit 2 for an unknown scenario", func() {
		s, err := gexec.Start(exec.Command(onecopyBin, "gate", "--only", "nope", "--sender", "builtin:ledger"), GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(s).WithTimeout(10 * time.Second).Should(gexec.Exit(2))
		Expect(s.Err).To(gbytes.Say(`no scenario or label "nope"`))
	})
})

var _ = Describe("onecopy gate --self-test", func() {
	It("proves the catalog: every correct shape passes every scenario, every scenario catches its mutants", func(ctx SpecContext) {
		cmd := exec.Command(onecopyBin, "gate", "--self-test", "--seed", "1", "--scale", "0.5", "--parallel", "2")
		s, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(s).WithContext(ctx).WithTimeout(4 * time.Minute).Should(gexec.Exit(0))
		out := string(s.Out.Contents())
		Expect(out).To(ContainSubstring("self-test passed"))
		Expect(out).NotTo(ContainSubstring("MISSED"))
		Expect(out).NotTo(ContainSubstring("is named by no selected scenario"))
		for _, m := range []string{"naive", "lease", "no-lock", "fresh-id", "short-timeout", "term-exit", "high-water", "batch-resend"} {
			Expect(out).To(ContainSubstring(m+": caught"), m)
		}
	}, NodeTimeout(5*time.Minute))

	It("proves the catalog over the providers' HTTP APIs: the ledger over Resend passes, naive-http is caught", func(ctx SpecContext) {
		cmd := exec.Command(onecopyBin, "gate", "--self-test", "--transport", "http", "--seed", "1", "--scale", "0.5", "--parallel", "2")
		s, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(s).WithContext(ctx).WithTimeout(3 * time.Minute).Should(gexec.Exit(0))
		out := string(s.Out.Contents())
		Expect(out).To(ContainSubstring("self-test passed"))
		Expect(out).To(ContainSubstring("ledger-http-key"))
		Expect(out).NotTo(ContainSubstring("MISSED"))
		Expect(out).NotTo(ContainSubstring("is named by no selected scenario"))
		Expect(strings.Count(out, "naive-http: caught")).To(BeNumerically(">=", 5), out)
	}, NodeTimeout(4*time.Minute))

	It("fails when a scenario stops catching its mutant", func(ctx SpecContext) {
		// A scenario told to expect less than its mutant reaches cannot
		// catch it: the self-test must say so and fail.
		cmd := exec.Command(onecopyBin, "gate", "--self-test", "--seed", "1", "--scale", "0.5", "--only", "two-instances", "--expect", "two-instances=at-least-once")
		s, err := gexec.Start(cmd, GinkgoWriter, GinkgoWriter)
		Expect(err).NotTo(HaveOccurred())
		Eventually(s).WithContext(ctx).WithTimeout(2 * time.Minute).Should(gexec.Exit(1))
		Expect(string(s.Out.Contents())).To(ContainSubstring("no-lock: MISSED (at-least-once)"))
		Expect(string(s.Out.Contents())).To(ContainSubstring("self-test FAILED"))
	}, NodeTimeout(3*time.Minute))
})
