// Benchmarks of the oracle alone (issue 8, figure 2): copies per second
// from many goroutines, and heap bytes per recipient at a million distinct
// recipients, each beside a reference measured in the same run: the
// map[string]*entry design the oracle had before, under the same sharding.

package fakesmtp_test

import (
	"hash/maphash"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// recorder is what both designs offer the benchmarks.
type recorder interface {
	Record(at time.Time, rcpts []string, messageID string)
	Copies() int64
}

// mapOracle is the reference: the oracle as it was before issue 8, a
// map[string]*entry per shard with a heap object per address and the
// further Message-ID hashes in a slice.
type mapOracle struct {
	seed   maphash.Seed
	copies atomic.Int64
	shards [64]struct {
		mu sync.Mutex
		m  map[string]*mapEntry
		_  [40]byte
	}
}

type mapEntry struct {
	copies, ids uint32
	first, last int64
	id          uint64
	more        []uint64
}

func newMapOracle() *mapOracle {
	o := &mapOracle{seed: maphash.MakeSeed()}
	for i := range o.shards {
		o.shards[i].m = map[string]*mapEntry{}
	}
	return o
}

func (o *mapOracle) Record(at time.Time, rcpts []string, messageID string) {
	ns := at.UnixNano()
	var h uint64
	if messageID != "" {
		h = maphash.String(o.seed, messageID) | 1
	}
	for _, addr := range rcpts {
		sh := &o.shards[maphash.String(o.seed, addr)%64]
		sh.mu.Lock()
		e := sh.m[addr]
		if e == nil {
			e = &mapEntry{first: ns}
			sh.m[string([]byte(addr))] = e
		}
		e.copies++
		e.last = ns
		switch {
		case h == 0:
			e.ids++
		case e.id == 0:
			e.id = h
			e.ids++
		case e.id != h && !slices.Contains(e.more, h):
			e.more = append(e.more, h)
			e.ids++
		}
		sh.mu.Unlock()
	}
	o.copies.Add(int64(len(rcpts)))
}

func (o *mapOracle) Copies() int64 { return o.copies.Load() }

var designs = []struct {
	name string
	make func() recorder
}{
	{"oracle", func() recorder { return fakesmtp.NewOracle() }},
	{"reference=map", func() recorder { return newMapOracle() }},
}

// BenchmarkOracleCopies records single-recipient copies from 16
// goroutines per CPU over a pool of 64K recipients, half of the messages
// with a Message-ID (a new one every round of the pool).
func BenchmarkOracleCopies(b *testing.B) {
	const pool = 1 << 16
	addrs := make([]string, pool)
	ids := make([]string, pool)
	for i := range addrs {
		addrs[i] = "user" + strconv.Itoa(i) + "@example.com"
		ids[i] = "<" + strconv.Itoa(i) + "@bench>"
	}
	for _, d := range designs {
		b.Run(d.name, func(b *testing.B) {
			o := d.make()
			now := time.Now()
			var seq atomic.Int64
			b.SetParallelism(16)
			b.ReportAllocs()
			b.ResetTimer()
			began := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				rcpts := make([]string, 1)
				for pb.Next() {
					i := int(seq.Add(1))
					rcpts[0] = addrs[i%pool]
					id := ""
					if i%2 == 0 {
						id = ids[(i/pool)%pool]
					}
					o.Record(now, rcpts, id)
				}
			})
			elapsed := time.Since(began)
			b.StopTimer()
			if got := o.Copies(); got != int64(b.N) {
				b.Fatalf("counted %d copies for %d records", got, b.N)
			}
			b.ReportMetric(float64(b.N)/elapsed.Seconds(), "copies/s")
		})
	}
}

// BenchmarkOracleMemory records one copy for each of 1,000,000 distinct
// addresses (every one with its own Message-ID) and reports the heap the
// oracle holds afterwards, per recipient. Target: <= 100 B/recipient.
// resent=new-id then sends every address a second copy with a new
// Message-ID, as a sender that restarts from scratch does: the case where
// distinct ids spill out of the entry.
func BenchmarkOracleMemory(b *testing.B) {
	const n = 1_000_000
	addrs := make([]string, n)
	ids := make([]string, n)
	for i := range addrs {
		addrs[i] = "user" + strconv.Itoa(i) + "@example.com"
		ids[i] = "<" + strconv.Itoa(i) + ".campaign@example.com>"
	}
	for _, resend := range []bool{false, true} {
		for _, d := range designs {
			name := d.name
			if resend {
				name = "resent=new-id/" + name
			}
			b.Run(name, func(b *testing.B) {
				var perRcpt float64
				for b.Loop() {
					var before, after runtime.MemStats
					runtime.GC()
					runtime.ReadMemStats(&before)
					o := d.make()
					now := time.Now()
					rcpts := make([]string, 1)
					for i, a := range addrs {
						rcpts[0] = a
						o.Record(now, rcpts, ids[i])
					}
					if resend {
						for i, a := range addrs {
							rcpts[0] = a
							o.Record(now, rcpts, ids[(i+1)%n])
						}
					}
					runtime.GC()
					runtime.ReadMemStats(&after)
					want := int64(n)
					if resend {
						want *= 2
					}
					if got := o.Copies(); got != want {
						b.Fatalf("counted %d copies for %d records", got, want)
					}
					perRcpt = float64(int64(after.HeapAlloc)-int64(before.HeapAlloc)) / n
					runtime.KeepAlive(o)
				}
				b.ReportMetric(perRcpt, "B/recipient")
			})
		}
	}
}

// BenchmarkOracleOneMailbox sends every copy to one address with a new
// Message-ID each time, as a soak test against a single mailbox does: the
// cost per copy must not grow with the copies already counted.
func BenchmarkOracleOneMailbox(b *testing.B) {
	for _, d := range designs {
		b.Run(d.name, func(b *testing.B) {
			o := d.make()
			now := time.Now()
			rcpts := []string{"soak@example.com"}
			ids := make([]string, b.N)
			for i := range ids {
				ids[i] = "<" + strconv.Itoa(i) + "@soak>"
			}
			b.ResetTimer()
			for i := range b.N {
				o.Record(now, rcpts, ids[i])
			}
			b.StopTimer()
			if got := o.Copies(); got != int64(b.N) {
				b.Fatalf("counted %d copies for %d records", got, b.N)
			}
		})
	}
}
