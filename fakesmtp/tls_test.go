// STARTTLS, implicit TLS and AUTH: the guard follows the dialogue over TLS
// as over plaintext (counting, faults, hooks and moments alike), certificates
// verify against the server's CA, and each copy records its user.

package fakesmtp_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net"
	"net/smtp"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/prometheus/client_golang/prometheus"
)

// tlsConfig trusts the server's CA and nothing else.
func tlsConfig(t *testing.T, srv *fakesmtp.Server) *tls.Config {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(srv.TLSCA()) {
		t.Fatalf("TLSCA is not PEM: %q", srv.TLSCA())
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}
}

// deliveries records OnDelivery.
type deliveries struct {
	mu   sync.Mutex
	list []fakesmtp.Delivery
}

func (d *deliveries) on(x fakesmtp.Delivery) { d.mu.Lock(); d.list = append(d.list, x); d.mu.Unlock() }
func (d *deliveries) all() []fakesmtp.Delivery {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.list)
}

// sendVia runs one transaction on c.
func sendVia(t *testing.T, c *smtp.Client, id string, to ...string) {
	t.Helper()
	if err := c.Mail("a@x.test"); err != nil {
		t.Fatalf("MAIL: %v", err)
	}
	for _, r := range to {
		if err := c.Rcpt(r); err != nil {
			t.Fatalf("RCPT %s: %v", r, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		t.Fatalf("DATA: %v", err)
	}
	w.Write(message(id, to...))
	if err := w.Close(); err != nil {
		t.Fatalf("end of DATA: %v", err)
	}
}

func TestSTARTTLSAndAuth(t *testing.T) {
	var got deliveries
	srv := start(t, fakesmtp.Options{OnDelivery: got.on, HTTPAddr: "127.0.0.1:0"})
	c, err := smtp.Dial(srv.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Hello("client.test"); err != nil {
		t.Fatal(err)
	}
	for _, ext := range []string{"STARTTLS", "PIPELINING", "8BITMIME", "SMTPUTF8", "CHUNKING", "DSN", "ENHANCEDSTATUSCODES", "AUTH"} {
		if ok, _ := c.Extension(ext); !ok {
			t.Errorf("EHLO does not advertise %s", ext)
		}
	}
	if _, size := c.Extension("SIZE"); size != "10485760" {
		t.Errorf("SIZE %q, want the real limit 10485760", size)
	}
	sendVia(t, c, "<plain@x>", "p@x.test") // before TLS
	if err := c.StartTLS(tlsConfig(t, srv)); err != nil {
		t.Fatalf("STARTTLS: %v", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Errorf("STARTTLS advertised again over TLS")
	}
	if err := c.Auth(smtp.PlainAuth("", "alice", "secret", "127.0.0.1")); err != nil {
		t.Fatalf("AUTH PLAIN: %v", err)
	}
	sendVia(t, c, "<tls@x>", "Bob@Example.COM", "carol@x.test")
	if err := c.Quit(); err != nil {
		t.Fatal(err)
	}
	sessionsGone(t, srv)
	ds := got.all()
	if len(ds) != 2 || ds[0].TLS || ds[0].User != "" || !ds[1].TLS || ds[1].User != "alice" {
		t.Errorf("deliveries %+v: want one plaintext without a user, then one over TLS by alice", ds)
	}
	newAPI(t, srv).check(srv, map[string][2]int{"p@x.test": {1, 1}, "bob@example.com": {1, 1}, "carol@x.test": {1, 1}})
}

func TestImplicitTLS(t *testing.T) {
	var got deliveries
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	srv := start(t, fakesmtp.Options{TLSAddr: "127.0.0.1:0", TLSCAFile: caFile, OnDelivery: got.on})
	if pem, err := os.ReadFile(caFile); err != nil || string(pem) != string(srv.TLSCA()) {
		t.Fatalf("TLSCAFile: %v, %q; want TLSCA", err, pem)
	}
	conn, err := tls.Dial("tcp", srv.TLSAddr(), tlsConfig(t, srv))
	if err != nil {
		t.Fatalf("implicit TLS: %v", err)
	}
	c, err := smtp.NewClient(conn, "127.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok {
		t.Errorf("STARTTLS advertised on the implicit TLS port")
	}
	if err := c.Auth(smtp.CRAMMD5Auth("bob", "any")); err != nil {
		t.Fatalf("AUTH CRAM-MD5: %v", err)
	}
	sendVia(t, c, "<i@x>", "v@x.test")
	c.Quit()
	sessionsGone(t, srv)
	if ds := got.all(); len(ds) != 1 || !ds[0].TLS || ds[0].User != "bob" {
		t.Errorf("deliveries %+v: want one over TLS by bob", ds)
	}
	if n := srv.Snapshot().Lookup("v@x.test").Copies; n != 1 {
		t.Errorf("copies %d, want 1", n)
	}
}

func TestRequireTLSAndAuth(t *testing.T) {
	srv := start(t, fakesmtp.Options{RequireTLS: true, RequireAuth: true, Users: map[string]string{"alice": "secret"}})
	c := dialRaw(t, srv.Addr())
	c.expect("220")
	c.mustSend(ehlo)
	if r := c.expect("250"); strings.Contains(r, "AUTH") || !strings.Contains(r, "STARTTLS") {
		t.Errorf("EHLO before TLS: %q, want STARTTLS and no AUTH", r)
	}
	c.mustSend(mailA)
	c.expect("530")
	c.mustSend("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00secret")) + "\r\n")
	c.expect("530")
	c.mustSend("STARTTLS\r\n")
	c.expect("220")
	c.startTLS(t, tlsConfig(t, srv))
	c.mustSend(ehlo)
	if r := c.expect("250"); !strings.Contains(r, "AUTH PLAIN LOGIN CRAM-MD5") || strings.Contains(r, "STARTTLS") {
		t.Errorf("EHLO over TLS: %q, want AUTH and no STARTTLS", r)
	}
	c.mustSend(mailA)
	c.expect("530") // not authenticated yet
	c.mustSend("AUTH PLAIN " + base64.StdEncoding.EncodeToString([]byte("\x00alice\x00wrong")) + "\r\n")
	c.expect("535")
	c.mustSend("AUTH LOGIN\r\n")
	c.expect("334 VXNlcm5hbWU6")
	c.mustSend(base64.StdEncoding.EncodeToString([]byte("alice")) + "\r\n")
	c.expect("334 UGFzc3dvcmQ6")
	c.mustSend(base64.StdEncoding.EncodeToString([]byte("secret")) + "\r\n")
	c.expect("235")
	c.transaction("Subject: t\r\n\r\nhi\r\n.\r\n", vAddr)
	c.mustSend("QUIT\r\n")
	c.expect("221")
	if n := srv.Snapshot().Lookup(vAddr).Copies; n != 1 {
		t.Errorf("copies %d, want 1", n)
	}
}

// startTLS upgrades a raw client after the server's 220.
func (c *rawClient) startTLS(t *testing.T, cfg *tls.Config) {
	t.Helper()
	tc := tls.Client(c.conn, cfg)
	tc.SetDeadline(time.Now().Add(replyWait))
	if err := tc.Handshake(); err != nil {
		t.Fatalf("TLS handshake: %v", err)
	}
	tc.SetDeadline(time.Time{})
	c.conn, c.r = tc, bufio.NewReader(tc)
}

// A harness kill point at MomentCommitted works the same over TLS: the copy
// counts, the client never reads its 250, the transaction is in doubt.
func TestKillPointOverTLS(t *testing.T) {
	rec := newFaultRecorder()
	fired := make(chan uint64, 1)
	kill := fakesmtp.HookAt(fakesmtp.Moments(fakesmtp.MomentCommitted), fakesmtp.HookFunc(func(_ context.Context, ev *fakesmtp.Event) fakesmtp.Action {
		fired <- ev.Session
		return fakesmtp.Action{Close: true, Fault: "kill-point"}
	}))
	srv := start(t, fakesmtp.Options{Hooks: []fakesmtp.Hook{kill}, OnInDoubt: rec.onDoubt, TLSAddr: "127.0.0.1:0"})
	for _, implicit := range []bool{false, true} {
		var c *rawClient
		if implicit {
			conn, err := tls.Dial("tcp", srv.TLSAddr(), tlsConfig(t, srv))
			if err != nil {
				t.Fatal(err)
			}
			c = &rawClient{tb: t, conn: conn, r: bufio.NewReader(conn)}
			c.expect("220")
		} else {
			c = dialRaw(t, srv.Addr())
			c.expect("220")
			c.mustSend("STARTTLS\r\n")
			c.expect("220")
			c.startTLS(t, tlsConfig(t, srv))
		}
		c.mustSend(ehlo + mailA + rcpt(vAddr) + data)
		for _, code := range []string{"250", "250", "250", "354"} {
			c.expect(code)
		}
		c.mustSend("Message-ID: <k@x>\r\n\r\nhi\r\n.\r\n")
		c.expectClosed()
		select {
		case <-fired:
		case <-time.After(replyWait):
			t.Fatal("the kill point never fired")
		}
		if d := rec.nextDoubt(t); !d.Delivered || d.Acked || d.Ended != fakesmtp.EndCut || d.Fault != "kill-point" || d.User != "" {
			t.Errorf("implicit %v: in doubt %+v, want delivered, not acked, cut by kill-point", implicit, d)
		}
	}
	if n := srv.Snapshot().Lookup(vAddr).Copies; n != 2 {
		t.Errorf("copies %d, want 2", n)
	}
}

// Plaintext pipelined behind STARTTLS would run as if it had come over
// TLS. The bare library has no TLS configured here, so its baseline
// cannot show the injection; the guard must refuse it.
func TestSTARTTLSInjection(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := start(t, fakesmtp.Options{Registry: reg})
	c := dialRaw(t, srv.Addr())
	c.expect("220")
	c.mustSend(ehlo)
	c.expect("250")
	c.mustSend("STARTTLS\r\n" + mailA + rcpt(vAddr))
	c.expect("554")
	c.expectClosed()
	if v := metricValue(t, reg, "onecopy_smtp_protocol_errors_total", "kind", "starttls_injection"); v != 1 {
		t.Errorf("starttls_injection = %v, want 1", v)
	}
}

// A failed handshake ends that session only, and Close does not wait on a
// client that never starts its handshake.
func TestTLSHandshakeFailures(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv, err := fakesmtp.Start(context.Background(), fakesmtp.Options{Registry: reg, TLSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	c := dialRaw(t, srv.Addr())
	c.expect("220")
	c.mustSend("STARTTLS\r\n")
	c.expect("220")
	c.mustSend("this is not a ClientHello\r\n")
	if _, err := c.reply(replyWait); err == nil {
		t.Errorf("the session went on after a garbage handshake")
	}
	if !eventually(t, replyWait, func() bool {
		return metricValue(t, reg, "onecopy_smtp_protocol_errors_total", "kind", "tls_handshake") == 1
	}) {
		t.Errorf("tls_handshake not counted")
	}
	d := dialRaw(t, srv.Addr()) // still served
	d.expect("220")
	silent, err := net.Dial("tcp", srv.TLSAddr()) // never says a word
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	if !eventually(t, replyWait, func() bool { return len(srv.Sessions()) == 2 }) {
		t.Fatalf("sessions %+v, want 2", srv.Sessions())
	}
	done := make(chan struct{})
	go func() { srv.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(replyWait):
		t.Fatal("Close waited on a TLS handshake that never started")
	}
}

// What a sender is given: the CA in a file named by ONECOPY_SMTP_TLS_CA,
// and (for clients that only read the system store) SSL_CERT_FILE. Go's
// net/smtp.SendMail then upgrades and verifies without a line of change.
// The system roots are read once per process, so the client runs in a
// child (this test binary again).
func TestSendMailTrustingTheCA(t *testing.T) {
	if addr := os.Getenv("ONECOPY_SENDMAIL_CHILD"); addr != "" {
		if err := smtp.SendMail(addr, nil, "a@x.test", []string{"ca@x.test"}, message("<ca@x>", "ca@x.test")); err != nil {
			t.Fatal(err)
		}
		return
	}
	ca := filepath.Join(t.TempDir(), "ca.pem")
	var got deliveries
	srv := start(t, fakesmtp.Options{TLSCAFile: ca, OnDelivery: got.on})
	cmd := exec.Command(os.Args[0], "-test.run=^TestSendMailTrustingTheCA$", "-test.count=1")
	cmd.Env = append(os.Environ(), "ONECOPY_SENDMAIL_CHILD="+srv.Addr(), "SSL_CERT_FILE="+ca, "ONECOPY_SMTP_TLS_CA="+ca)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("SendMail in a child trusting the CA: %v\n%s", err, out)
	}
	sessionsGone(t, srv)
	if ds := got.all(); len(ds) != 1 || !ds[0].TLS {
		t.Errorf("deliveries %+v, want one over TLS", ds)
	}
}

// Users: CRAM-MD5 is checked against the password too; a wrong one is 535.
// And the in-doubt report names the user.
func TestAuthUsersCRAMMD5(t *testing.T) {
	rec := newFaultRecorder()
	srv := start(t, fakesmtp.Options{Users: map[string]string{"carol": "pw"}, OnInDoubt: rec.onDoubt, RequireAuth: true})
	dial := func() *smtp.Client {
		c, err := smtp.Dial(srv.Addr())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.StartTLS(tlsConfig(t, srv)); err != nil {
			t.Fatal(err)
		}
		return c
	}
	if err := dial().Auth(smtp.CRAMMD5Auth("carol", "wrong")); err == nil || !strings.HasPrefix(err.Error(), "535") {
		t.Errorf("CRAM-MD5 with a wrong secret: %v, want 535", err)
	}
	if err := dial().Auth(smtp.CRAMMD5Auth("mallory", "pw")); err == nil || !strings.HasPrefix(err.Error(), "535") {
		t.Errorf("CRAM-MD5 for an unknown user: %v, want 535", err)
	}
	c := dial()
	if err := c.Auth(smtp.CRAMMD5Auth("carol", "pw")); err != nil {
		t.Fatalf("CRAM-MD5: %v", err)
	}
	sendVia(t, c, "<c@x>", "v@x.test")
	c.Close()
	if d := rec.nextDoubt(t); d.User != "carol" || !d.Delivered {
		t.Errorf("in doubt %+v, want carol's delivered transaction", d)
	}
}

// DisableSTARTTLS: not offered, and refused if asked for anyway.
func TestDisableSTARTTLS(t *testing.T) {
	srv := start(t, fakesmtp.Options{DisableSTARTTLS: true})
	c := dialRaw(t, srv.Addr())
	c.expect("220")
	c.mustSend(ehlo)
	if r := c.expect("250"); strings.Contains(r, "STARTTLS") {
		t.Errorf("EHLO %q offers STARTTLS", r)
	}
	c.mustSend("STARTTLS\r\n")
	c.expect("502")
}

// A certificate given in files is used, and TLSCA is its last certificate.
func TestTLSCertificateFromFiles(t *testing.T) {
	dir := t.TempDir()
	certPEM, keyPEM := selfSigned(t)
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, certPEM, 0o644)
	os.WriteFile(keyFile, keyPEM, 0o600)
	srv := start(t, fakesmtp.Options{TLSCertFile: certFile, TLSKeyFile: keyFile, TLSAddr: "127.0.0.1:0"})
	if string(srv.TLSCA()) != string(certPEM) {
		t.Errorf("TLSCA %q, want the given self-signed certificate", srv.TLSCA())
	}
	conn, err := tls.Dial("tcp", srv.TLSAddr(), tlsConfig(t, srv))
	if err != nil {
		t.Fatalf("implicit TLS with the given certificate: %v", err)
	}
	conn.Close()
	if _, err := fakesmtp.Start(context.Background(), fakesmtp.Options{TLSCertFile: certFile}); err == nil || !strings.Contains(err.Error(), "TLSKeyFile") {
		t.Errorf("a certificate without its key: %v, want a refusal naming TLSKeyFile", err)
	}
}

// selfSigned makes a self-signed certificate for 127.0.0.1, as PEM.
func selfSigned(t *testing.T) (certPEM, keyPEM []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "given"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})
}
