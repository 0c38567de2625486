// GET /api/v1/wait and Server.Wait: each condition, the timeout, a client
// that goes away, a server that closes, bad parameters, many waiters.

package fakesmtp_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// apiWait is the wire form of GET /api/v1/wait's answer.
type apiWait struct {
	Met          bool          `json:"met"`
	Waited       string        `json:"waited"`
	Copies       int64         `json:"copies"`
	OpenSessions int           `json:"open_sessions"`
	Recipient    *apiRecipient `json:"recipient"`
}

type waitAnswer struct {
	code int
	body []byte
	res  apiWait
	err  error
	at   time.Time // when the answer was read
}

// startWait sends GET /api/v1/wait?query in the background; the answer
// comes on the channel.
func (a *apiClient) startWait(ctx context.Context, query string) <-chan waitAnswer {
	ch := make(chan waitAnswer, 1)
	req, err := http.NewRequestWithContext(ctx, "GET", a.base+"/api/v1/wait?"+query, nil)
	if err != nil {
		a.t.Fatal(err)
	}
	go func() {
		var ans waitAnswer
		// No client timeout: the wait's own timeout (or ctx) ends it.
		resp, err := a.c.Transport.RoundTrip(req)
		if err != nil {
			ans.err = err
			ch <- ans
			return
		}
		defer resp.Body.Close()
		ans.code = resp.StatusCode
		ans.body, ans.err = io.ReadAll(resp.Body)
		ans.at = time.Now()
		if ans.err == nil && ans.code == http.StatusOK {
			ans.err = json.Unmarshal(ans.body, &ans.res)
		}
		ch <- ans
	}()
	return ch
}

// answer receives a wait's answer, or fails the test.
func answer(t *testing.T, ch <-chan waitAnswer) waitAnswer {
	t.Helper()
	select {
	case a := <-ch:
		if a.err != nil {
			t.Fatalf("wait: %v (%d %s)", a.err, a.code, a.body)
		}
		return a
	case <-time.After(faultWait):
		t.Fatalf("wait: no answer after %v", faultWait)
		return waitAnswer{}
	}
}

// waitersReach blocks until n waits are registered with srv.
func waitersReach(t testing.TB, srv *fakesmtp.Server, n int) {
	t.Helper()
	if !eventually(t, replyWait, func() bool { got, _ := fakesmtp.Waiters(srv); return got == n }) {
		got, _ := fakesmtp.Waiters(srv)
		t.Fatalf("%d waits registered after %v, want %d", got, replyWait, n)
	}
}

func waitServer(t *testing.T, opts fakesmtp.Options) (*fakesmtp.Server, *apiClient) {
	t.Helper()
	opts.HTTPAddr = "127.0.0.1:0"
	srv := start(t, opts)
	return srv, newAPI(t, srv)
}

func TestWaitCopies(t *testing.T) {
	srv, api := waitServer(t, fakesmtp.Options{})
	ch := api.startWait(t.Context(), "copies=3")
	waitersReach(t, srv, 1)
	sendRaw(t, srv.Addr(), "<1@x>", "a@x.test")
	sendRaw(t, srv.Addr(), "<2@x>", "b@x.test", "c@x.test")
	a := answer(t, ch)
	if a.code != http.StatusOK || !a.res.Met || a.res.Copies != 3 || a.res.Recipient != nil {
		t.Errorf("copies=3: %d %s, want 200, met, 3 copies, no recipient", a.code, a.body)
	}
	// Already there: at once.
	a = answer(t, api.startWait(t.Context(), "copies=2&timeout=0s"))
	if !a.res.Met || a.res.Copies != 3 {
		t.Errorf("copies=2 with 3 counted: %s, want met", a.body)
	}
}

func TestWaitAddress(t *testing.T) {
	srv, api := waitServer(t, fakesmtp.Options{})
	one := api.startWait(t.Context(), "address=Bob%40Example.COM")
	two := api.startWait(t.Context(), "address=bob%40example.com&copies=2")
	waitersReach(t, srv, 2)
	sendRaw(t, srv.Addr(), "<1@x>", "carol@x.test")
	sendRaw(t, srv.Addr(), "<2@x>", "BOB@example.com")
	a := answer(t, one)
	if r := a.res.Recipient; !a.res.Met || r == nil || r.Address != "bob@example.com" || r.Copies != 1 || a.res.Copies != 2 {
		t.Errorf("address=Bob@Example.COM: %s, want met with bob@example.com at 1 copy of 2", a.body)
	}
	select {
	case a := <-two:
		if a.res.Recipient != nil && a.res.Recipient.Copies < 2 {
			t.Fatalf("address=bob&copies=2 answered at %d copies: %s", a.res.Recipient.Copies, a.body)
		}
	default:
	}
	sendRaw(t, srv.Addr(), "<3@x>", "bob@example.com")
	a = answer(t, two)
	if r := a.res.Recipient; !a.res.Met || r == nil || r.Copies != 2 || r.MessageIDs != 2 {
		t.Errorf("address=bob&copies=2: %s, want met at 2 copies, 2 ids", a.body)
	}
	// An address that never got a copy, when the wait gives up.
	a = answer(t, api.startWait(t.Context(), "address=nobody%40x.test&timeout=10ms"))
	if r := a.res.Recipient; a.res.Met || r == nil || r.Address != "nobody@x.test" || r.Copies != 0 {
		t.Errorf("address=nobody: %s, want not met, nobody@x.test at 0", a.body)
	}
}

// A reset between two rounds of the dispatcher must not hide a count
// that came back to the value the last round saw: the dispatcher looks at
// an address only when its shard's counter moved, or after a reset.
func TestWaitAddressAcrossReset(t *testing.T) {
	srv, api := waitServer(t, fakesmtp.Options{})
	o := srv.Oracle()
	// bob and a neighbour in bob's shard, and an address elsewhere.
	var neighbour, elsewhere string
	for i := 0; neighbour == "" || elsewhere == ""; i++ {
		a := fmt.Sprintf("n%d@x.test", i)
		switch same := fakesmtp.ShardOf(o, a) == fakesmtp.ShardOf(o, "bob@x.test"); {
		case same && neighbour == "":
			neighbour = a
		case !same && elsewhere == "":
			elsewhere = a
		}
	}
	o.Record(time.Now(), []string{"bob@x.test"}, "")
	o.Record(time.Now(), []string{neighbour}, "") // bob's shard at 2, bob at 1
	bob := api.startWait(t.Context(), "address=bob%40x.test&copies=2")
	third := api.startWait(t.Context(), "copies=3")
	waitersReach(t, srv, 2)
	// Only a round of the dispatcher releases the second wait, and that
	// round saw bob's shard at 2.
	o.Record(time.Now(), []string{elsewhere}, "")
	if a := answer(t, third); !a.res.Met {
		t.Fatalf("copies=3: %s", a.body)
	}
	o.Reset()
	o.Record(time.Now(), []string{"bob@x.test"}, "")
	o.Record(time.Now(), []string{"bob@x.test"}, "") // bob's shard at 2 again, bob at 2
	if a := answer(t, bob); !a.res.Met || a.res.Recipient.Copies != 2 {
		t.Errorf("after a reset and 2 copies: %s, want met", a.body)
	}
}

func TestWaitQuietSMTP(t *testing.T) {
	srv, api := waitServer(t, fakesmtp.Options{})
	c := dialRaw(t, srv.Addr())
	c.expect("220")
	// A session is open: never quiet, however long it idles.
	a := answer(t, api.startWait(t.Context(), "quiet=20ms&timeout=200ms"))
	if a.res.Met || a.res.OpenSessions != 1 {
		t.Errorf("quiet=20ms with a session open: %s, want not met, 1 open", a.body)
	}
	if d, err := time.ParseDuration(a.res.Waited); err != nil || d < 200*time.Millisecond {
		t.Errorf("waited %q (%v), want the 200ms timeout at least", a.res.Waited, err)
	}
	ch := api.startWait(t.Context(), "quiet=150ms")
	waitersReach(t, srv, 1)
	c.mustSend(ehlo)
	c.expect("250")
	c.transaction("Subject: q\r\n\r\nhi\r\n.\r\n", "q@x.test")
	closed := time.Now()
	c.conn.Close()
	a = answer(t, ch)
	if !a.res.Met || a.res.OpenSessions != 0 || a.res.Copies != 1 {
		t.Errorf("quiet=150ms after the session closed: %s, want met, none open, 1 copy", a.body)
	}
	// The server closed its end after the client did: quiet since then.
	if d := a.at.Sub(closed); d < 150*time.Millisecond {
		t.Errorf("quiet=150ms answered %v after the session's close", d)
	}
	// Quiet for longer than that already: at once.
	a = answer(t, api.startWait(t.Context(), "quiet=1ms&timeout=0s"))
	if !a.res.Met {
		t.Errorf("quiet=1ms long after the last session: %s, want met", a.body)
	}
}

// Over HTTP a session is open while a send request is served; a
// keep-alive connection idling between requests is not.
func TestWaitQuietHTTP(t *testing.T) {
	held := make(chan struct{})
	release := sync.OnceFunc(func() { close(held) })
	t.Cleanup(release)
	hold := fakesmtp.HookFunc(func(ctx context.Context, ev *fakesmtp.Event) fakesmtp.Action {
		if ev.Moment == fakesmtp.MomentDataEnd {
			select {
			case <-held:
			case <-ctx.Done():
			}
		}
		return fakesmtp.Action{}
	})
	rig := apiServer(t, fakesmtp.Options{Hooks: []fakesmtp.Hook{hold}})
	api := newAPI(t, rig.srv)
	sent := make(chan apiResult, 1)
	go func() {
		sent <- rig.postJSON("/emails", `{"from":"a@x.test","to":["bob@x.test"],"subject":"hi","text":"hello"}`, "Authorization", "Bearer re_x")
	}()
	if !eventually(t, replyWait, func() bool {
		s := rig.srv.Sessions()
		return len(s) == 1 && s[0].Moment == fakesmtp.MomentDataEnd
	}) {
		t.Fatalf("the send request never reached data-end: %+v", rig.srv.Sessions())
	}
	a := answer(t, api.startWait(t.Context(), "quiet=10ms&timeout=100ms"))
	if a.res.Met || a.res.OpenSessions != 1 {
		t.Errorf("quiet with a send request held: %s, want not met, 1 open", a.body)
	}
	ch := api.startWait(t.Context(), "quiet=50ms&copies=1")
	waitersReach(t, rig.srv, 1)
	release()
	if r := <-sent; r.err != nil || r.status != http.StatusOK {
		t.Fatalf("POST /emails: %v", r)
	}
	a = answer(t, ch)
	if !a.res.Met || a.res.OpenSessions != 0 || a.res.Copies != 1 {
		t.Errorf("quiet=50ms&copies=1 after the send: %s, want met, none open, 1 copy", a.body)
	}
	if s := rig.srv.Sessions(); len(s) != 1 || s[0].Transport != fakesmtp.TransportHTTP {
		t.Errorf("sessions %+v: want the idle keep-alive connection still listed (it does not stop the quiet)", s)
	}
}

func TestWaitTimeout(t *testing.T) {
	srv, api := waitServer(t, fakesmtp.Options{})
	sendRaw(t, srv.Addr(), "<1@x>", "a@x.test")
	began := time.Now()
	a := answer(t, api.startWait(t.Context(), "copies=5&timeout=150ms"))
	if a.code != http.StatusOK || a.res.Met || a.res.Copies != 1 {
		t.Errorf("copies=5&timeout=150ms: %d %s, want 200, not met, 1 copy", a.code, a.body)
	}
	if d := a.at.Sub(began); d < 150*time.Millisecond {
		t.Errorf("answered after %v, before the timeout", d)
	}
	var fields map[string]json.RawMessage
	json.Unmarshal(a.body, &fields)
	for _, f := range []string{"met", "waited", "copies", "open_sessions"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("answer %s lacks %q", a.body, f)
		}
	}
	if n, _ := fakesmtp.Waiters(srv); n != 0 {
		t.Errorf("%d waits still registered after their timeout", n)
	}
}

func TestWaitClientGoesAway(t *testing.T) {
	srv, api := waitServer(t, fakesmtp.Options{})
	ctx, cancel := context.WithCancel(t.Context())
	chs := []<-chan waitAnswer{
		api.startWait(ctx, "copies=100"),
		api.startWait(ctx, "address=a%40x.test"),
		api.startWait(ctx, "quiet=1h"),
	}
	waitersReach(t, srv, len(chs))
	if _, running := fakesmtp.Waiters(srv); !running {
		t.Error("no dispatcher while waits are registered")
	}
	cancel()
	for _, ch := range chs {
		if a := <-ch; !errors.Is(a.err, context.Canceled) {
			t.Errorf("a cancelled wait: %d %s %v, want the client's own cancellation", a.code, a.body, a.err)
		}
	}
	// The server lets them go, and its dispatcher with them.
	if !eventually(t, replyWait, func() bool { n, running := fakesmtp.Waiters(srv); return n == 0 && !running }) {
		n, running := fakesmtp.Waiters(srv)
		t.Fatalf("after the clients went: %d waits, dispatcher running %v; want none", n, running)
	}
	// And counting goes on, waits too.
	ch := api.startWait(t.Context(), "copies=1")
	sendRaw(t, srv.Addr(), "<1@x>", "a@x.test")
	if a := answer(t, ch); !a.res.Met {
		t.Errorf("a wait after the others went: %s", a.body)
	}
}

func TestWaitServerCloses(t *testing.T) {
	srv, api := waitServer(t, fakesmtp.Options{})
	ch := api.startWait(t.Context(), "copies=100")
	goWait := make(chan error, 1)
	go func() {
		_, err := srv.Wait(context.Background(), fakesmtp.WaitCondition{Copies: 100})
		goWait <- err
	}()
	waitersReach(t, srv, 2)
	srv.Close()
	if a := answer(t, ch); a.code != http.StatusServiceUnavailable || !strings.Contains(string(a.body), "shutting down") {
		t.Errorf("a wait when the server closes: %d %s, want 503", a.code, a.body)
	}
	if err := <-goWait; !errors.Is(err, net.ErrClosed) {
		t.Errorf("Server.Wait when the server closes: %v, want net.ErrClosed", err)
	}
}

func TestWaitBadParameters(t *testing.T) {
	_, api := waitServer(t, fakesmtp.Options{})
	for _, x := range []struct{ query, mention string }{
		{"", "nothing to wait for"},
		{"timeout=1s", "nothing to wait for"},
		{"copies=0", "copies="},
		{"copies=-1", "copies="},
		{"copies=many", "copies="},
		{"address=not%20one", "not a mailbox"},
		{"address=", "empty"},
		{"quiet=0s", "quiet="},
		{"quiet=soon", "quiet="},
		{"copies=1&timeout=-1s", "timeout="},
		{"copies=1&timeout=6m", "5m0s"},
		{"copies=1&copies=2", "once"},
		{"copy=1", "no such parameter"},
	} {
		code, b := api.do("GET", "/api/v1/wait?"+x.query)
		if code != http.StatusBadRequest || !strings.Contains(string(b), x.mention) {
			t.Errorf("?%s: %d %q, want 400 mentioning %q", x.query, code, b, x.mention)
		}
	}
}

func TestWaitGoAPI(t *testing.T) {
	srv, _ := waitServer(t, fakesmtp.Options{})
	if _, err := srv.Wait(t.Context(), fakesmtp.WaitCondition{}); err == nil {
		t.Error("Wait with no condition: no error")
	}
	if _, err := srv.Wait(t.Context(), fakesmtp.WaitCondition{Address: "a b"}); err == nil {
		t.Error("Wait for something that is not an address: no error")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	res, err := srv.Wait(ctx, fakesmtp.WaitCondition{Copies: 1})
	if !errors.Is(err, context.DeadlineExceeded) || res.Met || res.Waited < 20*time.Millisecond {
		t.Errorf("Wait past its deadline: %+v %v, want not met, the deadline's error", res, err)
	}
	srv.Oracle().Record(time.Now(), []string{"a@x.test"}, "")
	res, err = srv.Wait(t.Context(), fakesmtp.WaitCondition{Address: "A@X.test"})
	if err != nil || !res.Met || res.Recipient == nil || res.Recipient.Copies != 1 {
		t.Errorf("Wait for an address with a copy: %+v %v", res, err)
	}
}

// Many waits of every kind, one stream of copies: each is released when
// its own condition holds, none before.
func TestWaitManyWaiters(t *testing.T) {
	srv, api := waitServer(t, fakesmtp.Options{})
	const n = 120
	type result struct {
		i   int
		res fakesmtp.WaitResult
		err error
	}
	results := make(chan result, 2*n)
	for i := range n {
		go func() {
			res, err := srv.Wait(t.Context(), fakesmtp.WaitCondition{Address: fmt.Sprintf("r%d@x.test", i), Copies: 2})
			results <- result{i, res, err}
		}()
		go func() {
			res, err := srv.Wait(t.Context(), fakesmtp.WaitCondition{Copies: int64(2*i + 1)})
			results <- result{n + i, res, err}
		}()
	}
	overHTTP := api.startWait(t.Context(), fmt.Sprintf("copies=%d", 2*n))
	waitersReach(t, srv, 2*n+1)
	o := srv.Oracle()
	for round := range 2 {
		for i := range n {
			o.Record(time.Now(), []string{fmt.Sprintf("r%d@x.test", i)}, fmt.Sprint(round))
		}
	}
	for range 2 * n {
		select {
		case r := <-results:
			if r.err != nil || !r.res.Met {
				t.Fatalf("waiter %d: %+v %v", r.i, r.res, r.err)
			}
			if r.i < n && r.res.Recipient.Copies < 2 {
				t.Errorf("address waiter %d released at %d copies", r.i, r.res.Recipient.Copies)
			}
			if r.i >= n && r.res.Copies < int64(2*(r.i-n)+1) {
				t.Errorf("copies waiter for %d released at %d", 2*(r.i-n)+1, r.res.Copies)
			}
		case <-time.After(faultWait):
			t.Fatalf("waiters still blocked after %v: %d registered", faultWait, func() int { n, _ := fakesmtp.Waiters(srv); return n }())
		}
	}
	if a := answer(t, overHTTP); !a.res.Met || a.res.Copies != 2*n {
		t.Errorf("copies=%d over HTTP: %s", 2*n, a.body)
	}
}
