// Verdicts: turning the counts and the in-doubt events into the delivery
// guarantee a run actually showed (DESIGN.md section 4).

package harness

import (
	"fmt"
	"strings"

	"github.com/onecopy/onecopy/fakesmtp"
)

// Level is a delivery guarantee.
type Level string

// The levels, strongest first. Fail is the verdict when none holds.
const (
	ExactlyOnce     Level = "exactly-once"
	EffectivelyOnce Level = "effectively-once"
	AtLeastOnce     Level = "at-least-once"
	AtMostOnce      Level = "at-most-once"
	Fail            Level = "fail"
)

// Levels lists the levels a run can be expected to reach, strongest first.
func Levels() []Level { return []Level{ExactlyOnce, EffectivelyOnce, AtLeastOnce, AtMostOnce} }

// ParseLevel accepts a level name.
func ParseLevel(s string) (Level, error) {
	for _, l := range Levels() {
		if string(l) == s {
			return l, nil
		}
	}
	return "", fmt.Errorf("unknown level %q: want one of exactly-once, effectively-once, at-least-once, at-most-once", s)
}

// Tally is what a verdict is computed from.
type Tally struct {
	Recipients int // expected addresses
	Delivered  int // expected addresses with at least one copy
	Missing    int
	Duplicated int // expected addresses with more than one copy
	Extra      int // copies beyond the first, over expected addresses
	NewIDs     int // expected addresses whose extra copies carried a new Message-ID
	Unexpected int // addresses outside the expected set that got a copy
	Bounced    int
	Copies     int64
	InDoubt    int
	Histogram  map[int]int // copies -> expected addresses with that many
}

// Count compares the oracle's snapshot with the expected addresses
// (normalised, distinct, bounced ones removed).
func Count(expected []string, bounced int, snap fakesmtp.Snapshot, inDoubt int) Tally {
	want := make(map[string]struct{}, len(expected))
	for _, a := range expected {
		want[a] = struct{}{}
	}
	c := newCounter(len(expected), bounced, snap.Copies, inDoubt)
	for _, r := range snap.Recipients {
		_, ok := want[r.Address]
		c.add(r, ok)
	}
	return c.done()
}

// counter builds a Tally one recipient at a time, so a run can stream the
// oracle through it (fakesmtp.Oracle.Each) instead of copying a million
// recipients into a snapshot first.
type counter struct {
	t   Tally
	got int
}

func newCounter(expected, bounced int, copies int64, inDoubt int) *counter {
	return &counter{t: Tally{Recipients: expected, Bounced: bounced, Copies: copies, InDoubt: inDoubt, Histogram: map[int]int{}}}
}

// add counts one recipient the oracle knows; expected says whether it is
// on the list.
func (c *counter) add(r fakesmtp.Recipient, expected bool) {
	t := &c.t
	if !expected {
		t.Unexpected++
		return
	}
	c.got++
	t.Histogram[r.Copies]++
	if r.Copies > 1 {
		t.Duplicated++
		t.Extra += r.Copies - 1
	}
	if r.MessageIDs > 1 {
		t.NewIDs++
	}
}

func (c *counter) done() Tally {
	t := c.t
	t.Delivered = c.got
	t.Missing = t.Recipients - c.got
	if t.Missing > 0 {
		t.Histogram[0] = t.Missing
	}
	return t
}

// Holds lists every level the tally satisfies, strongest first.
func (t Tally) Holds() []Level {
	var h []Level
	clean := t.Missing == 0 && t.Unexpected == 0
	if clean && t.Duplicated == 0 {
		h = append(h, ExactlyOnce)
	}
	if clean && t.NewIDs == 0 && t.Extra <= t.InDoubt {
		h = append(h, EffectivelyOnce)
	}
	if clean {
		h = append(h, AtLeastOnce)
	}
	if t.Duplicated == 0 && t.Unexpected == 0 && t.Missing <= t.InDoubt {
		h = append(h, AtMostOnce)
	}
	return h
}

// Verdict is the first level that holds, or Fail.
func (t Tally) Verdict() Level {
	if h := t.Holds(); len(h) > 0 {
		return h[0]
	}
	return Fail
}

// Reason explains, in one or two sentences, why the run got its verdict
// and, when it fell short of expect, what stood in the way.
func (t Tally) Reason(expect Level) string {
	verdict := t.Verdict()
	var problems []string
	if t.Missing > 0 {
		problems = append(problems, fmt.Sprintf("%d of %d deliverable recipients got no copy", t.Missing, t.Recipients))
	}
	if t.Duplicated > 0 {
		p := fmt.Sprintf("%d got more than one (%d extra copies", t.Duplicated, t.Extra)
		if t.NewIDs > 0 {
			p += fmt.Sprintf(", %d addresses with a new Message-ID on a repeat", t.NewIDs)
		}
		problems = append(problems, p+fmt.Sprintf("; %d in-doubt events)", t.InDoubt))
	}
	if t.Unexpected > 0 {
		problems = append(problems, fmt.Sprintf("%d addresses not on the list got copies", t.Unexpected))
	}
	if len(problems) == 0 {
		return fmt.Sprintf("every one of %d recipients got exactly one copy", t.Recipients)
	}
	reason := verdict.String() + ": " + strings.Join(problems, "; ")
	if expect == ExactlyOnce && verdict == EffectivelyOnce {
		reason += fmt.Sprintf(". Exactly-once was missed only because of in-doubt events: every extra copy repeats its Message-ID and there are no more of them than the %d moments where a message was in flight when the sender died or the server's reply was lost. No sender can rule those out over SMTP (RFC 1047); effectively-once is the best guarantee there", t.InDoubt)
	}
	return reason
}

func (l Level) String() string { return string(l) }

// reaches reports whether holds includes expect.
func reaches(holds []Level, expect Level) bool {
	for _, l := range holds {
		if l == expect {
			return true
		}
	}
	return false
}
