package report_test

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

var update = flag.Bool("update", false, "rewrite the golden reports from the histories")

// Each directory under testdata holds a history.jsonl recorded from a run
// (or built by hand), the run's recipients.txt, and report.json, the
// report that history must give: re-judged here with no process started.
func TestGoldenReports(t *testing.T) {
	dirs, err := filepath.Glob("testdata/*/history.jsonl")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no golden histories under testdata (%v)", err)
	}
	for _, h := range dirs {
		dir := filepath.Dir(h)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			rep, err := report.Load(h)
			if err != nil {
				t.Fatal(err)
			}
			rep.History = "" // where the checkout is, not what the run was
			got, err := rep.JSON()
			if err != nil {
				t.Fatal(err)
			}
			golden := filepath.Join(dir, "report.json")
			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run the test with -update to write it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("the report of %s differs from %s (run with -update after checking the change)", h, golden)
			}
		})
	}
}

// What each golden history shows, beyond matching its report byte for byte.
func TestGoldenVerdicts(t *testing.T) {
	for _, c := range []struct {
		dir     string
		verdict verdict.Level
		pass    bool
		check   func(*report.Report) string
	}{
		// Ten recipients per transaction, two batches in flight at kills:
		// twenty repeats, every one explained by its own transaction.
		{"batch-in-doubt", verdict.EffectivelyOnce, true, func(r *report.Report) string {
			if r.Extra < 10 || r.Unexplained != 0 || r.Explained != r.Extra {
				return "want every repeat of a batch explained"
			}
			return ""
		}},
		{"pool-drop-after-data", verdict.EffectivelyOnce, true, nil},
		// One in-doubt transaction, one repeat, but of an address that was
		// never in flight: counting events called it effectively-once.
		{"count-rule-disagrees", verdict.AtLeastOnce, false, func(r *report.Report) string {
			if r.Unexplained != 1 || r.InDoubt != 1 || r.Worst[0].Address != "a@x.test" {
				return "want a@x.test's repeat unexplained"
			}
			return ""
		}},
		{"resend-recorded", verdict.AtLeastOnce, false, func(r *report.Report) string {
			if r.Unexplained == 0 {
				return "want the re-sent recorded addresses unexplained"
			}
			return ""
		}},
		{"record-before", verdict.AtMostOnce, true, func(r *report.Report) string {
			if r.Missing == 0 || r.MissingExplained != r.Missing {
				return "want the lost addresses explained by the kills"
			}
			return ""
		}},
		{"repro", verdict.Fail, false, nil},
		{"paused", verdict.ExactlyOnce, true, func(r *report.Report) string {
			if r.Pauses != 1 {
				return "want one pause"
			}
			return ""
		}},
		// SIGTERM with 1ms of grace, escalated to SIGKILL twice, between
		// transactions: nothing in doubt, nothing repeated.
		{"term", verdict.ExactlyOnce, true, func(r *report.Report) string {
			if r.Kills != 2 || r.InDoubt != 0 || len(r.Senders) != 3 {
				return "want 2 TERMs, 3 attempts, nothing in doubt"
			}
			return ""
		}},
	} {
		t.Run(c.dir, func(t *testing.T) {
			rep, err := report.Load(filepath.Join("testdata", c.dir, "history.jsonl"))
			if err != nil {
				t.Fatal(err)
			}
			if rep.Verdict != c.verdict || rep.Pass != c.pass {
				t.Errorf("verdict %s, pass %v; want %s, %v: %s", rep.Verdict, rep.Pass, c.verdict, c.pass, rep.Reason)
			}
			if c.check != nil {
				if msg := c.check(rep); msg != "" {
					t.Errorf("%s: %s", msg, rep.Reason)
				}
			}
		})
	}
}

func TestLoadRefusesAnotherList(t *testing.T) {
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/repro/history.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "history.jsonl"), src, 0o644)
	os.WriteFile(filepath.Join(dir, "recipients.txt"), []byte("someone@else.test\n"), 0o644)
	if _, err := report.Load(filepath.Join(dir, "history.jsonl")); err == nil {
		t.Error("a history judged against another run's list")
	}
	os.WriteFile(filepath.Join(dir, "history.jsonl"), []byte("{\"t\":\"2026-12-01T10:00:00Z\",\"type\":\"copy\"}\n"), 0o644)
	if _, err := report.Load(filepath.Join(dir, "history.jsonl")); err == nil {
		t.Error("a history with no run header judged")
	}
	os.WriteFile(filepath.Join(dir, "history.jsonl"), []byte("not json\n"), 0o644)
	if _, err := report.Load(filepath.Join(dir, "history.jsonl")); err == nil {
		t.Error("garbage judged")
	}
}
