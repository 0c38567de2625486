package history_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onecopy/onecopy/history"
)

func read(t *testing.T, path string) []history.Event {
	t.Helper()
	var evs []history.Event
	if err := history.File(path).Scan(func(ev history.Event) error { evs = append(evs, ev); return nil }); err != nil {
		t.Fatal(err)
	}
	return evs
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	w, err := history.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	run := &history.Run{Version: history.Version, Seed: 7, Expect: "exactly-once", List: "recipients.txt", Timeout: history.Duration(time.Minute)}
	in := []history.Event{
		{Kind: history.KindRun, Run: run},
		{Kind: history.KindCopy, Session: 1, Txn: 2, Recipients: []string{"a@x.test"}, MessageID: "<1@x>"},
		{Kind: history.KindSignal, Signal: &history.Signal{Name: "SIGTERM", Why: history.WhyKill, Grace: history.Duration(5 * time.Second)},
			Point: &history.KillPoint{Spec: "at=50%", Kind: "at", N: 1, Due: 5}},
		{Kind: history.KindEnd, End: &history.End{How: history.EndCompleted, Copies: 1}},
	}
	for _, ev := range in {
		if err := w.Add(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	out := read(t, path)
	if len(out) != len(in) {
		t.Fatalf("read %d events, wrote %d", len(out), len(in))
	}
	if out[0].T.IsZero() || out[2].Signal.Grace.D() != 5*time.Second || out[2].Point.Spec != "at=50%" || out[3].End.How != history.EndCompleted {
		t.Errorf("read back %+v", out)
	}
	got, err := history.ReadRun(history.File(path))
	if err != nil || got.Seed != 7 || got.Timeout.D() != time.Minute {
		t.Errorf("ReadRun: %+v, %v", got, err)
	}
}

// Add is one write of one whole line, so lines from concurrent sessions
// never interleave, and every Add is in the file when it returns.
func TestConcurrentAddsAreWholeLinesInTheFileAtOnce(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	w, err := history.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				rcpt := []string{fmt.Sprintf("g%d-%d@x.test", g, i), strings.Repeat("x", 300) + "@x.test"}
				if err := w.Add(history.Event{Kind: history.KindCopy, Txn: uint64(i), Recipients: rcpt}); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	// No Close, no flush: what a SIGKILL of onecopy would leave.
	if n := len(read(t, path)); n != 1600 {
		t.Errorf("%d events in the file before Close, want all 1600", n)
	}
}

func TestTornLastLineIsDropped(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	os.WriteFile(path, []byte(`{"t":"2026-12-01T10:00:00Z","type":"copy","rcpt":["a@x.test"]}`+"\n"+`{"t":"2026-12-01T10:00:01Z","type":"co`), 0o644)
	if evs := read(t, path); len(evs) != 1 {
		t.Errorf("read %d events, want the one whole line", len(evs))
	}
}

func TestBadLinesNameFileAndLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	for content, want := range map[string]string{
		"{\"type\":\"run\"}\nnot json\n{}\n": ":2: want one JSON event per line",
		"{\"type\":\"run\"}\n{}\n":           ":2: an event without a type",
	} {
		os.WriteFile(path, []byte(content), 0o644)
		err := history.File(path).Scan(func(history.Event) error { return nil })
		if err == nil || !strings.Contains(err.Error(), path+want) {
			t.Errorf("%q: %v, want %q", content, err, want)
		}
	}
	os.WriteFile(path, []byte(`{"t":"2026-12-01T10:00:00Z","type":"copy"}`+"\n"), 0o644)
	if _, err := history.ReadRun(history.File(path)); err == nil || !strings.Contains(err.Error(), "does not start with a \"run\" event") {
		t.Errorf("ReadRun of a history without its header: %v", err)
	}
	os.WriteFile(path, []byte(`{"t":"2026-12-01T10:00:00Z","type":"run","run":{"version":1}}`+"\n"), 0o644)
	if _, err := history.ReadRun(history.File(path)); err == nil || !strings.Contains(err.Error(), "format 1") {
		t.Errorf("ReadRun of an old format: %v", err)
	}
}

func TestAWriteErrorSticks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "history.jsonl")
	w, err := history.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Close()
	if err := w.Add(history.Event{Kind: history.KindCopy}); err == nil {
		t.Error("Add after Close succeeded")
	}
}
