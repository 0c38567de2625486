// Real clients configured as production senders configure them (STARTTLS
// required and verified against the server's CA, AUTH, implicit TLS,
// pooled connections, UTF-8 addresses), counted exactly through Snapshot
// and the HTTP API. A client that is not installed skips its test, saying
// so.

package fakesmtp_test

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/onecopy/onecopy/fakesmtp"
)

// tlsServer is a server with STARTTLS, an implicit TLS port, its CA in a
// file, the HTTP API, and the deliveries recorded.
func tlsServer(t *testing.T, opts fakesmtp.Options) (*fakesmtp.Server, string, *deliveries) {
	t.Helper()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	var got deliveries
	opts.TLSAddr, opts.TLSCAFile, opts.HTTPAddr, opts.OnDelivery = "127.0.0.1:0", ca, "127.0.0.1:0", got.on
	return start(t, opts), ca, &got
}

// allOverTLS checks every delivery came over TLS, authenticated as user.
func allOverTLS(t *testing.T, got *deliveries, n int, user string) {
	t.Helper()
	ds := got.all()
	if len(ds) != n {
		t.Errorf("%d deliveries, want %d", len(ds), n)
	}
	for _, d := range ds {
		if !d.TLS || d.User != user {
			t.Errorf("delivery %s: TLS %v user %q, want TLS and %q", d.MessageID, d.TLS, d.User, user)
		}
	}
}

func hostPort(t *testing.T, addr string) (string, string) {
	h, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatal(err)
	}
	return h, p
}

const pythonTLS = `
import smtplib, ssl, sys
from email.message import EmailMessage
host, port, tls_port, ca = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
ctx = ssl.create_default_context(cafile=ca)
with smtplib.SMTP(host, port, local_hostname="client.test", timeout=10) as s:
    s.starttls(context=ctx)
    s.login("py", "secret")
    refused = s.sendmail("a@x.test", ["Bob@Example.COM", "carol@x.test"],
        b"Subject: 1\r\nMessage-ID: <py1@x>\r\n\r\nhello\r\n.leading dot\r\n")
    assert refused == {}, refused
    # A UTF-8 address: smtplib refuses it unless the server says SMTPUTF8.
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = "a@x.test", "ärger@bücher.test", "utf-8", "<py2@x>"
    m.set_content("grüße\n")
    s.send_message(m, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
with smtplib.SMTP_SSL(host, tls_port, local_hostname="client.test", timeout=10, context=ctx) as s:
    s.login("py", "secret")
    m = EmailMessage()
    m["From"], m["To"], m["Subject"], m["Message-ID"] = "a@x.test", "ÄRGER@Bücher.test", "implicit", "<py3@x>"
    m.set_content("hi\n")
    s.send_message(m)
print("sent")
`

func TestPythonSmtplibTLSAndAuth(t *testing.T) {
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not on PATH: skipping the smtplib TLS and AUTH test")
	}
	srv, ca, got := tlsServer(t, fakesmtp.Options{RequireTLS: true, RequireAuth: true, Users: map[string]string{"py": "secret"}})
	host, port := hostPort(t, srv.Addr())
	_, tlsPort := hostPort(t, srv.TLSAddr())
	out, err := exec.Command(python, "-c", pythonTLS, host, port, tlsPort, ca).CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "sent" {
		t.Fatalf("python smtplib: %v\n%s", err, out)
	}
	sessionsGone(t, srv)
	allOverTLS(t, got, 3, "py")
	newAPI(t, srv).check(srv, map[string][2]int{
		"bob@example.com":   {1, 1},
		"carol@x.test":      {1, 1},
		"ärger@bücher.test": {2, 2}, // one mailbox, in two cases
	})
}

func TestSwaksTLSAndAuth(t *testing.T) {
	swaks, err := exec.LookPath("swaks")
	if err != nil {
		t.Skip("swaks not on PATH: skipping the swaks TLS test (apt-get install swaks libio-socket-ssl-perl)")
	}
	if exec.Command("perl", "-MIO::Socket::SSL", "-e1").Run() != nil {
		t.Skip("perl's IO::Socket::SSL missing: swaks cannot speak TLS (apt-get install libio-socket-ssl-perl)")
	}
	srv, ca, got := tlsServer(t, fakesmtp.Options{RequireTLS: true, Users: map[string]string{"sw": "pw"}})
	run := func(to, id string, args ...string) {
		t.Helper()
		cmd := exec.Command(swaks, append([]string{"--helo", "client.test", "--from", "a@x.test", "--to", to,
			"--header", "Message-Id: " + id, "--body", "hello from swaks\n.\n..two dots\n",
			"--tls-verify", "--tls-ca-path", ca, "--auth-user", "sw", "--auth-password", "pw"}, args...)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("swaks %v: %v\n%s", args, err, out)
		}
	}
	run("Bob@Example.COM,carol@x.test", "<s1@x>", "--server", srv.Addr(), "--tls", "--auth", "PLAIN")
	run("bob@example.com", "<s2@x>", "--server", srv.Addr(), "--tls", "--auth", "LOGIN")
	if exec.Command("perl", "-MDigest::HMAC_MD5", "-e1").Run() == nil {
		run("BOB@EXAMPLE.COM", "<s3@x>", "--server", srv.TLSAddr(), "--tls-on-connect", "--auth", "CRAM-MD5")
	} else {
		t.Log("perl's Digest::HMAC_MD5 missing: the CRAM-MD5 message goes with PLAIN")
		run("BOB@EXAMPLE.COM", "<s3@x>", "--server", srv.TLSAddr(), "--tls-on-connect", "--auth", "PLAIN")
	}
	sessionsGone(t, srv)
	allOverTLS(t, got, 3, "sw")
	newAPI(t, srv).check(srv, map[string][2]int{"bob@example.com": {3, 3}, "carol@x.test": {1, 1}})
}

func TestCurlTLSAndAuth(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not on PATH: skipping the curl SMTP test")
	}
	srv, ca, got := tlsServer(t, fakesmtp.Options{RequireTLS: true, RequireAuth: true})
	dir := t.TempDir()
	send := func(url, id string, to ...string) {
		t.Helper()
		msg := filepath.Join(dir, id+".eml")
		os.WriteFile(msg, []byte("From: a@x.test\r\nMessage-ID: <"+id+"@x>\r\nSubject: curl\r\n\r\nhello\r\n.dot\r\n"), 0o644)
		args := []string{"-sS", "--ssl-reqd", "--cacert", ca, "--user", "cu:pw", "--mail-from", "a@x.test", "--upload-file", msg, url}
		for _, r := range to {
			args = append(args, "--mail-rcpt", r)
		}
		if out, err := exec.Command(curl, args...).CombinedOutput(); err != nil {
			t.Fatalf("curl %s: %v\n%s", url, err, out)
		}
	}
	send("smtp://"+srv.Addr(), "c1", "Bob@Example.COM", "carol@x.test")
	send("smtps://"+srv.TLSAddr(), "c2", "bob@example.com")
	sessionsGone(t, srv)
	allOverTLS(t, got, 2, "cu")
	newAPI(t, srv).check(srv, map[string][2]int{"bob@example.com": {2, 2}, "carol@x.test": {1, 1}})
}

func TestNodemailerTLSAndAuth(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not on PATH: skipping the nodemailer test")
	}
	dir, _ := filepath.Abs("testdata/node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "nodemailer")); err != nil {
		t.Skipf("nodemailer not installed: skipping (run npm ci in %s)", dir)
	}
	srv, ca, got := tlsServer(t, fakesmtp.Options{RequireTLS: true, RequireAuth: true, Users: map[string]string{"node": "pw"}})
	host, port := hostPort(t, srv.Addr())
	_, tlsPort := hostPort(t, srv.TLSAddr())
	cmd := exec.Command(node, "send.js", host, port, tlsPort, ca)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "sent" {
		t.Fatalf("nodemailer: %v\n%s", err, out)
	}
	sessionsGone(t, srv)
	allOverTLS(t, got, 7, "node")
	newAPI(t, srv).check(srv, map[string][2]int{"bob@example.com": {6, 6}, "carol@x.test": {6, 6}, "ärger@bücher.test": {1, 1}})
	_ = fmt.Sprint
}
