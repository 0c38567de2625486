// GET /api/v1/wait and Server.Wait: a long poll that returns when the
// counts reach what a test waits for, or when the server has been quiet,
// so a test framework in any language needs no polling loop of its own.
//
// The counting paths pay for it only while someone waits, and then one
// non-blocking send: they signal a one-slot channel (signal). A single
// dispatcher goroutine per server drains it, at most once per
// waitDispatchGap, reads the shard counters once for every waiter, and
// wakes only the waiters whose condition may now hold. So the SMTP path
// costs the same with a thousand waiters as with one, and each waiter is
// woken for its own reason, not for every copy.

package fakesmtp

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onecopy/onecopy/mailbox"
)

// Bounds of GET /api/v1/wait's timeout parameter.
const (
	waitDefaultTimeout = 30 * time.Second
	// waitMaxTimeout stays under the idle timeouts of the proxies and
	// HTTP clients a long poll may cross; a client that wants longer asks
	// again.
	waitMaxTimeout = 5 * time.Minute
)

// waitDispatchGap is the least time between two rounds of the dispatcher.
// Under a stream of copies it bounds what the waiters cost (one round per
// gap, whatever the copy rate); an isolated copy is dispatched at once.
const waitDispatchGap = time.Millisecond

// signal wakes the dispatcher. With nobody listening it costs its sender
// one atomic load; otherwise one non-blocking send on a one-slot channel,
// so any number of sends before the dispatcher wakes are one.
type signal struct {
	listeners atomic.Int32
	ch        chan struct{} // capacity 1
}

func (s *signal) init() { s.ch = make(chan struct{}, 1) }

func (s *signal) notify() {
	if s.listeners.Load() == 0 {
		return
	}
	s.kick()
}

func (s *signal) kick() {
	select {
	case s.ch <- struct{}{}:
	default: // a kick is pending already; the dispatcher will see this change too
	}
}

// WaitCondition is what Server.Wait and GET /api/v1/wait wait for. Every
// part that is set must hold at once.
type WaitCondition struct {
	// Copies is how many copies must have been counted: in all, or, with
	// Address, to that address. 0 means 1 with Address, else no condition.
	Copies int64
	// Address is a recipient that must have a copy (Copies of them when
	// Copies is set); matched as the oracle keys it (Normalize).
	Address string
	// Quiet is how long the server must have been quiet: no copy counted
	// and no session open for that long. An SMTP session is open from its
	// connection to its close; a provider API connection only while a
	// send request is being served, not while it idles between requests.
	Quiet time.Duration
}

func (c WaitCondition) check() error {
	switch {
	case c.Copies < 0:
		return fmt.Errorf("Copies %d: want a positive count, or 0 for none", c.Copies)
	case c.Quiet < 0:
		return fmt.Errorf("Quiet %v: want a positive duration, or 0 for none", c.Quiet)
	case c.empty():
		return errors.New("nothing to wait for: set Copies, Address or Quiet")
	}
	if c.Address != "" {
		if err := mailbox.Check(c.Address); err != nil {
			return fmt.Errorf("Address: %w", err)
		}
	}
	return nil
}

func (c WaitCondition) empty() bool { return c.Copies == 0 && c.Address == "" && c.Quiet == 0 }

// WaitResult is the state of the server when a wait ended.
type WaitResult struct {
	// Met is true when the condition held, false when the wait ended
	// first (its timeout, or its context).
	Met bool `json:"met"`
	// Waited is how long the wait took.
	Waited time.Duration `json:"-"`
	// Copies is every copy counted, to any address.
	Copies int64 `json:"copies"`
	// OpenSessions is the SMTP sessions open and the provider API send
	// requests being served.
	OpenSessions int `json:"open_sessions"`
	// Recipient is the counts of WaitCondition.Address, when it was set
	// (zero counts when it has none).
	Recipient *Recipient `json:"recipient,omitempty"`
}

// waitJSON is GET /api/v1/wait's answer: the result, with how long it
// waited as a duration like the request's own.
type waitJSON struct {
	WaitResult
	Waited string `json:"waited"`
}

// Wait blocks until c holds, and returns the counts at that moment with
// Met set. When ctx ends first it returns the counts then, Met false, and
// ctx's error; when the server closes, an error wrapping net.ErrClosed.
func (srv *Server) Wait(ctx context.Context, c WaitCondition) (WaitResult, error) {
	began := time.Now()
	if err := c.check(); err != nil {
		return WaitResult{}, fmt.Errorf("fakesmtp: waiting: %w", err)
	}
	if c.Address != "" {
		c.Address = clip(Normalize(c.Address))
		c.Copies = max(c.Copies, 1)
	}
	w := &waiter{cond: c, wake: make(chan struct{}, 1)}
	if c.Address != "" {
		w.shard = srv.oracle.shardOf(c.Address)
	}
	srv.wait.add(srv, w)
	defer srv.wait.remove(srv, w)

	// The quiet timer runs only while no session is open; a session's
	// end wakes the waiter through the dispatcher, which re-arms it.
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	for {
		res, quietIn := srv.waitState(w, began)
		if res.Met {
			return res, nil
		}
		quiet.Stop()
		if quietIn >= 0 {
			quiet.Reset(quietIn)
		}
		select {
		case <-w.wake:
		case <-quiet.C:
		case <-ctx.Done():
			res, _ := srv.waitState(w, began)
			return res, ctx.Err()
		case <-srv.ctx.Done():
			res, _ := srv.waitState(w, began)
			return res, fmt.Errorf("fakesmtp: the server closed while waiting: %w", net.ErrClosed)
		}
	}
}

// waitState evaluates w's condition now. quietIn is how long until the
// quiet part could hold if nothing happens meanwhile, or -1 when there is
// nothing to time (no quiet part, it holds, or a session is open).
func (srv *Server) waitState(w *waiter, began time.Time) (res WaitResult, quietIn time.Duration) {
	c := w.cond
	res.Copies = srv.oracle.Copies()
	counted := true
	switch {
	case c.Address != "":
		r := srv.oracle.Get(c.Address)
		res.Recipient = &r
		counted = int64(r.Copies) >= c.Copies
	case c.Copies > 0:
		counted = res.Copies >= c.Copies
	}
	w.counted.Store(counted)
	// Sessions first, then when the last one ended: an ending is
	// recorded before its session stops being counted as open.
	res.OpenSessions = srv.openSessions()
	quietIn = -1
	quiet := true
	if c.Quiet > 0 {
		since := srv.wait.since() - time.Duration(srv.wait.lastEnd.Load())
		switch {
		case res.OpenSessions > 0:
			quiet = false
		case since < c.Quiet:
			quiet, quietIn = false, c.Quiet-since
		}
	}
	res.Met = counted && quiet
	res.Waited = time.Since(began)
	return res, quietIn
}

// openSessions counts the SMTP sessions open and the provider API send
// requests being served.
func (srv *Server) openSessions() int {
	srv.mu.Lock()
	n := len(srv.sessions)
	srv.mu.Unlock()
	return n + int(srv.wait.sending.Load())
}

// sessionEnded records that a session (or a send request) ended now.
// It never moves the time back, whatever order two endings store in.
func (h *waitHub) sessionEnded() {
	now := int64(h.since())
	for {
		old := h.lastEnd.Load()
		if now <= old || h.lastEnd.CompareAndSwap(old, now) {
			return
		}
	}
}

// sending counts a provider API send request as an open session while it
// is served, for the quiet condition.
func (srv *Server) sending(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		srv.wait.sending.Add(1)
		defer func() {
			srv.wait.sessionEnded() // before it stops counting as open: see waitState
			srv.wait.sending.Add(-1)
			srv.oracle.changed.notify()
		}()
		h(w, r)
	}
}

// waitHub is a server's share of the waits: the waiters, the dispatcher
// that wakes them, and what the quiet condition reads.
type waitHub struct {
	start   time.Time    // when the server started: quiet is measured from it at the latest
	lastEnd atomic.Int64 // when a session or send request last ended, as since() did then
	sending atomic.Int64 // provider API send requests being served

	mu      sync.Mutex
	waiters map[*waiter]struct{}
	running bool // a dispatcher goroutine is there
	// What the dispatcher's last round saw: a shard whose counter moved
	// (or any, after a reset) may have changed the counts of the
	// addresses it holds.
	seen       [oracleShards]int64
	seenResets int64
	seenEnd    int64
}

// since is the monotonic time since the server started.
func (h *waitHub) since() time.Duration { return time.Since(h.start) }

// waiter is one Wait in progress.
type waiter struct {
	cond  WaitCondition // Address normalised
	shard int           // the oracle shard that holds Address
	wake  chan struct{} // capacity 1: the dispatcher's "look again"
	// counted: the counting part held at the waiter's last look, so the
	// dispatcher wakes it only for the quiet part (or when it looks again
	// on its own, after a timer).
	counted atomic.Bool
}

func (h *waitHub) add(srv *Server, w *waiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.waiters == nil {
		h.waiters = map[*waiter]struct{}{}
	}
	h.waiters[w] = struct{}{}
	// Listening before the waiter's first look: a copy counted after that
	// look signals, one counted before it is seen by it.
	srv.oracle.changed.listeners.Add(1)
	if !h.running {
		h.running = true
		go h.run(srv)
	}
}

func (h *waitHub) remove(srv *Server, w *waiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.waiters, w)
	if srv.oracle.changed.listeners.Add(-1) == 0 {
		srv.oracle.changed.kick() // let the dispatcher see it is no longer needed
	}
}

// run is the dispatcher: a round per signal, no more often than
// waitDispatchGap, until no waiter is left.
func (h *waitHub) run(srv *Server) {
	gap := time.NewTimer(time.Hour)
	gap.Stop()
	defer gap.Stop()
	var last time.Time
	for {
		<-srv.oracle.changed.ch
		if d := waitDispatchGap - time.Since(last); d > 0 {
			gap.Reset(d)
			<-gap.C
		}
		last = time.Now()
		h.mu.Lock()
		if len(h.waiters) == 0 {
			h.running = false
			h.mu.Unlock()
			return
		}
		h.dispatch(srv.oracle)
		h.mu.Unlock()
	}
}

// dispatch wakes every waiter whose condition may hold now. It reads each
// shard's counter once for all of them; it takes a shard's lock only for
// a waiter whose address lives in a shard that counted since the last
// round.
func (h *waitHub) dispatch(o *Oracle) {
	var copies int64
	var moved uint64 // bit i: shard i counted (or was reset) since the last round
	resets := o.resets.Load()
	for i := range o.shards {
		n := o.shards[i].copies.Load()
		copies += n
		if n != h.seen[i] || resets != h.seenResets {
			moved |= 1 << i
		}
		h.seen[i] = n
	}
	h.seenResets = resets
	end := h.lastEnd.Load()
	ended := end != h.seenEnd
	h.seenEnd = end
	for w := range h.waiters {
		c := w.cond
		due := ended && c.Quiet > 0
		if !due && !w.counted.Load() {
			switch {
			case c.Address != "":
				due = moved&(1<<w.shard) != 0 && int64(o.Get(c.Address).Copies) >= c.Copies
			case c.Copies > 0:
				due = copies >= c.Copies
			}
		}
		if due {
			select {
			case w.wake <- struct{}{}:
			default: // woken already, not yet looked
			}
		}
	}
}

// shardOf is the index of the shard that holds key (normalised, clipped).
func (o *Oracle) shardOf(key string) int {
	return int(maphash.String(o.seed, key) % oracleShards)
}

// serveWait is GET /api/v1/wait. It answers 200 whether the condition
// held or the timeout passed first: "met" says which, so a client reads
// one body either way and no HTTP library mistakes a timeout for a
// failed request (many retry a 408 on their own).
func (srv *Server) serveWait(w http.ResponseWriter, r *http.Request) {
	c, timeout, err := parseWait(r.URL.Query())
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	res, err := srv.Wait(ctx, c)
	switch {
	case srv.ctx.Err() != nil:
		http.Error(w, "the server is shutting down: nothing more will be counted", http.StatusServiceUnavailable)
	case err == nil || errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil:
		writeJSON(w, waitJSON{res, res.Waited.String()})
	default:
		// The client went away: there is nobody to answer.
	}
}

// parseWait reads GET /api/v1/wait's query.
func parseWait(q url.Values) (c WaitCondition, timeout time.Duration, err error) {
	timeout = waitDefaultTimeout
	for name, vs := range q {
		if len(vs) != 1 {
			return c, 0, fmt.Errorf("%s= given %d times: give it once", name, len(vs))
		}
		v := vs[0]
		switch name {
		case "copies":
			n, err := strconv.ParseInt(v, 10, 64)
			if err != nil || n <= 0 {
				return c, 0, fmt.Errorf("copies=%q: want a positive count, like /api/v1/wait?copies=3", v)
			}
			c.Copies = n
		case "address":
			if err := mailbox.Check(v); err != nil {
				return c, 0, fmt.Errorf("address=%q is not a mailbox onecopy counts (%w); path-escape it, like /api/v1/wait?address=bob%%40example.com", v, err)
			}
			c.Address = v
		case "quiet":
			d, err := time.ParseDuration(v)
			if err != nil || d <= 0 {
				return c, 0, fmt.Errorf("quiet=%q: want a positive duration, like /api/v1/wait?quiet=500ms", v)
			}
			c.Quiet = d
		case "timeout":
			d, err := time.ParseDuration(v)
			if err != nil || d < 0 || d > waitMaxTimeout {
				return c, 0, fmt.Errorf("timeout=%q: want a duration from 0s to %v, like timeout=30s (the default); ask again to wait longer", v, waitMaxTimeout)
			}
			timeout = d
		default:
			return c, 0, fmt.Errorf("%s=: no such parameter; /api/v1/wait takes copies=N, address=A, quiet=D and timeout=D", name)
		}
	}
	if c.empty() {
		return c, 0, errors.New("nothing to wait for: give copies=N, address=A or quiet=D (several must all hold), like /api/v1/wait?copies=3&timeout=10s")
	}
	return c, timeout, nil
}
