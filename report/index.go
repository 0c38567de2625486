// The index of a set of runs (a gate's scenarios, a soak's campaigns): one
// self-contained page with a row per run and links to its reports, and the
// same table in Markdown for CI summaries and merge-request comments.

package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"os"
	"path/filepath"
	"strings"
)

// IndexEntry is one run of a set, for WriteIndex and MarkdownTable.
type IndexEntry struct {
	// Name is the scenario or campaign; Class is its failure mode.
	Name  string
	Class string
	// Report is the run's report; nil when it has none, and then Error or
	// Skipped says why.
	Report *Report
	// Error is a harness failure that kept the run from being judged.
	Error string
	// Skipped says why the run did not run at all ("interrupted before it
	// ran").
	Skipped string
	// JSON and HTML are the run's report files, relative to the index;
	// empty when not written.
	JSON string
	HTML string
}

// Status is the run's status (Report.Status), ERROR for a harness failure
// with no report, or SKIPPED for a run that did not run.
func (e IndexEntry) Status() string {
	switch {
	case e.Report != nil:
		return e.Report.Status()
	case e.Skipped != "":
		return "SKIPPED"
	}
	return "ERROR"
}

// verdictWords is the verdict, or why there is none that stands.
func (e IndexEntry) verdictWords() string {
	switch {
	case e.Report == nil:
		return "—"
	case e.Report.Outcome != OutcomeJudged:
		return "not judged (" + string(e.Report.Outcome) + ")"
	}
	return string(e.Report.Verdict)
}

func (e IndexEntry) expectWords() string {
	if e.Report == nil {
		return "—"
	}
	return string(e.Report.Expect)
}

func (e IndexEntry) passWords() string {
	switch {
	case e.Report == nil:
		return "—"
	case e.Report.Pass:
		return "yes"
	}
	return "no"
}

func (e IndexEntry) durationWords() string {
	if e.Report == nil {
		return "—"
	}
	return fmt.Sprintf("%.1fs", e.Report.DurationSeconds)
}

// causeWords says in one sentence what went wrong, or why the run was not
// judged: the cause, else the reason of a run short of its level, else how
// a run that was not judged ended.
func (e IndexEntry) causeWords() string {
	r := e.Report
	switch {
	case r == nil && e.Skipped != "":
		return e.Skipped
	case r == nil:
		return e.Error
	case r.Outcome != OutcomeJudged && r.Outcome != OutcomeTimeout:
		return "not judged: " + r.Ended
	case r.Cause != "":
		return r.Cause
	case !r.Pass:
		return r.Reason
	}
	return ""
}

// indexTally counts a set's runs by status.
type indexTally struct {
	Runs, Passed, Failed, Errors, Interrupted int
}

func tally(entries []IndexEntry) indexTally {
	t := indexTally{Runs: len(entries)}
	for _, e := range entries {
		switch e.Status() {
		case "PASS":
			t.Passed++
		case "FAIL":
			t.Failed++
		case "ERROR":
			t.Errors++
		default:
			t.Interrupted++
		}
	}
	return t
}

// Status is the set's status, ranked as onecopy's exit codes are: an
// interrupted set first, then harness errors, then runs short of their
// level.
func (t indexTally) Status() string {
	switch {
	case t.Interrupted > 0:
		return "INTERRUPTED"
	case t.Errors > 0:
		return "ERROR"
	case t.Failed > 0:
		return "FAIL"
	}
	return "PASS"
}

// Words says the tally in a line: "17 of 19 passed · 1 failed · 1 error".
func (t indexTally) Words() string {
	parts := []string{fmt.Sprintf("%d of %d passed", t.Passed, t.Runs)}
	if t.Failed > 0 {
		parts = append(parts, fmt.Sprintf("%d failed", t.Failed))
	}
	if t.Errors > 0 {
		parts = append(parts, count(t.Errors, "error", "errors"))
	}
	if t.Interrupted > 0 {
		parts = append(parts, fmt.Sprintf("%d interrupted or not run", t.Interrupted))
	}
	return strings.Join(parts, " · ")
}

//go:embed index_template.html
var indexTemplate string

var indexPage = template.Must(template.New("index").Parse(indexTemplate))

type indexRow struct {
	IndexEntry
	Status, Verdict, Expect, Pass, Duration, Cause string
}

// WriteIndex writes the index of a set of runs to path, atomically: one
// self-contained HTML page with a row per entry (status, verdict, expected
// level, pass, duration and cause) and links to each entry's reports.
func WriteIndex(path, title string, entries []IndexEntry) error {
	t := tally(entries)
	data := struct {
		Title, Status, Tally string
		Rows                 []indexRow
	}{Title: title, Status: t.Status(), Tally: t.Words()}
	for _, e := range entries {
		data.Rows = append(data.Rows, indexRow{IndexEntry: e, Status: e.Status(), Verdict: e.verdictWords(), Expect: e.expectWords(),
			Pass: e.passWords(), Duration: e.durationWords(), Cause: e.causeWords()})
	}
	var sb strings.Builder
	if err := indexPage.Execute(&sb, data); err != nil {
		return fmt.Errorf("writing the index %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("writing the index: %w", err)
	}
	return writeFile(path, []byte(sb.String()))
}
