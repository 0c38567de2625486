// Specs for `onecopy soak` as users run it: exit codes, the table, the
// report directory, /metrics, Ctrl-C.

package scenarios_test

import (
	"io"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gbytes"
	"github.com/onsi/gomega/gexec"
)

// soak starts `onecopy soak` with args.
func soak(args ...string) *gexec.Session {
	GinkgoHelper()
	s, err := gexec.Start(exec.Command(onecopyBin, append([]string{"soak"}, args...)...), GinkgoWriter, GinkgoWriter)
	Expect(err).NotTo(HaveOccurred())
	DeferCleanup(func() { s.Kill().Wait(5 * time.Second) })
	return s
}

var metricsURL = regexp.MustCompile(`metrics on (http://127\.0\.0\.1:\d+/metrics)`)

// metricsAddr waits for the soak to say where it serves /metrics.
func metricsAddr(s *gexec.Session) string {
	GinkgoHelper()
	Eventually(s.Err).WithTimeout(10 * time.Second).Should(gbytes.Say(`metrics on http://`))
	m := metricsURL.FindStringSubmatch(string(s.Err.Contents()))
	Expect(m).NotTo(BeNil())
	return m[1]
}

var _ = Describe("onecopy soak", func() {
	It("exits 0 for the ledger sender, with a table, a report per campaign and /metrics", func() {
		dir := GinkgoT().TempDir()
		s := soak("--duration", "2s", "--sender", "builtin:ledger", "--chaos", "kill,cut-after-dot", "--scale", "0.25",
			"--seed", "9", "--metrics-addr", "127.0.0.1:0", "--report-dir", dir)
		url := metricsAddr(s)
		var body []byte
		Eventually(func(g Gomega) {
			resp, err := http.Get(url)
			g.Expect(err).NotTo(HaveOccurred())
			defer resp.Body.Close()
			body, err = io.ReadAll(resp.Body)
			g.Expect(err).NotTo(HaveOccurred())
			g.Expect(string(body)).To(MatchRegexp(`(?m)^onecopy_copies_total [1-9]`))
		}).WithTimeout(10 * time.Second).Should(Succeed())
		Expect(string(body)).To(ContainSubstring(`onecopy_smtp_transactions_total{result="accepted"}`))

		Eventually(s).WithTimeout(time.Minute).Should(gexec.Exit(0))
		out := string(s.Out.Contents())
		Expect(out).To(MatchRegexp(`CAMPAIGN\s+SCENARIO\s+VERDICT\s+EXPECTED\s+PASS\s+SEED`))
		m := regexp.MustCompile(`(\d+) of (\d+) campaigns reached their level`).FindStringSubmatch(out)
		Expect(m).NotTo(BeNil())
		Expect(m[1]).To(Equal(m[2]))
		reports, err := filepath.Glob(filepath.Join(dir, "*-seed*.json"))
		Expect(err).NotTo(HaveOccurred())
		Expect(strconv.Itoa(len(reports))).To(Equal(m[2]))
		Expect(out).To(MatchRegexp(`campaign 1 (random-kills|crash-and-retry|send-then-record|killed-during-data|graceful-shutdown|short-grace|cut-after-dot) \(seed \d+\)`), "one line per campaign when stdout is not a terminal")
	})

	It("exits 1 for the naive sender, with the failing campaigns' summaries and replay lines", func() {
		s := soak("--duration", "1s", "--sender", "builtin:naive", "--chaos", "crash-and-retry", "--seed", "4")
		Eventually(s).WithTimeout(time.Minute).Should(gexec.Exit(1))
		Expect(s.Out).To(gbytes.Say(`1\s+crash-and-retry\s+at-least-once\s+effectively-once\s+FAIL`))
		Expect(s.Out).To(gbytes.Say(`0 of \d+ campaigns reached their level`))
		Expect(s.Out).To(gbytes.Say(`replay: onecopy gate --only crash-and-retry --seed \d+ --sender builtin:naive`))
	})

	It("stops on Ctrl-C with the table so far and exit 130", func() {
		s := soak("--duration", "1h", "--sender", "builtin:ledger", "--chaos", "slow-ack", "--seed", "2")
		Eventually(s.Out).WithTimeout(30 * time.Second).Should(gbytes.Say(`campaign 1 slow-ack`))
		s.Interrupt()
		Eventually(s).WithTimeout(20 * time.Second).Should(gexec.Exit(130))
		Expect(s.Out).To(gbytes.Say(`CAMPAIGN`))
		Expect(s.Out).To(gbytes.Say(`interrupted`))
	})

	DescribeTable("answers exit 2 for bad usage",
		func(want string, args ...string) {
			s := soak(args...)
			Eventually(s).WithTimeout(10 * time.Second).Should(gexec.Exit(2))
			Expect(s.Err).To(gbytes.Say(want))
		},
		Entry("no duration", "--duration", "--sender", "builtin:ledger"),
		Entry("no sender", "no sender", "--duration", "1s"),
		Entry("bad chaos", `"nope"`, "--duration", "1s", "--chaos", "nope", "--sender", "builtin:ledger"),
	)

	It("answers exit 3 when the metrics address cannot be bound", func() {
		s := soak("--duration", "1s", "--sender", "builtin:ledger", "--metrics-addr", "256.0.0.1:1")
		Eventually(s).WithTimeout(10 * time.Second).Should(gexec.Exit(3))
		Expect(s.Err).To(gbytes.Say("--metrics-addr"))
	})
})
