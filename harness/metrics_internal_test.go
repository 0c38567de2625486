// How a judged campaign becomes duplicates in doubt or not, without
// processes: a hand-made history is judged and the campaign metrics count
// what the verdict's accounting says, so the metric and the verdict can
// never disagree.

package harness

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/onecopy/onecopy/history"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

func TestDuplicatesInDoubtFollowTheVerdict(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c := m.campaign(2)
	// a@ is in flight at a kill and re-sent (explained); b@ is re-sent
	// though it never was in doubt (unexplained), and once more with a
	// new Message-ID (unexplained).
	evs := history.Events{
		{Kind: history.KindCopy, Txn: 1, MessageID: "<a>", Recipients: []string{"a@x.test"}},
		{Kind: history.KindCopy, Txn: 2, MessageID: "<b>", Recipients: []string{"b@x.test"}},
		{Kind: history.KindInDoubt, Txn: 1, InDoubt: &history.InDoubt{Recipients: []string{"a@x.test"}, MessageID: "<a>", Delivered: true, Cause: history.CauseKill}},
		{Kind: history.KindCopy, Txn: 3, MessageID: "<a>", Recipients: []string{"a@x.test"}},
		{Kind: history.KindCopy, Txn: 4, MessageID: "<b>", Recipients: []string{"b@x.test"}},
		{Kind: history.KindCopy, Txn: 5, MessageID: "<b2>", Recipients: []string{"b@x.test"}},
	}
	acc, err := verdict.Judge(evs, verdict.NewExpected([]string{"a@x.test", "b@x.test"}, nil))
	if err != nil {
		t.Fatal(err)
	}
	c.judge(&report.Report{Verdict: acc.Verdict(), Outcome: report.OutcomeJudged, Histogram: map[string]int{"2": 1, "3": 1}}, acc)
	if got := testutil.ToFloat64(m.duplicates.WithLabelValues("true")); got != 1 {
		t.Errorf("duplicates in doubt = %v, want 1", got)
	}
	if got := testutil.ToFloat64(m.duplicates.WithLabelValues("false")); got != 2 {
		t.Errorf("duplicates not in doubt = %v, want 2", got)
	}
	if got := testutil.ToFloat64(m.campaigns.WithLabelValues("at-least-once", "false")); got != 1 {
		t.Errorf("campaigns{at-least-once,false} = %v, want 1", got)
	}
}

func TestAnInterruptedCampaignIsNotJudged(t *testing.T) {
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	c := m.campaign(2)
	c.delivered(2, 1)
	acc := &verdict.Accounting{Tally: verdict.Tally{Extra: 1, Unexplained: 1}}
	c.judge(&report.Report{Verdict: verdict.Fail, Missing: 2, Outcome: report.OutcomeInterrupted}, acc)
	c.end()
	if got := testutil.ToFloat64(m.duplicates.WithLabelValues("false")); got != 0 {
		t.Errorf("duplicates = %v, want 0", got)
	}
	if got := testutil.ToFloat64(m.missing); got != 0 {
		t.Errorf("missing = %v, want 0", got)
	}
	if got := testutil.ToFloat64(m.running); got != 0 {
		t.Errorf("running = %v after the end, want 0", got)
	}
	if got := testutil.ToFloat64(m.copies); got != 2 {
		t.Errorf("copies = %v, want 2", got)
	}
}

func TestNilMetricsDoNothing(t *testing.T) {
	var m *Metrics
	c := m.campaign(10)
	c.delivered(1, 1)
	c.doubt(history.CauseKill)
	c.signal(SigKill)
	c.restart(true)
	c.fault("tempfail")
	c.attempt(exitStatus{}, false)
	c.judge(&report.Report{}, &verdict.Accounting{})
	c.end()
}
