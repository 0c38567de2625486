// The oracle: the per-recipient count of accepted copies that every verdict
// rests on. It is sharded so hundreds of concurrent sessions can record
// without contending on one lock, and laid out for memory, so a list of a
// million recipients costs well under 100 bytes each (see table below).

package fakesmtp

import (
	"encoding/binary"
	"hash/maphash"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onecopy/onecopy/mailbox"
)

// Normalize returns the counter key of an address, so Bob@Example.COM and
// bob@example.com are one mailbox: mailbox.Key, the one definition
// (docs/addresses.md).
func Normalize(addr string) string { return mailbox.Key(addr) }

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

const (
	oracleShardBits = 6
	oracleShards    = 1 << oracleShardBits
)

// Oracle counts copies per normalised address. The zero value is not usable;
// call NewOracle.
type Oracle struct {
	seed maphash.Seed
	// changed is signalled at every Record, for the waits (http_wait.go);
	// resets counts Reset calls, so they can tell a counter that went
	// back to where it was from one that never moved.
	changed signal
	resets  atomic.Int64
	_       [64]byte // every Record reads changed: keep it off shard 0's lock's cache line
	shards  [oracleShards]shard
}

// shard is one lock's worth of the oracle. Its counters are atomics only so
// Copies and Histogram can sum them without locking; they change under mu.
type shard struct {
	mu     sync.Mutex
	copies atomic.Int64
	dist   [5]atomic.Int64 // recipients by copies: 1, 2, 3, 4+ (index 0 unused)
	t      table
	_      [64]byte // keep shards on separate cache lines
}

// NewOracle returns an empty oracle.
func NewOracle() *Oracle {
	o := &Oracle{seed: maphash.MakeSeed()}
	o.changed.init()
	return o
}

// Record counts one copy for each address in rcpts (already normalised and
// distinct) of a message with the given Message-ID ("" when it had none).
func (o *Oracle) Record(at time.Time, rcpts []string, messageID string) {
	ns := at.UnixNano()
	var id uint64
	if messageID != "" {
		id = maphash.String(o.seed, messageID) | 1 // 0 is reserved for "none"
	}
	for _, addr := range rcpts {
		addr = clip(addr)
		h := maphash.String(o.seed, addr)
		sh := &o.shards[h%oracleShards]
		hash := uint32(h >> oracleShardBits)
		sh.mu.Lock()
		n, e := sh.t.find(hash, addr)
		if e == nil {
			n, e = sh.t.insert(hash, addr)
			e.first = ns
		}
		if e.copies > 0 {
			sh.dist[min(e.copies, 4)].Add(-1)
		}
		e.copies++
		sh.dist[min(e.copies, 4)].Add(1)
		e.last = ns
		if sh.t.newID(n, e, id) {
			e.ids++
		}
		sh.copies.Add(1)
		sh.mu.Unlock()
	}
	o.changed.notify()
}

// Copies is the total number of copies counted.
func (o *Oracle) Copies() int64 {
	var n int64
	for i := range o.shards {
		n += o.shards[i].copies.Load()
	}
	return n
}

// Get returns the counts of one address.
func (o *Oracle) Get(addr string) Recipient {
	key := clip(Normalize(addr))
	h := maphash.String(o.seed, key)
	sh := &o.shards[h%oracleShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	_, e := sh.t.find(uint32(h>>oracleShardBits), key)
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
	s := Snapshot{Recipients: []Recipient{}}
	o.Each(func(r Recipient) { s.Recipients = append(s.Recipients, r) })
	s.Copies = o.Copies()
	slices.SortFunc(s.Recipients, func(a, b Recipient) int { return strings.Compare(a.Address, b.Address) })
	return s
}

// Each calls f for every recipient with at least one copy, in no
// particular order, without building a Snapshot: at a million recipients
// that saves a sorted copy of them all. Each shard is read atomically; f
// runs under its lock, so it must not call back into the oracle.
func (o *Oracle) Each(f func(Recipient)) {
	for i := range o.shards {
		sh := &o.shards[i]
		sh.mu.Lock()
		sh.t.each(func(addr string, e *entry) { f(e.recipient(addr)) })
		sh.mu.Unlock()
	}
}

// Histogram returns how many recipients got 1, 2, 3 and 4-or-more copies
// (index 0 is unused: the oracle cannot know who got nothing).
func (o *Oracle) Histogram() [5]int64 {
	var h [5]int64
	for i := range o.shards {
		for j := 1; j < len(h); j++ {
			h[j] += o.shards[i].dist[j].Load()
		}
	}
	return h
}

// Reset forgets every count.
func (o *Oracle) Reset() {
	o.resets.Add(1)
	for i := range o.shards {
		sh := &o.shards[i]
		sh.mu.Lock()
		sh.t = table{}
		sh.copies.Store(0)
		for j := range sh.dist {
			sh.dist[j].Store(0)
		}
		sh.mu.Unlock()
	}
}

// table is one shard's map from address to entry, built for memory rather
// than on Go's map: at a million recipients a map[string]*entry cost a
// string header, a map slot, a pointer and a heap object per address, about
// 200 bytes. Here an address costs its entry (40 bytes, in fixed-size
// chunks that never move), its bytes once in an append-only arena (with a
// one- or two-byte length), and one uint32 in an open-addressing index kept
// between 3/8 and 3/4 full: about 75 bytes for a 22-byte address.
//
// Distinct Message-IDs stay exact: the first one's hash lives in the entry,
// and an address that gets several (a sender that re-sends with a new id,
// a soak test sending to one mailbox) spills the others into one set per
// shard, keyed by entry and id: about 20 bytes an extra id, where a set
// per address cost 200 bytes for its first.
type table struct {
	index   []uint32  // 0 empty, else entry number + 1; len is a power of two
	chunks  [][]entry // entryChunk entries each
	n       uint32    // entries in use
	arena   [][]byte  // address bytes, each behind a uvarint length
	moreIDs map[spilledID]struct{}
}

// spilledID is a further distinct Message-ID of entry n.
type spilledID struct {
	n  uint32
	id uint64
}

// entry is kept small: at a million recipients every byte counts.
type entry struct {
	ref    uint32 // where the address is: arena chunk << 16 | offset
	hash   uint32 // the address's hash bits above the shard bits
	copies uint32
	ids    uint32 // distinct Message-IDs; a copy without one is always distinct
	first  int64  // unix nanoseconds
	last   int64  // unix nanoseconds
	id     uint64 // hash of the first Message-ID seen (0: none yet)
}

const (
	entryChunk     = 128
	arenaFirst     = 512
	arenaMax       = 1 << 16 // offsets within a chunk fit the low 16 bits of ref
	maxAddressSize = arenaMax - binary.MaxVarintLen16
)

// clip cuts an address to what the arena can hold; the guard's line limit
// keeps real ones far shorter.
func clip(addr string) string {
	if len(addr) > maxAddressSize {
		return addr[:maxAddressSize]
	}
	return addr
}

func (t *table) entry(n uint32) *entry { return &t.chunks[n/entryChunk][n%entryChunk] }

func (t *table) address(ref uint32) []byte {
	c := t.arena[ref>>16][ref&(arenaMax-1):]
	l, k := binary.Uvarint(c)
	return c[k : k+int(l)]
}

// find returns the entry of addr, or nil.
func (t *table) find(hash uint32, addr string) (uint32, *entry) {
	if len(t.index) == 0 {
		return 0, nil
	}
	mask := uint32(len(t.index) - 1)
	for i := hash & mask; ; i = (i + 1) & mask {
		v := t.index[i]
		if v == 0 {
			return 0, nil
		}
		if e := t.entry(v - 1); e.hash == hash && string(t.address(e.ref)) == addr {
			return v - 1, e
		}
	}
}

// insert adds addr, which find did not find, with zero counts.
func (t *table) insert(hash uint32, addr string) (uint32, *entry) {
	if (t.n+1)*4 > uint32(len(t.index))*3 {
		t.grow()
	}
	n := t.n
	t.n++
	if n%entryChunk == 0 {
		t.chunks = append(t.chunks, make([]entry, entryChunk))
	}
	e := t.entry(n)
	*e = entry{ref: t.store(addr), hash: hash}
	t.place(hash, n)
	return n, e
}

func (t *table) place(hash, n uint32) {
	mask := uint32(len(t.index) - 1)
	i := hash & mask
	for t.index[i] != 0 {
		i = (i + 1) & mask
	}
	t.index[i] = n + 1
}

func (t *table) grow() {
	t.index = make([]uint32, max(8, 2*len(t.index)))
	for n := uint32(0); n < t.n; n++ {
		t.place(t.entry(n).hash, n)
	}
}

// store appends addr to the arena and returns its ref.
func (t *table) store(addr string) uint32 {
	need := binary.MaxVarintLen16 + len(addr)
	last := len(t.arena) - 1
	if last < 0 || cap(t.arena[last])-len(t.arena[last]) < need {
		size := arenaFirst
		if last >= 0 {
			size = min(2*cap(t.arena[last]), arenaMax)
		}
		t.arena = append(t.arena, make([]byte, 0, max(size, need)))
		last++
	}
	c := t.arena[last]
	ref := uint32(last)<<16 | uint32(len(c))
	c = binary.AppendUvarint(c, uint64(len(addr)))
	t.arena[last] = append(c, addr...)
	return ref
}

// newID reports whether id is a Message-ID entry n has not seen, and
// remembers it.
func (t *table) newID(n uint32, e *entry, id uint64) bool {
	switch {
	case id == 0:
		return true
	case e.id == 0:
		e.id = id
		return true
	case e.id == id:
		return false
	}
	k := spilledID{n, id}
	if _, seen := t.moreIDs[k]; seen {
		return false
	}
	if t.moreIDs == nil {
		t.moreIDs = map[spilledID]struct{}{}
	}
	t.moreIDs[k] = struct{}{}
	return true
}

func (t *table) each(f func(addr string, e *entry)) {
	for n := uint32(0); n < t.n; n++ {
		e := t.entry(n)
		f(string(t.address(e.ref)), e)
	}
}
