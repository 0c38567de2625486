// ledger_test.go: tests for the ledger sender: once per address across
// restarts, case variants, 4xx retries, 5xx bounces, in-doubt resends with
// the same Message-ID, graceful interruption and overlapping instances.
package builtin

import (
	"context"
	"errors"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onecopy/onecopy/senders"
)

// once returns the expected copies map: one per address.
func once(list ...string) map[string]int {
	m := map[string]int{}
	for _, a := range list {
		m[senders.Normalize(a)] = 1
	}
	return m
}

func TestLedgerSendsOnceAcrossRestarts(t *testing.T) {
	srv := newCountingServer(t)
	list := addrs(20)
	env := testEnv(t, srv.Addr, list...)
	s := newSender(t, "ledger")
	mustSend(t, s, env)
	env.Attempt = 2
	mustSend(t, s, env) // a restart after completion sends nothing
	got := srv.deliveries()
	if c := counts(got); !reflect.DeepEqual(c, once(list...)) {
		t.Fatalf("copies %v, want one each", c)
	}
	for i, d := range got {
		if d.To != list[i] {
			t.Fatalf("delivery %d went to %s, want %s (list order)", i, d.To, list[i])
		}
		if want := ledgerMessageID(env.Campaign, senders.Normalize(d.To)); d.MessageID != want {
			t.Fatalf("Message-ID %s, want %s", d.MessageID, want)
		}
	}
}

func TestLedgerResumesAfterFailedAttempt(t *testing.T) {
	srv := newCountingServer(t)
	list := addrs(6)
	// The 4th message is refused with a 451 forever, until the test stops
	// the attempt by cancelling it; the rerun delivers the rest.
	ctx, cancel := context.WithCancel(context.Background())
	srv.mu.Lock()
	srv.onCount = func(n int, d delivery) error {
		if d.To == list[3] && ctx.Err() == nil {
			cancel()
			return errors.New("refuse")
		}
		return nil
	}
	srv.mu.Unlock()
	env := testEnv(t, srv.Addr, list...)
	s := newSender(t, "ledger")
	err := s.Send(ctx, env)
	if err == nil || !strings.Contains(err.Error(), "interrupted: 3 of 6 sent") {
		t.Fatalf("got %v, want interrupted at 3 of 6", err)
	}
	env.Attempt = 2
	mustSend(t, s, env)
	if c := counts(srv.deliveries()); !reflect.DeepEqual(c, once(list...)) {
		t.Fatalf("copies %v, want one each", c)
	}
}

func TestLedgerDedupsCaseVariants(t *testing.T) {
	srv := newCountingServer(t)
	list := []string{"Bob@X.test", "a@x.test", "bob@x.test", " BOB@x.TEST ", "a@X.test"}
	env := testEnv(t, srv.Addr, list...)
	mustSend(t, newSender(t, "ledger"), env)
	var to []string
	for _, d := range srv.deliveries() {
		to = append(to, d.To)
	}
	if want := []string{"Bob@X.test", "a@x.test"}; !reflect.DeepEqual(to, want) {
		t.Fatalf("delivered to %q, want %q (one per mailbox, first spelling)", to, want)
	}
}

func TestLedgerRetriesTempFailuresOnSameAddress(t *testing.T) {
	srv := newScriptedServer(t, map[string][]string{
		"RCPT": {"451 4.7.1 greylisted", "452 4.5.3 busy"},
		"END":  {"451 4.3.0 try later"},
	})
	env := testEnv(t, srv.Addr, "a@x.test", "b@x.test")
	mustSend(t, newSender(t, "ledger"), env)
	want := []string{"RCPT a@x.test", "RCPT a@x.test", "RCPT a@x.test", "RCPT a@x.test", "RCPT b@x.test"}
	if got := srv.commands("RCPT"); !reflect.DeepEqual(got, want) {
		t.Fatalf("RCPTs %q, want %q", got, want)
	}
	if c := counts(srv.deliveries()); !reflect.DeepEqual(c, once("a@x.test", "b@x.test")) {
		t.Fatalf("copies %v, want one each", c)
	}
	if n := srv.connections(); n != 1 {
		t.Fatalf("%d connections; a 4xx should not cost the connection", n)
	}
}

func TestLedgerBouncesPermanentFailures(t *testing.T) {
	srv := newScriptedServer(t, map[string][]string{
		"RCPT": {"550 5.1.1 no such user"},     // a@
		"END":  {"554 5.7.1 content rejected"}, // b@
	})
	env := testEnv(t, srv.Addr, "a@x.test", "b@x.test", "c@x.test")
	s := newSender(t, "ledger")
	mustSend(t, s, env) // bounces do not fail the campaign
	if c := counts(srv.deliveries()); !reflect.DeepEqual(c, once("c@x.test")) {
		t.Fatalf("copies %v, want only c@x.test", c)
	}
	before := len(srv.commands("RCPT"))
	mustSend(t, s, env)
	if after := len(srv.commands("RCPT")); after != before {
		t.Fatalf("rerun sent %d RCPTs; bounced addresses must not be retried", after-before)
	}
}

func TestLedgerMailFromRejectedFailsAttempt(t *testing.T) {
	srv := newScriptedServer(t, map[string][]string{"MAIL": {"553 5.7.1 sender not allowed"}})
	env := testEnv(t, srv.Addr, "a@x.test")
	err := newSender(t, "ledger").Send(context.Background(), env)
	if err == nil || !strings.Contains(err.Error(), "553") {
		t.Fatalf("got %v, want the 553 on MAIL FROM to fail the attempt", err)
	}
	if len(srv.deliveries()) != 0 {
		t.Fatal("delivered despite the rejected sender")
	}
}

// The server counts the message, then cuts the connection before the 250:
// the ledger cannot know, reconnects and resends with the SAME Message-ID.
func TestLedgerResendsSameMessageIDAfterDropAfterData(t *testing.T) {
	srv := newScriptedServer(t, map[string][]string{"END": {"DROP"}})
	env := testEnv(t, srv.Addr, "a@x.test", "b@x.test")
	mustSend(t, newSender(t, "ledger"), env)
	got := srv.deliveries()
	if c := counts(got); !reflect.DeepEqual(c, map[string]int{"a@x.test": 2, "b@x.test": 1}) {
		t.Fatalf("copies %v, want a twice (in doubt) and b once", c)
	}
	if got[0].MessageID != got[1].MessageID || got[0].MessageID == "" {
		t.Fatalf("Message-IDs %q and %q; want the same one on the resend", got[0].MessageID, got[1].MessageID)
	}
	if n := srv.connections(); n != 2 {
		t.Fatalf("%d connections, want 2 (one reconnect)", n)
	}
}

func TestLedger421IsAConnectionError(t *testing.T) {
	srv := newScriptedServer(t, map[string][]string{"RCPT": {"421 4.7.0 closing"}})
	env := testEnv(t, srv.Addr, "a@x.test", "b@x.test")
	mustSend(t, newSender(t, "ledger"), env)
	if c := counts(srv.deliveries()); !reflect.DeepEqual(c, once("a@x.test", "b@x.test")) {
		t.Fatalf("copies %v, want one each", c)
	}
	if n := srv.connections(); n != 2 {
		t.Fatalf("%d connections, want 2 (a reconnect after the 421)", n)
	}
}

func TestLedgerReconnectsAfterTimeout(t *testing.T) {
	srv := newScriptedServer(t, map[string][]string{"END": {"HANG"}})
	env := testEnv(t, srv.Addr, "a@x.test")
	s, err := New("ledger", Options{Timeout: 200 * time.Millisecond, Backoff: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	mustSend(t, s, env)
	// The server never answered the final dot of the first try (not a
	// copy); the ledger timed out, reconnected and sent it again.
	got := srv.deliveries()
	if len(got) != 1 || srv.connections() != 2 {
		t.Fatalf("deliveries %+v over %d connections; want 1 copy and 2 connections", got, srv.connections())
	}
}

// SIGTERM (ctx cancelled) in the middle of the 3rd transaction (at its RCPT):
// the ledger finishes that message, records it, stops with a progress error,
// and the rerun completes the list with no duplicate.
func TestLedgerInterruptFinishesMessageInHand(t *testing.T) {
	srv := newCountingServer(t)
	list := addrs(10)
	ctx, cancel := context.WithCancel(context.Background())
	srv.mu.Lock()
	srv.onRcpt = func(to string) {
		if to == list[2] {
			cancel() // before the RCPT reply: DATA is still to come
		}
	}
	srv.mu.Unlock()
	env := testEnv(t, srv.Addr, list...)
	s := newSender(t, "ledger")
	err := s.Send(ctx, env)
	if err == nil || !strings.Contains(err.Error(), "interrupted: 3 of 10 sent") || !errors.Is(err, context.Canceled) {
		t.Fatalf("got %v, want interrupted: 3 of 10 sent", err)
	}
	if n := len(srv.deliveries()); n != 3 {
		t.Fatalf("%d copies before the stop, want 3", n)
	}
	env.Attempt = 2
	mustSend(t, s, env)
	if c := counts(srv.deliveries()); !reflect.DeepEqual(c, once(list...)) {
		t.Fatalf("copies %v, want one each", c)
	}
}

func TestLedgerConcurrentInstancesNeverDuplicate(t *testing.T) {
	srv := newCountingServer(t)
	list := addrs(40)
	env := testEnv(t, srv.Addr, list...)
	s := newSender(t, "ledger")
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range errs {
		wg.Go(func() {
			e := env
			e.Instance = i + 1
			errs[i] = s.Send(context.Background(), e)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("instance %d: %v", i+1, err)
		}
	}
	if c := counts(srv.deliveries()); !reflect.DeepEqual(c, once(list...)) {
		t.Fatalf("copies %v, want one each", c)
	}
}

func TestLedgerWaitsForLockUntilCancelled(t *testing.T) {
	srv := newCountingServer(t)
	env := testEnv(t, srv.Addr, addrs(3)...)
	lock, err := acquireLock(context.Background(), filepath.Join(env.StateDir, "ledger.lock"), newTestLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer lock.release()
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err = newSender(t, "ledger").Send(ctx, env)
	if err == nil || !strings.Contains(err.Error(), "ledger.lock") || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want an interrupted wait for the lock", err)
	}
	if n := len(srv.deliveries()); n != 0 {
		t.Fatalf("%d sent without the lock", n)
	}
}

func TestLedgerMessageIDStable(t *testing.T) {
	a, b := ledgerMessageID("c1", "a@x.test"), ledgerMessageID("c1", "a@x.test")
	if a != b || a == ledgerMessageID("c2", "a@x.test") || a == ledgerMessageID("c1", "b@x.test") {
		t.Fatalf("Message-ID not a function of (campaign, address): %s", a)
	}
	if !strings.HasPrefix(a, "<") || !strings.HasSuffix(a, "@onecopy.ledger>") || len(a) != len("<@onecopy.ledger>")+32 {
		t.Fatalf("malformed Message-ID %s", a)
	}
}

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for n := 1; n <= 8; n++ {
		got = append(got, backoff(20*time.Millisecond, time.Second, n))
	}
	want := []time.Duration{20, 40, 80, 160, 320, 640, 1000, 1000}
	for i := range want {
		want[i] *= time.Millisecond
	}
	if !slices.Equal(got, want) {
		t.Fatalf("backoff %v, want %v", got, want)
	}
}
