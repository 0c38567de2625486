// Prometheus metrics of runs and soaks, on a registry the caller owns. They
// encode correctness, not just traffic: a duplicate that no in-doubt event
// explains and a recipient still missing at the end of a campaign are
// counters an alert can page on (docs/prometheus/alerts.yml).
//
// No label names an address, a message or a campaign: the distribution of
// copies per recipient is a histogram, and the current campaign is a set of
// gauges.

package harness

import (
	"strconv"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/history"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

// Metrics are the collectors of runs and soaks, built once by NewMetrics and
// shared by every run that gets them in Config.Metrics. Runs that share one
// Metrics must run one after another: the campaign gauges describe one
// campaign at a time.
type Metrics struct {
	smtp *fakesmtp.Metrics

	campaigns    *prometheus.CounterVec
	copies       prometheus.Counter
	duplicates   *prometheus.CounterVec
	inDoubt      *prometheus.CounterVec
	missing      prometheus.Counter
	unexpected   prometheus.Counter
	kills        *prometheus.CounterVec
	pauses       prometheus.Counter
	restarts     *prometheus.CounterVec
	faults       *prometheus.CounterVec
	attempts     *prometheus.HistogramVec
	perRecipient prometheus.Histogram
	running      prometheus.Gauge
	expected     prometheus.Gauge
	delivered    prometheus.Gauge
}

// NewMetrics registers the run metrics on reg, together with the fake SMTP
// server's (fakesmtp.NewMetrics: transactions by result, protocol errors by
// kind, ...), which every run's server then shares.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	smtp, err := fakesmtp.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	m := &Metrics{
		smtp: smtp,
		campaigns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_campaigns_total",
			Help: "Campaigns judged, by verdict (the strongest delivery level that held: exactly-once, effectively-once, at-least-once, at-most-once or fail) and pass (\"true\" when the campaign reached the level it was expected to). Interrupted campaigns are not judged.",
		}, []string{"verdict", "pass"}),
		copies: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "onecopy_copies_total",
			Help: "Copies delivered: one per recipient of every message the fake SMTP server accepted (250 after DATA), counted as it happens.",
		}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_duplicate_copies_total",
			Help: "Copies beyond the first that a recipient of the list received, counted when its campaign ends. in_doubt=\"true\": explained by an earlier in-doubt transaction to that recipient with the same Message-ID (one copy per transaction: its client could not know it was delivered); no SMTP sender can rule those out. in_doubt=\"false\": a repeat no in-doubt transaction explains (a new Message-ID, or an address that was not in flight) - a bug in the sender.",
		}, []string{"in_doubt"}),
		inDoubt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_in_doubt_events_total",
			Help: "In-doubt transactions: a transaction in flight (from its MAIL to the next MAIL or QUIT) when its session ended, so neither side can know whether its client learnt the outcome; by cause: kill (a scheduled SIGKILL), term (the sender ended after SIGTERM), escalated (SIGTERM, then SIGKILL after the grace), fault (a fault cut the session), client (the client went away on its own), server (an outage or timeout closed it).",
		}, []string{"cause"}),
		missing: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "onecopy_missing_recipients_total",
			Help: "Recipients of the list (bounced ones aside) that had no copy when their campaign ended, summed over campaigns.",
		}),
		unexpected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "onecopy_unexpected_recipients_total",
			Help: "Addresses not on the list that had received copies when their campaign ended, summed over campaigns.",
		}),
		kills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_kills_total",
			Help: "Scheduled kills of the sender, by the signal sent (SIGKILL, or SIGTERM, which is followed by a SIGKILL not counted again if the sender outlives its grace).",
		}, []string{"signal"}),
		pauses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "onecopy_pauses_total",
			Help: "Scheduled pauses of the sender: SIGSTOP, then SIGCONT after the pause.",
		}),
		restarts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_restarts_total",
			Help: "Restarts of the sender by the harness playing the job runner, by cause (signalled: after a scheduled kill; failed: after an attempt exited non-zero on its own).",
		}, []string{"cause"}),
		faults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_faults_total",
			Help: "Faults injected into the sender's SMTP traffic, outages included, by kind.",
		}, []string{"kind"}),
		attempts: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "onecopy_sender_attempt_duration_seconds",
			Help:    "How long each start of the sender ran, by outcome (completed: exit 0; failed: any other exit; signalled: ended after a scheduled kill or SIGTERM).",
			Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
		}, []string{"outcome"}),
		perRecipient: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "onecopy_copies_per_recipient",
			Help:    "Recipients of the list by the number of copies they had when their campaign ended: le=\"0\" is missing, le=\"1\" minus le=\"0\" is exactly one copy, anything above is duplicated (+Inf holds 4 or more).",
			Buckets: []float64{0, 1, 2, 3},
		}),
		running: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "onecopy_campaign_running",
			Help: "1 while a campaign runs, 0 between campaigns.",
		}),
		expected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "onecopy_campaign_expected_recipients",
			Help: "Distinct recipients the current (or last) campaign must deliver to: the list, less case variants, repeats and bounced addresses.",
		}),
		delivered: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "onecopy_campaign_delivered_recipients",
			Help: "Distinct recipients of the current (or last) campaign that have at least one copy so far.",
		}),
	}
	for _, c := range []prometheus.Collector{m.campaigns, m.copies, m.duplicates, m.inDoubt, m.missing, m.unexpected,
		m.kills, m.pauses, m.restarts, m.faults, m.attempts, m.perRecipient, m.running, m.expected, m.delivered} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	// Series that alerts and graphs compare against exist from the start at
	// 0, so the first increment is an increase (Prometheus cannot see the
	// step of a series that appears at 1).
	for _, v := range []string{"true", "false"} {
		m.duplicates.WithLabelValues(v)
	}
	for _, c := range []history.Cause{history.CauseKill, history.CauseTerm, history.CauseEscalate, history.CauseFault, history.CauseClient, history.CauseServer} {
		m.inDoubt.WithLabelValues(string(c))
	}
	for _, l := range verdict.Levels() {
		m.campaigns.WithLabelValues(string(l), "true")
		m.campaigns.WithLabelValues(string(l), "false")
	}
	m.campaigns.WithLabelValues(string(verdict.Fail), "false")
	return m, nil
}

// campaign starts the metrics of one run over expected recipients. A nil
// Metrics gives a nil *campaignMetrics, whose methods do nothing.
func (m *Metrics) campaign(expected int) *campaignMetrics {
	if m == nil {
		return nil
	}
	m.running.Set(1)
	m.expected.Set(float64(expected))
	m.delivered.Set(0)
	return &campaignMetrics{m: m}
}

// campaignMetrics follows one run. Duplicates are counted when the run is
// judged, from the verdict's accounting: whether a repeat is explained
// depends on in-doubt transactions that are known only when their
// sessions end, and the rule lives in one place.
type campaignMetrics struct {
	m *Metrics

	mu       sync.Mutex
	coverage int
}

// delivered accounts for one counted message of n copies, and how much of
// the list now has a copy (coverage).
func (c *campaignMetrics) delivered(n, coverage int) {
	if c == nil {
		return
	}
	c.m.copies.Add(float64(n))
	c.mu.Lock()
	defer c.mu.Unlock()
	if coverage > c.coverage {
		c.coverage = coverage
		c.m.delivered.Set(float64(coverage))
	}
}

// doubt records an in-doubt transaction.
func (c *campaignMetrics) doubt(cause history.Cause) {
	if c == nil {
		return
	}
	c.m.inDoubt.WithLabelValues(string(cause)).Inc()
}

// signal records a scheduled kill or pause.
func (c *campaignMetrics) signal(sig Signal) {
	if c == nil {
		return
	}
	if sig == SigStop {
		c.m.pauses.Inc()
		return
	}
	c.m.kills.WithLabelValues("SIG" + string(sig)).Inc()
}

// restart records a restart of the sender; signalled says it followed a
// scheduled kill rather than a failure.
func (c *campaignMetrics) restart(signalled bool) {
	if c == nil {
		return
	}
	cause := "failed"
	if signalled {
		cause = "signalled"
	}
	c.m.restarts.WithLabelValues(cause).Inc()
}

// fault records an injected fault.
func (c *campaignMetrics) fault(kind string) {
	if c == nil || kind == "" {
		return
	}
	c.m.faults.WithLabelValues(kind).Inc()
}

// attempt records how long one start of the sender ran and how it ended.
func (c *campaignMetrics) attempt(exit exitStatus, signalled bool) {
	if c == nil {
		return
	}
	outcome := "failed"
	switch {
	case signalled:
		outcome = "signalled"
	case exit.Code == 0 && exit.Err == "":
		outcome = "completed"
	}
	c.m.attempts.WithLabelValues(outcome).Observe(exit.Duration.Seconds())
}

// judge records the verdict of the campaign and what it left missing,
// unexpected and duplicated. An interrupted campaign is not judged: its
// unexplained repeats and its missing recipients say nothing about the
// sender.
func (c *campaignMetrics) judge(rep *report.Report, acc *verdict.Accounting) {
	if c == nil || rep == nil {
		return
	}
	if rep.Outcome == report.OutcomeInterrupted {
		return
	}
	c.m.duplicates.WithLabelValues("true").Add(float64(acc.Explained))
	c.m.duplicates.WithLabelValues("false").Add(float64(acc.Unexplained))
	c.m.campaigns.WithLabelValues(string(rep.Verdict), strconv.FormatBool(rep.Pass)).Inc()
	c.m.missing.Add(float64(rep.Missing))
	c.m.unexpected.Add(float64(rep.Unexpected))
	for k, n := range rep.Histogram {
		copies, err := strconv.Atoi(k)
		if err != nil {
			continue
		}
		for range n {
			c.m.perRecipient.Observe(float64(copies))
		}
	}
}

// end marks the campaign over, judged or not.
func (c *campaignMetrics) end() {
	if c == nil {
		return
	}
	c.m.running.Set(0)
}
