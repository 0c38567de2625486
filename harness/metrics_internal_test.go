// How deliveries become duplicates in doubt or not, without processes: the
// oracle is fed by hand and the campaign metrics read it as a run does.

package harness

import (
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type dupCase struct {
	c   *campaignMetrics
	o   *fakesmtp.Oracle
	m   *Metrics
	cov int
}

func newDupCase(t *testing.T) *dupCase {
	t.Helper()
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	d := &dupCase{m: m, o: fakesmtp.NewOracle()}
	d.c = m.campaign(3)
	d.c.attach(d.o)
	return d
}

// send counts one message the way the server does, then tells the metrics.
func (d *dupCase) send(id string, rcpts ...string) {
	d.o.Record(time.Now(), rcpts, id)
	d.cov++
	d.c.delivered(rcpts, func(a string) bool { return a != "stranger@x.test" }, d.cov)
}

func (d *dupCase) want(t *testing.T, step string, inDoubt, notInDoubt float64) {
	t.Helper()
	if got := testutil.ToFloat64(d.m.duplicates.WithLabelValues("true")); got != inDoubt {
		t.Errorf("%s: duplicates in doubt = %v, want %v", step, got, inDoubt)
	}
	if got := testutil.ToFloat64(d.m.duplicates.WithLabelValues("false")); got != notInDoubt {
		t.Errorf("%s: duplicates not in doubt = %v, want %v", step, got, notInDoubt)
	}
}

func TestDuplicatesInDoubt(t *testing.T) {
	t.Run("a new Message-ID on a repeat is never in doubt", func(t *testing.T) {
		d := newDupCase(t)
		d.c.doubt("kill", 5)
		d.send("<1@x>", "a@x.test")
		d.send("<2@x>", "a@x.test")
		d.send("", "b@x.test")
		d.send("", "b@x.test") // no Message-ID: distinct every time
		d.want(t, "two new Message-IDs", 0, 2)
	})

	t.Run("a repeat is in doubt while in-doubt events explain it", func(t *testing.T) {
		d := newDupCase(t)
		d.send("<1@x>", "a@x.test", "b@x.test")
		d.c.doubt("kill", 1)
		d.send("<1@x>", "a@x.test", "b@x.test")
		d.want(t, "two repeats, one event", 1, 0)
		d.c.judge(&Report{Verdict: AtLeastOnce, Histogram: map[string]int{"2": 2}})
		d.want(t, "campaign end", 1, 1)
	})

	// A 250 held back past the client's patience is known to be in doubt
	// only when the server finally writes it, which can be after the
	// client has already resent: the repeat waits for its event.
	t.Run("a repeat that comes before its in-doubt event is settled by it", func(t *testing.T) {
		d := newDupCase(t)
		d.send("<1@x>", "a@x.test")
		d.send("<1@x>", "a@x.test")
		d.want(t, "repeat, no event yet", 0, 0)
		d.c.doubt("fault", 1)
		d.want(t, "after the event", 1, 0)
		d.c.judge(&Report{Verdict: EffectivelyOnce, Pass: true, Histogram: map[string]int{"2": 1}})
		d.want(t, "campaign end", 1, 0)
		if got := testutil.ToFloat64(d.m.campaigns.WithLabelValues("effectively-once", "true")); got != 1 {
			t.Errorf("campaigns{effectively-once,true} = %v, want 1", got)
		}
	})

	t.Run("addresses not on the list are not duplicates", func(t *testing.T) {
		d := newDupCase(t)
		d.send("<1@x>", "stranger@x.test")
		d.send("<2@x>", "stranger@x.test")
		d.want(t, "unexpected twice", 0, 0)
		if got := testutil.ToFloat64(d.m.copies); got != 2 {
			t.Errorf("copies = %v, want 2", got)
		}
	})

	// Two sessions record copies for one address before either callback
	// runs: the first callback sees both, the second nothing new.
	t.Run("concurrent copies of one address are counted once", func(t *testing.T) {
		d := newDupCase(t)
		d.o.Record(time.Now(), []string{"a@x.test"}, "<1@x>")
		d.o.Record(time.Now(), []string{"a@x.test"}, "<2@x>")
		d.o.Record(time.Now(), []string{"a@x.test"}, "<3@x>")
		for range 3 {
			d.c.delivered([]string{"a@x.test"}, func(string) bool { return true }, 1)
		}
		d.want(t, "three copies, three IDs", 0, 2)
	})

	t.Run("an interrupted campaign is not judged", func(t *testing.T) {
		d := newDupCase(t)
		d.send("<1@x>", "a@x.test")
		d.send("<1@x>", "a@x.test")
		d.c.judge(&Report{Verdict: Fail, Missing: 2, Ended: "interrupted"})
		d.c.end()
		d.want(t, "interrupted", 0, 0)
		if got := testutil.ToFloat64(d.m.missing); got != 0 {
			t.Errorf("missing = %v, want 0", got)
		}
		if got := testutil.ToFloat64(d.m.running); got != 0 {
			t.Errorf("running = %v after the end, want 0", got)
		}
	})

	t.Run("nil metrics do nothing", func(t *testing.T) {
		var m *Metrics
		c := m.campaign(10)
		c.attach(fakesmtp.NewOracle())
		c.delivered([]string{"a@x.test"}, func(string) bool { return true }, 1)
		c.doubt("kill", 1)
		c.signal(SigKill)
		c.restart(true)
		c.fault("tempfail")
		c.attempt(exitStatus{}, false)
		c.judge(&Report{})
		c.end()
	})
}
