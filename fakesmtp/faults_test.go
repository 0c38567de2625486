// The fault catalog, one fault at a time, against real clients: net/smtp
// where it shows the behaviour, a raw socket where net/smtp would hide it.
// Each test shows what the client sees, what the count becomes and what
// OnFault reports. Timing is asserted only as lower bounds (a held reply
// cannot arrive before a deadline shorter than the hold), never as speed.

package fakesmtp_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/smtp"
	"net/textproto"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// faultWait bounds every wait in these tests: long enough never to be the
// reason a test fails on a loaded machine.
const faultWait = 10 * time.Second

// faultRecorder collects the server's OnFault and OnInDoubt events.
type faultRecorder struct {
	mu    sync.Mutex
	evs   []fakesmtp.FaultEvent
	ch    chan fakesmtp.FaultEvent
	doubt chan fakesmtp.InDoubt
}

func newFaultRecorder() *faultRecorder {
	return &faultRecorder{ch: make(chan fakesmtp.FaultEvent, 4096), doubt: make(chan fakesmtp.InDoubt, 4096)}
}

func (r *faultRecorder) onDoubt(d fakesmtp.InDoubt) { r.doubt <- d }

// nextDoubt waits for the next in-doubt transaction.
func (r *faultRecorder) nextDoubt(t *testing.T) fakesmtp.InDoubt {
	t.Helper()
	select {
	case d := <-r.doubt:
		return d
	case <-time.After(faultWait):
		t.Fatalf("no in-doubt transaction reported within %s", faultWait)
	}
	return fakesmtp.InDoubt{}
}

// noDoubt checks no transaction was reported in doubt once every session
// of srv has ended.
func (r *faultRecorder) noDoubt(t *testing.T, srv *fakesmtp.Server) {
	t.Helper()
	faultEventually(t, "every session ends", func() bool { return len(srv.Sessions()) == 0 })
	select {
	case d := <-r.doubt:
		t.Errorf("in-doubt transaction %+v, want none", d)
	default:
	}
}

func (r *faultRecorder) on(ev fakesmtp.FaultEvent) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
	select {
	case r.ch <- ev:
	default:
	}
}

func (r *faultRecorder) events() []fakesmtp.FaultEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.evs)
}

func (r *faultRecorder) count(kind string) int {
	n := 0
	for _, ev := range r.events() {
		if ev.Kind == kind {
			n++
		}
	}
	return n
}

// next waits for the next event of kind.
func (r *faultRecorder) next(t *testing.T, kind string) fakesmtp.FaultEvent {
	t.Helper()
	timeout := time.After(faultWait)
	for {
		select {
		case ev := <-r.ch:
			if ev.Kind == kind {
				return ev
			}
		case <-timeout:
			t.Fatalf("no %s fault reported within %s (saw %+v)", kind, faultWait, r.events())
		}
	}
}

// faultServer starts a server injecting specs, seeded like the CLI.
func faultServer(t *testing.T, seed uint64, specs ...string) (*fakesmtp.Server, *faultRecorder) {
	t.Helper()
	rec := newFaultRecorder()
	hook := fakesmtp.NewFaults(faultSpecs(t, specs...), rand.New(rand.NewPCG(seed, 2)))
	return start(t, fakesmtp.Options{Hooks: []fakesmtp.Hook{hook}, OnFault: rec.on, OnInDoubt: rec.onDoubt}), rec
}

func faultSpecs(t *testing.T, specs ...string) []fakesmtp.FaultSpec {
	t.Helper()
	var out []fakesmtp.FaultSpec
	for _, s := range specs {
		f, err := fakesmtp.ParseFault(s)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

// faultClient is net/smtp over a connection the test holds, so it can set
// deadlines and see the connection close.
type faultClient struct {
	conn net.Conn
	*smtp.Client
}

func faultDial(t *testing.T, addr string) *faultClient {
	t.Helper()
	conn, err := net.DialTimeout("tcp", addr, faultWait)
	if err != nil {
		t.Fatalf("dial %s: %v", addr, err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(faultWait))
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatalf("greeting: %v", err)
	}
	return &faultClient{conn, c}
}

// body writes a message with DATA and returns the writer whose Close sends
// the final dot and reads the reply to it.
func (c *faultClient) body(t *testing.T, id string, to ...string) io.WriteCloser {
	t.Helper()
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	if _, err := w.Write(message(id, to...)); err != nil {
		t.Fatalf("message body: %v", err)
	}
	return w
}

// deliver runs one whole transaction and fails the test on any error.
func (c *faultClient) deliver(t *testing.T, id string, to ...string) {
	t.Helper()
	if err := c.Mail("a@x.test"); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	for _, a := range to {
		if err := c.Rcpt(a); err != nil {
			t.Fatalf("RCPT %s: %v", a, err)
		}
	}
	if err := c.body(t, id, to...).Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
}

// faultTry sends one message over a fresh connection, step by step, and
// says where it stopped: "ok", "STEP CODE" for a refusal (like "RCPT 451"),
// "STEP cut" when the connection broke, "STEP timeout" when no reply came.
// err is the error met, if any. It is safe to call from any goroutine.
func faultTry(addr, id string, to ...string) (string, error) {
	conn, err := net.DialTimeout("tcp", addr, faultWait)
	if err != nil {
		return "dial cut", err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(faultWait))
	stop := func(step string, err error) (string, error) {
		var te *textproto.Error
		if errors.As(err, &te) {
			return fmt.Sprintf("%s %d", step, te.Code), err
		}
		if faultTimedOut(err) {
			return step + " timeout", err
		}
		return step + " cut", err
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		return stop("greeting", err)
	}
	if err := c.Mail("a@x.test"); err != nil {
		return stop("MAIL", err)
	}
	for _, a := range to {
		if err := c.Rcpt(a); err != nil {
			return stop("RCPT", err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return stop("DATA", err)
	}
	if _, err := w.Write(message(id, to...)); err != nil {
		return stop("body", err)
	}
	if err := w.Close(); err != nil {
		return stop("end", err)
	}
	c.Quit()
	return "ok", nil
}

// faultEnhanced checks err is an SMTP reply of class (4 or 5) with an
// enhanced status code of the same class (RFC 3463), and returns it.
func faultEnhanced(t *testing.T, err error, class int) *textproto.Error {
	t.Helper()
	var te *textproto.Error
	if !errors.As(err, &te) {
		t.Fatalf("want a %dxx reply, got %v", class, err)
	}
	if te.Code/100 != class {
		t.Fatalf("want a %dxx reply, got %d %s", class, te.Code, te.Msg)
	}
	if !regexp.MustCompile(fmt.Sprintf(`^%d\.\d{1,3}\.\d{1,3} `, class)).MatchString(te.Msg) {
		t.Fatalf("reply %d %q has no %d.x.x enhanced status code", te.Code, te.Msg, class)
	}
	return te
}

// faultClosed reports whether err says the peer closed the connection.
func faultClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// faultTimedOut reports whether err is a read or write deadline passing.
func faultTimedOut(err error) bool {
	return errors.Is(err, os.ErrDeadlineExceeded)
}

// faultCopies checks the count of each address.
func faultCopies(t *testing.T, srv *fakesmtp.Server, want map[string]int) {
	t.Helper()
	snap := srv.Snapshot()
	total := 0
	for addr, n := range want {
		total += n
		if got := snap.Lookup(addr).Copies; got != n {
			t.Errorf("%s: %d copies, want %d", addr, got, n)
		}
	}
	if snap.Copies != int64(total) {
		t.Errorf("%d copies in all, want %d (%+v)", snap.Copies, total, snap.Recipients)
	}
}

// faultEventually polls cond every 10ms until it holds or faultWait passes.
func faultEventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(faultWait)
	for !cond() {
		select {
		case <-tick.C:
		case <-deadline:
			t.Fatalf("%s: not within %s", what, faultWait)
		}
	}
}

func TestFaultReject(t *testing.T) {
	srv, rec := faultServer(t, 1, "reject=Bob@X.test")
	c := faultDial(t, srv.Addr())
	if err := c.Mail("a@x.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("carol@x.test"); err != nil {
		t.Fatal(err)
	}
	te := faultEnhanced(t, c.Rcpt("bob@x.test"), 5)
	if te.Code != 550 || !strings.HasPrefix(te.Msg, "5.1.1 ") {
		t.Errorf("reject answered %d %s, want 550 5.1.1", te.Code, te.Msg)
	}
	if err := c.Rcpt("dave@x.test"); err != nil {
		t.Fatalf("a RCPT after the rejected one: %v", err)
	}
	if err := c.body(t, "<1@x>", "carol@x.test", "dave@x.test").Close(); err != nil {
		t.Fatalf("the other recipients' message: %v", err)
	}
	faultCopies(t, srv, map[string]int{"bob@x.test": 0, "carol@x.test": 1, "dave@x.test": 1})
	if n := rec.count("reject"); n != 1 {
		t.Errorf("%d reject faults reported, want 1", n)
	}
}

func TestFaultRejectNth(t *testing.T) {
	srv, rec := faultServer(t, 1, "reject-nth=2")
	var got []string
	for _, to := range []string{"a@x.test", "b@x.test", "c@x.test", "B@x.test"} {
		out, _ := faultTry(srv.Addr(), "", to)
		got = append(got, out)
	}
	if want := []string{"ok", "RCPT 550", "ok", "RCPT 550"}; !slices.Equal(got, want) {
		t.Errorf("outcomes %q, want %q (the 2nd distinct address, every time)", got, want)
	}
	faultCopies(t, srv, map[string]int{"a@x.test": 1, "b@x.test": 0, "c@x.test": 1})
	if n := rec.count("reject-nth"); n != 2 {
		t.Errorf("%d reject-nth faults, want 2", n)
	}

	// Resolved against a list by a harness, it rejects that address
	// whatever order the sender goes in.
	resolved := fakesmtp.FaultSpec{Kind: "reject-nth", N: 3, Addr: "c@x.test"}
	srv2 := start(t, fakesmtp.Options{Hooks: []fakesmtp.Hook{fakesmtp.NewFaults([]fakesmtp.FaultSpec{resolved}, rand.New(rand.NewPCG(1, 2)))}})
	got = got[:0]
	for _, to := range []string{"c@x.test", "a@x.test", "b@x.test"} {
		out, _ := faultTry(srv2.Addr(), "", to)
		got = append(got, out)
	}
	if want := []string{"RCPT 550", "ok", "ok"}; !slices.Equal(got, want) {
		t.Errorf("resolved reject-nth: outcomes %q, want %q", got, want)
	}
}

func TestFaultTempfailAtRcpt(t *testing.T) {
	srv, rec := faultServer(t, 1, "tempfail=1")
	for i := range 5 {
		out, err := faultTry(srv.Addr(), "", fmt.Sprintf("u%d@x.test", i))
		if !strings.HasPrefix(out, "RCPT 4") {
			t.Fatalf("send %d: %s (%v), want a 4xx at RCPT", i, out, err)
		}
		faultEnhanced(t, err, 4)
	}
	faultCopies(t, srv, map[string]int{})
	if n := rec.count("tempfail"); n != 5 {
		t.Errorf("%d tempfail faults, want 5", n)
	}
}

func TestFaultTempfailAtDataEnd(t *testing.T) {
	// The hook's own answer at the final dot.
	hook := fakesmtp.NewFaults(faultSpecs(t, "tempfail=1"), rand.New(rand.NewPCG(1, 2)))
	a := hook.At(t.Context(), &fakesmtp.Event{Moment: fakesmtp.MomentDataEnd, Recipients: []string{"a@x.test"}})
	if !strings.HasPrefix(a.Reply, "45") || a.Close || a.Fault != "tempfail" {
		t.Errorf("tempfail at the final dot: %+v, want a 45x reply and no close", a)
	}

	// Through a server: with P=0.5 a fixed seed gives some messages a 4xx
	// after their whole body was sent; those count nothing.
	srv, _ := faultServer(t, 1, "tempfail=0.5")
	want := map[string]int{}
	atEnd := 0
	for i := 0; i < 60 && atEnd < 3; i++ {
		to := fmt.Sprintf("u%d@x.test", i)
		out, err := faultTry(srv.Addr(), "", to)
		switch {
		case out == "ok":
			want[to] = 1
		case strings.HasPrefix(out, "end 4"):
			faultEnhanced(t, err, 4)
			want[to] = 0
			atEnd++
		case !strings.HasPrefix(out, "RCPT 4"):
			t.Fatalf("send %d: %s (%v)", i, out, err)
		}
	}
	if atEnd == 0 {
		t.Fatal("seed 1 gave no tempfail at the final dot in 60 sends")
	}
	faultCopies(t, srv, want)
}

func TestFaultGreylist(t *testing.T) {
	srv, rec := faultServer(t, 1, "greylist")
	c := faultDial(t, srv.Addr())
	if err := c.Mail("a@x.test"); err != nil {
		t.Fatal(err)
	}
	te := faultEnhanced(t, c.Rcpt("grey@x.test"), 4)
	if te.Code != 451 || !strings.HasPrefix(te.Msg, "4.7.1 ") {
		t.Errorf("first RCPT: %d %s, want 451 4.7.1", te.Code, te.Msg)
	}
	if err := c.Rcpt("grey@x.test"); err != nil {
		t.Fatalf("second RCPT: %v, want it to pass", err)
	}
	if err := c.body(t, "<g@x>", "grey@x.test").Close(); err != nil {
		t.Fatal(err)
	}
	// Once through, the address stays through.
	if out, err := faultTry(srv.Addr(), "<g2@x>", "GREY@x.test"); out != "ok" {
		t.Fatalf("a later message: %s (%v)", out, err)
	}
	faultCopies(t, srv, map[string]int{"grey@x.test": 2})
	if n := rec.count("greylist"); n != 1 {
		t.Errorf("%d greylist faults, want 1", n)
	}
}

func TestFaultDropAfterData(t *testing.T) {
	srv, rec := faultServer(t, 1, "drop-after-data=1")
	c := faultDial(t, srv.Addr())
	if err := c.Mail("a@x.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@x.test"); err != nil {
		t.Fatal(err)
	}
	err := c.body(t, "<d@x>", "a@x.test").Close()
	if !errors.Is(err, io.EOF) {
		t.Fatalf("end of DATA: %v, want EOF (the connection cut before the 250)", err)
	}
	if ev := rec.next(t, "drop-after-data"); !ev.Cut || ev.Moment != fakesmtp.MomentCommitted {
		t.Errorf("fault event %+v, want a cut at the commit", ev)
	}
	d := rec.nextDoubt(t)
	if !d.Delivered || d.Acked || d.Ended != fakesmtp.EndCut || d.Fault != "drop-after-data" || d.MessageID != "<d@x>" ||
		!slices.Equal(d.Recipients, []string{"a@x.test"}) {
		t.Errorf("in-doubt transaction %+v, want a@x.test delivered, not acked, cut by drop-after-data", d)
	}
	faultCopies(t, srv, map[string]int{"a@x.test": 1}) // counted all the same
}

func TestFaultDropDuringData(t *testing.T) {
	srv, rec := faultServer(t, 1, "drop-during-data=1")
	c := faultDial(t, srv.Addr())
	if err := c.Mail("a@x.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@x.test"); err != nil {
		t.Fatal(err)
	}
	w := c.body(t, "<d@x>", "a@x.test") // 354 came: the cut is mid-body
	if err := w.Close(); !faultClosed(err) {
		t.Fatalf("end of DATA: %v, want the connection closed", err)
	}
	if ev := rec.next(t, "drop-during-data"); ev.Moment != fakesmtp.MomentDataStreaming {
		t.Errorf("fault event %+v, want it while data streams", ev)
	}
	if d := rec.nextDoubt(t); d.Delivered || d.Ended != fakesmtp.EndCut || !slices.Equal(d.Recipients, []string{"a@x.test"}) {
		t.Errorf("in-doubt transaction %+v, want a@x.test undelivered, cut", d)
	}
	faultCopies(t, srv, map[string]int{"a@x.test": 0})
}

func TestFaultSlowAckImpatientClient(t *testing.T) {
	srv, rec := faultServer(t, 1, "slow-ack=300ms")
	c := faultDial(t, srv.Addr())
	if err := c.Mail("a@x.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@x.test"); err != nil {
		t.Fatal(err)
	}
	w := c.body(t, "<s@x>", "a@x.test")
	c.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if err := w.Close(); !faultTimedOut(err) {
		t.Fatalf("end of DATA with a 100ms deadline: %v, want a timeout", err)
	}
	faultCopies(t, srv, map[string]int{"a@x.test": 1}) // counted before the hold
	c.conn.Close()                                     // the client gives up and hangs up
	if ev := rec.next(t, "slow-ack"); ev.Delay != 300*time.Millisecond || ev.Moment != fakesmtp.MomentCommitted {
		t.Errorf("fault event %+v, want a 300ms hold at the commit", ev)
	}
	if d := rec.nextDoubt(t); !d.Delivered || d.Ended != fakesmtp.EndClient {
		t.Errorf("in-doubt transaction %+v, want delivered, ended by the client that hung up before the 250", d)
	}
	faultCopies(t, srv, map[string]int{"a@x.test": 1})
}

func TestFaultSlowAckPatientClient(t *testing.T) {
	srv, rec := faultServer(t, 1, "slow-ack=300ms")
	c := faultDial(t, srv.Addr())
	if err := c.Mail("a@x.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@x.test"); err != nil {
		t.Fatal(err)
	}
	w := c.body(t, "<s@x>", "a@x.test")
	// The 250 is held: a 100ms deadline must pass without it.
	c.conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	if err := w.Close(); !faultTimedOut(err) {
		t.Fatalf("end of DATA within 100ms: %v, want no reply yet", err)
	}
	// A patient client still on the line gets it.
	c.conn.SetReadDeadline(time.Now().Add(faultWait))
	if _, _, err := c.Text.ReadResponse(250); err != nil {
		t.Fatalf("the held 250: %v", err)
	}
	rec.next(t, "slow-ack")
	if err := c.Quit(); err != nil {
		t.Errorf("QUIT after the held 250: %v", err)
	}
	rec.noDoubt(t, srv) // the client read its 250 and said QUIT
	faultCopies(t, srv, map[string]int{"a@x.test": 1})
}

func TestFaultLatency(t *testing.T) {
	srv, rec := faultServer(t, 1, "latency=50ms")
	conn, err := net.DialTimeout("tcp", srv.Addr(), faultWait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	r := bufio.NewReader(conn)
	// Each reply must miss a 10ms deadline (it is held 50ms), then arrive,
	// at least 50ms after the hook reported holding it.
	replies := 0
	held := func(cmd, code string) {
		t.Helper()
		if cmd != "" {
			conn.SetWriteDeadline(time.Now().Add(faultWait))
			if _, err := io.WriteString(conn, cmd); err != nil {
				t.Fatal(err)
			}
		}
		conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if line, err := r.ReadString('\n'); !faultTimedOut(err) || line != "" {
			t.Fatalf("after %q: got %q (%v) within 10ms, want nothing yet", cmd, line, err)
		}
		conn.SetReadDeadline(time.Now().Add(faultWait))
		line, err := r.ReadString('\n')
		arrived := time.Now()
		if err != nil || !strings.HasPrefix(line, code) {
			t.Fatalf("after %q: got %q (%v), want %s", cmd, line, err, code)
		}
		ev := rec.next(t, "latency")
		if ev.Moment != fakesmtp.MomentReply || arrived.Sub(ev.Time) < 50*time.Millisecond {
			t.Errorf("reply %q arrived %s after its latency fault %+v, want at least 50ms", line, arrived.Sub(ev.Time), ev)
		}
		replies++
	}
	held("", "220")
	held("HELO c.x.test\r\n", "250")
	held("MAIL FROM:<a@x.test>\r\n", "250")
	held("RCPT TO:<a@x.test>\r\n", "250")
	held("DATA\r\n", "354")
	held("Message-ID: <l@x>\r\nSubject: l\r\n\r\nhi\r\n.\r\n", "250")
	held("QUIT\r\n", "221")
	if n := rec.count("latency"); n != replies {
		t.Errorf("%d latency faults, want one per reply (%d)", n, replies)
	}
	faultCopies(t, srv, map[string]int{"a@x.test": 1})
}

func TestFaultRefuse(t *testing.T) {
	srv, rec := faultServer(t, 1, "refuse=1")
	conn, err := net.DialTimeout("tcp", srv.Addr(), faultWait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(faultWait))
	r := bufio.NewReader(conn)
	line, err := r.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "421 4.") {
		t.Fatalf("greeting %q (%v), want 421 4.x.x", line, err)
	}
	if rest, err := r.ReadString('\n'); !faultClosed(err) {
		t.Fatalf("after the 421: %q (%v), want the connection closed", rest, err)
	}
	if out, _ := faultTry(srv.Addr(), "", "a@x.test"); out != "greeting 421" {
		t.Errorf("net/smtp: %s, want greeting 421", out)
	}
	faultCopies(t, srv, map[string]int{})
	if n := rec.count("refuse"); n != 2 {
		t.Errorf("%d refuse faults, want 2", n)
	}
}

func TestFaultConnLimit(t *testing.T) {
	srv, rec := faultServer(t, 1, "conn-limit=2")
	c := faultDial(t, srv.Addr())
	c.deliver(t, "<1@x>", "a@x.test")
	c.deliver(t, "<2@x>", "b@x.test")
	te := faultEnhanced(t, c.Mail("a@x.test"), 4)
	if te.Code != 421 {
		t.Errorf("third MAIL: %d %s, want 421", te.Code, te.Msg)
	}
	if _, err := c.Text.ReadLine(); !faultClosed(err) {
		t.Errorf("after the 421: %v, want the connection closed", err)
	}
	faultCopies(t, srv, map[string]int{"a@x.test": 1, "b@x.test": 1})
	if n := rec.count("conn-limit"); n != 1 {
		t.Errorf("%d conn-limit faults, want 1", n)
	}
	// A new connection starts a new allowance.
	faultDial(t, srv.Addr()).deliver(t, "<3@x>", "c@x.test")
}

// reject-mail refuses MAIL; a pipelining client's group behind it is
// answered in order, 503 for each RCPT and the DATA, and nothing counts.
func TestFaultRejectMailPipelined(t *testing.T) {
	srv, rec := faultServer(t, 1, "reject-mail=1")
	c := dialRaw(t, srv.Addr())
	c.expect("220")
	c.mustSend(ehlo)
	c.expect("250")
	c.mustSend(mailA + rcpt("a@x.test") + rcpt("b@x.test") + data)
	for _, code := range []string{"550", "503", "503", "503"} {
		c.expect(code)
	}
	c.mustSend("NOOP\r\n")
	c.expect("250")
	faultCopies(t, srv, map[string]int{"a@x.test": 0, "b@x.test": 0})
	if ev := rec.next(t, "reject-mail"); ev.Moment != fakesmtp.MomentMail || ev.Address != "a@x.test" || !strings.HasPrefix(ev.Reply, "550 5.7.1") {
		t.Errorf("fault event %+v, want a 550 at MAIL for a@x.test", ev)
	}
}

func TestFaultOutage(t *testing.T) {
	srv := start(t, fakesmtp.Options{})
	faultDial(t, srv.Addr()).deliver(t, "<1@x>", "a@x.test")
	idle := faultDial(t, srv.Addr())
	if err := idle.Hello("c.x.test"); err != nil {
		t.Fatal(err)
	}

	if err := srv.Outage(500 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if c, err := net.Dial("tcp", srv.Addr()); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Fatalf("dial during the outage: %v, want connection refused", err)
	}
	if line, err := idle.Text.ReadLine(); err != nil || !strings.HasPrefix(line, "421 ") {
		t.Errorf("open connection at the outage: %q (%v), want 421", line, err)
	}
	if _, err := idle.Text.ReadLine(); !faultClosed(err) {
		t.Errorf("open connection after its 421: %v, want it closed", err)
	}
	faultEventually(t, "the port comes back", func() bool {
		c, err := net.Dial("tcp", srv.Addr())
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	faultDial(t, srv.Addr()).deliver(t, "<2@x>", "b@x.test")
	faultCopies(t, srv, map[string]int{"a@x.test": 1, "b@x.test": 1})
}

// faultSequence sends n messages one after the other and returns each
// outcome, the faults reported and the counts.
func faultSequence(t *testing.T, seed uint64, n int) ([]string, []string, map[string]int) {
	srv, rec := faultServer(t, seed, "tempfail=0.3", "drop-during-data=0.1", "drop-after-data=0.1")
	var outs []string
	for i := range n {
		to := fmt.Sprintf("u%d@x.test", i%7)
		out, _ := faultTry(srv.Addr(), fmt.Sprintf("<%d@x>", i), to)
		// Every fault is reported before the client can see it, so the
		// log is in send order.
		outs = append(outs, to+" "+out)
	}
	var kinds []string
	for _, ev := range rec.events() {
		kinds = append(kinds, fmt.Sprintf("%s@%s/%s", ev.Kind, ev.Moment, ev.Reply))
	}
	counts := map[string]int{}
	for _, r := range srv.Snapshot().Recipients {
		counts[r.Address] = r.Copies
	}
	return outs, kinds, counts
}

func TestFaultSameSeedSameSequence(t *testing.T) {
	const n = 40
	outs1, kinds1, counts1 := faultSequence(t, 7, n)
	outs2, kinds2, counts2 := faultSequence(t, 7, n)
	if !slices.Equal(outs1, outs2) {
		t.Errorf("same seed, different outcomes:\n%q\n%q", outs1, outs2)
	}
	if !slices.Equal(kinds1, kinds2) {
		t.Errorf("same seed, different faults:\n%q\n%q", kinds1, kinds2)
	}
	if !maps.Equal(counts1, counts2) {
		t.Errorf("same seed, different counts: %v and %v", counts1, counts2)
	}
	seen := strings.Join(append(outs1, kinds1...), " ")
	for _, want := range []string{" ok", "tempfail@", "drop-during-data@", "drop-after-data@"} {
		if !strings.Contains(seen, want) {
			t.Errorf("seed 7 never gave %q in %d sends: the sequence shows too little\n%q\n%q", want, n, outs1, kinds1)
		}
	}
	outs3, _, _ := faultSequence(t, 8, n)
	if slices.Equal(outs1, outs3) {
		t.Errorf("seeds 7 and 8 gave the same outcomes: %q", outs1)
	}
}

// faultAPI talks to the faults API of a server started with a FaultSet.
type faultAPI struct {
	t    *testing.T
	base string
}

func (a faultAPI) do(method, path, body string) (int, string) {
	a.t.Helper()
	req, err := http.NewRequestWithContext(a.t.Context(), method, a.base+path, strings.NewReader(body))
	if err != nil {
		a.t.Fatal(err)
	}
	resp, err := (&http.Client{Timeout: faultWait}).Do(req)
	if err != nil {
		a.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

type faultsJSON struct {
	Faults []string `json:"faults"`
	Seed   uint64   `json:"seed"`
}

func (a faultAPI) get() faultsJSON {
	a.t.Helper()
	code, body := a.do("GET", "/api/v1/faults", "")
	var f faultsJSON
	if err := json.Unmarshal([]byte(body), &f); code != 200 || err != nil {
		a.t.Fatalf("GET /api/v1/faults: %d %s (%v)", code, body, err)
	}
	return f
}

func TestFaultHTTPAPI(t *testing.T) {
	fs := fakesmtp.NewFaultSet(faultSpecs(t, "greylist"), 3)
	srv := start(t, fakesmtp.Options{HTTPAddr: "127.0.0.1:0", Hooks: []fakesmtp.Hook{fs}})
	api := faultAPI{t, "http://" + srv.HTTPAddr()}

	if got := api.get(); !slices.Equal(got.Faults, []string{"greylist"}) || got.Seed != 3 {
		t.Errorf("GET: %+v, want greylist with seed 3", got)
	}
	code, body := api.do("PUT", "/api/v1/faults", `{"faults": ["reject=bob@x.test", "slow-ack=10ms@0.5", "tempfail=0"], "seed": 7}`)
	if code != 200 {
		t.Fatalf("PUT: %d %s", code, body)
	}
	want := faultsJSON{[]string{"reject=bob@x.test", "slow-ack=10ms@0.5", "tempfail=0"}, 7}
	if got := api.get(); !slices.Equal(got.Faults, want.Faults) || got.Seed != want.Seed {
		t.Errorf("GET after PUT: %+v, want %+v", got, want)
	}
	if specs, seed := fs.Specs(); len(specs) != 3 || seed != 7 {
		t.Errorf("FaultSet.Specs: %v %d", specs, seed)
	}
	// The new set is in force at once, the old one gone.
	if out, _ := faultTry(srv.Addr(), "", "bob@x.test"); out != "RCPT 550" {
		t.Errorf("bob after PUT: %s, want RCPT 550", out)
	}
	if out, err := faultTry(srv.Addr(), "", "carol@x.test"); out != "ok" {
		t.Errorf("carol after PUT: %s (%v), want ok: greylist is gone", out, err)
	}
	// Without a seed, the seed stays; an empty list clears the faults.
	if code, body := api.do("PUT", "/api/v1/faults", `{"faults": []}`); code != 200 {
		t.Fatalf("PUT []: %d %s", code, body)
	}
	if got := api.get(); len(got.Faults) != 0 || got.Seed != 7 {
		t.Errorf("GET after clearing: %+v", got)
	}
	if out, _ := faultTry(srv.Addr(), "", "bob@x.test"); out != "ok" {
		t.Errorf("bob after clearing: %s, want ok", out)
	}

	for _, tc := range []struct{ body, mention string }{
		{`{"faults": ["greylist", "tempfail=2"]}`, `faults[1]: "tempfail=2"`},
		{`{"faults": ["bogus=1"]}`, `"bogus=1"`},
		{`{"faults": ["outage=2s@50%"]}`, `"outage=2s@50%"`},
		{`{"faults": ["slow-ack=1s@0"]}`, `"slow-ack=1s@0"`},
		{`{"faults": "greylist"}`, `want a JSON body`},
		{`{"fault": ["greylist"]}`, `unknown field "fault"`},
		{`not json`, `want a JSON body`},
	} {
		code, body := api.do("PUT", "/api/v1/faults", tc.body)
		if code != 400 || !strings.Contains(body, tc.mention) {
			t.Errorf("PUT %s: %d %q, want 400 naming %s", tc.body, code, body, tc.mention)
		}
	}
	if got := api.get(); len(got.Faults) != 0 {
		t.Errorf("a bad PUT changed the faults: %+v", got)
	}

	for _, q := range []string{"", "?for=soon", "?for=-1s", "?for=0s"} {
		if code, body := api.do("POST", "/api/v1/outage"+q, ""); code != 400 || !strings.Contains(body, "for=") {
			t.Errorf("POST /api/v1/outage%s: %d %q, want 400", q, code, body)
		}
	}
	if code, body := api.do("POST", "/api/v1/outage?for=500ms", ""); code != 202 {
		t.Fatalf("POST /api/v1/outage: %d %s", code, body)
	}
	if c, err := net.Dial("tcp", srv.Addr()); !errors.Is(err, syscall.ECONNREFUSED) {
		if c != nil {
			c.Close()
		}
		t.Errorf("dial during the outage: %v, want connection refused", err)
	}
	if code, _ := api.do("GET", "/healthz", ""); code != 200 {
		t.Errorf("the HTTP API went down with the SMTP port: %d", code)
	}
	faultEventually(t, "the port comes back", func() bool {
		out, _ := faultTry(srv.Addr(), "", "dave@x.test")
		return out == "ok"
	})

	// A server without a FaultSet says so.
	plain := start(t, fakesmtp.Options{HTTPAddr: "127.0.0.1:0"})
	papi := faultAPI{t, "http://" + plain.HTTPAddr()}
	if code, body := papi.do("PUT", "/api/v1/faults", `{"faults": ["greylist"]}`); code != 404 || !strings.Contains(body, "FaultSet") {
		t.Errorf("PUT on a server without a FaultSet: %d %q, want 404", code, body)
	}
}

// TestFaultSetConcurrentSet replaces the faults while sessions consult
// them: -race must stay quiet and every send must end one way or another.
func TestFaultSetConcurrentSet(t *testing.T) {
	fs := fakesmtp.NewFaultSet(nil, 1)
	srv := start(t, fakesmtp.Options{Hooks: []fakesmtp.Hook{fs}})
	done := make(chan struct{})
	go func() {
		defer close(done)
		sets := [][]fakesmtp.FaultSpec{faultSpecs(t, "tempfail=0.5"), faultSpecs(t, "greylist", "latency=1ms"), nil}
		for i := range 200 {
			fs.Set(sets[i%len(sets)], uint64(i))
			fs.Specs()
		}
	}()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				out, err := faultTry(srv.Addr(), "", fmt.Sprintf("g%d-%d@x.test", g, i))
				if out != "ok" && !strings.HasPrefix(out, "RCPT 4") && !strings.HasPrefix(out, "end 4") {
					t.Errorf("send: %s (%v)", out, err)
				}
			}
		}()
	}
	wg.Wait()
	<-done
}
