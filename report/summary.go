// The summary: the report for people, on a terminal or in a CI log.

package report

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
)

// JSON is the report as written by WriteJSON: indented, with a final
// newline.
func (rep *Report) JSON() ([]byte, error) {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding the report: %w", err)
	}
	return append(b, '\n'), nil
}

// Status is PASS or FAIL, or what kept the run from being judged.
func (rep *Report) Status() string {
	switch {
	case rep.Pass:
		return "PASS"
	case rep.Outcome == OutcomeInterrupted:
		return "INTERRUPTED"
	case rep.Outcome == OutcomeNeverConnected, rep.Outcome == OutcomeEscaped, rep.Outcome == OutcomeShort, rep.Outcome == OutcomeError:
		return "ERROR"
	}
	return "FAIL"
}

// Summary writes the report for people.
func (rep *Report) Summary(w io.Writer) {
	fmt.Fprintf(w, "%s: %s (expected %s) · seed %d · %.1fs · %s\n", rep.Status(), rep.Verdict, rep.Expect, rep.Seed, rep.DurationSeconds, rep.Ended)
	fmt.Fprintf(w, "  %d recipients · %d copies · missing %d · duplicated %d (%d extra copies: %d explained, %d unexplained) · unexpected %d · bounced %d · in-doubt transactions %d\n",
		rep.Recipients, rep.Copies, rep.Missing, rep.Duplicated, rep.Extra, rep.Explained, rep.Unexplained, rep.Unexpected, rep.Bounced, rep.InDoubt)
	fmt.Fprintf(w, "  copies per recipient: %s\n", histogramLine(rep.Histogram))
	fmt.Fprintf(w, "  attempts %d · restarts %d · kills %d · pauses %d", rep.Attempts, rep.Restarts, rep.Kills, rep.Pauses)
	if len(rep.Faults) > 0 {
		kinds := make([]string, 0, len(rep.Faults))
		for k, n := range rep.Faults {
			kinds = append(kinds, k+"="+strconv.Itoa(n))
		}
		slices.Sort(kinds)
		fmt.Fprintf(w, " · faults %s", strings.Join(kinds, " "))
	}
	fmt.Fprintln(w)
	switch {
	case len(rep.Patterns) > 0:
		fmt.Fprintln(w, "  repeated:")
		shown := 0
		for i, pt := range rep.Patterns {
			if i == 5 {
				break
			}
			fmt.Fprintf(w, "    %s (%s)\n", pt.Words, examples(pt))
			shown += pt.Addresses
		}
		if rest := rep.Duplicated - shown; rest > 0 {
			fmt.Fprintf(w, "    … and %s repeated in other ways\n", count(rest, "address", "addresses"))
		}
	case len(rep.Worst) > 0: // a report without patterns (read from an older JSON)
		fmt.Fprintln(w, "  worst:")
		for i, x := range rep.Worst {
			if i == 5 {
				break
			}
			fmt.Fprintf(w, "    %-40s %d copies, %s%s%s\n", x.Address, x.Copies, x.idWords(), unexplainedWords(x), sentBy(x.CopiesDetail))
		}
	}
	if len(rep.MissingSample) > 0 {
		fmt.Fprintf(w, "  missing, e.g.: %s\n", strings.Join(rep.MissingSample[:min(3, len(rep.MissingSample))], ", "))
	}
	for i, k := range rep.MissedKills {
		if i == 3 {
			fmt.Fprintf(w, "  … and %d more kill points not applied\n", len(rep.MissedKills)-3)
			break
		}
		fmt.Fprintf(w, "  kill point not applied: %s (no sender was running)\n", pointWords(k, -1))
	}
	for _, e := range rep.Escaped {
		fmt.Fprintf(w, "  ESCAPED the kill: %s\n", e)
	}
	fmt.Fprintf(w, "  %s\n", rep.Reason)
	if rep.Cause != "" {
		fmt.Fprintf(w, "  most likely cause: %s\n", rep.Cause)
	}
	if !rep.Pass {
		for _, a := range rep.Senders[max(0, len(rep.Senders)-3):] {
			if len(a.Output) == 0 {
				continue
			}
			fmt.Fprintf(w, "  sender instance %d attempt %d (%s), last output:\n", a.Instance, a.Attempt, a.Exit)
			for _, l := range a.Output[max(0, len(a.Output)-5):] {
				fmt.Fprintf(w, "    | %s\n", l)
			}
		}
	}
	if rep.Replay != "" {
		fmt.Fprintf(w, "  replay: %s\n", rep.Replay)
	}
}

// idWords says how many Message-IDs an address's copies carried, without
// calling copies that carried none "Message-IDs".
func (x Worst) idWords() string {
	none := x.withoutID
	if n := x.detailWithoutID(); n > none {
		none = n
	}
	switch {
	case none >= x.Copies:
		return "no Message-ID"
	case none > 0:
		return fmt.Sprintf("%s and %s without one", count(x.MessageIDs-none, "Message-ID", "Message-IDs"), count(none, "copy", "copies"))
	}
	return count(x.MessageIDs, "Message-ID", "Message-IDs")
}

// detailWithoutID counts the copies in CopiesDetail without a Message-ID.
func (x Worst) detailWithoutID() int {
	n := 0
	for _, c := range x.CopiesDetail {
		if c.MessageID == "" {
			n++
		}
	}
	return n
}

// examples names a pattern's first addresses: "e.g. a@x.test, b@x.test",
// or the one address it is.
func examples(pt Pattern) string {
	switch {
	case len(pt.Examples) == 0:
		return ""
	case pt.Addresses == 1:
		return pt.Examples[0]
	}
	return "e.g. " + strings.Join(pt.Examples[:min(2, len(pt.Examples))], ", ")
}

func unexplainedWords(x Worst) string {
	if x.Unexplained == 0 {
		return ""
	}
	return fmt.Sprintf(", %d unexplained", x.Unexplained)
}

func histogramLine(h map[string]int) string {
	keys := make([]int, 0, len(h))
	for k := range h {
		n, _ := strconv.Atoi(k)
		keys = append(keys, n)
	}
	slices.Sort(keys)
	parts := make([]string, 0, len(keys))
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d→%d", k, h[strconv.Itoa(k)]))
	}
	if len(parts) == 0 {
		return "(none)"
	}
	return strings.Join(parts, "  ")
}

// sentBy lists the attempts that sent an address's copies, for the summary.
func sentBy(copies []CopyDetail) string {
	traced := slices.ContainsFunc(copies, func(c CopyDetail) bool { return c.Attempt != 0 })
	if len(copies) == 0 || !traced {
		return ""
	}
	multi := slices.ContainsFunc(copies, func(c CopyDetail) bool { return c.Instance > 1 })
	parts := make([]string, 0, 7)
	for i, c := range copies {
		if i == 6 {
			parts = append(parts, "…")
			break
		}
		parts = append(parts, c.by(multi))
	}
	return " · sent by " + strings.Join(parts, ", ")
}

// by names the attempt that sent a copy: "attempt 2", or "instance 2
// attempt 1" when several instances ran, or "an untraced session".
func (c CopyDetail) by(instances bool) string {
	switch {
	case c.Attempt == 0:
		return "an untraced session"
	case instances:
		return fmt.Sprintf("instance %d attempt %d", c.Instance, c.Attempt)
	}
	return fmt.Sprintf("attempt %d", c.Attempt)
}
