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
// copied; and it finds repeats with the index it builds anyway, not with a
// map of every key (50 bytes an address, twice that at the garbage
// collector's peak).
func NewExpected(list, bounced []string) *Expected {
	list = slices.Clip(list)
	e := &Expected{addrs: list, seed: maphash.MakeSeed()}
	e.slots = make([]uint32, tableSize(len(list)))
	own := false // addrs is a copy of its own, no longer list
	n := 0       // distinct so far: addrs[:n]
	for i, a := range list {
		k := mailbox.Key(a)
		if _, dup := e.Lookup(k); dup {
			if !own {
				e.addrs, own = append(make([]string, 0, len(list)), list[:n]...), true
			}
			continue
		}
		if !own && (k != a || n != i) {
			e.addrs, own = append(make([]string, 0, len(list)), list[:n]...), true
		}
		if own {
			e.addrs = append(e.addrs, k)
		}
		e.place(k, n)
		n++
	}
	e.addrs = e.addrs[:n]
	if len(bounced) > 0 {
		out := make(map[string]bool, len(bounced))
		for _, b := range bounced {
			out[mailbox.Key(b)] = true
		}
		kept := make([]string, 0, n)
		for _, a := range e.addrs {
			if out[a] {
				e.bounced++
				continue
			}
			kept = append(kept, a)
		}
		e.addrs = kept
		e.index()
	}
	return e
}

// tableSize is the index size for n addresses: at most 3/4 full.
func tableSize(n int) int {
	size := 8
	for size*3 < n*4 {
		size *= 2
	}
	return size
}

func (e *Expected) index() {
	e.slots = make([]uint32, tableSize(len(e.addrs)))
	for i, a := range e.addrs {
		e.place(a, i)
	}
}

// place puts position i (of key a) in the index.
func (e *Expected) place(a string, i int) {
	mask := uint64(len(e.slots) - 1)
	j := maphash.String(e.seed, a) & mask
	for e.slots[j] != 0 {
		j = (j + 1) & mask
	}
	e.slots[j] = uint32(i + 1)
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
