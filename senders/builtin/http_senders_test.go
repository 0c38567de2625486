// http_senders_test.go: the HTTP built-ins against onecopy's own fake
// provider APIs, under the fault catalog: naive-http repeats the head of
// the list on every retry, ledger-http is effectively-once under cuts,
// ledger-http-key exactly-once within the key's window, and caught
// sending again after it.
package builtin

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/senders"
)

// fakeAPI is the fake server with its HTTP port, and what it left in doubt.
type fakeAPI struct {
	srv   *fakesmtp.Server
	mu    sync.Mutex
	doubt []fakesmtp.InDoubt
	reply atomic.Int64 // faults fired
}

func startFakeAPI(t *testing.T, seed uint64, specs []string, hooks ...fakesmtp.Hook) *fakeAPI {
	t.Helper()
	f := &fakeAPI{}
	var parsed []fakesmtp.FaultSpec
	for _, s := range specs {
		spec, err := fakesmtp.ParseFault(s)
		if err != nil {
			t.Fatal(err)
		}
		parsed = append(parsed, spec)
	}
	hooks = append(hooks, fakesmtp.NewFaults(parsed, rand.New(rand.NewPCG(seed, 2))))
	srv, err := fakesmtp.Start(context.Background(), fakesmtp.Options{
		HTTPAddr: "127.0.0.1:0",
		Hooks:    hooks,
		OnFault:  func(fakesmtp.FaultEvent) { f.reply.Add(1) },
		OnInDoubt: func(d fakesmtp.InDoubt) {
			f.mu.Lock()
			f.doubt = append(f.doubt, d)
			f.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	f.srv = srv
	return f
}

// env is the contract for a sender of list using the fake's API.
func (f *fakeAPI) env(t *testing.T, list ...string) senders.Env {
	t.Helper()
	env := testEnv(t, f.srv.Addr(), list...)
	env.APIURL = "http://" + f.srv.HTTPAddr()
	return env
}

// judge checks the effectively-once rule on the fake's counts: nothing
// missing, one Message-ID per address, and every extra copy explained by
// a delivered in-doubt request naming the address. It returns the extras.
func (f *fakeAPI) judge(t *testing.T, list []string) int {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.srv.Sessions()) > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling for the connections to end, not synchronising
	}
	f.mu.Lock()
	explained := map[string]int{}
	for _, d := range f.doubt {
		if d.Delivered {
			for _, a := range d.Recipients {
				explained[a]++
			}
		}
	}
	f.mu.Unlock()
	snap := f.srv.Snapshot()
	extra := 0
	for _, a := range list {
		r := snap.Lookup(a)
		switch {
		case r.Copies == 0:
			t.Errorf("%s: missing", a)
		case r.MessageIDs != 1:
			t.Errorf("%s: %d distinct Message-IDs, want 1", a, r.MessageIDs)
		case r.Copies-1 > explained[senders.Normalize(a)]:
			t.Errorf("%s: %d copies, %d explained by in-doubt requests", a, r.Copies, explained[senders.Normalize(a)])
		}
		extra += r.Copies - 1
	}
	return extra
}

func httpSender(t *testing.T, name string, timeout time.Duration) senders.Sender {
	t.Helper()
	s, err := New(name, Options{Timeout: timeout, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond, Logger: newTestLogger()})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// The 4-copies bug over HTTP: every retry of the job resends the head
// of the list with new Message-IDs.
func TestNaiveHTTPResendsTheHeadOnEveryAttempt(t *testing.T) {
	list := addrs(10)
	f := startFakeAPI(t, 1, []string{"reject=" + list[5]})
	env := f.env(t, list...)
	s := httpSender(t, "naive-http", 5*time.Second)
	for attempt := 1; attempt <= 4; attempt++ {
		env.Attempt = attempt
		if err := s.Send(context.Background(), env); err == nil || !strings.Contains(err.Error(), "recipient 6 of 10") {
			t.Fatalf("attempt %d: %v, want the failure at recipient 6", attempt, err)
		}
	}
	snap := f.srv.Snapshot()
	for i, a := range list {
		want, ids := 4, 4
		if i >= 5 {
			want, ids = 0, 0
		}
		if r := snap.Lookup(a); r.Copies != want || r.MessageIDs != ids {
			t.Errorf("%s: %d copies, %d Message-IDs, want %d and %d", a, r.Copies, r.MessageIDs, want, ids)
		}
	}
}

var cutsAndHolds = []string{"drop-after-data=0.3", "slow-ack=2s@0.1", "tempfail=0.2"}

func TestLedgerHTTPEffectivelyOnceUnderCuts(t *testing.T) {
	list := addrs(40)
	f := startFakeAPI(t, 11, cutsAndHolds)
	mustSend(t, httpSender(t, "ledger-http", 300*time.Millisecond), f.env(t, list...))
	if extra := f.judge(t, list); extra == 0 {
		t.Error("no repeats: the faults hit no answer, and this proves nothing")
	}
}

func TestLedgerHTTPKeyExactlyOnceUnderCuts(t *testing.T) {
	list := addrs(40)
	f := startFakeAPI(t, 11, cutsAndHolds)
	mustSend(t, httpSender(t, "ledger-http-key", 300*time.Millisecond), f.env(t, list...))
	if extra := f.judge(t, list); extra != 0 {
		t.Errorf("%d extra copies with the idempotency key, want exactly once", extra)
	}
	if f.reply.Load() == 0 {
		t.Fatal("no fault fired: this proves nothing")
	}
}

func TestLedgerHTTPBouncesRejected(t *testing.T) {
	list := addrs(5)
	f := startFakeAPI(t, 1, []string{"reject=" + list[2]})
	env := f.env(t, list...)
	mustSend(t, httpSender(t, "ledger-http", 5*time.Second), env)
	mustSend(t, httpSender(t, "ledger-http", 5*time.Second), env) // nothing left to send
	snap := f.srv.Snapshot()
	for i, a := range list {
		want := 1
		if i == 2 {
			want = 0
		}
		if r := snap.Lookup(a); r.Copies != want {
			t.Errorf("%s: %d copies, want %d", a, r.Copies, want)
		}
	}
	if n := f.reply.Load(); n != 1 {
		t.Errorf("%d refusals, want 1: a bounce is not retried", n)
	}
}

// A retry after the key's window: the key no longer protects, and the
// second copy is caught.
func TestLedgerHTTPKeyAfterTheWindowSendsAgain(t *testing.T) {
	var srv atomic.Pointer[fakesmtp.Server]
	var cut atomic.Bool
	late := fakesmtp.HookAt(fakesmtp.Moments(fakesmtp.MomentCommitted), fakesmtp.HookFunc(func(context.Context, *fakesmtp.Event) fakesmtp.Action {
		if cut.Swap(true) {
			return fakesmtp.Action{}
		}
		srv.Load().AdvanceClock(25 * time.Hour) // the retry comes a day later
		return fakesmtp.Action{Close: true, Fault: "drop-after-data"}
	}))
	f := startFakeAPI(t, 1, nil, late)
	srv.Store(f.srv)
	list := addrs(3)
	mustSend(t, httpSender(t, "ledger-http-key", 5*time.Second), f.env(t, list...))
	if r := f.srv.Snapshot().Lookup(list[0]); r.Copies != 2 || r.MessageIDs != 1 {
		t.Errorf("%s: %d copies of %d Message-IDs, want 2 of 1: sent again past the window", list[0], r.Copies, r.MessageIDs)
	}
	if extra := f.judge(t, list); extra != 1 {
		t.Errorf("%d extra copies, want 1", extra)
	}
}

// SIGTERM (ctx cancelled) mid-campaign: the message in hand is finished
// and recorded, and a rerun sends the rest, each once.
func TestLedgerHTTPResumesAfterInterrupt(t *testing.T) {
	list := addrs(20)
	ctx, cancel := context.WithCancel(context.Background())
	var n atomic.Int64
	stop := fakesmtp.HookAt(fakesmtp.Moments(fakesmtp.MomentCommitted), fakesmtp.HookFunc(func(context.Context, *fakesmtp.Event) fakesmtp.Action {
		if n.Add(1) == 5 {
			cancel()
		}
		return fakesmtp.Action{}
	}))
	f := startFakeAPI(t, 1, nil, stop)
	env := f.env(t, list...)
	s := httpSender(t, "ledger-http", 5*time.Second)
	if err := s.Send(ctx, env); err == nil || !strings.Contains(err.Error(), "interrupted: 5 of 20 sent") {
		t.Fatalf("interrupted Send: %v, want it to stop after the message in hand", err)
	}
	env.Attempt = 2
	mustSend(t, s, env)
	if extra := f.judge(t, list); extra != 0 {
		t.Errorf("%d extra copies, want each once", extra)
	}
}

func TestHTTPSendersNeedTheAPIURL(t *testing.T) {
	for _, name := range []string{"naive-http", "ledger-http", "ledger-http-key"} {
		env := testEnv(t, "127.0.0.1:1", addrs(1)...)
		err := httpSender(t, name, time.Second).Send(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), senders.VarAPIURL) {
			t.Errorf("%s without %s: %v, want an error naming it", name, senders.VarAPIURL, err)
		}
	}
}

func TestAPIErrorClasses(t *testing.T) {
	for _, c := range []struct {
		e    apiError
		want class
		rcpt bool
	}{
		{apiError{err: fmt.Errorf("reset")}, classConn, false},
		{apiError{status: 429, name: "rate_limit_exceeded"}, classTemp, false},
		{apiError{status: 503}, classTemp, false},
		{apiError{status: 409, name: "concurrent_idempotent_requests"}, classTemp, false},
		{apiError{status: 409, name: "invalid_idempotent_request"}, classPerm, false},
		{apiError{status: 422, name: "validation_error"}, classPerm, true},
		{apiError{status: 403, name: "invalid_api_key"}, classPerm, false},
	} {
		if got := c.e.classify(); got != c.want || c.e.forRecipient() != c.rcpt {
			t.Errorf("%v: class %v, for the recipient %v; want %v, %v", c.e.Error(), got, c.e.forRecipient(), c.want, c.rcpt)
		}
	}
}
