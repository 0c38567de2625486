// The HTTP API and the metrics (docs/fakesmtp.md, and the Metrics part
// of docs/robustness.md): counts read over HTTP match the oracle,
// metrics lint clean, counters say what happened, no label per address.

package fakesmtp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// apiClient talks to the server's HTTP API.
type apiClient struct {
	t    *testing.T
	base string
	c    *http.Client
}

func newAPI(t *testing.T, srv *fakesmtp.Server) *apiClient {
	t.Helper()
	if srv.HTTPAddr() == "" {
		t.Fatal("server has no HTTP address")
	}
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	return &apiClient{t: t, base: "http://" + srv.HTTPAddr(), c: &http.Client{Transport: tr, Timeout: replyWait}}
}

func (a *apiClient) do(method, path string) (int, []byte) {
	a.t.Helper()
	req, err := http.NewRequest(method, a.base+path, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	resp, err := a.c.Do(req)
	if err != nil {
		a.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		a.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

func (a *apiClient) getJSON(path string, v any) {
	a.t.Helper()
	code, b := a.do("GET", path)
	if code != http.StatusOK {
		a.t.Fatalf("GET %s: %d %s", path, code, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		a.t.Fatalf("GET %s: %v in %s", path, err, b)
	}
}

// apiRecipients is the wire form of GET /api/v1/recipients.
type apiRecipients struct {
	Copies     int64          `json:"copies"`
	Recipients []apiRecipient `json:"recipients"`
}

type apiRecipient struct {
	Address    string `json:"address"`
	Copies     int    `json:"copies"`
	MessageIDs int    `json:"message_ids"`
}

// checkAPI compares the API's view with the oracle's and with want
// (address -> copies, message ids).
func (a *apiClient) check(srv *fakesmtp.Server, want map[string][2]int) {
	a.t.Helper()
	var all apiRecipients
	a.getJSON("/api/v1/recipients", &all)
	snap := srv.Snapshot()
	total := 0
	for _, w := range want {
		total += w[0]
	}
	if all.Copies != int64(total) || snap.Copies != int64(total) {
		a.t.Errorf("copies: API %d, oracle %d, want %d", all.Copies, snap.Copies, total)
	}
	if len(all.Recipients) != len(want) || len(snap.Recipients) != len(want) {
		a.t.Errorf("recipients: API %+v, oracle %+v, want %v", all.Recipients, snap.Recipients, want)
	}
	for _, r := range all.Recipients {
		if w := want[r.Address]; r.Copies != w[0] || r.MessageIDs != w[1] {
			a.t.Errorf("API %s: copies %d ids %d, want %v", r.Address, r.Copies, r.MessageIDs, w)
		}
	}
	for addr, w := range want {
		if r := snap.Lookup(addr); r.Copies != w[0] || r.MessageIDs != w[1] {
			a.t.Errorf("oracle %s: copies %d ids %d, want %v", addr, r.Copies, r.MessageIDs, w)
		}
		// One recipient, asked for in another case: the same mailbox.
		var one apiRecipient
		a.getJSON("/api/v1/recipients/"+url.PathEscape(strings.ToUpper(addr)), &one)
		if one.Address != addr || one.Copies != w[0] || one.MessageIDs != w[1] {
			a.t.Errorf("GET /api/v1/recipients/%s: %+v, want %s %v", strings.ToUpper(addr), one, addr, w)
		}
	}
}

func TestHTTPAPI(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := start(t, fakesmtp.Options{HTTPAddr: "127.0.0.1:0", Registry: reg})
	api := newAPI(t, srv)

	if code, b := api.do("GET", "/healthz"); code != http.StatusOK || strings.TrimSpace(string(b)) != "ok" {
		t.Fatalf("/healthz: %d %q", code, b)
	}
	api.check(srv, map[string][2]int{})
	// An address with no copy: 404, with a body that still says which
	// mailbox it is and that it has nothing.
	var nobody apiRecipient
	if code, b := api.do("GET", "/api/v1/recipients/Nobody@X.test"); code != http.StatusNotFound || json.Unmarshal(b, &nobody) != nil {
		t.Errorf("GET /api/v1/recipients/Nobody@X.test: %d %s, want 404 with a JSON body", code, b)
	}
	if nobody.Address != "nobody@x.test" || nobody.Copies != 0 {
		t.Errorf("unknown recipient: %+v", nobody)
	}

	sendRaw(t, srv.Addr(), "<1@x>", "Bob@Example.COM", "carol@x.test")
	sendRaw(t, srv.Addr(), "<1@x>", "bob@example.com")
	sendRaw(t, srv.Addr(), "<2@x>", "BOB@example.com")
	want := map[string][2]int{"bob@example.com": {3, 2}, "carol@x.test": {1, 1}}
	api.check(srv, want)

	var sessions []fakesmtp.SessionInfo
	api.getJSON("/api/v1/sessions", &sessions)
	c := dialRaw(t, srv.Addr())
	c.expect("220")
	if !eventually(t, replyWait, func() bool {
		api.getJSON("/api/v1/sessions", &sessions)
		return len(sessions) == 1 && sessions[0].Moment == fakesmtp.MomentGreeting
	}) {
		t.Errorf("/api/v1/sessions: %+v, want one session at the greeting", sessions)
	}
	c.conn.Close()

	_, metrics := api.do("GET", "/metrics")
	if !bytes.Contains(metrics, []byte("\nonecopy_smtp_copies_total{transport=\"smtp\"} 4\n")) {
		t.Errorf("/metrics lacks onecopy_smtp_copies_total 4:\n%s", metrics)
	}

	if code, b := api.do("POST", "/api/v1/recipients"); code != http.StatusMethodNotAllowed {
		t.Errorf("POST /api/v1/recipients: %d %s, want 405", code, b)
	}
	if code, b := api.do("DELETE", "/api/v1/recipients"); code != http.StatusNoContent {
		t.Fatalf("DELETE /api/v1/recipients: %d %s", code, b)
	}
	api.check(srv, map[string][2]int{})
	if h := testutil.ToFloat64(histogramCount{reg}); h != 0 {
		t.Errorf("copies-per-recipient histogram counts %v recipients after a reset, want 0", h)
	}
	// Counting goes on after a reset.
	sendRaw(t, srv.Addr(), "<1@x>", "bob@example.com")
	api.check(srv, map[string][2]int{"bob@example.com": {1, 1}})
}

// histogramCount exposes the sample count of the copies-per-recipient
// histogram as a gauge, for testutil.ToFloat64.
type histogramCount struct{ g prometheus.Gatherer }

var histogramCountDesc = prometheus.NewDesc("test_copies_per_recipient_count", "test", nil, nil)

func (h histogramCount) Describe(ch chan<- *prometheus.Desc) { ch <- histogramCountDesc }

func (h histogramCount) Collect(ch chan<- prometheus.Metric) {
	mfs, _ := h.g.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "onecopy_smtp_copies_per_recipient" {
			n := mf.GetMetric()[0].GetHistogram().GetSampleCount()
			ch <- prometheus.MustNewConstMetric(histogramCountDesc, prometheus.GaugeValue, float64(n))
		}
	}
}

// TestMetrics drives accepted, deferred, rejected and aborted transactions
// and a smuggling attempt, then checks the counters, lints the registry,
// and runs promtool where installed.
func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	hook := fakesmtp.HookFunc(func(_ context.Context, ev *fakesmtp.Event) fakesmtp.Action {
		if ev.Moment != fakesmtp.MomentDataEnd {
			return fakesmtp.Action{}
		}
		switch {
		case slices.Contains(ev.Recipients, "reject@x.test"):
			return fakesmtp.Action{Reply: "550 5.7.1 test rejection", Fault: "test-reject"}
		case slices.Contains(ev.Recipients, "defer@x.test"):
			return fakesmtp.Action{Reply: "451 4.3.0 test deferral", Fault: "test-defer"}
		}
		return fakesmtp.Action{}
	})
	srv := start(t, fakesmtp.Options{HTTPAddr: "127.0.0.1:0", Registry: reg, Hooks: []fakesmtp.Hook{hook}})

	c := dialRaw(t, srv.Addr())
	c.expect("220")
	c.mustSend(ehlo)
	c.expect("250")
	c.transaction("Subject: 1\r\n\r\nhi\r\n.\r\n", "v@x.test", "w@x.test")
	c.transaction("Subject: 2\r\n\r\nhi\r\n.\r\n", "v@x.test")
	for _, x := range []struct{ rcpt, code string }{{"reject@x.test", "550"}, {"defer@x.test", "451"}} {
		c.mustSend(mailA + rcpt(x.rcpt) + data)
		for _, code := range []string{"250", "250", "354"} {
			c.expect(code)
		}
		c.mustSend("Subject: x\r\n\r\nhi\r\n.\r\n")
		c.expect(x.code)
	}
	c.mustSend(mailA + "RCPT TO:<a@x.test> <b@y.test>\r\n")
	c.expect("250")
	c.expect("501")
	c.mustSend("RSET\r\n")
	c.expect("250")
	// A smuggling attempt, on the same connection: it ends the session.
	c.mustSend(mailA + rcpt("v@x.test") + data)
	for _, code := range []string{"250", "250", "354"} {
		c.expect(code)
	}
	c.mustSend(smuggle("\n.\r\n"))
	c.expect("554")
	c.expectClosed()
	sessionsGone(t, srv)

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"onecopy_smtp_copies_total", nil, 3},
		{"onecopy_smtp_transactions_total", []string{"result", "accepted"}, 2},
		{"onecopy_smtp_transactions_total", []string{"result", "rejected"}, 1},
		{"onecopy_smtp_transactions_total", []string{"result", "deferred"}, 1},
		{"onecopy_smtp_transactions_total", []string{"result", "aborted"}, 1},
		{"onecopy_smtp_protocol_errors_total", []string{"kind", "smuggling_bare_lf"}, 1},
		{"onecopy_smtp_protocol_errors_total", []string{"kind", "bad_address"}, 1},
		{"onecopy_smtp_faults_total", []string{"kind", "test-reject"}, 1},
		{"onecopy_smtp_faults_total", []string{"kind", "test-defer"}, 1},
		{"onecopy_smtp_sessions_open", nil, 0},
	} {
		if got := metricValue(t, reg, m.name, m.labels...); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	// v got 2 copies and w 1: two recipients, 3 copies, one above le=1.
	const wantHist = `
# HELP onecopy_smtp_copies_per_recipient %s
# TYPE onecopy_smtp_copies_per_recipient histogram
onecopy_smtp_copies_per_recipient_bucket{le="1"} 1
onecopy_smtp_copies_per_recipient_bucket{le="2"} 2
onecopy_smtp_copies_per_recipient_bucket{le="3"} 2
onecopy_smtp_copies_per_recipient_bucket{le="+Inf"} 2
onecopy_smtp_copies_per_recipient_sum 3
onecopy_smtp_copies_per_recipient_count 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(fmt.Sprintf(wantHist, helpOf(t, reg, "onecopy_smtp_copies_per_recipient"))), "onecopy_smtp_copies_per_recipient"); err != nil {
		t.Error(err)
	}

	// No label per address or message: more recipients, no more series.
	series, err := testutil.GatherAndCount(reg)
	if err != nil {
		t.Fatal(err)
	}
	c = dialRaw(t, srv.Addr())
	c.expect("220")
	c.mustSend(ehlo)
	c.expect("250")
	for i := range 20 {
		c.transaction(fmt.Sprintf("Subject: %d\r\nMessage-ID: <%d@x>\r\n\r\nhi\r\n.\r\n", i, i), fmt.Sprintf("many%d@x.test", i))
	}
	if n, _ := testutil.GatherAndCount(reg); n != series {
		t.Errorf("series went from %d to %d with 20 more recipients: a label per address or message?", series, n)
	}

	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH: skipping `promtool check metrics` (the testutil lint above ran)")
	}
	_, body := newAPI(t, srv).do("GET", "/metrics")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// helpOf returns the HELP text of a metric family.
func helpOf(t *testing.T, g prometheus.Gatherer, name string) string {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetHelp()
		}
	}
	t.Fatalf("no metric %s", name)
	return ""
}
