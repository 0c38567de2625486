// The report: the JSON of DESIGN.md section 6 for machines, and a summary
// for people.

package harness

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// Report is the outcome of a run. Its JSON field names are a public
// contract (DESIGN.md section 6).
type Report struct {
	Verdict         Level          `json:"verdict"`
	Expect          Level          `json:"expect"`
	Pass            bool           `json:"pass"`
	Seed            uint64         `json:"seed"`
	Holds           []Level        `json:"holds"`
	Recipients      int            `json:"recipients"`
	Delivered       int            `json:"delivered"`
	Missing         int            `json:"missing"`
	Duplicated      int            `json:"duplicated"`
	Unexpected      int            `json:"unexpected"`
	Bounced         int            `json:"bounced"`
	Copies          int64          `json:"copies"`
	Extra           int            `json:"extra_copies"`
	InDoubt         int            `json:"in_doubt"`
	Histogram       map[string]int `json:"histogram"`
	Kills           int            `json:"kills"`
	Pauses          int            `json:"pauses"`
	Restarts        int            `json:"restarts"`
	Attempts        int            `json:"attempts"`
	Faults          map[string]int `json:"faults"`
	DurationSeconds float64        `json:"duration_seconds"`
	Reason          string         `json:"reason"`
	Worst           []Worst        `json:"worst"`
	MissingSample   []string       `json:"missing_sample,omitempty"`
	Ended           string         `json:"ended"`
	Campaign        string         `json:"campaign"`
	Command         []string       `json:"command"`
	Replay          string         `json:"replay,omitempty"`
	History         string         `json:"history,omitempty"`
	Senders         []Attempt      `json:"senders,omitempty"`
	// Cause is the most likely cause of what went wrong, in one sentence
	// ("1,500 extra copies: each restart re-sent from the top of the
	// list (3 restarts, new Message-IDs)"); empty when nothing did.
	Cause string `json:"cause"`
	// Timeline is the run over time, for the HTML report.
	Timeline *Timeline `json:"timeline,omitempty"`
}

// Worst is one of the most-copied addresses.
type Worst struct {
	Address    string `json:"address"`
	Copies     int    `json:"copies"`
	MessageIDs int    `json:"message_ids"`
	// CopiesDetail is each copy in the order the server counted it, with
	// the attempt that sent it and what explains it.
	CopiesDetail []CopyDetail `json:"copies_detail,omitempty"`
}

// Attempt is one start of the sender, with its last output lines.
type Attempt struct {
	Instance        int      `json:"instance"`
	Attempt         int      `json:"attempt"`
	Exit            string   `json:"exit"`
	DurationSeconds float64  `json:"duration_seconds"`
	Output          []string `json:"output,omitempty"`
	// After is what preceded this attempt: "first start", or how the
	// attempt before it ended ("SIGKILL at 50% (--kill at=50%)").
	After string `json:"after,omitempty"`
	// Copies it sent, and how many of them went to an address that
	// already had one.
	Copies int `json:"copies"`
	Resent int `json:"resent"`
}

func (r *run) report(ended string) *Report {
	r.mu.Lock()
	inDoubt := r.inDoubt
	rep := &Report{
		Kills: r.kills, Pauses: r.pauses, Restarts: r.restarts, Attempts: len(r.procs),
		Faults: map[string]int{},
	}
	for k, v := range r.faults {
		rep.Faults[k] = v
	}
	procs := slices.Clone(r.procs)
	r.mu.Unlock()

	// One pass over the oracle, not a sorted snapshot of it: at a million
	// recipients a snapshot and its copy cost more memory than the run.
	oracle := r.srv.Oracle()
	c := newCounter(len(r.expected), r.bounced, oracle.Copies(), inDoubt)
	var worst []fakesmtp.Recipient // the 10 most copied (2 or more), most first, then by address
	oracle.Each(func(rc fakesmtp.Recipient) {
		_, expected := r.index.lookup(rc.Address)
		c.add(rc, expected)
		if rc.Copies < 2 {
			return
		}
		i, _ := slices.BinarySearchFunc(worst, rc, func(a, b fakesmtp.Recipient) int {
			if a.Copies != b.Copies {
				return b.Copies - a.Copies
			}
			return strings.Compare(a.Address, b.Address)
		})
		if i < 10 {
			worst = slices.Insert(worst, i, rc)[:min(len(worst)+1, 10)]
		}
	})
	t := c.done()
	rep.Holds = t.Holds()
	if rep.Holds == nil {
		rep.Holds = []Level{}
	}
	rep.Verdict, rep.Expect = t.Verdict(), r.cfg.Expect
	rep.Pass = reaches(rep.Holds, r.cfg.Expect)
	rep.Seed, rep.Campaign, rep.Command, rep.Replay = r.cfg.Seed, r.cfg.Campaign, r.cfg.Command, r.cfg.Replay
	rep.Recipients, rep.Delivered, rep.Missing = t.Recipients+t.Bounced, t.Delivered, t.Missing
	rep.Duplicated, rep.Unexpected, rep.Bounced = t.Duplicated, t.Unexpected, t.Bounced
	rep.Copies, rep.Extra, rep.InDoubt = t.Copies, t.Extra, t.InDoubt
	rep.Histogram = make(map[string]int, len(t.Histogram))
	for c, n := range t.Histogram {
		rep.Histogram[strconv.Itoa(c)] = n
	}
	rep.DurationSeconds = time.Since(r.start).Seconds()
	rep.Reason = t.Reason(r.cfg.Expect)
	rep.Ended = ended
	if r.cfg.WorkDir != "" {
		rep.History = r.hist.path
	}

	for _, w := range worst {
		rep.Worst = append(rep.Worst, Worst{Address: w.Address, Copies: w.Copies, MessageIDs: w.MessageIDs})
	}
	if rep.Worst == nil {
		rep.Worst = []Worst{}
	}
	if t.Missing > 0 {
		for _, a := range r.expected {
			if i, _ := r.index.lookup(a); r.covered[i] || oracle.Get(a).Copies > 0 {
				continue
			}
			rep.MissingSample = append(rep.MissingSample, a)
			if len(rep.MissingSample) == 10 {
				break
			}
		}
	}
	for _, p := range procs {
		// Output is kept for passing runs too: the HTML report shows it.
		a := Attempt{Instance: p.instance, Attempt: p.attempt, Exit: p.exit.String(), DurationSeconds: p.exit.Duration.Seconds(),
			Output: p.out.Lines()}
		rep.Senders = append(rep.Senders, a)
	}
	return rep
}

// WriteJSON writes the report to path, atomically.
func (rep *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	return os.Rename(tmp, path)
}

// Summary writes the report for people.
func (rep *Report) Summary(w io.Writer) {
	status := "PASS"
	if !rep.Pass {
		status = "FAIL"
	}
	fmt.Fprintf(w, "%s: %s (expected %s) · seed %d · %.1fs · %s\n", status, rep.Verdict, rep.Expect, rep.Seed, rep.DurationSeconds, rep.Ended)
	fmt.Fprintf(w, "  %d recipients · %d copies · missing %d · duplicated %d (%d extra copies) · unexpected %d · bounced %d · in-doubt events %d\n",
		rep.Recipients, rep.Copies, rep.Missing, rep.Duplicated, rep.Extra, rep.Unexpected, rep.Bounced, rep.InDoubt)
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
	if len(rep.Worst) > 0 {
		fmt.Fprintln(w, "  worst:")
		for i, x := range rep.Worst {
			if i == 5 {
				break
			}
			fmt.Fprintf(w, "    %-40s %d copies, %d Message-IDs%s\n", x.Address, x.Copies, x.MessageIDs, sentBy(x.CopiesDetail))
		}
	}
	if len(rep.MissingSample) > 0 {
		fmt.Fprintf(w, "  missing, e.g.: %s\n", strings.Join(rep.MissingSample[:min(3, len(rep.MissingSample))], ", "))
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
	if len(copies) == 0 {
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
// attempt 1" when several instances ran, or "unknown".
func (c CopyDetail) by(instances bool) string {
	switch {
	case c.Attempt == 0:
		return "unknown"
	case instances:
		return fmt.Sprintf("instance %d attempt %d", c.Instance, c.Attempt)
	}
	return fmt.Sprintf("attempt %d", c.Attempt)
}
