// Specs for the run metrics after real runs of the built-in senders: what
// the counters say must agree with the report, duplicates nothing explains
// must show for the naive sender and never for the ledger, and the /metrics
// output must pass `promtool check metrics`.

package harness_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

// metricValue sums the samples of a gathered metric whose labels include
// the given name/value pairs (a histogram gives its sample count).
func metricValue(g prometheus.Gatherer, name string, labels ...string) float64 {
	GinkgoHelper()
	mfs, err := g.Gather()
	Expect(err).NotTo(HaveOccurred())
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	metrics:
		for _, m := range mf.GetMetric() {
			have := map[string]string{}
			for _, l := range m.GetLabel() {
				have[l.GetName()] = l.GetValue()
			}
			for i := 0; i+1 < len(labels); i += 2 {
				if v, ok := have[labels[i]]; !ok || v != labels[i+1] {
					continue metrics
				}
			}
			switch {
			case m.Counter != nil:
				sum += m.GetCounter().GetValue()
			case m.Gauge != nil:
				sum += m.GetGauge().GetValue()
			case m.Histogram != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// helpText returns the HELP of a gathered metric.
func helpText(g prometheus.Gatherer, name string) string {
	GinkgoHelper()
	mfs, err := g.Gather()
	Expect(err).NotTo(HaveOccurred())
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetHelp()
		}
	}
	Fail("no metric " + name)
	return ""
}

// wantPerRecipient is the exposition of onecopy_copies_per_recipient that
// the report's histogram implies.
func wantPerRecipient(help string, hist map[string]int) string {
	var le [5]int // copies 0, 1, 2, 3, 4+
	sum, count := 0, 0
	for k, n := range hist {
		c, err := strconv.Atoi(k)
		Expect(err).NotTo(HaveOccurred())
		le[min(c, 4)] += n
		sum += c * n
		count += n
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# HELP onecopy_copies_per_recipient %s\n# TYPE onecopy_copies_per_recipient histogram\n", help)
	cum := 0
	for i := range 4 {
		cum += le[i]
		fmt.Fprintf(&b, "onecopy_copies_per_recipient_bucket{le=\"%d\"} %d\n", i, cum)
	}
	fmt.Fprintf(&b, "onecopy_copies_per_recipient_bucket{le=\"+Inf\"} %d\n", count)
	fmt.Fprintf(&b, "onecopy_copies_per_recipient_sum %d\nonecopy_copies_per_recipient_count %d\n", sum, count)
	return b.String()
}

var _ = Describe("Run metrics", func() {
	var reg *prometheus.Registry
	var metrics *harness.Metrics
	BeforeEach(func() {
		reg = prometheus.NewRegistry()
		var err error
		metrics, err = harness.NewMetrics(reg)
		Expect(err).NotTo(HaveOccurred())
	})

	run := func(ctx SpecContext, cfg harness.Config) *report.Report {
		GinkgoHelper()
		cfg.Metrics = metrics
		if cfg.Seed == 0 {
			cfg.Seed = 1
		}
		cfg.Timeout = 30 * time.Second
		rep, err := harness.Run(ctx, cfg)
		Expect(err).NotTo(HaveOccurred())
		rep.Summary(GinkgoWriter)
		return rep
	}

	// checkReport checks what every run's metrics must agree on with its
	// report.
	checkReport := func(rep *report.Report) {
		GinkgoHelper()
		Expect(metricValue(reg, "onecopy_copies_total")).To(BeNumerically("==", rep.Copies))
		Expect(metricValue(reg, "onecopy_smtp_copies_total")).To(BeNumerically("==", rep.Copies))
		Expect(metricValue(reg, "onecopy_duplicate_copies_total")).To(BeNumerically("==", rep.Extra), "in doubt or not, every extra copy")
		Expect(metricValue(reg, "onecopy_missing_recipients_total")).To(BeNumerically("==", rep.Missing))
		Expect(metricValue(reg, "onecopy_unexpected_recipients_total")).To(BeNumerically("==", rep.Unexpected))
		Expect(metricValue(reg, "onecopy_in_doubt_events_total")).To(BeNumerically("==", rep.InDoubt))
		Expect(metricValue(reg, "onecopy_campaigns_total", "verdict", string(rep.Verdict), "pass", strconv.FormatBool(rep.Pass))).To(BeNumerically("==", 1))
		Expect(metricValue(reg, "onecopy_campaigns_total")).To(BeNumerically("==", 1))
		Expect(metricValue(reg, "onecopy_sender_attempt_duration_seconds")).To(BeNumerically("==", rep.Attempts))
		Expect(metricValue(reg, "onecopy_kills_total")).To(BeNumerically("==", rep.Kills))
		Expect(metricValue(reg, "onecopy_restarts_total")).To(BeNumerically("==", rep.Restarts))
		for kind, n := range rep.Faults {
			Expect(metricValue(reg, "onecopy_faults_total", "kind", kind)).To(BeNumerically("==", n), kind)
		}
		Expect(metricValue(reg, "onecopy_campaign_running")).To(BeZero())
		Expect(metricValue(reg, "onecopy_campaign_expected_recipients")).To(BeNumerically("==", rep.Recipients-rep.Bounced))
		Expect(metricValue(reg, "onecopy_campaign_delivered_recipients")).To(BeNumerically("==", rep.Delivered))
		Expect(metricValue(reg, "onecopy_smtp_transactions_total", "result", "accepted")).To(BeNumerically(">", 0))
		Expect(testutil.GatherAndCompare(reg, strings.NewReader(wantPerRecipient(helpText(reg, "onecopy_copies_per_recipient"), rep.Histogram)),
			"onecopy_copies_per_recipient")).To(Succeed())
		problems, err := testutil.GatherAndLint(reg)
		Expect(err).NotTo(HaveOccurred())
		Expect(problems).To(BeEmpty())
	}

	It("shows the naive sender's duplicates as not in doubt, and passes promtool check metrics", func(ctx SpecContext) {
		By("killing the naive sender once half of 200 recipients have a copy")
		rep := run(ctx, harness.Config{Command: builtin("naive"), Recipients: harness.Synthetic(200), Kills: kills("at=50%")})
		Expect(rep.Pass).To(BeFalse())

		By("checking the duplicate counter rose, and in-doubt ones are no more than the kills")
		Expect(metricValue(reg, "onecopy_duplicate_copies_total", "in_doubt", "false")).To(BeNumerically(">", 0))
		Expect(metricValue(reg, "onecopy_duplicate_copies_total", "in_doubt", "true")).To(BeNumerically("<=", rep.Kills))
		Expect(metricValue(reg, "onecopy_kills_total", "signal", "SIGKILL")).To(BeNumerically("==", 1))
		Expect(metricValue(reg, "onecopy_restarts_total", "cause", "signalled")).To(BeNumerically("==", 1))
		Expect(metricValue(reg, "onecopy_sender_attempt_duration_seconds", "outcome", "signalled")).To(BeNumerically("==", 1))
		Expect(metricValue(reg, "onecopy_sender_attempt_duration_seconds", "outcome", "completed")).To(BeNumerically("==", 1))
		checkReport(rep)

		By("serving the registry as /metrics and running promtool check metrics on it")
		tool, err := exec.LookPath("promtool")
		if err != nil {
			Skip("promtool not on PATH (Debian package prometheus): skipping `promtool check metrics`")
		}
		srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
		defer srv.Close()
		resp, err := http.Get(srv.URL + "/metrics")
		Expect(err).NotTo(HaveOccurred())
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		Expect(err).NotTo(HaveOccurred())
		Expect(string(body)).To(ContainSubstring(`onecopy_duplicate_copies_total{in_doubt="false"}`))
		cmd := exec.CommandContext(ctx, tool, "check", "metrics")
		cmd.Stdin = bytes.NewReader(body)
		out, err := cmd.CombinedOutput()
		Expect(err).NotTo(HaveOccurred(), "promtool check metrics:\n%s", out)
	}, NodeTimeout(60*time.Second))

	It("never counts a ledger duplicate as not in doubt, under in-doubt kills and cuts after the dot", func(ctx SpecContext) {
		cut, err := fakesmtp.ParseFault("drop-after-data=0.05")
		Expect(err).NotTo(HaveOccurred())
		rep := run(ctx, harness.Config{Command: builtin("ledger"), Recipients: harness.Synthetic(300),
			Kills: kills("in-doubt=2"), Faults: []fakesmtp.FaultSpec{cut}, Expect: verdict.EffectivelyOnce, Seed: 3})
		Expect(rep.Pass).To(BeTrue(), rep.Reason)
		Expect(rep.InDoubt).To(BeNumerically(">", 0))
		Expect(metricValue(reg, "onecopy_duplicate_copies_total", "in_doubt", "false")).To(BeZero())
		Expect(metricValue(reg, "onecopy_duplicate_copies_total", "in_doubt", "true")).To(BeNumerically("==", rep.Extra))
		Expect(metricValue(reg, "onecopy_in_doubt_events_total", "cause", "kill")).To(BeNumerically(">", 0))
		Expect(metricValue(reg, "onecopy_faults_total", "kind", "drop-after-data")).To(BeNumerically(">", 0))
		checkReport(rep)
	}, NodeTimeout(60*time.Second))

	It("counts the recipients the naive sender leaves missing after a bounce", func(ctx SpecContext) {
		bounce, err := fakesmtp.ParseFault("reject-nth=51")
		Expect(err).NotTo(HaveOccurred())
		rep := run(ctx, harness.Config{Command: builtin("naive"), Recipients: harness.Synthetic(100),
			Faults: []fakesmtp.FaultSpec{bounce}, Retries: 1})
		Expect(rep.Missing).To(Equal(49))
		Expect(metricValue(reg, "onecopy_missing_recipients_total")).To(BeNumerically("==", 49))
		Expect(metricValue(reg, "onecopy_restarts_total", "cause", "failed")).To(BeNumerically("==", 1))
		Expect(metricValue(reg, "onecopy_campaigns_total", "verdict", "fail", "pass", "false")).To(BeNumerically("==", 1))
		checkReport(rep)
	}, NodeTimeout(60*time.Second))

	It("shares one registry between runs one after another", func(ctx SpecContext) {
		for i := range 3 {
			rep := run(ctx, harness.Config{Command: builtin("ledger"), Recipients: harness.Synthetic(20), Seed: uint64(i + 1)})
			Expect(rep.Pass).To(BeTrue(), rep.Reason)
		}
		Expect(metricValue(reg, "onecopy_campaigns_total", "verdict", "exactly-once", "pass", "true")).To(BeNumerically("==", 3))
		Expect(metricValue(reg, "onecopy_copies_total")).To(BeNumerically("==", 60))
		Expect(metricValue(reg, "onecopy_copies_per_recipient")).To(BeNumerically("==", 60))
		Expect(metricValue(reg, "onecopy_smtp_sessions_open")).To(BeZero())
	}, NodeTimeout(60*time.Second))
})
