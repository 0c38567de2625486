// The views people read, checked by structure: the patterns the repeats
// are grouped by, the summary, the Markdown for CI and the index of a set.

package report_test

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/net/html"

	"github.com/onecopy/onecopy/report"
)

func load(t *testing.T, dir string) *report.Report {
	t.Helper()
	rep, err := report.Load(filepath.Join("testdata", dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

// interrupted is the report of the count-rule-disagrees run, had Ctrl-C
// ended it.
func interrupted(t *testing.T) *report.Report {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile("testdata/count-rule-disagrees/history.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	lines[len(lines)-1] = `{"t":"2026-12-01T10:00:00.061Z","type":"end","end":{"how":"interrupted","failures":0,"copies":4,"sessions":2}}`
	os.WriteFile(filepath.Join(dir, "history.jsonl"), []byte(strings.Join(lines, "\n")+"\n"), 0o644)
	list, _ := os.ReadFile("testdata/count-rule-disagrees/recipients.txt")
	os.WriteFile(filepath.Join(dir, "recipients.txt"), list, 0o644)
	rep, err := report.Load(filepath.Join(dir, "history.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Status() != "INTERRUPTED" {
		t.Fatalf("status %s, want INTERRUPTED", rep.Status())
	}
	return rep
}

// Every repeated address is in exactly one pattern, and the patterns and
// the timeline add up to the verdict's counts.
func TestPatternsAddUp(t *testing.T) {
	dirs, _ := filepath.Glob("testdata/*/history.jsonl")
	for _, h := range dirs {
		dir := filepath.Base(filepath.Dir(h))
		t.Run(dir, func(t *testing.T) {
			rep := load(t, dir)
			if rep.PatternsOmitted != 0 {
				t.Fatalf("%d patterns omitted from a small run", rep.PatternsOmitted)
			}
			addresses, extra, unexplained := 0, 0, 0
			for _, p := range rep.Patterns {
				addresses += p.Addresses
				extra += p.Addresses * (p.Copies - 1)
				unexplained += p.Addresses * p.Unexplained
				if len(p.Sequence) != p.Copies || p.Sequence[0].MessageIDRepeat != "first" {
					t.Errorf("pattern %q: sequence %+v", p.Words, p.Sequence)
				}
			}
			if addresses != rep.Duplicated || extra != rep.Extra || unexplained != rep.Unexplained {
				t.Errorf("patterns cover %d addresses, %d extra copies, %d unexplained; the verdict counts %d, %d, %d",
					addresses, extra, unexplained, rep.Duplicated, rep.Extra, rep.Unexplained)
			}
			repeats, unx := 0, 0
			for i := range rep.Timeline.Copies {
				repeats += rep.Timeline.Repeats[i]
				unx += rep.Timeline.Unexplained[i]
				if rep.Timeline.Unexplained[i] > rep.Timeline.Repeats[i] || rep.Timeline.Repeats[i] > rep.Timeline.Copies[i] {
					t.Errorf("bucket %d: %d copies, %d repeats, %d unexplained", i, rep.Timeline.Copies[i], rep.Timeline.Repeats[i], rep.Timeline.Unexplained[i])
				}
			}
			if repeats != rep.Extra || unx != rep.Unexplained {
				t.Errorf("the timeline has %d repeats, %d unexplained; the verdict counts %d, %d", repeats, unx, rep.Extra, rep.Unexplained)
			}
		})
	}
}

func TestPatternWords(t *testing.T) {
	for _, c := range []struct {
		dir   string
		words []string
	}{
		{"repro", []string{"50 addresses: 4 copies each, sent by attempts 1-4, a new Message-ID each time, every repeat unexplained"}},
		{"batch-in-doubt", []string{
			"10 addresses: 2 copies each, sent by attempts 1 and 2, the same Message-ID each time, copy 1 in doubt, the repeat explained by an in-doubt transaction",
			"10 addresses: 2 copies each, sent by attempts 2 and 3, the same Message-ID each time, copy 1 in doubt, the repeat explained by an in-doubt transaction",
		}},
		{"untraced-no-id", []string{
			"1 address: 2 copies, sent by attempt 1 and an untraced session, no Message-ID on any copy, the repeat unexplained",
			"1 address: 2 copies, from sessions no attempt was traced to, no Message-ID on any copy, the repeat unexplained",
			"1 address: 2 copies, sent by attempt 1 and an untraced session, the same Message-ID each time, the repeat unexplained",
		}},
	} {
		t.Run(c.dir, func(t *testing.T) {
			var got []string
			for _, p := range load(t, c.dir).Patterns {
				got = append(got, p.Words)
			}
			if !slices.Equal(got, c.words) {
				t.Errorf("patterns\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(c.words, "\n  "))
			}
		})
	}
}

// The summary groups the repeats, and says copies without a Message-ID and
// untraced sessions as such.
func TestSummaryGroupsRepeats(t *testing.T) {
	var b strings.Builder
	load(t, "repro").Summary(&b)
	s := b.String()
	if !strings.Contains(s, "  repeated:\n    50 addresses: 4 copies each, sent by attempts 1-4") {
		t.Errorf("the repro's summary does not group its 50 repeated addresses:\n%s", s)
	}
	if n := len(regexp.MustCompile(`(?m)^ +rcpt\d+@`).FindAllString(s, -1)); n > 0 {
		t.Errorf("the summary lists %d addresses one per line: it should name their pattern:\n%s", n, s)
	}

	b.Reset()
	load(t, "untraced-no-id").Summary(&b)
	s = b.String()
	for _, bad := range []string{"unknown", "2 Message-IDs", "new Message-IDs"} {
		if strings.Contains(s, bad) {
			t.Errorf("the summary says %q of copies without a Message-ID or from untraced sessions:\n%s", bad, s)
		}
	}
	for _, want := range []string{"no Message-ID on any copy", "from sessions no attempt was traced to", "attempt 1 and an untraced session"} {
		if !strings.Contains(s, want) {
			t.Errorf("the summary does not say %q:\n%s", want, s)
		}
	}
}

// The HTML of copies without a Message-ID or from untraced sessions says
// "none" and "an untraced session", never "unknown" or "2 Message-IDs".
func TestHTMLUntracedWithoutMessageID(t *testing.T) {
	var b bytes.Buffer
	if err := load(t, "untraced-no-id").HTML(&b); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(&b)
	if err != nil {
		t.Fatal(err)
	}
	var blocks []*html.Node
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode && hasClass(n, "pattern") {
			blocks = append(blocks, n)
		}
	}
	if len(blocks) != 3 {
		t.Fatalf("%d pattern blocks, want 3", len(blocks))
	}
	for _, bl := range blocks {
		txt := textOf(bl)
		for _, bad := range []string{"unknown", "2 Message-IDs"} {
			if strings.Contains(txt, bad) {
				t.Errorf("a block says %q: %s", bad, txt)
			}
		}
	}
	if a := textOf(blocks[0]); !strings.Contains(a, "an untraced session") || !regexp.MustCompile(`\bnone\b`).MatchString(a) {
		t.Errorf("a@x.test's block should name the untraced session and the missing Message-IDs: %s", a)
	}
}

func TestMarkdown(t *testing.T) {
	var b strings.Builder
	load(t, "repro").Markdown(&b)
	md := b.String()
	lines := strings.Split(md, "\n")
	if lines[0] != "### ❌ FAIL: fail (expected exactly-once)" {
		t.Errorf("first line %q", lines[0])
	}
	for _, want := range []string{
		"**Most likely cause:** 150 extra copies: each restart re-sent from the top of the list (3 restarts, new Message-IDs)",
		"| recipients | copies | missing |",
		"|---:|---:|",
		"- 50 addresses: 4 copies each, sent by attempts 1-4, a new Message-ID each time, every repeat unexplained (e.g. `rcpt000001@onecopy.test`, `rcpt000002@onecopy.test`)",
		"Replay:\n\n```sh\nonecopy run ",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("the Markdown lacks %q:\n%s", want, md)
		}
	}
	if len(lines) > 30 {
		t.Errorf("%d lines: keep it short", len(lines))
	}
	prose := regexp.MustCompile("(?s)```.*?```").ReplaceAllString(md, "")
	if regexp.MustCompile("[^`]rcpt\\d+@").MatchString(prose) {
		t.Errorf("an address outside a code span becomes a mailto link on GitHub:\n%s", md)
	}

	b.Reset()
	interrupted(t).Markdown(&b)
	md = b.String()
	if !strings.HasPrefix(md, "### ⏹️ INTERRUPTED: not judged (interrupted)\n\nInterrupted before the run ended: not judged.") {
		t.Errorf("an interrupted run's Markdown does not say so:\n%s", md)
	}
}

// entries are a set of every kind: a pass, a failure, an interrupted run,
// a harness error and a scenario that never ran.
func entries(t *testing.T) []report.IndexEntry {
	return []report.IndexEntry{
		{Name: "batch", Class: "kill mid-batch", Report: load(t, "batch-in-doubt"), JSON: "batch.json", HTML: "batch.html"},
		{Name: "repro", Class: "retry from the top | 550", Report: load(t, "repro"), JSON: "repro.json", HTML: "repro.html"},
		{Name: "cut", Class: "interrupted", Report: interrupted(t), JSON: "cut.json", HTML: "cut.html"},
		{Name: "broken", Class: "harness", Error: "starting the fake server: address already in use"},
		{Name: "later", Class: "slow", Skipped: "interrupted before it ran"},
	}
}

func TestMarkdownTable(t *testing.T) {
	var b strings.Builder
	report.MarkdownTable(&b, "onecopy gate", entries(t))
	md := b.String()
	if !strings.HasPrefix(md, "## ⏹️ onecopy gate\n\n**1 of 5 passed · 1 failed · 1 error · 2 interrupted or not run**\n\n") {
		t.Errorf("title and tally:\n%s", md)
	}
	var rows []string
	for _, l := range strings.Split(md, "\n") {
		if strings.HasPrefix(l, "| ") && !strings.HasPrefix(l, "| status") && !strings.HasPrefix(l, "| recipients") && !strings.HasPrefix(l, "| "+"1") {
			rows = append(rows, l)
		}
	}
	if len(rows) < 5 || !strings.HasPrefix(rows[0], "| ✅ PASS | batch |") || !strings.HasPrefix(rows[1], "| ❌ FAIL | repro | retry from the top \\| 550 |") ||
		!strings.HasPrefix(rows[2], "| ⏹️ INTERRUPTED | cut | interrupted | not judged (interrupted) | effectively-once | 0.1s | not judged: interrupted |") ||
		!strings.HasPrefix(rows[3], "| ⚠️ ERROR | broken |") || !strings.HasPrefix(rows[4], "| ⏭️ SKIPPED | later |") {
		t.Errorf("one row per run, in order, with its status:\n%s", strings.Join(rows, "\n"))
	}
	details := regexp.MustCompile(`(?m)^### .*$`).FindAllString(md, -1)
	if len(details) != 2 || !strings.Contains(details[0], "FAIL · repro") || !strings.Contains(details[1], "ERROR · broken") {
		t.Errorf("details of the failed runs only: %q", details)
	}
	if !strings.Contains(md, "```sh\nonecopy run --work-dir /tmp/rec --quiet --recipients 100") {
		t.Errorf("the failed run's details lack its replay command:\n%s", md)
	}
	if !strings.Contains(md, "```\nstarting the fake server: address already in use\n```") {
		t.Errorf("the harness error is not shown:\n%s", md)
	}
}

func TestWriteIndex(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.html")
	if err := report.WriteIndex(path, "onecopy gate · seed 3", entries(t)); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := html.Parse(f)
	if err != nil {
		t.Fatal(err)
	}
	var runs []*html.Node
	for n := range doc.Descendants() {
		if n.Type != html.ElementNode {
			continue
		}
		if hasClass(n, "run") && n.Data == "tr" {
			runs = append(runs, n)
		}
		if n.Data == "link" || n.Data == "script" || n.Data == "img" || strings.HasPrefix(attrOf(n, "href"), "http") {
			t.Errorf("the index loads or links outside itself: <%s>", n.Data)
		}
		if attrOf(n, "id") == "status" && textOf(n) != "INTERRUPTED" {
			t.Errorf("the set's status %q, want INTERRUPTED", textOf(n))
		}
	}
	want := []struct{ status, verdict, pass, links string }{
		{"PASS", "effectively-once", "yes", "batch.html batch.json"},
		{"FAIL", "fail", "no", "repro.html repro.json"},
		{"INTERRUPTED", "not judged (interrupted)", "no", "cut.html cut.json"},
		{"ERROR", "—", "—", ""},
		{"SKIPPED", "—", "—", ""},
	}
	if len(runs) != len(want) {
		t.Fatalf("%d rows, want %d", len(runs), len(want))
	}
	for i, r := range runs {
		var verdict, pass, cause string
		var links []string
		for n := range r.Descendants() {
			switch {
			case hasClass(n, "verdict"):
				verdict = textOf(n)
			case hasClass(n, "pass"):
				pass = textOf(n)
			case hasClass(n, "cause"):
				cause = textOf(n)
			case hasClass(n, "html") || hasClass(n, "json"):
				links = append(links, attrOf(n, "href"))
			}
		}
		w := want[i]
		if attrOf(r, "data-status") != w.status || verdict != w.verdict || pass != w.pass || strings.Join(links, " ") != w.links {
			t.Errorf("row %d: %s, verdict %q, pass %q, links %q; want %+v", i, attrOf(r, "data-status"), verdict, pass, links, w)
		}
		if w.status != "PASS" && cause == "" {
			t.Errorf("row %d (%s) gives no cause", i, w.status)
		}
	}
}

func hasClass(n *html.Node, class string) bool {
	return n.Type == html.ElementNode && slices.Contains(strings.Fields(attrOf(n, "class")), class)
}

func attrOf(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func textOf(n *html.Node) string {
	var sb strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			sb.WriteString(d.Data + " ")
		}
	}
	return strings.Join(strings.Fields(sb.String()), " ")
}

// A kill and the restart 3 ms after it are one pixel apart on a long run:
// the kill is drawn over the restart, its glyph beside the restart's, and
// on the band of the instance it hit; the legend keys only what is drawn.
func TestKillBesideRestart(t *testing.T) {
	rep := &report.Report{Outcome: report.OutcomeJudged, Timeline: &report.Timeline{
		Seconds: 60, BucketSeconds: 1, Expected: 10,
		Copies: make([]int, 60), Repeats: make([]int, 60), Unexplained: make([]int, 60), Covered: make([]int, 60),
		Marks: []report.Mark{
			{At: 30, Kind: "kill", Label: "SIGKILL at 50%", Instance: 2, Instances: []int{2}, InDoubt: 1},
			{At: 30.003, Kind: "restart", Label: "restart after SIGKILL", Instance: 2},
		},
		Bands: []report.Band{
			{Instance: 1, Attempt: 1, Start: 0, End: 60, Exit: "exit 0"},
			{Instance: 2, Attempt: 1, Start: 0, End: 30.001, Exit: "killed by SIGKILL"},
			{Instance: 2, Attempt: 2, Start: 30.003, End: 60, Exit: "exit 0"},
		},
	}}
	rep.Timeline.Copies[10], rep.Timeline.Copies[40], rep.Timeline.Repeats[40] = 5, 5, 1
	var b bytes.Buffer
	if err := rep.HTML(&b); err != nil {
		t.Fatal(err)
	}
	doc, err := html.Parse(&b)
	if err != nil {
		t.Fatal(err)
	}
	var marks []*html.Node
	var keys []string
	for n := range doc.Descendants() {
		if hasClass(n, "mark") {
			marks = append(marks, n)
		}
		if k := attrOf(n, "data-key"); k != "" {
			keys = append(keys, k)
		}
	}
	if len(marks) != 2 || attrOf(marks[0], "data-kind") != "restart" || attrOf(marks[1], "data-kind") != "kill" {
		t.Fatalf("want the restart, then the kill drawn over it; got %d marks", len(marks))
	}
	num := func(n *html.Node, k string) float64 {
		f, err := strconv.ParseFloat(attrOf(n, k), 64)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	restart, kill := marks[0], marks[1]
	if d := num(restart, "data-x") - num(kill, "data-x"); d > 1 {
		t.Fatalf("the lines are %.1f px apart: the case is not a close one", d)
	}
	if d := num(restart, "data-glyph-x") - num(kill, "data-glyph-x"); d < 12 {
		t.Errorf("the glyphs are %.1f px apart: they overlap", d)
	}
	var hits []string
	for n := range kill.Descendants() {
		if hasClass(n, "hit") {
			hits = append(hits, attrOf(n, "data-instance"))
		}
	}
	if !slices.Equal(hits, []string{"2"}) {
		t.Errorf("the kill is marked on the bands of instances %v, want [2]", hits)
	}
	if want := []string{"first", "repeat", "cover", "kill", "restart", "doubt", "hit", "band-ok", "band-killed"}; !slices.Equal(keys, want) {
		t.Errorf("legend %v, want %v", keys, want)
	}
}
