// The oracle: the per-recipient count of accepted copies that every verdict
// rests on. It is sharded so hundreds of concurrent sessions can record
// without contending on one lock.

package fakesmtp

import (
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Normalize returns the counter key of an address: trimmed and lower-cased,
// so Bob@Example.COM and bob@example.com are one mailbox.
func Normalize(addr string) string {
	return strings.ToLower(strings.TrimSpace(addr))
}

// Recipient is what the oracle knows of one normalised address.
type Recipient struct {
	Address    string    `json:"address"`
	Copies     int       `json:"copies"`
	MessageIDs int       `json:"message_ids"`
	First      time.Time `json:"first"`
	Last       time.Time `json:"last"`
}

// Snapshot is a consistent-enough copy of the counts: every recipient with at
// least one copy, sorted by address.
type Snapshot struct {
	Copies     int64       `json:"copies"`
	Recipients []Recipient `json:"recipients"`
}

// Lookup returns the recipient with the normalised address, or a zero
// Recipient when it got nothing.
func (s Snapshot) Lookup(addr string) Recipient {
	key := Normalize(addr)
	i, ok := slices.BinarySearchFunc(s.Recipients, key, func(r Recipient, k string) int {
		return strings.Compare(r.Address, k)
	})
	if !ok {
		return Recipient{Address: key}
	}
	return s.Recipients[i]
}

const oracleShards = 64

// Oracle counts copies per normalised address. The zero value is not usable;
// call NewOracle.
type Oracle struct {
	seed   maphash.Seed
	copies atomic.Int64
	dist   [5]atomic.Int64 // recipients by copies: 1, 2, 3, 4+ (index 0 unused)
	shards [oracleShards]shard
}

type shard struct {
	mu sync.Mutex
	m  map[string]*entry
	_  [40]byte // keep shards on separate cache lines
}

// entry is kept small: at a million recipients every byte counts.
type entry struct {
	copies uint32
	ids    uint32   // distinct Message-IDs; a copy without one is always distinct
	first  int64    // unix nanoseconds
	last   int64    // unix nanoseconds
	id     uint64   // hash of the first Message-ID seen
	more   []uint64 // hashes of further distinct Message-IDs, rarely needed
}

// NewOracle returns an empty oracle.
func NewOracle() *Oracle {
	o := &Oracle{seed: maphash.MakeSeed()}
	for i := range o.shards {
		o.shards[i].m = make(map[string]*entry)
	}
	return o
}

// Record counts one copy for each address in rcpts (already normalised and
// distinct) of a message with the given Message-ID ("" when it had none).
func (o *Oracle) Record(at time.Time, rcpts []string, messageID string) {
	ns := at.UnixNano()
	var h uint64
	if messageID != "" {
		h = maphash.String(o.seed, messageID) | 1 // 0 is reserved for "none"
	}
	for _, addr := range rcpts {
		sh := &o.shards[maphash.String(o.seed, addr)%oracleShards]
		sh.mu.Lock()
		e := sh.m[addr]
		if e == nil {
			e = &entry{first: ns}
			sh.m[strings.Clone(addr)] = e
		}
		if e.copies > 0 {
			o.dist[min(e.copies, 4)].Add(-1)
		}
		e.copies++
		o.dist[min(e.copies, 4)].Add(1)
		e.last = ns
		if e.newID(h) {
			e.ids++
		}
		sh.mu.Unlock()
	}
	o.copies.Add(int64(len(rcpts)))
}

// newID reports whether h is a Message-ID this entry has not seen, and
// remembers it.
func (e *entry) newID(h uint64) bool {
	if h == 0 {
		return true
	}
	if e.id == 0 {
		e.id = h
		return true
	}
	if e.id == h || slices.Contains(e.more, h) {
		return false
	}
	e.more = append(e.more, h)
	return true
}

// Copies is the total number of copies counted.
func (o *Oracle) Copies() int64 { return o.copies.Load() }

// Get returns the counts of one address.
func (o *Oracle) Get(addr string) Recipient {
	key := Normalize(addr)
	sh := &o.shards[maphash.String(o.seed, key)%oracleShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := sh.m[key]
	if e == nil {
		return Recipient{Address: key}
	}
	return e.recipient(key)
}

func (e *entry) recipient(addr string) Recipient {
	return Recipient{
		Address:    addr,
		Copies:     int(e.copies),
		MessageIDs: int(e.ids),
		First:      time.Unix(0, e.first),
		Last:       time.Unix(0, e.last),
	}
}

// Snapshot copies the counts out. Sessions keep recording meanwhile; each
// shard is copied atomically.
func (o *Oracle) Snapshot() Snapshot {
	s := Snapshot{Copies: o.copies.Load(), Recipients: []Recipient{}}
	for i := range o.shards {
		sh := &o.shards[i]
		sh.mu.Lock()
		for addr, e := range sh.m {
			s.Recipients = append(s.Recipients, e.recipient(addr))
		}
		sh.mu.Unlock()
	}
	slices.SortFunc(s.Recipients, func(a, b Recipient) int { return strings.Compare(a.Address, b.Address) })
	return s
}

// Histogram returns how many recipients got 1, 2, 3 and 4-or-more copies
// (index 0 is unused: the oracle cannot know who got nothing).
func (o *Oracle) Histogram() [5]int64 {
	var h [5]int64
	for i := 1; i < len(h); i++ {
		h[i] = o.dist[i].Load()
	}
	return h
}

// Reset forgets every count.
func (o *Oracle) Reset() {
	for i := range o.shards {
		sh := &o.shards[i]
		sh.mu.Lock()
		sh.m = make(map[string]*entry)
		sh.mu.Unlock()
	}
	o.copies.Store(0)
	for i := range o.dist {
		o.dist[i].Store(0)
	}
}
