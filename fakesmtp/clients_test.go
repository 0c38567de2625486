// Real SMTP clients against the guarded server: Go's net/smtp, Python's
// smtplib and swaks. Multi-recipient messages, case variants of one
// mailbox and repeated Message-IDs must be counted exactly, as the oracle
// and the HTTP API both report. A client that is not installed skips its
// test, saying so: never a pass that did not run.

package fakesmtp_test

import (
	"net"
	"net/smtp"
	"os/exec"
	"strings"
	"testing"

	"github.com/onecopy/onecopy/fakesmtp"
)

func TestNetSMTPClient(t *testing.T) {
	// SendMail upgrades whenever STARTTLS is offered and verifies the
	// certificate against the system roots, which lack the throwaway CA
	// (TestSendMailTrustingTheCA gives it the CA the way a sender gets it).
	srv := start(t, fakesmtp.Options{HTTPAddr: "127.0.0.1:0", DisableSTARTTLS: true})
	api := newAPI(t, srv)

	// SendMail: one connection per message.
	if err := smtp.SendMail(srv.Addr(), nil, "a@x.test", []string{"Bob@Example.COM", "carol@x.test", "dave@x.test"},
		message("<1@x>", "Bob@Example.COM", "carol@x.test", "dave@x.test")); err != nil {
		t.Fatal(err)
	}
	// A Client: several transactions on one connection.
	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	send := func(id string, to ...string) {
		t.Helper()
		if err := c.Mail("a@x.test"); err != nil {
			t.Fatal(err)
		}
		for _, r := range to {
			if err := c.Rcpt(r); err != nil {
				t.Fatal(err)
			}
		}
		w, err := c.Data()
		if err != nil {
			t.Fatal(err)
		}
		w.Write(message(id, to...))
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}
	send("<1@x>", "bob@example.com")                    // same mailbox, same Message-ID: a copy, no new id
	send("", "carol@x.test")                            // no Message-ID: always a distinct message
	send("", "CAROL@x.test")                            //
	send("<2@x>", "BOB@example.com", "bob@example.com") // one mailbox twice in one transaction: one copy
	if err := c.Reset(); err != nil {
		t.Fatal(err)
	}
	// A refused null recipient does not count, and the client can go on.
	if err := c.Mail(""); err != nil {
		t.Fatalf("MAIL FROM:<> refused: %v", err)
	}
	if err := c.Rcpt(""); err == nil || !strings.HasPrefix(err.Error(), "501") {
		t.Fatalf("RCPT TO:<>: %v, want a 501", err)
	}
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	sessionsGone(t, srv)

	api.check(srv, map[string][2]int{
		"bob@example.com": {3, 2},
		"carol@x.test":    {3, 3},
		"dave@x.test":     {1, 1},
	})
}

// pythonSend is a smtplib client: sendmail (bytes, multi-RCPT, a line
// starting with a dot) and send_message twice on one connection.
const pythonSend = `
import smtplib, sys
from email.message import EmailMessage
host, port = sys.argv[1], int(sys.argv[2])
with smtplib.SMTP(host, port, local_hostname="client.test", timeout=10) as s:
    refused = s.sendmail("a@x.test", ["Bob@Example.COM", "carol@x.test"],
        b"Subject: 1\r\nMessage-ID: <p1@x>\r\n\r\nhello\r\n.leading dot\r\n.\r\nlone dot above\r\n")
    assert refused == {}, refused
    for to, mid in (("bob@example.com", "<p1@x>"), ("BOB@example.com", "<p2@x>")):
        m = EmailMessage()
        m["From"], m["To"], m["Subject"], m["Message-ID"] = "a@x.test", to, "python", mid
        m.set_content("hi\n.\nthere\n")
        s.send_message(m)
    # smtplib cleans addresses up itself (quoteaddr); send the junk raw.
    s.mail("a@x.test")
    code, msg = s.docmd("RCPT TO:<a@x.test> <b@y.test>")
    assert code == 501, (code, msg)
    s.rset()
print("sent")
`

func TestPythonSmtplib(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not on PATH: skipping the smtplib client test")
	}
	srv := start(t, fakesmtp.Options{HTTPAddr: "127.0.0.1:0"})
	host, port, _ := net.SplitHostPort(srv.Addr())
	out, err := exec.Command(python, "-c", pythonSend, host, port).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "sent" {
		t.Fatalf("python smtplib: %v\n%s", err, out)
	}
	sessionsGone(t, srv)
	newAPI(t, srv).check(srv, map[string][2]int{
		"bob@example.com": {3, 2},
		"carol@x.test":    {1, 1},
	})
}

func TestSwaks(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not on PATH: skipping the swaks client test (apt-get install swaks)")
	}
	srv := start(t, fakesmtp.Options{HTTPAddr: "127.0.0.1:0"})
	run := func(to, id string) {
		t.Helper()
		cmd := exec.Command(swaks, "--server", srv.Addr(), "--helo", "client.test",
			"--from", "a@x.test", "--to", to, "--header", "Message-Id: "+id,
			"--body", "hello from swaks\n.\n..two dots\n")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("swaks --to %s: %v\n%s", to, err, out)
		}
	}
	run("Bob@Example.COM,carol@x.test", "<s1@x>")
	run("bob@example.com", "<s1@x>")
	run("BOB@EXAMPLE.COM", "<s2@x>")
	sessionsGone(t, srv)
	newAPI(t, srv).check(srv, map[string][2]int{
		"bob@example.com": {3, 2},
		"carol@x.test":    {1, 1},
	})
}
