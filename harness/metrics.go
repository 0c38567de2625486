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

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/prometheus/client_golang/prometheus"
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
			Help: "Copies beyond the first that a recipient of the list received. in_doubt=\"true\": a repeat of a Message-ID the recipient already had, explained by an in-doubt event (a sender killed with a connection open, a reply lost after the server committed); no SMTP sender can rule those out. in_doubt=\"false\": a duplicate nothing explains (a new Message-ID, or more repeats than in-doubt events) - a bug in the sender. Repeats not yet explained are settled when the campaign ends.",
		}, []string{"in_doubt"}),
		inDoubt: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_in_doubt_events_total",
			Help: "In-doubt events: moments after which neither the sender nor the server can know whether a message counts, by cause (kill: a sender killed with an SMTP connection open, one per connection; fault: a connection cut after the server accepted a message, or a 250 held back past the client's patience).",
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
	for _, c := range []string{"kill", "fault"} {
		m.inDoubt.WithLabelValues(c)
	}
	for _, l := range Levels() {
		m.campaigns.WithLabelValues(string(l), "true")
		m.campaigns.WithLabelValues(string(l), "false")
	}
	m.campaigns.WithLabelValues(string(Fail), "false")
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
	return &campaignMetrics{m: m, seen: map[string]seen{}}
}

// campaignMetrics follows one run: it turns deliveries into duplicates,
// explained or not, as they happen.
//
// Why the oracle: the run needs, per recipient, how many copies and how
// many distinct Message-IDs it has; the oracle already keeps exactly that,
// so only recipients seen with two copies or more are remembered here.
type campaignMetrics struct {
	m *Metrics

	mu        sync.Mutex
	oracle    *fakesmtp.Oracle
	seen      map[string]seen // recipients with 2 copies or more: what was last accounted for
	coverage  int
	inDoubt   int // in-doubt events so far
	explained int // repeats counted as in doubt so far
	pending   int // repeats no in-doubt event explains yet
}

type seen struct{ copies, ids int }

// attach gives the campaign the server's oracle, once the server runs.
func (c *campaignMetrics) attach(o *fakesmtp.Oracle) {
	if c == nil {
		return
	}
	c.mu.Lock()
	c.oracle = o
	c.mu.Unlock()
}

// delivered accounts for one counted message: its copies, the extra copies
// among its recipients that are on the list (expected), and how much of the
// list now has a copy (coverage).
func (c *campaignMetrics) delivered(rcpts []string, expected func(string) bool, coverage int) {
	if c == nil {
		return
	}
	c.m.copies.Add(float64(len(rcpts)))
	c.mu.Lock()
	defer c.mu.Unlock()
	if coverage > c.coverage {
		c.coverage = coverage
		c.m.delivered.Set(float64(coverage))
	}
	if c.oracle == nil {
		return
	}
	newIDs, repeats := 0, 0
	for _, a := range rcpts {
		if !expected(a) {
			continue
		}
		// Read under c.mu, so successive reads of one address only grow;
		// a concurrent delivery to it that this read already includes
		// finds nothing left to account for.
		r := c.oracle.Get(a)
		if r.Copies < 2 {
			continue
		}
		was := c.seen[a]
		extra := r.Copies - max(was.copies, 1)
		fresh := r.MessageIDs - max(was.ids, 1) // extra copies that brought a new Message-ID
		c.seen[a] = seen{r.Copies, r.MessageIDs}
		newIDs += fresh
		repeats += extra - fresh
	}
	c.m.duplicates.WithLabelValues("false").Add(float64(newIDs))
	c.pending += repeats
	c.settle(false)
}

// settle counts pending repeats as in doubt while in-doubt events remain to
// explain them; at the end of the campaign the rest are not in doubt.
func (c *campaignMetrics) settle(final bool) {
	if n := min(c.pending, c.inDoubt-c.explained); n > 0 {
		c.explained += n
		c.pending -= n
		c.m.duplicates.WithLabelValues("true").Add(float64(n))
	}
	if final && c.pending > 0 {
		c.m.duplicates.WithLabelValues("false").Add(float64(c.pending))
		c.pending = 0
	}
}

// doubt records n in-doubt events of a cause ("kill" or "fault").
func (c *campaignMetrics) doubt(cause string, n int) {
	if c == nil || n <= 0 {
		return
	}
	c.m.inDoubt.WithLabelValues(cause).Add(float64(n))
	c.mu.Lock()
	c.inDoubt += n
	c.settle(false)
	c.mu.Unlock()
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
func (c *campaignMetrics) judge(rep *Report) {
	if c == nil || rep == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if rep.Ended == "interrupted" {
		return
	}
	c.settle(true)
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
