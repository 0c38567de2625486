package verdict_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onecopy/onecopy/history"
	"github.com/onecopy/onecopy/verdict"
)

// build is a hand-made history: copies and in-doubt transactions in the
// order the server would report them.
type build struct {
	evs []history.Event
	txn uint64
	t   time.Time
}

func (b *build) add(ev history.Event) {
	b.t = b.t.Add(time.Millisecond)
	ev.T = b.t
	b.evs = append(b.evs, ev)
}

// copy counts one transaction and returns its number.
func (b *build) copy(mid string, rcpts ...string) uint64 {
	b.txn++
	b.add(history.Event{Kind: history.KindCopy, Txn: b.txn, Session: b.txn, MessageID: mid, Recipients: rcpts})
	return b.txn
}

// doubt reports transaction txn in doubt.
func (b *build) doubt(txn uint64, delivered bool, mid string, rcpts ...string) {
	b.add(history.Event{Kind: history.KindInDoubt, Txn: txn, Session: txn,
		InDoubt: &history.InDoubt{Recipients: rcpts, MessageID: mid, Delivered: delivered, Cause: history.CauseKill}})
}

// undelivered reports a transaction that never reached its count.
func (b *build) undelivered(rcpts ...string) {
	b.txn++
	b.doubt(b.txn, false, "", rcpts...)
}

func (b *build) kill(attempts int) {
	targets := make([]history.Target, attempts)
	b.add(history.Event{Kind: history.KindSignal, Signal: &history.Signal{Name: "SIGKILL", Why: history.WhyKill, Targets: targets}})
}

func judge(t *testing.T, b *build, list []string, bounced ...string) *verdict.Accounting {
	t.Helper()
	a, err := verdict.Judge(history.Events(b.evs), verdict.NewExpected(list, bounced))
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func addrs(n int) []string {
	var l []string
	for i := range n {
		l = append(l, string(rune('a'+i))+"@x.test")
	}
	return l
}

func TestOneCopyEachHoldsEveryLevel(t *testing.T) {
	b := &build{}
	for _, a := range addrs(3) {
		b.copy("<"+a+">", a)
	}
	a := judge(t, b, addrs(3))
	if !slices.Equal(a.Holds(), verdict.Levels()) || a.Verdict() != verdict.ExactlyOnce {
		t.Errorf("holds %v, want every level", a.Holds())
	}
	if got := a.Reason(verdict.ExactlyOnce); got != "every one of 3 recipients got exactly one copy" {
		t.Errorf("reason %q", got)
	}
}

// A batching sender: one transaction of 10 recipients in doubt at each of
// two kills, each batch re-sent whole with the same Message-ID. Counting
// in-doubt events (2) against extra copies (20) called this at-least-once;
// per transaction, every repeat is explained.
func TestBatchInDoubtExplainsEveryRecipient(t *testing.T) {
	list := make([]string, 40)
	for i := range list {
		list[i] = fmt.Sprintf("r%02d@x.test", i)
	}
	b := &build{}
	for n := range 4 {
		batch := list[n*10 : n*10+10]
		txn := b.copy(fmt.Sprintf("<batch%d>", n), batch...)
		if n < 2 {
			b.doubt(txn, true, fmt.Sprintf("<batch%d>", n), batch...)
			b.kill(1)
			b.copy(fmt.Sprintf("<batch%d>", n), batch...) // the restart re-sends it
		}
	}
	a := judge(t, b, list)
	if a.Extra != 20 || a.Explained != 20 || a.Unexplained != 0 || a.InDoubt != 2 {
		t.Fatalf("tally %+v, want 20 extra copies, all explained by 2 in-doubt transactions", a.Tally)
	}
	if a.Verdict() != verdict.EffectivelyOnce {
		t.Errorf("verdict %s, want effectively-once", a.Verdict())
	}
}

// The count rule and the transaction rule disagree: two in-doubt events,
// one repeat, but the repeated address was in neither transaction.
func TestRepeatOfAnAddressNeverInDoubtIsUnexplained(t *testing.T) {
	b := &build{}
	b.copy("<a>", "a@x.test") // recorded, and later re-sent: the bug
	t2 := b.copy("<b>", "b@x.test")
	t3 := b.copy("<c>", "c@x.test")
	b.doubt(t2, true, "<b>", "b@x.test")
	b.doubt(t3, false, "<c>", "c@x.test") // cut before its count: explains nothing extra
	b.copy("<a>", "a@x.test")
	a := judge(t, b, []string{"a@x.test", "b@x.test", "c@x.test"})
	if a.Unexplained != 1 || a.Explained != 0 {
		t.Fatalf("tally %+v, want the repeat of a unexplained", a.Tally)
	}
	if a.Verdict() != verdict.AtLeastOnce {
		t.Errorf("verdict %s, want at-least-once", a.Verdict())
	}
	if r := a.Reason(verdict.EffectivelyOnce); !strings.Contains(r, "1 that no in-doubt transaction explains") || !strings.Contains(r, "a@x.test (2 copies, 1 unexplained)") {
		t.Errorf("reason %q does not name the unexplained repeat", r)
	}
	if a.Worst[0].Address != "a@x.test" || a.Worst[0].Unexplained != 1 {
		t.Errorf("worst %+v, want a first", a.Worst)
	}
}

func TestARepeatNeedsTheSameMessageID(t *testing.T) {
	b := &build{}
	txn := b.copy("<1>", "a@x.test")
	b.doubt(txn, true, "<1>", "a@x.test")
	b.copy("<2>", "a@x.test") // a fresh Message-ID on the retry
	a := judge(t, b, []string{"a@x.test"})
	if a.Unexplained != 1 || a.NewIDs != 1 {
		t.Fatalf("tally %+v, want the new-id repeat unexplained", a.Tally)
	}
}

func TestNoMessageIDIsNeverExplained(t *testing.T) {
	b := &build{}
	txn := b.copy("", "a@x.test")
	b.doubt(txn, true, "", "a@x.test")
	b.copy("", "a@x.test")
	if a := judge(t, b, []string{"a@x.test"}); a.Unexplained != 1 {
		t.Fatalf("tally %+v, want the repeat without a Message-ID unexplained", a.Tally)
	}
}

// A transaction explains repeats counted after it, at most one each, and
// never itself.
func TestEachTransactionExplainsOneLaterRepeat(t *testing.T) {
	b := &build{}
	b.copy("<1>", "a@x.test")        // acknowledged and recorded
	txn := b.copy("<1>", "a@x.test") // a buggy re-send, itself cut in doubt
	b.doubt(txn, true, "<1>", "a@x.test")
	b.copy("<1>", "a@x.test") // the retry of the cut one: explained
	b.copy("<1>", "a@x.test") // one more: nothing left to explain it
	a := judge(t, b, []string{"a@x.test"})
	if a.Extra != 3 || a.Explained != 1 || a.Unexplained != 2 {
		t.Fatalf("tally %+v, want 3 extra: 1 explained, 2 not", a.Tally)
	}
	m := a.Mailbox()
	var got []string
	for _, ev := range b.evs {
		if ev.Kind == history.KindCopy {
			o := m.Copy(ev.MessageID, ev.Txn)
			s := string(o.Repeat)
			if o.InDoubt {
				s += "+indoubt"
			}
			if o.ExplainedBy != nil {
				s += "+by" + string(rune('0'+o.ExplainedBy.Txn))
			}
			got = append(got, s)
		}
	}
	if want := []string{"first", "same+indoubt", "same+by2", "same"}; !slices.Equal(got, want) {
		t.Errorf("replayed %v, want %v", got, want)
	}
}

func TestMissingExplainedByUndeliveredTransactionsAndKills(t *testing.T) {
	b := &build{}
	b.copy("<a>", "a@x.test")
	b.undelivered("b@x.test") // killed mid-DATA
	b.kill(1)                 // and c was claimed but not begun
	a := judge(t, b, []string{"a@x.test", "b@x.test", "c@x.test", "d@x.test"})
	if a.Missing != 3 || a.MissingExplained != 2 {
		t.Fatalf("tally %+v, want 3 missing, 2 explained (b by its transaction, one by the kill)", a.Tally)
	}
	if slices.Contains(a.Holds(), verdict.AtMostOnce) {
		t.Error("at-most-once holds with an unexplained missing address")
	}
	b.kill(1)
	if a := judge(t, b, []string{"a@x.test", "b@x.test", "c@x.test", "d@x.test"}); a.Verdict() != verdict.AtMostOnce {
		t.Errorf("verdict %s with a second kill, want at-most-once", a.Verdict())
	}
}

func TestBouncedUnexpectedAndCaseVariants(t *testing.T) {
	b := &build{}
	b.copy("<a>", "a@x.test")
	b.copy("<s>", "stranger@x.test")
	a := judge(t, b, []string{"A@X.test", "a@x.test", "bad@x.test"}, "BAD@x.test")
	if a.Recipients != 1 || a.Bounced != 1 || a.Unexpected != 1 || a.Missing != 0 {
		t.Fatalf("tally %+v, want 1 expected (case variants are one), 1 bounced, 1 unexpected", a.Tally)
	}
	if a.Verdict() != verdict.Fail {
		t.Errorf("verdict %s, want fail", a.Verdict())
	}
}

func TestHistogram(t *testing.T) {
	b := &build{}
	b.copy("<a>", "a@x.test")
	b.copy("<b1>", "b@x.test")
	b.copy("<b2>", "b@x.test")
	a := judge(t, b, []string{"a@x.test", "b@x.test", "c@x.test"})
	want := map[int]int{0: 1, 1: 1, 2: 1}
	for k, v := range want {
		if a.Histogram[k] != v {
			t.Errorf("histogram %v, want %v", a.Histogram, want)
		}
	}
}

func TestExpectedKeepsFirstSpellingsInListOrder(t *testing.T) {
	e := verdict.NewExpected([]string{"b@x.test", "B@X.test", "a@x.test", "b@x.test", "C@x.test", "c@x.test", "d@x.test"}, []string{"D@x.test"})
	var got []string
	for i := range e.Len() {
		got = append(got, e.Address(i))
	}
	if want := []string{"b@x.test", "a@x.test", "c@x.test"}; !slices.Equal(got, want) || e.Bounced() != 1 {
		t.Fatalf("expected %v (bounced %d), want %v and 1 bounced", got, e.Bounced(), want)
	}
	for i, a := range got {
		if j, ok := e.Lookup(a); !ok || j != i {
			t.Errorf("Lookup(%s) = %d, %v; want %d", a, j, ok, i)
		}
	}
	if _, ok := e.Lookup("d@x.test"); ok {
		t.Error("a bounced address is expected")
	}
	// A list that needs no normalising is kept as it is.
	list := []string{"a@x.test", "b@x.test"}
	if e := verdict.NewExpected(list, nil); e.Len() != 2 || e.Address(1) != "b@x.test" {
		t.Errorf("plain list: %d addresses", e.Len())
	}
}
