// Markdown for CI: a run's report for $GITHUB_STEP_SUMMARY or a
// merge-request comment, and a set's table with the failed runs in detail.
// Short on purpose: GitHub folds nothing, and people read it between
// builds.

package report

import (
	"fmt"
	"io"
	"regexp"
	"strings"
)

// statusIcon leads a status in Markdown, so a long table is read at a
// glance; the word stays for whoever does not see the icon.
var statusIcon = map[string]string{"PASS": "✅", "FAIL": "❌", "ERROR": "⚠️", "INTERRUPTED": "⏹️", "SKIPPED": "⏭️"}

// Markdown writes the report in Markdown: the status and verdict, the
// cause, the counts in a one-row table, the reason, the main patterns of
// repeats and the replay command.
func (rep *Report) Markdown(w io.Writer) {
	rep.markdown(w, "###", "")
}

// markdown writes the report under a heading of level h, naming the run
// when name is set.
func (rep *Report) markdown(w io.Writer, h, name string) {
	st := rep.Status()
	head := fmt.Sprintf("%s %s %s", h, statusIcon[st], st)
	if name != "" {
		head += " · " + mdText(name)
	}
	if rep.Outcome == OutcomeJudged {
		head += fmt.Sprintf(": %s (expected %s)", rep.Verdict, rep.Expect)
	} else {
		head += fmt.Sprintf(": not judged (%s)", rep.Outcome)
	}
	fmt.Fprintf(w, "%s\n\n", head)
	if nj := notJudged(rep); nj != "" {
		fmt.Fprintf(w, "%s\n\n", mdText(nj))
	}
	if rep.Cause != "" {
		fmt.Fprintf(w, "**Most likely cause:** %s\n\n", mdText(rep.Cause))
	}
	fmt.Fprintln(w, "| recipients | copies | missing | duplicated | extra copies | unexplained | in doubt | attempts | kills | seed | time |")
	fmt.Fprintln(w, "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s | %d | %d | %d | %.1fs |\n\n",
		thousands(rep.Recipients), thousands(int(rep.Copies)), thousands(rep.Missing), thousands(rep.Duplicated),
		thousands(rep.Extra), thousands(rep.Unexplained), thousands(rep.InDoubt), rep.Attempts, rep.Kills, rep.Seed, rep.DurationSeconds)
	if rep.Reason != "" {
		fmt.Fprintf(w, "%s\n\n", mdText(rep.Reason))
	}
	if len(rep.Patterns) > 0 {
		shown := 0
		for i, pt := range rep.Patterns {
			if i == 3 {
				break
			}
			fmt.Fprintf(w, "- %s (%s)\n", mdText(pt.Words), mdText(examples(pt)))
			shown += pt.Addresses
		}
		if rest := rep.Duplicated - shown; rest > 0 {
			fmt.Fprintf(w, "- … and %s repeated in other ways\n", count(rest, "address", "addresses"))
		}
		fmt.Fprintln(w)
	}
	if rep.Status() == "ERROR" { // why the sender did not run as a sender is in its output
		for _, a := range rep.Senders[max(0, len(rep.Senders)-1):] {
			if len(a.Output) > 0 {
				fmt.Fprintf(w, "Last output of instance %d attempt %d (%s):\n\n", a.Instance, a.Attempt, mdText(a.Exit))
				codeBlock(w, "", strings.Join(a.Output[max(0, len(a.Output)-5):], "\n"))
			}
		}
	}
	if rep.Replay != "" {
		fmt.Fprintln(w, "Replay:")
		fmt.Fprintln(w)
		codeBlock(w, "sh", rep.Replay)
	}
}

// MarkdownTable writes a set of runs in Markdown: a title with the tally,
// one table row per run, then each run that failed or could not be judged
// in detail, with its replay command.
func MarkdownTable(w io.Writer, title string, entries []IndexEntry) {
	t := tally(entries)
	fmt.Fprintf(w, "## %s %s\n\n", statusIcon[t.Status()], mdText(title))
	fmt.Fprintf(w, "**%s**\n\n", t.Words())
	if len(entries) == 0 {
		return
	}
	fmt.Fprintln(w, "| status | run | failure mode | verdict | expected | time | cause |")
	fmt.Fprintln(w, "|---|---|---|---|---|---:|---|")
	for _, e := range entries {
		st := e.Status()
		fmt.Fprintf(w, "| %s %s | %s | %s | %s | %s | %s | %s |\n", statusIcon[st], st, mdCell(e.Name), mdCell(e.Class),
			mdCell(e.verdictWords()), mdCell(e.expectWords()), e.durationWords(), mdCell(e.causeWords()))
	}
	fmt.Fprintln(w)
	for _, e := range entries {
		st := e.Status()
		if st != "FAIL" && st != "ERROR" {
			continue
		}
		name := e.Name
		if e.Class != "" {
			name += " (" + e.Class + ")"
		}
		if e.Report != nil {
			e.Report.markdown(w, "###", name)
			continue
		}
		fmt.Fprintf(w, "### %s %s · %s: not run\n\n", statusIcon[st], st, mdText(name))
		codeBlock(w, "", e.Error)
	}
}

// codeBlock writes s as a fenced code block, its fence longer than any
// run of backticks in s.
func codeBlock(w io.Writer, lang, s string) {
	fence := "```"
	for strings.Contains(s, fence) {
		fence += "`"
	}
	fmt.Fprintf(w, "%s%s\n%s\n%s\n\n", fence, lang, strings.TrimRight(s, "\n"), fence)
}

// emailLike finds addresses, which GitHub would otherwise turn into mailto
// links: they are set as code instead.
var emailLike = regexp.MustCompile(`[A-Za-z0-9._%+\-]+@[A-Za-z0-9\-]+(\.[A-Za-z0-9\-]+)+`)

// mdText is s as Markdown text: punctuation that Markdown or GitHub would
// read as formatting is escaped, addresses are code spans.
func mdText(s string) string {
	var sb strings.Builder
	last := 0
	for _, m := range emailLike.FindAllStringIndex(s, -1) {
		sb.WriteString(mdEscape(s[last:m[0]]))
		sb.WriteString("`" + s[m[0]:m[1]] + "`")
		last = m[1]
	}
	sb.WriteString(mdEscape(s[last:]))
	return sb.String()
}

var mdEscaper = strings.NewReplacer(`\`, `\\`, "`", "\\`", "*", `\*`, "_", `\_`, "[", `\[`, "]", `\]`,
	"<", `\<`, ">", `\>`, "|", `\|`, "~", `\~`, "#", `\#`)

func mdEscape(s string) string { return mdEscaper.Replace(s) }

// mdCell is s as the text of a table cell: on one line.
func mdCell(s string) string {
	return strings.Join(strings.Fields(mdText(s)), " ")
}
