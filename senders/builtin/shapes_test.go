// shapes_test.go: the ledger in its shapes: chunks of Batch recipients per
// transaction with partial RCPT acceptance, Connections workers in
// parallel, and SIGTERM finishing every worker's transaction in hand.
package builtin

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"
)

func newShaped(t *testing.T, name string, batch, conns int) *ledger {
	t.Helper()
	s, err := New(name, Options{Timeout: 5 * time.Second, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Batch: batch, Connections: conns})
	if err != nil {
		t.Fatal(err)
	}
	return s.(*ledger)
}

func TestLedgerBatchOneMessagePerChunk(t *testing.T) {
	srv := newCountingServer(t)
	list := addrs(25)
	env := testEnv(t, srv.Addr, list...)
	mustSend(t, newShaped(t, "ledger", 10, 1), env)
	got := srv.deliveries()
	if c := counts(got); !reflect.DeepEqual(c, once(list...)) {
		t.Fatalf("copies %v, want one each", c)
	}
	for i, d := range got {
		// Chunks by list position: 1-10, 11-20, 21-25.
		if want := ledgerMessageID(env.Campaign, fmt.Sprintf("chunk %d of 10", i/10)); d.MessageID != want {
			t.Fatalf("copy %d (%s) has Message-ID %s, want %s", i, d.To, d.MessageID, want)
		}
	}
	srv.mu.Lock()
	raw := string(srv.raw[0])
	srv.mu.Unlock()
	if !strings.Contains(raw, "To: undisclosed-recipients:;\r\n") {
		t.Errorf("a chunk's message names a recipient in To:\n%s", raw)
	}
}

// One chunk of four: b refused for good, c refused for now. a and d get
// the message, b is bounced, c is retried alone in the same message.
func TestLedgerBatchPartialRCPT(t *testing.T) {
	srv := newScriptedServer(t, map[string][]string{
		"RCPT b@x.test": {"550 5.1.1 no such user"},
		"RCPT c@x.test": {"451 4.7.1 greylisted"},
	})
	env := testEnv(t, srv.Addr, "a@x.test", "b@x.test", "c@x.test", "d@x.test")
	s := newShaped(t, "ledger", 4, 1)
	mustSend(t, s, env)
	want := []string{"RCPT a@x.test", "RCPT b@x.test", "RCPT c@x.test", "RCPT d@x.test", "RCPT c@x.test"}
	if got := srv.commands("RCPT"); !reflect.DeepEqual(got, want) {
		t.Fatalf("RCPTs %q, want %q", got, want)
	}
	if n := len(srv.commands("DATA")); n != 2 {
		t.Fatalf("%d DATA, want 2 (the chunk, then c alone)", n)
	}
	got := srv.deliveries()
	var to []string
	for _, d := range got {
		to = append(to, d.To)
		if id := ledgerMessageID(env.Campaign, "chunk 0 of 4"); d.MessageID != id {
			t.Errorf("%s got Message-ID %s, want the chunk's %s", d.To, d.MessageID, id)
		}
	}
	if want := []string{"a@x.test", "d@x.test", "c@x.test"}; !reflect.DeepEqual(to, want) {
		t.Fatalf("delivered to %q, want %q", to, want)
	}
	mustSend(t, s, env)
	if n := len(srv.commands("RCPT")); n != len(want) {
		t.Fatalf("the rerun sent %d RCPTs; sent and bounced recipients are done", n-len(want))
	}
}

func TestLedgerBatchNoRCPTAcceptedSendsNoDATA(t *testing.T) {
	srv := newScriptedServer(t, map[string][]string{
		"RCPT a@x.test": {"451 4.7.1 greylisted"},
		"RCPT b@x.test": {"452 4.5.3 busy"},
	})
	env := testEnv(t, srv.Addr, "a@x.test", "b@x.test")
	mustSend(t, newShaped(t, "ledger", 2, 1), env)
	if n := len(srv.commands("DATA")); n != 1 {
		t.Fatalf("%d DATA, want 1: none after a transaction with no recipient accepted", n)
	}
	if len(srv.commands("RSET")) == 0 {
		t.Fatal("no RSET after the transaction with no recipient accepted")
	}
	if c := counts(srv.deliveries()); !reflect.DeepEqual(c, once("a@x.test", "b@x.test")) {
		t.Fatalf("copies %v, want one each", c)
	}
}

// A lost connection in the middle of a chunk's DATA (after the server
// counted it): the whole chunk again, on a new connection, as the same
// message.
func TestLedgerBatchResendsSameMessageAfterDrop(t *testing.T) {
	srv := newScriptedServer(t, map[string][]string{"END": {"DROP"}})
	list := addrs(6)
	env := testEnv(t, srv.Addr, list...)
	mustSend(t, newShaped(t, "ledger", 3, 2), env)
	ids := map[string][]string{}
	for _, d := range srv.deliveries() {
		ids[d.To] = append(ids[d.To], d.MessageID)
	}
	twice := 0
	for _, a := range list {
		switch got := ids[a]; {
		case len(got) == 2 && got[0] == got[1]:
			twice++
		case len(got) != 1:
			t.Errorf("%s got Message-IDs %q, want one copy, or two of one message", a, got)
		}
	}
	if twice != 3 {
		t.Errorf("%d addresses sent twice, want the 3 of the dropped chunk", twice)
	}
}

// barrier is an onData hook that holds each message until n are held at
// once (or 5s pass), then runs at() once and lets them all go.
type barrier struct {
	n    int
	at   func()
	mu   sync.Mutex
	in   int
	most int
	open chan struct{}
	once sync.Once
}

func newBarrier(n int, at func()) *barrier {
	return &barrier{n: n, at: at, open: make(chan struct{})}
}

func (b *barrier) hold([]string) {
	b.mu.Lock()
	b.in++
	b.most = max(b.most, b.in)
	if b.in == b.n {
		b.once.Do(func() { b.at(); close(b.open) })
	}
	b.mu.Unlock()
	select {
	case <-b.open:
	case <-time.After(5 * time.Second):
	}
	b.mu.Lock()
	b.in--
	b.mu.Unlock()
}

func (b *barrier) maxHeld() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.most
}

func TestLedgerConnectionsSendInParallel(t *testing.T) {
	srv := newCountingServer(t)
	list := addrs(12)
	b := newBarrier(4, func() {})
	srv.onData = b.hold
	mustSend(t, newShaped(t, "ledger", 1, 4), testEnv(t, srv.Addr, list...))
	if n := b.maxHeld(); n != 4 {
		t.Fatalf("at most %d messages in the server's hands at once, want 4 (one per connection)", n)
	}
	if c := counts(srv.deliveries()); !reflect.DeepEqual(c, once(list...)) {
		t.Fatalf("copies %v, want one each", c)
	}
}

// SIGTERM (ctx cancelled) while each of 4 workers has a message in the
// server's hands: every one is finished and recorded, nothing more is
// started, and the rerun sends only the rest.
func TestLedgerConnectionsSIGTERMFinishesEveryTransactionInHand(t *testing.T) {
	srv := newCountingServer(t)
	list := addrs(40)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv.onData = newBarrier(4, cancel).hold
	env := testEnv(t, srv.Addr, list...)
	s := newShaped(t, "ledger", 1, 4)
	err := s.Send(ctx, env)
	if err == nil || !strings.Contains(err.Error(), "interrupted: 4 of 40 sent") || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want interrupted: 4 of 40 sent", err)
	}
	if n := len(srv.deliveries()); n != 4 {
		t.Fatalf("%d copies by the stop, want the 4 in hand", n)
	}
	srv.mu.Lock()
	srv.onData = nil
	srv.mu.Unlock()
	env.Attempt = 2
	mustSend(t, s, env)
	if c := counts(srv.deliveries()); !reflect.DeepEqual(c, once(list...)) {
		t.Fatalf("copies %v, want one each", c)
	}
}

// A restart with another chunk size would give the same recipients new
// Message-IDs; the ledger refuses it.
func TestLedgerBatchSizeFixedAcrossRestarts(t *testing.T) {
	srv := newCountingServer(t)
	env := testEnv(t, srv.Addr, addrs(5)...)
	mustSend(t, newShaped(t, "ledger", 10, 1), env)
	err := newShaped(t, "ledger", 5, 1).Send(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "--batch 10") {
		t.Fatalf("got %v, want an error asking for --batch 10", err)
	}
}

func TestOptionsShapes(t *testing.T) {
	for _, o := range []Options{{Batch: -1}, {Connections: -2}} {
		if _, err := New("ledger", o); err == nil {
			t.Errorf("New(ledger, %+v) accepted", o)
		}
	}
	for _, name := range []string{"naive", "checkpoint", "early", "checkpoint-every"} {
		if _, err := New(name, Options{Batch: 2}); err == nil || !strings.Contains(err.Error(), "ledger") {
			t.Errorf("New(%s, Batch 2): got %v, want a refusal pointing at the ledger", name, err)
		}
	}
	for _, c := range []struct {
		name         string
		opts         Options
		batch, conns int
	}{
		{"ledger", Options{}, 1, 1},
		{"ledger", Options{Batch: 7, Connections: 3}, 7, 3},
		{"batch-resend", Options{}, 10, 1},
		{"batch-resend", Options{Batch: 4}, 4, 1},
		{"high-water", Options{}, 1, 4},
		{"no-lock", Options{Connections: 2}, 1, 2},
	} {
		s, err := New(c.name, c.opts)
		if err != nil {
			t.Fatal(err)
		}
		if l := s.(*ledger); l.opts.Batch != c.batch || l.opts.Connections != c.conns {
			t.Errorf("New(%s, %+v): batch %d, connections %d; want %d, %d", c.name, c.opts, l.opts.Batch, l.opts.Connections, c.batch, c.conns)
		}
	}
}

func TestDescribe(t *testing.T) {
	rows := map[int]bool{1: true, 2: true, 3: true, 5: true, 6: true, 7: true, 9: true, 10: true, 11: true, 12: true, 13: true, 15: true, 16: true, 17: true, 18: true, 20: true}
	for _, name := range Names() {
		in, ok := Describe(name)
		if !ok || in.Name != name {
			t.Errorf("Describe(%q) = %+v, %v", name, in, ok)
			continue
		}
		if in.Correct != (name == "ledger" || name == "ledger-http" || name == "ledger-http-key") {
			t.Errorf("%s: Correct = %v", name, in.Correct)
		}
		if !in.Correct && (in.Bug == "" || in.Exposes == "" || strings.Contains(in.Bug, "\n")) {
			t.Errorf("%s: a buggy sender needs a one-line Bug and the chaos that Exposes it: %+v", name, in)
		}
		for _, r := range in.Rows {
			if !rows[r] {
				t.Errorf("%s: row %d is not in the failure-mode table", name, r)
			}
		}
	}
	if _, ok := Describe("nope"); ok {
		t.Error("Describe(nope) found something")
	}
}

// The lease is taken only when absent or expired, and refreshed without a
// look at who holds it: the missing fencing the lease mutant is about.
func TestLeaseHasNoFencing(t *testing.T) {
	path := filepath.Join(t.TempDir(), "ledger.lease")
	ctx := context.Background()
	a, err := takeLease(ctx, path, "a", time.Hour, newTestLogger())
	if err != nil {
		t.Fatal(err)
	}
	wait, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := takeLease(wait, path, "b", time.Hour, newTestLogger()); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("took a live lease: %v", err)
	}
	// a's lease expires; b takes it over.
	if err := os.WriteFile(path, []byte("a 1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, err := takeLease(ctx, path, "b", time.Hour, newTestLogger())
	if err != nil {
		t.Fatal(err)
	}
	if err := a.hold(); err != nil {
		t.Fatal(err)
	}
	if holder, _, _ := readLease(path); holder != "a" {
		t.Fatalf("holder %q after a's refresh; want a, who took it back without looking", holder)
	}
	if err := b.release(); err != nil {
		t.Fatal(err)
	}
	if holder, _, _ := readLease(path); holder != "a" {
		t.Fatal("b released a lease it no longer held")
	}
}
