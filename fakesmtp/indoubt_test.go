// In-doubt transactions, observed at the server: which transactions a
// session leaves in flight when it ends, however it ends (docs/verdicts.md).

package fakesmtp_test

import (
	"bufio"
	"context"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// doubtServer is a server with no faults whose in-doubt reports rec sees.
func doubtServer(t *testing.T) (*fakesmtp.Server, *faultRecorder) {
	t.Helper()
	rec := newFaultRecorder()
	return start(t, fakesmtp.Options{OnInDoubt: rec.onDoubt, OnFault: rec.on}), rec
}

func TestInDoubtClientLeavesAfter250WithoutQuit(t *testing.T) {
	srv, rec := doubtServer(t)
	c := faultDial(t, srv.Addr())
	c.deliver(t, "<1@x>", "a@x.test")
	c.conn.Close() // read its 250, then died before saying anything more
	d := rec.nextDoubt(t)
	if !d.Delivered || !d.Acked || d.Ended != fakesmtp.EndClient || d.MessageID != "<1@x>" || d.Transport != "smtp" ||
		!slices.Equal(d.Recipients, []string{"a@x.test"}) || d.Txn == 0 {
		t.Errorf("in doubt: %+v, want a@x.test delivered and acked, ended by the client", d)
	}
}

func TestInDoubtNextMailOrQuitSettles(t *testing.T) {
	srv, rec := doubtServer(t)
	c := faultDial(t, srv.Addr())
	c.deliver(t, "<1@x>", "a@x.test")
	c.deliver(t, "<2@x>", "b@x.test") // its MAIL settles the first
	if err := c.Quit(); err != nil {  // and QUIT the second
		t.Fatal(err)
	}
	rec.noDoubt(t, srv)
}

func TestInDoubtOnlyTheLastTransaction(t *testing.T) {
	srv, rec := doubtServer(t)
	c := faultDial(t, srv.Addr())
	c.deliver(t, "<1@x>", "a@x.test")
	c.deliver(t, "<2@x>", "b@x.test", "c@x.test", "B@X.test")
	c.conn.Close()
	d := rec.nextDoubt(t)
	if d.MessageID != "<2@x>" || !slices.Equal(d.Recipients, []string{"b@x.test", "c@x.test"}) {
		t.Errorf("in doubt: %+v, want the batch of b and c only (one transaction, its recipients normalised)", d)
	}
	rec.noDoubt(t, srv)
}

func TestInDoubtKilledMidData(t *testing.T) {
	srv, rec := doubtServer(t)
	c := faultDial(t, srv.Addr())
	if err := c.Mail("s@x.test"); err != nil {
		t.Fatal(err)
	}
	if err := c.Rcpt("a@x.test"); err != nil {
		t.Fatal(err)
	}
	c.body(t, "<1@x>", "a@x.test") // the final dot never comes
	c.conn.Close()
	if d := rec.nextDoubt(t); d.Delivered || d.Acked || !slices.Equal(d.Recipients, []string{"a@x.test"}) {
		t.Errorf("in doubt: %+v, want a@x.test undelivered", d)
	}
	faultCopies(t, srv, map[string]int{"a@x.test": 0})
}

func TestInDoubtNothingBeforeARecipient(t *testing.T) {
	srv, rec := doubtServer(t)
	c := faultDial(t, srv.Addr())
	if err := c.Mail("s@x.test"); err != nil {
		t.Fatal(err)
	}
	c.conn.Close()
	rec.noDoubt(t, srv) // no recipient accepted: nothing can be in doubt
}

// A MAIL the client pipelined behind the final dot was sent before it could
// read the 250: it does not settle that transaction.
func TestInDoubtPipelinedMailDoesNotSettle(t *testing.T) {
	srv, rec := doubtServer(t)
	conn, err := net.Dial("tcp", srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(faultWait))
	r := bufio.NewReader(conn)
	expect := func(code string) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				t.Fatalf("waiting for %s: %v", code, err)
			}
			if !strings.HasPrefix(line, code) {
				t.Fatalf("got %q, want %s", line, code)
			}
			if len(line) < 4 || line[3] == ' ' {
				return
			}
		}
	}
	send := func(s string) {
		t.Helper()
		if _, err := conn.Write([]byte(s)); err != nil {
			t.Fatal(err)
		}
	}
	expect("220")
	send("EHLO c.test\r\n")
	expect("250")
	send("MAIL FROM:<s@x.test>\r\n")
	expect("250")
	send("RCPT TO:<a@x.test>\r\n")
	expect("250")
	send("DATA\r\n")
	expect("354")
	send("Message-ID: <1@x>\r\n\r\nhi\r\n.\r\nMAIL FROM:<s@x.test>\r\nRCPT TO:<b@x.test>\r\n")
	expect("250") // the message
	expect("250") // MAIL
	expect("250") // RCPT
	conn.Close()
	got := []fakesmtp.InDoubt{rec.nextDoubt(t), rec.nextDoubt(t)}
	if !got[0].Delivered || got[0].MessageID != "<1@x>" || got[1].Delivered || !slices.Equal(got[1].Recipients, []string{"b@x.test"}) {
		t.Errorf("in doubt: %+v, want the delivered message and the undelivered one behind it", got)
	}
	if got[0].Txn == got[1].Txn {
		t.Errorf("two transactions share the number %d", got[0].Txn)
	}
}

func TestInDoubtOutageCutsAnIdleSession(t *testing.T) {
	srv, rec := doubtServer(t)
	c := faultDial(t, srv.Addr())
	c.deliver(t, "<1@x>", "a@x.test")
	if err := srv.Outage(50 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	if d := rec.nextDoubt(t); d.Ended != fakesmtp.EndShutdown || !d.Delivered {
		t.Errorf("in doubt: %+v, want the delivered message, ended by the server", d)
	}
}

func TestDeliveryNamesItsTransaction(t *testing.T) {
	rec := newFaultRecorder()
	got := make(chan fakesmtp.Delivery, 2)
	srv := start(t, fakesmtp.Options{OnInDoubt: rec.onDoubt, OnDelivery: func(d fakesmtp.Delivery) { got <- d }})
	c := faultDial(t, srv.Addr())
	c.deliver(t, "<1@x>", "a@x.test")
	c.conn.Close()
	d := <-got
	if doubt := rec.nextDoubt(t); doubt.Txn != d.Txn || d.Transport != "smtp" {
		t.Errorf("delivery %+v and in-doubt %+v: want one transaction number, transport smtp", d, doubt)
	}
}

// rawDoubt is a raw session on a doubt server.
func rawDoubt(t *testing.T, srv *fakesmtp.Server) *rawClient {
	c := dialRaw(t, srv.Addr())
	c.expect("220")
	c.mustSend(ehlo)
	c.expect("250")
	return c
}

// A BDAT chunk that is not the last gets a 250 that is not the final reply:
// a client gone after it leaves its transaction undelivered in doubt.
func TestInDoubtBDATChunkIsNotFinal(t *testing.T) {
	srv, rec := doubtServer(t)
	c := rawDoubt(t, srv)
	c.mustSend(mailA + rcpt("a@x.test") + bdat("Message-ID: <1@x>\r\n", false))
	for _, code := range []string{"250", "250", "250"} {
		c.expect(code)
	}
	c.conn.Close()
	if d := rec.nextDoubt(t); d.Delivered || d.Acked || !slices.Equal(d.Recipients, []string{"a@x.test"}) {
		t.Errorf("in doubt: %+v, want a@x.test undelivered and unanswered", d)
	}
	faultCopies(t, srv, map[string]int{"a@x.test": 0})
}

// BDAT LAST's reply is the final reply: a MAIL pipelined behind the last
// chunk does not settle it; one sent after the 250 does.
func TestInDoubtBDATLastIsTheFinalReply(t *testing.T) {
	srv, rec := doubtServer(t)
	c := rawDoubt(t, srv)
	c.mustSend(mailA + rcpt("a@x.test") + bdat("Message-ID: <1@x>\r\n\r\nhi\r\n", true) + mailA + rcpt("b@x.test"))
	for _, code := range []string{"250", "250", "250", "250", "250"} {
		c.expect(code)
	}
	c.conn.Close()
	got := []fakesmtp.InDoubt{rec.nextDoubt(t), rec.nextDoubt(t)}
	if !got[0].Delivered || !got[0].Acked || got[0].MessageID != "<1@x>" || got[1].Delivered || !slices.Equal(got[1].Recipients, []string{"b@x.test"}) {
		t.Errorf("in doubt: %+v, want the delivered BDAT message and the undelivered one behind it", got)
	}

	c = rawDoubt(t, srv)
	c.mustSend(mailA + rcpt("c@x.test") + bdat("Message-ID: <2@x>\r\n\r\nhi\r\n", true))
	for _, code := range []string{"250", "250", "250"} {
		c.expect(code)
	}
	c.mustSend(mailA) // after the 250: settles it
	c.expect("250")
	c.mustSend("QUIT\r\n")
	c.expect("221")
	rec.noDoubt(t, srv)
	faultCopies(t, srv, map[string]int{"a@x.test": 1, "c@x.test": 1})
}

// A kill point at MomentCommitted cuts a BDAT transaction as it cuts DATA.
func TestInDoubtBDATCommittedCut(t *testing.T) {
	rec := newFaultRecorder()
	kill := fakesmtp.HookAt(fakesmtp.Moments(fakesmtp.MomentCommitted), fakesmtp.HookFunc(func(context.Context, *fakesmtp.Event) fakesmtp.Action {
		return fakesmtp.Action{Close: true, Fault: "kill-point"}
	}))
	srv := start(t, fakesmtp.Options{Hooks: []fakesmtp.Hook{kill}, OnInDoubt: rec.onDoubt})
	c := rawDoubt(t, srv)
	c.mustSend(mailA + rcpt("a@x.test") + bdat("hi\r\n", true))
	c.expect("250")
	c.expect("250")
	c.expectClosed()
	if d := rec.nextDoubt(t); !d.Delivered || d.Acked || d.Ended != fakesmtp.EndCut {
		t.Errorf("in doubt: %+v, want delivered, never acked, cut", d)
	}
	faultCopies(t, srv, map[string]int{"a@x.test": 1})
}

// EHLO in the middle of a transaction resets it (RFC 5321 4.1.4): the
// transaction is abandoned, undelivered, and the next MAIL settles it.
func TestInDoubtEHLOResetMidTransaction(t *testing.T) {
	srv, rec := doubtServer(t)
	c := rawDoubt(t, srv)
	c.mustSend(mailA + rcpt("a@x.test") + ehlo + data)
	for _, code := range []string{"250", "250", "250", "503"} {
		c.expect(code)
	}
	c.conn.Close()
	if d := rec.nextDoubt(t); d.Delivered || !slices.Equal(d.Recipients, []string{"a@x.test"}) {
		t.Errorf("in doubt: %+v, want a@x.test undelivered", d)
	}

	c = rawDoubt(t, srv)
	c.mustSend(mailA + rcpt("a@x.test") + ehlo)
	for _, code := range []string{"250", "250", "250"} {
		c.expect(code)
	}
	c.transaction("Subject: after\r\n\r\nhi\r\n.\r\n", "b@x.test")
	c.mustSend("QUIT\r\n")
	c.expect("221")
	rec.noDoubt(t, srv)
	faultCopies(t, srv, map[string]int{"a@x.test": 0, "b@x.test": 1})
}

// STARTTLS in the middle of a transaction starts the session over: the
// old envelope is gone (DATA gets 503), and what follows over TLS is
// tracked like any transaction.
func TestInDoubtSTARTTLSResetMidTransaction(t *testing.T) {
	srv, rec := doubtServer(t)
	c := rawDoubt(t, srv)
	c.mustSend(mailA + rcpt("a@x.test"))
	c.expect("250")
	c.expect("250")
	c.mustSend("STARTTLS\r\n")
	c.expect("220")
	c.startTLS(t, tlsConfig(t, srv))
	c.mustSend(ehlo + data)
	c.expect("250")
	c.expect("503")
	c.transaction("Message-ID: <t@x>\r\n\r\nhi\r\n.\r\n", "b@x.test")
	c.conn.Close()
	d := rec.nextDoubt(t)
	if !d.Delivered || !d.Acked || d.MessageID != "<t@x>" {
		t.Errorf("in doubt: %+v, want only the message sent over TLS, delivered and acked", d)
	}
	rec.noDoubt(t, srv)
	faultCopies(t, srv, map[string]int{"a@x.test": 0, "b@x.test": 1})
}
