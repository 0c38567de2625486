// The expected set: the distinct mailboxes of the list, less the bounced
// ones, each at its position in list order.

package verdict

import (
	"hash/maphash"
	"slices"

	"github.com/onecopy/onecopy/mailbox"
)

// Expected is the set of addresses a run must deliver to: the distinct
// mailbox keys of the list in list order, less the bounced ones (rejected
// for good by a fault: reported apart, never missing).
//
// Every copy of a run is looked up here, so the lookup is fast; at a
// million recipients the set is also small: a map[string]int costs about
// 56 bytes an address, this open-addressing table of uint32 positions over
// the list 5 to 11.
type Expected struct {
	addrs   []string // the keys, in list order
	bounced int
	seed    maphash.Seed
	slots   []uint32 // 0 empty, else position + 1; len is a power of two
}

// NewExpected builds the expected set of list (addresses as typed, case
// variants and repeats included) less bounced (keys). It keeps list itself
// when no address needs normalising, so a million-address list is not
// copied.
func NewExpected(list, bounced []string) *Expected {
	list = slices.Clip(list)
	seen := make(map[string]struct{}, len(list))
	distinct, own := list, false
	for i, a := range list {
		k := mailbox.Key(a)
		_, dup := seen[k]
		if !own && (dup || k != a) {
			distinct, own = append(make([]string, 0, len(list)), list[:i]...), true
		}
		if !dup {
			seen[k] = struct{}{}
			if own {
				distinct = append(distinct, k)
			}
		}
	}
	seen = nil
	e := &Expected{addrs: distinct}
	if len(bounced) > 0 {
		out := make(map[string]bool, len(bounced))
		for _, b := range bounced {
			out[mailbox.Key(b)] = true
		}
		e.addrs = make([]string, 0, len(distinct))
		for _, a := range distinct {
			if out[a] {
				e.bounced++
				continue
			}
			e.addrs = append(e.addrs, a)
		}
	}
	e.index()
	return e
}

func (e *Expected) index() {
	size := 8
	for size*3 < len(e.addrs)*4 { // at most 3/4 full
		size *= 2
	}
	e.seed, e.slots = maphash.MakeSeed(), make([]uint32, size)
	mask := uint64(size - 1)
	for i, a := range e.addrs {
		j := maphash.String(e.seed, a) & mask
		for e.slots[j] != 0 {
			j = (j + 1) & mask
		}
		e.slots[j] = uint32(i + 1)
	}
}

// Len is the number of expected addresses.
func (e *Expected) Len() int { return len(e.addrs) }

// Bounced is the number of distinct listed addresses left out as bounced.
func (e *Expected) Bounced() int { return e.bounced }

// Address is the key at position i.
func (e *Expected) Address(i int) string { return e.addrs[i] }

// Lookup returns the position of a key, and whether it is expected.
func (e *Expected) Lookup(key string) (int, bool) {
	mask := uint64(len(e.slots) - 1)
	for j := maphash.String(e.seed, key) & mask; ; j = (j + 1) & mask {
		v := e.slots[j]
		if v == 0 {
			return 0, false
		}
		if e.addrs[v-1] == key {
			return int(v - 1), true
		}
	}
}
