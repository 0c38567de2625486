// Patterns: the repeated addresses grouped by the course their copies
// took. A run that re-sent 500 addresses the same way is one line, "500
// addresses: 4 copies each, sent by attempts 1-4, a new Message-ID each
// time, every repeat unexplained", not ten identical blocks; and the
// grouping covers every repeated address of the run, not only the worst.

package report

import (
	"cmp"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/onecopy/onecopy/verdict"
)

// Pattern is a group of repeated addresses whose copies took the same
// course: as many copies, sent by the same attempts in the same order,
// with the same Message-ID repeats, in doubt and explained alike.
type Pattern struct {
	// Addresses counts the addresses that took this course.
	Addresses int `json:"addresses"`
	// Examples are the first few of them, in list order.
	Examples []string `json:"examples"`
	// Copies, MessageIDs, WithoutMessageID and Unexplained are each
	// address's: its copies, the distinct Message-IDs they carried, the
	// copies that carried none (never counted as Message-IDs), and its
	// extra copies no in-doubt transaction explains.
	Copies           int `json:"copies"`
	MessageIDs       int `json:"message_ids"`
	WithoutMessageID int `json:"without_message_id"`
	Unexplained      int `json:"unexplained"`
	// Words says it in one line, for people.
	Words string `json:"words"`
	// Sequence is each copy in the order counted (the first
	// maxPatternSteps).
	Sequence []PatternCopy `json:"sequence"`

	worst []int // indexes in Report.Worst of the addresses that took it
}

// PatternCopy is one copy of a pattern: who sent it and how the rule saw
// it. Instance and Attempt are 0 for a session no attempt was traced to.
type PatternCopy struct {
	Instance        int            `json:"instance"`
	Attempt         int            `json:"attempt"`
	MessageIDRepeat verdict.Repeat `json:"message_id_repeat"`
	NoMessageID     bool           `json:"no_message_id,omitempty"`
	InDoubt         bool           `json:"in_doubt"`
	Explained       bool           `json:"explained"`
	After           string         `json:"after"`
}

// MaxPatterns is how many patterns a report lists.
const MaxPatterns = 10

const (
	maxPatternSteps = 20
	maxExamples     = 5
	fnvPrime        = 1099511628211
)

// addrState is what the pass keeps per expected address.
type addrState struct {
	seen  bool
	doubt bool   // its first copy was counted in a delivered in-doubt transaction
	first int32  // ordinal of the attempt of its first copy, or unknownAttempt
	rep   int32  // 1 + its index in pass.repeated, once a second copy came
	id    uint64 // its first copy's Message-ID hash; 0: it had none
}

// step is one copy as a pattern sees it; a pass interns its steps, so an
// address's course is a list of small numbers.
type step struct {
	ord       int32
	repeat    verdict.Repeat
	doubt     bool
	explained bool
	noID      bool
}

// repeatTrack is the course of one address that got more than one copy.
type repeatTrack struct {
	copies, noID, ids, unexpl int
	seen                      []uint64 // its distinct Message-ID hashes
	sig                       uint64   // hash of its whole course
	seq                       []uint32 // its first maxPatternSteps steps
}

// repeatOf is the course of expected address i, begun with its first copy
// when its second comes.
func (p *pass) repeatOf(i int) *repeatTrack {
	s := &p.addrs[i]
	if s.rep == 0 {
		r := &repeatTrack{sig: 14695981039346656037}
		if s.id != 0 {
			r.seen = []uint64{s.id}
		}
		r.ids = 1
		r.step(p, step{ord: s.first, repeat: verdict.RepeatFirst, doubt: s.doubt, noID: s.id == 0})
		p.repeated = append(p.repeated, r)
		s.rep = int32(len(p.repeated))
	}
	return p.repeated[s.rep-1]
}

// add records a repeat; like the verdict, a copy without a Message-ID is
// new every time.
func (r *repeatTrack) add(p *pass, ord int32, id uint64, doubt, explained bool) {
	rp := verdict.RepeatNew
	if id != 0 && slices.Contains(r.seen, id) {
		rp = verdict.RepeatSame
	} else {
		r.ids++
		if id != 0 {
			r.seen = append(r.seen, id)
		}
	}
	if !explained {
		r.unexpl++
	}
	switch {
	case id == 0:
		p.repeatsNoID++
	case rp == verdict.RepeatNew:
		p.repeatsNewID++
	}
	r.step(p, step{ord: ord, repeat: rp, doubt: doubt, explained: explained, noID: id == 0})
}

func (r *repeatTrack) step(p *pass, s step) {
	ix, ok := p.stepIx[s]
	if !ok {
		ix = uint32(len(p.steps))
		p.steps = append(p.steps, s)
		p.stepIx[s] = ix
	}
	r.copies++
	if s.noID {
		r.noID++
	}
	r.sig = (r.sig ^ uint64(ix+1)) * fnvPrime
	if len(r.seq) < maxPatternSteps {
		r.seq = append(r.seq, ix)
	}
}

// patterns groups the repeated addresses by their course, the groups with
// the most unexplained copies first.
func (p *pass) patterns() {
	type key struct {
		sig    uint64
		copies int
	}
	type group struct {
		p     *Pattern
		r     *repeatTrack
		first int
	}
	groups := map[key]*group{}
	var order []*group
	worstAt := map[string]int{}
	for i, w := range p.rep.Worst {
		worstAt[w.Address] = i
	}
	for i := range p.addrs {
		s := &p.addrs[i]
		if s.rep == 0 {
			continue
		}
		r := p.repeated[s.rep-1]
		k := key{r.sig, r.copies}
		g := groups[k]
		if g == nil {
			g = &group{p: &Pattern{Copies: r.copies, MessageIDs: r.ids - (r.noID), WithoutMessageID: r.noID, Unexplained: r.unexpl}, r: r, first: i}
			groups[k] = g
			order = append(order, g)
		}
		g.p.Addresses++
		addr := p.exp.Address(i)
		if len(g.p.Examples) < maxExamples {
			g.p.Examples = append(g.p.Examples, addr)
		}
		if w, ok := worstAt[addr]; ok {
			g.p.worst = append(g.p.worst, w)
			p.rep.Worst[w].withoutID = r.noID
		}
	}
	slices.SortStableFunc(order, func(x, y *group) int {
		return cmp.Or(cmp.Compare(y.p.Addresses*y.p.Unexplained, x.p.Addresses*x.p.Unexplained),
			cmp.Compare(y.p.Addresses, x.p.Addresses), cmp.Compare(x.first, y.first))
	})
	multi := false
	for _, a := range p.attempts {
		multi = multi || a.instance > 1
	}
	p.rep.Patterns = make([]Pattern, 0, min(len(order), MaxPatterns))
	for _, g := range order[:min(len(order), MaxPatterns)] {
		for _, ix := range g.r.seq {
			s := p.steps[ix]
			c := PatternCopy{MessageIDRepeat: s.repeat, NoMessageID: s.noID, InDoubt: s.doubt, Explained: s.explained}
			if s.ord != unknownAttempt {
				a := p.attempts[s.ord]
				c.Instance, c.Attempt, c.After = a.instance, a.attempt, a.after
			}
			g.p.Sequence = append(g.p.Sequence, c)
		}
		slices.Sort(g.p.worst)
		g.p.Words = g.p.words(multi)
		p.rep.Patterns = append(p.rep.Patterns, *g.p)
	}
	p.rep.PatternsOmitted = len(order) - len(p.rep.Patterns)
}

// words says a pattern in one line: "500 addresses: 4 copies each, sent by
// attempts 1-4, a new Message-ID each time, every repeat unexplained".
func (pt *Pattern) words(multi bool) string {
	each := ""
	if pt.Addresses > 1 {
		each = " each"
	}
	parts := []string{count(pt.Copies, "copy", "copies") + each}
	if by := sentByWords(pt.Sequence, pt.Copies, multi); by != "" {
		parts = append(parts, by)
	}
	parts = append(parts, pt.idWords())
	if d := doubtWords(pt.Sequence, pt.Copies); d != "" {
		parts = append(parts, d)
	}
	parts = append(parts, explainedWords(pt.Copies-1, pt.Unexplained))
	return count(pt.Addresses, "address", "addresses") + ": " + strings.Join(parts, ", ")
}

// idWords says how Message-IDs went: copies without one are not
// Message-IDs, and are said apart.
func (pt *Pattern) idWords() string {
	switch {
	case pt.WithoutMessageID == pt.Copies:
		return "no Message-ID on any copy"
	case pt.WithoutMessageID > 0:
		return fmt.Sprintf("no Message-ID on %d of the %d copies", pt.WithoutMessageID, pt.Copies)
	case pt.MessageIDs == 1:
		return "the same Message-ID each time"
	case pt.MessageIDs == pt.Copies:
		return "a new Message-ID each time"
	}
	return fmt.Sprintf("%d Message-IDs", pt.MessageIDs)
}

func explainedWords(extra, unexplained int) string {
	switch {
	case unexplained == 0 && extra == 1:
		return "the repeat explained by an in-doubt transaction"
	case unexplained == 0:
		return "every repeat explained by an in-doubt transaction"
	case unexplained == extra && extra == 1:
		return "the repeat unexplained"
	case unexplained == extra:
		return "every repeat unexplained"
	}
	return fmt.Sprintf("%d of %d repeats unexplained", unexplained, extra)
}

// doubtWords names the copies that were in flight when their session
// ended: "copy 1 in doubt".
func doubtWords(seq []PatternCopy, copies int) string {
	var at []string
	for i, c := range seq {
		if c.InDoubt {
			at = append(at, strconv.Itoa(i+1))
		}
	}
	switch {
	case len(at) == 0:
		return ""
	case len(at) == copies && copies > 1:
		return "every copy in doubt"
	case len(at) == 1:
		return "copy " + at[0] + " in doubt"
	}
	return "copies " + strings.Join(at, ", ") + " in doubt"
}

// sentByWords names the attempts that sent a pattern's copies: "sent by
// attempts 1-4", "sent by instance 1 attempt 1, instance 2 attempt 1",
// "all sent by attempt 2", "from sessions no attempt was traced to".
func sentByWords(seq []PatternCopy, copies int, multi bool) string {
	if len(seq) == 0 {
		return ""
	}
	traced := 0
	for _, c := range seq {
		if c.Attempt != 0 {
			traced++
		}
	}
	if traced == 0 {
		return "from sessions no attempt was traced to"
	}
	names := make([]string, len(seq))
	for i, c := range seq {
		names[i] = CopyDetail{Instance: c.Instance, Attempt: c.Attempt}.by(multi)
	}
	more := ""
	if len(seq) < copies {
		more = ", …"
	}
	same, consecutive := true, !multi && traced == len(seq)
	for i, c := range seq[1:] {
		same = same && names[i+1] == names[0]
		consecutive = consecutive && c.Attempt == seq[i].Attempt+1
	}
	switch {
	case same && len(seq) > 1:
		return "all sent by " + names[0] + more
	case consecutive && len(seq) >= 3:
		return fmt.Sprintf("sent by attempts %d-%d%s", seq[0].Attempt, seq[len(seq)-1].Attempt, more)
	case !multi && traced == len(seq):
		for i := range names {
			names[i] = strings.TrimPrefix(names[i], "attempt ")
		}
		return "sent by attempts " + andList(names) + more
	}
	return "sent by " + andList(names) + more
}

// andList joins "1", "2", "3" as "1, 2 and 3".
func andList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " and " + s[len(s)-1]
}
