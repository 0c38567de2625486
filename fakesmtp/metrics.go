// Prometheus metrics of the fake SMTP server, on a registry the caller owns.
// No label ever names an address or a message: the distribution of copies
// per recipient is a histogram instead.

package fakesmtp

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the server's Prometheus collectors.
type Metrics struct {
	copies         prometheus.Counter // the smtp series of copiesVec
	copiesVec      *prometheus.CounterVec
	transactions   *prometheus.CounterVec
	protocolErrors *prometheus.CounterVec
	faults         *prometheus.CounterVec
	sessions       prometheus.Gauge
	size           prometheus.Histogram
	api            apiMetrics // the provider APIs' series (api.go)

	// accepted caches the series every message updates: WithLabelValues
	// hashes the label and takes a lock on each call. Filled on first use,
	// so the series appears in /metrics only once it counts, as before.
	accepted atomic.Pointer[prometheus.Counter]
}

// NewMetrics registers the server's metrics on reg. Build them once and
// pass them as Options.Metrics to share them between servers started one
// after another (a soak starts one per campaign): registering a second set
// on one registry would fail. A server started without Options.Metrics
// builds its own on Options.Registry, together with the histogram of copies
// per recipient of its oracle, read at scrape time.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		copiesVec: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_smtp_copies_total",
			Help: "Copies accepted, by transport: one per recipient of every message answered 250 after DATA (smtp) or accepted by a provider API (http), counted before the answer is written.",
		}, []string{"transport"}),
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_smtp_transactions_total",
			Help: "Mail transactions that reached DATA or BDAT, by result: accepted (250, counted with the copies), deferred (4xx), rejected (5xx), aborted (connection lost or closed during the message).",
		}, []string{"result"}),
		protocolErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_smtp_protocol_errors_total",
			Help: "Client behaviour the connection guard refused (bare LF, smuggling, white space or control characters in commands, over-long lines, bad addresses, STARTTLS injection, failed TLS handshakes, timeouts, floods), by kind.",
		}, []string{"kind"}),
		faults: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_smtp_faults_total",
			Help: "Faults injected into SMTP sessions, by kind.",
		}, []string{"kind"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "onecopy_smtp_sessions_open",
			Help: "SMTP connections open now.",
		}),
		size: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "onecopy_smtp_message_size_bytes",
			Help:    "Size of accepted message bodies, in bytes.",
			Buckets: prometheus.ExponentialBuckets(256, 4, 8),
		}),
	}
	m.copies = m.copiesVec.WithLabelValues(TransportSMTP)
	m.api = newAPIMetrics()
	for _, c := range []prometheus.Collector{m.copiesVec, m.transactions, m.protocolErrors, m.faults, m.sessions, m.size, m.api.transactions, m.api.requests} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *Metrics) transaction(result string) {
	if result != "accepted" {
		m.transactions.WithLabelValues(result).Inc()
		return
	}
	c := m.accepted.Load()
	if c == nil {
		cc := m.transactions.WithLabelValues(result)
		c = &cc
		m.accepted.Store(c)
	}
	(*c).Inc()
}

func (m *Metrics) fault(kind string) {
	if kind != "" {
		m.faults.WithLabelValues(kind).Inc()
	}
}

// copiesHistogram exposes the oracle's distribution of copies per recipient.
type copiesHistogram struct{ o *Oracle }

var copiesDesc = prometheus.NewDesc(
	"onecopy_smtp_copies_per_recipient",
	"Recipients by the number of copies they received so far (le=1 is exactly-once; anything above is a duplicate). Recipients that received nothing are not known to the server.",
	nil, nil)

func (c copiesHistogram) Describe(ch chan<- *prometheus.Desc) { ch <- copiesDesc }

func (c copiesHistogram) Collect(ch chan<- prometheus.Metric) {
	h := c.o.Histogram()
	var count, sum uint64
	buckets := make(map[float64]uint64, 3)
	for n := 1; n <= 4; n++ {
		count += uint64(h[n])
		if n < 4 {
			buckets[float64(n)] = count
		}
	}
	sum = uint64(c.o.Copies())
	ch <- prometheus.MustNewConstHistogram(copiesDesc, count, float64(sum), buckets)
}
