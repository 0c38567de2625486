// Judging a history: two passes over it, the first for the in-doubt
// transactions (known only when their sessions end, after their copies),
// the second for the copies in the order the server counted them.

package verdict

import (
	"cmp"
	"hash/maphash"
	"slices"
	"strings"
	"time"

	"github.com/onecopy/onecopy/history"
)

// Tally is the count of a run: what the levels are decided from.
type Tally struct {
	Recipients int // expected addresses (distinct, bounced ones aside)
	Delivered  int // expected addresses with at least one copy
	Missing    int
	Duplicated int // expected addresses with more than one copy
	Extra      int // copies beyond the first, over expected addresses
	// Explained + Unexplained = Extra: extra copies an in-doubt
	// transaction explains, and those none does.
	Explained   int
	Unexplained int
	NewIDs      int // expected addresses with more than one Message-ID
	Unexpected  int // addresses outside the expected set that got a copy
	Bounced     int
	Copies      int64
	// InDoubt counts in-doubt transactions; Kills the SIGKILLs of attempts.
	InDoubt int
	Kills   int
	// MissingExplained counts the missing addresses an undelivered
	// in-doubt transaction, or a SIGKILL, explains.
	MissingExplained int
	Histogram        map[int]int // copies -> expected addresses with that many
}

// Holds lists every level the tally satisfies, strongest first.
func (t Tally) Holds() []Level {
	h := []Level{}
	clean := t.Missing == 0 && t.Unexpected == 0
	if clean && t.Duplicated == 0 {
		h = append(h, ExactlyOnce)
	}
	if clean && t.Unexplained == 0 {
		h = append(h, EffectivelyOnce)
	}
	if clean {
		h = append(h, AtLeastOnce)
	}
	if t.Duplicated == 0 && t.Unexpected == 0 && t.MissingExplained == t.Missing {
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

// Doubt is one in-doubt transaction of the history.
type Doubt struct {
	history.InDoubt
	T        time.Time
	Txn      uint64
	Session  uint64
	Instance int
	Attempt  int
}

// Worst is one of the most repeated addresses.
type Worst struct {
	Address     string
	Copies      int
	MessageIDs  int
	Unexplained int
}

// Accounting is the judgement of a history: the tally, and which extra
// copies and missing addresses in-doubt transactions explain. The
// verdict, the report's reason and cause, the HTML and the soak's metrics
// all read it: there is one rule, in one place.
type Accounting struct {
	Tally
	// Doubts are the in-doubt transactions, in history order.
	Doubts []Doubt
	// Worst are up to MaxWorst addresses with repeats: those with
	// unexplained repeats first, then by copies, then by address.
	Worst []Worst
	// MissingSample is up to 10 missing addresses, in list order.
	MissingSample []string

	seed      maphash.Seed
	delivered map[uint64]int // txn -> index in Doubts, delivered ones
}

// MaxWorst is how many repeated addresses an Accounting names.
const MaxWorst = 10

// slot is what pass two keeps per expected address. Most addresses get
// one copy: they cost these 24 bytes and no mailbox.
type slot struct {
	copies   uint32
	mb       int32  // 1 + index of its mailbox, once a second copy came
	first    uint64 // its first copy's Message-ID hash
	firstTxn uint64 // its first copy's transaction, when that was in doubt
}

// Judge reads src twice and judges it against exp.
func Judge(src history.Source, exp *Expected) (*Accounting, error) {
	a := &Accounting{seed: maphash.MakeSeed(), delivered: map[uint64]int{}}
	a.Recipients, a.Bounced = exp.Len(), exp.Bounced()
	undelivered := map[string]bool{}
	err := src.Scan(func(ev history.Event) error {
		switch {
		case ev.Kind == history.KindInDoubt && ev.InDoubt != nil:
			d := Doubt{InDoubt: *ev.InDoubt, T: ev.T, Txn: ev.Txn, Session: ev.Session, Instance: ev.Instance, Attempt: ev.Attempt}
			if d.Delivered {
				if _, dup := a.delivered[d.Txn]; dup {
					return nil // one transaction, reported twice, explains once
				}
				a.delivered[d.Txn] = len(a.Doubts)
			} else {
				for _, r := range d.Recipients {
					undelivered[r] = true
				}
			}
			a.Doubts = append(a.Doubts, d)
		case ev.Kind == history.KindSignal && ev.Signal != nil && ev.Signal.Name == "SIGKILL" && ev.Signal.Why != history.WhyStop:
			a.Kills += len(ev.Signal.Targets)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.InDoubt = len(a.Doubts)

	slots := make([]slot, exp.Len())
	var boxes []*box
	unexpected := map[string]bool{}
	err = src.Scan(func(ev history.Event) error {
		if ev.Kind != history.KindCopy {
			return nil
		}
		a.Copies += int64(len(ev.Recipients))
		id := a.hash(ev.MessageID)
		_, doubt := a.delivered[ev.Txn]
		for _, r := range ev.Recipients {
			i, ok := exp.Lookup(r)
			if !ok {
				unexpected[r] = true
				continue
			}
			s := &slots[i]
			if s.copies == 0 {
				s.copies, s.first = 1, id
				if doubt {
					s.firstTxn = ev.Txn
				}
				continue
			}
			if s.mb == 0 {
				m := &box{}
				m.copy(s.first, s.firstTxn, s.firstTxn != 0)
				boxes = append(boxes, m)
				s.mb = int32(len(boxes))
			}
			boxes[s.mb-1].copy(id, ev.Txn, doubt)
			s.copies++
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	a.Unexpected = len(unexpected)
	a.Histogram = map[int]int{}
	var missing []int
	for i := range slots {
		s := &slots[i]
		a.Histogram[int(s.copies)]++
		switch {
		case s.copies == 0:
			missing = append(missing, i)
			continue
		case s.mb == 0:
			continue
		}
		m := boxes[s.mb-1]
		a.Duplicated++
		a.Extra += int(m.copies) - 1
		a.Unexplained += int(m.unexpl)
		if m.ids > 1 {
			a.NewIDs++
		}
		a.rank(Worst{Address: exp.Address(i), Copies: int(m.copies), MessageIDs: int(m.ids), Unexplained: int(m.unexpl)})
	}
	a.Explained = a.Extra - a.Unexplained
	a.Delivered = a.Recipients - len(missing)
	a.Missing = len(missing)
	if a.Missing == 0 {
		delete(a.Histogram, 0)
	}
	// A missing address is explained by an undelivered in-doubt
	// transaction that included it; beyond those, each SIGKILL of an
	// attempt explains one (the message a record-before-send sender had
	// claimed but not begun).
	rest := 0
	for _, i := range missing {
		if undelivered[exp.Address(i)] {
			a.MissingExplained++
		} else {
			rest++
		}
		if len(a.MissingSample) < 10 {
			a.MissingSample = append(a.MissingSample, exp.Address(i))
		}
	}
	a.MissingExplained += min(rest, a.Kills)
	return a, nil
}

func (a *Accounting) hash(messageID string) uint64 {
	if messageID == "" {
		return 0
	}
	return maphash.String(a.seed, messageID) | 1 // 0 is "none"
}

// rank keeps w among the MaxWorst worst addresses.
func (a *Accounting) rank(w Worst) {
	i, _ := slices.BinarySearchFunc(a.Worst, w, func(x, y Worst) int {
		return cmp.Or(cmp.Compare(y.Unexplained, x.Unexplained), cmp.Compare(y.Copies, x.Copies), strings.Compare(x.Address, y.Address))
	})
	if i < MaxWorst {
		a.Worst = slices.Insert(a.Worst, i, w)[:min(len(a.Worst)+1, MaxWorst)]
	}
}

// Doubt returns the in-doubt transaction numbered txn, delivered or not.
func (a *Accounting) Doubt(txn uint64) (Doubt, bool) {
	if i, ok := a.delivered[txn]; ok {
		return a.Doubts[i], true
	}
	for _, d := range a.Doubts {
		if d.Txn == txn {
			return d, true
		}
	}
	return Doubt{}, false
}

// Mailbox replays the rule for one address, copy by copy in the order the
// server counted them, exactly as Judge applied it: the report uses it to
// say which event explains each copy of the addresses it shows.
func (a *Accounting) Mailbox() *Mailbox { return &Mailbox{a: a} }

// Mailbox is the rule's state for one address; see Accounting.Mailbox.
type Mailbox struct {
	a *Accounting
	m box
}

// CopyOutcome is what the rule says of one copy.
type CopyOutcome struct {
	Repeat Repeat
	// InDoubt: this copy's own transaction was delivered in doubt.
	InDoubt bool
	// ExplainedBy is the in-doubt transaction that explains it (nil for a
	// first copy, and for an extra copy nothing explains).
	ExplainedBy *Doubt
}

// Copy judges the address's next copy, counted in transaction txn.
func (b *Mailbox) Copy(messageID string, txn uint64) CopyOutcome {
	_, doubt := b.a.delivered[txn]
	o := b.m.copy(b.a.hash(messageID), txn, doubt)
	out := CopyOutcome{Repeat: o.repeat, InDoubt: doubt}
	if o.explained() {
		d := b.a.Doubts[b.a.delivered[o.by]]
		out.ExplainedBy = &d
	}
	return out
}
