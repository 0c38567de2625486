// The in-doubt rule, in the one place it is written: which extra copies of
// an address an in-doubt transaction explains (docs/verdicts.md).
//
// An extra copy of address A (any copy after its first) is explained only
// by a distinct delivered in-doubt transaction that included A, carried the
// same Message-ID as that copy, and was counted before it: its client could
// not know it had been delivered, so sending it again was right. Each such
// transaction explains at most one extra copy of each of its recipients. A
// copy without a Message-ID is distinct every time and is never explained.
// A repeat of an address that was in flight at no in-doubt event is
// unexplained, however few there are.

package verdict

// Repeat classifies a copy by its Message-ID against the address's
// earlier copies.
type Repeat string

// The classes of a copy.
const (
	RepeatFirst Repeat = "first" // the address's first copy
	RepeatSame  Repeat = "same"  // a Message-ID the address already had
	RepeatNew   Repeat = "new"   // a Message-ID it had not had (or none at all)
)

// outcome is what the rule says of one copy.
type outcome struct {
	repeat Repeat
	by     uint64 // the in-doubt transaction that explains it; 0 none
}

// explained reports whether an extra copy is explained (a first copy is
// not extra).
func (o outcome) explained() bool { return o.by != 0 }

// box is the rule's state for one address: per Message-ID seen, the
// delivered in-doubt transactions that carried it and have explained
// nothing yet, oldest first. Addresses see a handful of Message-IDs, so a
// slice beats a map.
type box struct {
	groups []group
	copies uint32
	ids    uint32 // distinct Message-IDs; a copy without one always counts
	unexpl uint32 // extra copies nothing explains
}

type group struct {
	id    uint64   // hash of the Message-ID; never 0
	avail []uint64 // in-doubt transactions with it, not yet used
}

// copy applies the rule to the next copy of the address, counted in the
// transaction txn; doubt says whether that transaction was delivered in
// doubt. id is the Message-ID's hash, 0 when it had none.
func (m *box) copy(id, txn uint64, doubt bool) outcome {
	m.copies++
	o := outcome{repeat: RepeatNew}
	var g *group
	if id != 0 {
		for i := range m.groups {
			if m.groups[i].id == id {
				g = &m.groups[i]
				break
			}
		}
	}
	switch {
	case m.copies == 1:
		o.repeat = RepeatFirst
	case g != nil:
		o.repeat = RepeatSame
		if len(g.avail) > 0 {
			o.by, g.avail = g.avail[0], g.avail[1:]
		}
	}
	if g == nil {
		m.ids++
		if id != 0 {
			m.groups = append(m.groups, group{id: id})
			g = &m.groups[len(m.groups)-1]
		}
	}
	// Only after deciding this copy: a transaction never explains itself.
	if doubt && g != nil {
		g.avail = append(g.avail, txn)
	}
	if o.repeat != RepeatFirst && !o.explained() {
		m.unexpl++
	}
	return o
}
