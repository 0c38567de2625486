// In-doubt requests over HTTP, as indoubt_test.go checks them over SMTP:
// a send request is in flight from its headers until the next request on
// its connection, and a connection that ends with one in flight reports
// it, however it ended.

package fakesmtp_test

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// rawHTTP is one connection a test writes requests on by hand, so it
// decides when the connection ends.
type rawHTTP struct {
	conn net.Conn
	r    *bufio.Reader
}

func dialHTTP(t *testing.T, rig *apiRig) *rawHTTP {
	t.Helper()
	conn, err := net.DialTimeout("tcp", rig.srv.HTTPAddr(), faultWait)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(faultWait))
	return &rawHTTP{conn: conn, r: bufio.NewReader(conn)}
}

// do writes one request and reads its answer (nil when the connection
// broke instead).
func (c *rawHTTP) do(t *testing.T, p apiProvider, id string, to ...string) *http.Response {
	t.Helper()
	body := p.body(id, to...)
	req, _ := http.NewRequest(http.MethodPost, "http://onecopy.test"+p.path, strings.NewReader(string(body)))
	req.Header.Set("Content-Type", p.ctype)
	if err := req.Write(c.conn); err != nil {
		return nil
	}
	resp, err := http.ReadResponse(c.r, req)
	if err != nil {
		return nil
	}
	resp.Body.Close()
	return resp
}

func TestAPIInDoubtClientLeavesAfterAnswer(t *testing.T) {
	for _, p := range apiProviders {
		t.Run(p.name, func(t *testing.T) {
			rig := apiServer(t, fakesmtp.Options{})
			c := dialHTTP(t, rig)
			if resp := c.do(t, p, "<1@x>", "bob@x.test"); resp == nil || resp.StatusCode/100 != 2 {
				t.Fatalf("answer %v", resp)
			}
			c.conn.Close() // read the answer, then died before a further request
			d := rig.rec.nextDoubt(t)
			if !d.Delivered || !d.Acked || d.Ended != fakesmtp.EndClient || d.MessageID != "<1@x>" || d.Txn == 0 ||
				d.Transport != "http" || !slices.Equal(d.Recipients, []string{"bob@x.test"}) {
				t.Errorf("in doubt: %+v, want bob delivered and answered, ended by the client", d)
			}
		})
	}
}

func TestAPIInDoubtNextRequestSettles(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{})
	p := apiProviders[0]
	c := dialHTTP(t, rig)
	c.do(t, p, "<1@x>", "a@x.test")
	c.do(t, p, "<2@x>", "b@x.test", "c@x.test") // settles the first
	c.conn.Close()
	if d := rig.rec.nextDoubt(t); d.MessageID != "<2@x>" || !slices.Equal(d.Recipients, []string{"b@x.test", "c@x.test"}) {
		t.Errorf("in doubt: %+v, want only the last request, b and c", d)
	}
	rig.noSessions(t)
	select {
	case d := <-rig.rec.doubt:
		t.Errorf("a settled request reported in doubt: %+v", d)
	default:
	}
}

// A request refused before it named recipients (bad JSON) leaves nothing
// in doubt; one throttled leaves its messages undelivered.
func TestAPIInDoubtRefusedRequests(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{})
	c := dialHTTP(t, rig)
	req, _ := http.NewRequest(http.MethodPost, "http://onecopy.test/emails", strings.NewReader("{"))
	req.Write(c.conn)
	if resp, err := http.ReadResponse(c.r, req); err != nil || resp.StatusCode != 422 {
		t.Fatalf("bad JSON: %v %v", resp, err)
	}
	c.conn.Close()
	rig.noSessions(t)
	select {
	case d := <-rig.rec.doubt:
		t.Errorf("in doubt %+v after a malformed request", d)
	default:
	}

	rig = apiFaultServer(t, 1, "tempfail=1")
	c = dialHTTP(t, rig)
	if resp := c.do(t, apiProviders[0], "<t@x>", "bob@x.test"); resp == nil || resp.StatusCode/100 != 4 && resp.StatusCode != 503 {
		t.Fatalf("throttled: %v", resp)
	}
	c.conn.Close()
	if d := rig.rec.nextDoubt(t); d.Delivered || !d.Acked || !slices.Equal(d.Recipients, []string{"bob@x.test"}) {
		t.Errorf("in doubt: %+v, want bob undelivered, the refusal written", d)
	}
}

// The harness's kill points: at committed it kills the sender, then cuts;
// while the body streams likewise, and nothing counts.
func TestAPIInDoubtKillPoints(t *testing.T) {
	for _, m := range []fakesmtp.Moment{fakesmtp.MomentCommitted, fakesmtp.MomentDataStreaming} {
		t.Run(m.String(), func(t *testing.T) {
			killed := make(chan uint64, 1)
			kill := fakesmtp.HookAt(fakesmtp.Moments(m), fakesmtp.HookFunc(func(_ context.Context, ev *fakesmtp.Event) fakesmtp.Action {
				killed <- ev.Session
				return fakesmtp.Action{Close: true}
			}))
			rig := apiServer(t, fakesmtp.Options{Hooks: []fakesmtp.Hook{kill}})
			if r := rig.send(apiProviders[3], "<k@x>", "bob@x.test"); r.err == nil {
				t.Fatalf("answer %s, want a reset", r)
			}
			d := rig.rec.nextDoubt(t)
			delivered := m == fakesmtp.MomentCommitted
			if d.Delivered != delivered || d.Acked || d.Ended != fakesmtp.EndCut || d.Fault != "" || d.Session != <-killed ||
				!slices.Equal(d.Recipients, []string{"bob@x.test"}) || d.Provider != "mailgun" {
				t.Errorf("in doubt: %+v, want bob delivered=%v, cut by the kill point", d, delivered)
			}
			want := 0
			if delivered {
				want = 1
			}
			rig.counts(t, map[string]int{"bob@x.test": want})
		})
	}
}

// Every message of a batch is its own transaction.
func TestAPIInDoubtBatch(t *testing.T) {
	rig := apiFaultServer(t, 1, "drop-after-data=1")
	r := rig.postJSON("/email/batch", `[{"From":"a@x.test","To":"a@x.test","Subject":"s","TextBody":"t","Headers":[{"Name":"Message-ID","Value":"<1@x>"}]},
		{"From":"a@x.test","To":"b@x.test","Subject":"s","TextBody":"t","Headers":[{"Name":"Message-ID","Value":"<2@x>"}]}]`)
	if r.err == nil {
		t.Fatalf("answer %s, want a reset", r)
	}
	got := []fakesmtp.InDoubt{rig.rec.nextDoubt(t), rig.rec.nextDoubt(t)}
	if got[0].Txn == got[1].Txn || got[0].MessageID != "<1@x>" || got[1].MessageID != "<2@x>" || !got[0].Delivered || !got[1].Delivered {
		t.Errorf("in doubt: %+v, want both messages, each its own transaction", got)
	}
	ds := rig.deliveries()
	if len(ds) != 2 || ds[0].Txn != got[0].Txn || ds[1].Txn != got[1].Txn {
		t.Errorf("deliveries %+v: want the same transaction numbers as the in-doubt reports", ds)
	}
}

// The session stands where the request is, for the harness to read.
func TestAPISessionMoments(t *testing.T) {
	at := make(chan fakesmtp.Moment, 16)
	release := make(chan struct{})
	hold := fakesmtp.HookAt(fakesmtp.Moments(fakesmtp.MomentCommitted), fakesmtp.HookFunc(func(context.Context, *fakesmtp.Event) fakesmtp.Action {
		at <- fakesmtp.MomentCommitted
		<-release
		return fakesmtp.Action{}
	}))
	rig := apiServer(t, fakesmtp.Options{Hooks: []fakesmtp.Hook{hold}})
	c := dialHTTP(t, rig)
	done := make(chan *http.Response)
	go func() { done <- c.do(t, apiProviders[0], "<m@x>", "bob@x.test") }()
	<-at
	ss := rig.srv.Sessions()
	local := c.conn.LocalAddr().String()
	if len(ss) != 1 || ss[0].Moment != fakesmtp.MomentCommitted || ss[0].Remote != local || ss[0].Transport != "http" {
		t.Errorf("sessions while counted and unanswered: %+v, want one at committed from %s", ss, local)
	}
	close(release)
	if resp := <-done; resp == nil || resp.StatusCode != 200 {
		t.Fatalf("answer %v", resp)
	}
	// The session moves on once the answer is out, which the client may
	// read first.
	faultEventually(t, "the session stands at acked with 1 message", func() bool {
		ss := rig.srv.Sessions()
		return len(ss) == 1 && ss[0].Moment == fakesmtp.MomentAcked && ss[0].Messages == 1
	})
}

// Close lets a held answer go out, then ends the connections.
func TestAPICloseWritesHeldAnswers(t *testing.T) {
	rig := apiFaultServer(t, 1, "slow-ack=1h")
	c := dialHTTP(t, rig)
	done := make(chan *http.Response)
	go func() { done <- c.do(t, apiProviders[0], "<h@x>", "bob@x.test") }()
	faultEventually(t, "the answer is held", func() bool {
		ss := rig.srv.Sessions()
		return len(ss) == 1 && ss[0].Moment == fakesmtp.MomentCommitted
	})
	closed := make(chan error)
	go func() { closed <- rig.srv.Close() }()
	if resp := <-done; resp == nil || resp.StatusCode != 200 {
		t.Errorf("held answer at Close: %v, want 200", resp)
	}
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if d := rig.rec.nextDoubt(t); d.Ended != fakesmtp.EndShutdown || !d.Acked || !d.Delivered {
		t.Errorf("in doubt: %+v, want the answered message, ended by the server", d)
	}
}

// Handler mounted on a server of the caller's: requests still count and
// cuts are still reported, each request its own session.
func TestAPIHandlerMountedElsewhere(t *testing.T) {
	rec := newFaultRecorder()
	srv := start(t, fakesmtp.Options{OnInDoubt: rec.onDoubt,
		Hooks: []fakesmtp.Hook{fakesmtp.NewFaultSet(faultSpecs(t, "drop-after-data=1"), 1)}})
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	hc := ts.Client()
	if r := apiPost(hc, ts.URL+"/emails", "application/json", apiProviders[0].body("<e@x>", "bob@x.test")); r.err == nil {
		t.Fatalf("answer %s, want a reset", r)
	}
	faultCopies(t, srv, map[string]int{"bob@x.test": 1})
	if d := rec.nextDoubt(t); !d.Delivered || d.Ended != fakesmtp.EndCut || d.Session == 0 {
		t.Errorf("in doubt: %+v, want bob delivered and cut", d)
	}
}

// A body that stalls is given the idle timeout, as a DATA that stalls is,
// then the connection is closed, nothing counted.
func TestAPIStalledBodyTimesOut(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{IdleTimeout: 200 * time.Millisecond})
	c := dialHTTP(t, rig)
	if _, err := c.conn.Write([]byte("POST /emails HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 500\r\n\r\n{\"from\":")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.r.ReadByte(); err == nil {
		t.Error("an answer to half a body, want the connection closed")
	} else if faultTimedOut(err) {
		t.Fatalf("the server still holds the connection after %s: %v", faultWait, err)
	}
	rig.counts(t, map[string]int{})
	faultEventually(t, "the session ends", func() bool { return len(rig.srv.Sessions()) == 0 })
}
