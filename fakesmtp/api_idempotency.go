// Idempotency keys, as Resend documents them: a key is remembered for a
// window (24 h) from its first request; the same key with the same payload
// gets the first answer again and sends nothing; with another payload, or
// while the first request is still being served, the provider's 409. Only
// a request that counted something keeps its key: one throttled or
// refused frees it for the retry.

package fakesmtp

import (
	"sync"
	"time"
)

// idemVerdict is what a request with a key may do.
type idemVerdict int

const (
	idemFresh      idemVerdict = iota // serve it; the key is now in flight
	idemReplay                        // answer with the first request's answer
	idemMismatch                      // the key was used with another payload
	idemConcurrent                    // the key's first request is still being served
)

// idemStore remembers keys by provider and key. Entries expire by the
// fake's clock and are swept as the store grows, so it holds about one
// window's worth of keys.
type idemStore struct {
	mu      sync.Mutex
	m       map[string]*idemEntry
	sweepAt int
}

type idemEntry struct {
	sum  [32]byte
	at   time.Time    // the fake's clock at the key's first request
	resp *apiResponse // the answer to replay; nil while the first request is served
}

// begin looks a key up at the fake's time now.
func (s *idemStore) begin(provider, key string, sum [32]byte, now time.Time, window time.Duration) (*idemEntry, idemVerdict) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := provider + "\x00" + key
	if e, ok := s.m[k]; ok && now.Sub(e.at) < window {
		switch {
		case e.sum != sum:
			return e, idemMismatch
		case e.resp == nil:
			return e, idemConcurrent
		}
		return e, idemReplay
	}
	if s.m == nil {
		s.m = map[string]*idemEntry{}
	}
	if len(s.m) >= s.sweepAt {
		for k, e := range s.m {
			if now.Sub(e.at) >= window {
				delete(s.m, k)
			}
		}
		s.sweepAt = max(2*len(s.m), 1024)
	}
	e := &idemEntry{sum: sum, at: now}
	s.m[k] = e
	return e, idemFresh
}

// finish ends the first request of a key: resp is what retries replay,
// nil when it counted nothing (the key is then free again).
func (s *idemStore) finish(provider, key string, e *idemEntry, resp *apiResponse) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := provider + "\x00" + key
	if s.m[k] != e {
		return // expired and taken by a later request meanwhile
	}
	if resp == nil {
		delete(s.m, k)
		return
	}
	e.resp = resp
}
