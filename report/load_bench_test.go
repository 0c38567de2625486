package report_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onecopy/onecopy/history"
	"github.com/onecopy/onecopy/report"
)

// BenchmarkLoad is onecopy check's cost per copy: the history read three
// times (the in-doubt pass, the verdict, the explanation) and the report
// built, for a ledger-like run with a kill in doubt every 1,000 copies.
func BenchmarkLoad(b *testing.B) {
	const n = 200_000
	dir := b.TempDir()
	list := make([]string, n)
	for i := range list {
		list[i] = fmt.Sprintf("rcpt%07d@onecopy.test", i)
	}
	if err := os.WriteFile(filepath.Join(dir, "recipients.txt"), []byte(strings.Join(list, "\n")+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	w, err := history.Create(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	add := func(ev history.Event) {
		ev.T = t0.Add(time.Duration(ev.Txn) * time.Microsecond)
		if err := w.Add(ev); err != nil {
			b.Fatal(err)
		}
	}
	add(history.Event{Kind: history.KindRun, Run: &history.Run{Version: history.Version, Expect: "effectively-once", List: "recipients.txt",
		Recipients: n, Signal: "KILL", Instances: 1, Timeout: history.Duration(time.Minute)}})
	add(history.Event{Kind: history.KindStart, Instance: 1, Attempt: 1, Start: &history.Start{PID: 1}})
	txn := uint64(0)
	for i, a := range list {
		txn++
		add(history.Event{Kind: history.KindCopy, Instance: 1, Attempt: 1, Session: 1, Txn: txn, Recipients: []string{a}, MessageID: fmt.Sprintf("<%d@l>", i)})
		if i%1000 == 999 {
			add(history.Event{Kind: history.KindInDoubt, Instance: 1, Attempt: 1, Session: 1, Txn: txn,
				InDoubt: &history.InDoubt{Recipients: []string{a}, MessageID: fmt.Sprintf("<%d@l>", i), Delivered: true, Cause: history.CauseKill}})
			txn++
			add(history.Event{Kind: history.KindCopy, Instance: 1, Attempt: 1, Session: 2, Txn: txn, Recipients: []string{a}, MessageID: fmt.Sprintf("<%d@l>", i)})
		}
	}
	add(history.Event{Kind: history.KindExit, Instance: 1, Attempt: 1, Exit: &history.Exit{Code: 0}})
	add(history.Event{Kind: history.KindEnd, End: &history.End{How: history.EndCompleted, Copies: int64(n + n/1000), Sessions: 2}})
	w.Close()
	b.ReportAllocs()
	for b.Loop() {
		rep, err := report.Load(filepath.Join(dir, "history.jsonl"))
		if err != nil || rep.Explained != n/1000 || !rep.Pass {
			b.Fatalf("%v: %+v", err, rep)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/copy")
}
