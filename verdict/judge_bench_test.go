package verdict_test

import (
	"fmt"
	"testing"

	"github.com/onecopy/onecopy/history"
	"github.com/onecopy/onecopy/verdict"
)

// benchHistory is a ledger-like run over n recipients: one copy each, a
// kill in doubt every 1,000 and its repeat.
func benchHistory(n int) ([]string, history.Events) {
	list := make([]string, n)
	evs := make(history.Events, 0, n+n/500)
	for i := range list {
		list[i] = fmt.Sprintf("rcpt%07d@onecopy.test", i)
		mid := fmt.Sprintf("<%d@ledger>", i)
		evs = append(evs, history.Event{Kind: history.KindCopy, Txn: uint64(len(evs) + 1), Recipients: list[i : i+1], MessageID: mid})
		if i%1000 == 999 {
			evs = append(evs, history.Event{Kind: history.KindInDoubt, Txn: uint64(len(evs)),
				InDoubt: &history.InDoubt{Recipients: list[i : i+1], MessageID: mid, Delivered: true, Cause: history.CauseKill}})
			evs = append(evs, history.Event{Kind: history.KindCopy, Txn: uint64(len(evs) + 1), Recipients: list[i : i+1], MessageID: mid})
		}
	}
	return list, evs
}

// BenchmarkJudge is the checker's own cost per copy, history in memory
// (reading history.jsonl is measured apart, in package report).
func BenchmarkJudge(b *testing.B) {
	for _, n := range []int{10_000, 1_000_000} {
		list, evs := benchHistory(n)
		exp := verdict.NewExpected(list, nil)
		b.Run(fmt.Sprintf("copies=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				a, err := verdict.Judge(evs, exp)
				if err != nil || a.Unexplained != 0 || a.Explained != n/1000 {
					b.Fatalf("%+v, %v", a.Tally, err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/copy")
		})
	}
}

func BenchmarkNewExpected(b *testing.B) {
	list, _ := benchHistory(1_000_000)
	b.ReportAllocs()
	for b.Loop() {
		if e := verdict.NewExpected(list, nil); e.Len() != len(list) {
			b.Fatal(e.Len())
		}
	}
}
