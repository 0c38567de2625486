// The expected set's index: normalised address -> position in the list.
// A run looks up every copy's recipients in it, so it must be fast; at a
// million recipients it must also be small. A map[string]int costs about
// 56 bytes an address (a string header, an int and the map's slack); this
// open-addressing table of uint32 positions over the list the run keeps
// anyway costs 5 to 11.

package harness

import "hash/maphash"

type addrIndex struct {
	seed  maphash.Seed
	addrs []string // the list the positions point into
	slots []uint32 // 0 empty, else position + 1; len is a power of two
}

// newAddrIndex indexes addrs, which must be distinct.
func newAddrIndex(addrs []string) *addrIndex {
	size := 8
	for size*3 < len(addrs)*4 { // at most 3/4 full
		size *= 2
	}
	x := &addrIndex{seed: maphash.MakeSeed(), addrs: addrs, slots: make([]uint32, size)}
	mask := uint64(size - 1)
	for i, a := range addrs {
		j := maphash.String(x.seed, a) & mask
		for x.slots[j] != 0 {
			j = (j + 1) & mask
		}
		x.slots[j] = uint32(i + 1)
	}
	return x
}

// lookup returns the position of addr, and whether it is in the set.
func (x *addrIndex) lookup(addr string) (int, bool) {
	mask := uint64(len(x.slots) - 1)
	for j := maphash.String(x.seed, addr) & mask; ; j = (j + 1) & mask {
		v := x.slots[j]
		if v == 0 {
			return 0, false
		}
		if x.addrs[v-1] == addr {
			return int(v - 1), true
		}
	}
}
