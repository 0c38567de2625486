// What an adversarial probe of the server found, one test each: every one
// of them failed on the code before its fix.

package fakesmtp_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/prometheus/client_golang/prometheus"
)

// Headers that never end: each session may keep at most 64 KiB of one to
// look for the Message-ID in. Before, 100 such sessions took the server
// from 14 MB to 1.64 GB.
func TestEndlessHeadersBoundedMemory(t *testing.T) {
	const sessions, each = 100, 1 << 20 // 1 MiB of header lines apiece
	srv := start(t, fakesmtp.Options{MaxConnections: 2 * sessions})
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	before := heap()
	line := "X-Filler: " + strings.Repeat("h", 88) + "\r\n"
	cs := make([]*rawClient, sessions)
	var wg sync.WaitGroup
	for i := range cs {
		cs[i] = midDataNoHeader(t, srv.Addr(), fmt.Sprintf("r%d@x.test", i))
		wg.Add(1)
		go func(c *rawClient) {
			defer wg.Done()
			chunk := strings.Repeat(line, 1000)
			for sent := 0; sent < each; sent += len(chunk) {
				if c.send(chunk) != nil {
					return
				}
			}
		}(cs[i])
	}
	wg.Wait()
	for _, c := range cs {
		readByServer(t, c.conn)
	}
	c := cs[0]
	c.mustSend("Message-ID: <late@x>\r\n\r\nbody\r\n.\r\n")
	c.expect("250")
	grown := int64(heap()) - int64(before)
	t.Logf("heap grew %d KiB for %d sessions mid-way through %d KiB headers (%s)", grown>>10, sessions, each>>10, rss())
	if limit := int64(sessions) * (64 << 10) * 3; grown > limit {
		t.Errorf("heap grew %d KiB, want at most %d KiB: headers are kept past 64 KiB a session", grown>>10, limit>>10)
	}
	for _, c := range cs {
		c.conn.Close()
	}
	sessionsGone(t, srv)
	if r := srv.Snapshot().Lookup("r0@x.test"); r.Copies != 1 {
		t.Errorf("the message with an endless header: %+v, want counted once", r)
	}
}

func midDataNoHeader(t *testing.T, addr, to string) *rawClient {
	c := dialRaw(t, addr)
	c.expect("220")
	c.mustSend(ehlo + mailA + rcpt(to) + data)
	for _, code := range []string{"250", "250", "250", "354"} {
		c.expect(code)
	}
	return c
}

// readByServer waits until the server has read every byte the client
// sent on conn: nothing in the client's send queue, nothing in the server
// socket's receive queue (/proc/net/tcp, both ends being on this machine).
func readByServer(t *testing.T, conn net.Conn) {
	t.Helper()
	local, remote := conn.LocalAddr().(*net.TCPAddr).Port, conn.RemoteAddr().(*net.TCPAddr).Port
	queues := func() (tx, rx int64, ok bool) {
		b, err := os.ReadFile("/proc/net/tcp")
		if err != nil {
			t.Skipf("no /proc/net/tcp to see the server's receive queue: %v", err)
		}
		found := 0
		for _, l := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(l)
			if len(f) < 5 {
				continue
			}
			port := func(a string) int {
				i := strings.LastIndexByte(a, ':')
				n, _ := strconv.ParseInt(a[i+1:], 16, 32)
				return int(n)
			}
			q := strings.Split(f[4], ":")
			txq, _ := strconv.ParseInt(q[0], 16, 64)
			rxq, _ := strconv.ParseInt(q[1], 16, 64)
			switch {
			case port(f[1]) == local && port(f[2]) == remote:
				tx, found = txq, found+1
			case port(f[1]) == remote && port(f[2]) == local:
				rx, found = rxq, found+1
			}
		}
		return tx, rx, found == 2
	}
	if !eventually(t, 2*replyWait, func() bool { tx, rx, ok := queues(); return ok && tx == 0 && rx == 0 }) {
		tx, rx, ok := queues()
		t.Fatalf("the server never read what the client sent: send queue %d, receive queue %d (found %v)", tx, rx, ok)
	}
}

// rss is this process's resident set, from /proc.
func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "RSS unknown"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return "RSS " + strings.Join(strings.Fields(l)[1:], " ")
		}
	}
	return "RSS unknown"
}

// An outage of any length ends with the port serving. Before, the accept
// loop saw the old listener's close after a short outage was already over
// and gave the port up for good (1ns: 20 of 20).
func TestShortOutagesComeBack(t *testing.T) {
	srv := start(t, fakesmtp.Options{HTTPAddr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0"})
	api := newAPI(t, srv)
	for i, d := range []string{"1ns", "1ns", "10us", "1ns", "100us", "1ms", "1ns", "10us", "1ns", "1ns"} {
		if code, body := api.do("POST", "/api/v1/outage?for="+d); code != http.StatusAccepted {
			t.Fatalf("outage %s: %d %s", d, code, body)
		}
		for _, addr := range []string{srv.Addr(), srv.TLSAddr()} {
			var last error
			if !eventually(t, replyWait, func() bool {
				c, err := net.DialTimeout("tcp", addr, time.Second)
				if err != nil {
					last = err
					return false
				}
				defer c.Close()
				if addr == srv.TLSAddr() {
					return true // accepted: the handshake is the TLS test's business
				}
				c.SetReadDeadline(time.Now().Add(time.Second))
				g, err := bufio.NewReader(c).ReadString('\n')
				last = err
				return strings.HasPrefix(g, "220")
			}) {
				t.Fatalf("outage %d (%s): %s not serving %v later: %v", i, d, addr, replyWait, last)
			}
		}
	}
	sendRaw(t, srv.Addr(), "<after@x>", vAddr)
	if n := srv.Snapshot().Lookup(vAddr).Copies; n != 1 {
		t.Errorf("copies %d after the outages, want 1", n)
	}
}

// Two servers on one journal lost half the acknowledged copies at a
// restart: the second one is refused, naming the file.
func TestJournalHeldByOneServer(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "j.jsonl")
	startAt(t, fakesmtp.Options{Journal: journal})
	_, err := fakesmtp.Start(context.Background(), fakesmtp.Options{Journal: journal})
	if err == nil || !strings.Contains(err.Error(), journal) || !strings.Contains(err.Error(), "another") {
		t.Fatalf("a second server on the journal: %v, want a refusal naming %s", err, journal)
	}
}

// DELETE /api/v1/recipients must not come back at a restart, and replayed
// lines are keyed as live ones are.
func TestJournalResetAndReplayKeys(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "j.jsonl")
	srv := startAt(t, fakesmtp.Options{Journal: journal, HTTPAddr: "127.0.0.1:0"})
	sendRaw(t, srv.Addr(), "<1@x>", "gone@x.test")
	if code, _ := newAPI(t, srv).do("DELETE", "/api/v1/recipients"); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", code)
	}
	sendRaw(t, srv.Addr(), "<2@x>", "kept@x.test")
	srv.Close()
	// A line written by hand (or by an older server) with unnormalised keys.
	f, err := os.OpenFile(journal, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, `{"t":%d,"id":"<3@x>","rcpt":["  Kept@X.test","KEPT@x.test"]}`+"\n", time.Now().UnixNano())
	f.Close()
	srv = startAt(t, fakesmtp.Options{Journal: journal})
	snap := srv.Snapshot()
	if got := counts(snap); !sameCounts(got, map[string]int{"kept@x.test": 2}) {
		t.Errorf("after restart: %v, want kept@x.test 2 (the reset stands, the hand-written line keyed)", got)
	}
	if r := snap.Lookup("kept@x.test"); r.MessageIDs != 2 {
		t.Errorf("kept@x.test: %+v, want 2 message ids", r)
	}
}

// Distinct mailboxes, distinct counters, over SMTP: the Kelvin sign is not
// k, and what cannot be keyed safely is refused at the protocol level.
func TestAddressKeysOverSMTP(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := start(t, fakesmtp.Options{Registry: reg})
	c := dialRaw(t, srv.Addr())
	c.expect("220")
	c.mustSend(ehlo)
	c.expect("250")
	c.mustSend(mailA)
	c.expect("250")
	for _, x := range []struct{ addr, code string }{
		{"\u212a@x.test", "250"},
		{"k@x.test", "250"},
		{"K@x.test", "250"}, // the same as k: one copy
		{"\u00a0k@x.test", "500"},
		{"caf\xe9@x.test", "500"},
		{"caf\xe8@x.test", "500"},
		{"@r.test:a@x.test,b@x.test", "501"},
	} {
		c.mustSend("RCPT TO:<" + x.addr + ">\r\n")
		if r := c.expect(x.code); x.code == "250" && strings.Contains(r, "duplicate") != (x.addr == "K@x.test") {
			t.Errorf("RCPT %q: %q", x.addr, r)
		}
	}
	c.mustSend(data)
	c.expect("354")
	c.mustSend("Subject: k\r\n\r\nhi\r\n.\r\n")
	c.expect("250")
	if got := counts(srv.Snapshot()); !sameCounts(got, map[string]int{"\u212a@x.test": 1, "k@x.test": 1}) {
		t.Errorf("counts %v, want the Kelvin sign and k apart, one copy each", got)
	}
}

// The idle timeout's 421 is written with the default timeouts, where the
// idle one is longer than the write one. Before, its write deadline ran
// from the client's last bytes, long past: no 421, and a write_timeout.
func TestIdleTimeoutReplyWithDefaultRatio(t *testing.T) {
	reg := prometheus.NewRegistry()
	srv := start(t, fakesmtp.Options{IdleTimeout: 400 * time.Millisecond, WriteTimeout: 100 * time.Millisecond, Registry: reg})
	c := dialRaw(t, srv.Addr())
	c.expect("220")
	c.mustSend(ehlo)
	c.expect("250")
	if r := c.expect("421"); !strings.Contains(r, "idle") {
		t.Errorf("reply %q, want the idle timeout's 421", r)
	}
	c.expectClosed()
	sessionsGone(t, srv)
	if v := metricValue(t, reg, "onecopy_smtp_protocol_errors_total", "kind", "write_timeout"); v != 0 {
		t.Errorf("write_timeout = %v, want 0: the client read everything", v)
	}
	if v := metricValue(t, reg, "onecopy_smtp_protocol_errors_total", "kind", "idle_timeout"); v != 1 {
		t.Errorf("idle_timeout = %v, want 1", v)
	}
}

// The control API: a token when one is set (and always off loopback), and
// one JSON value per body.
func TestControlAPIToken(t *testing.T) {
	if _, err := fakesmtp.Start(context.Background(), fakesmtp.Options{HTTPAddr: "0.0.0.0:0"}); err == nil || !strings.Contains(err.Error(), "token") {
		t.Fatalf("HTTP API on every interface without a token: %v, want a refusal", err)
	}
	const token = "s3cret"
	srv := start(t, fakesmtp.Options{HTTPAddr: "127.0.0.1:0", APIToken: token, Hooks: []fakesmtp.Hook{fakesmtp.NewFaultSet(nil, 1)}})
	do := func(method, path, body, auth string) int {
		t.Helper()
		req, _ := http.NewRequest(method, "http://"+srv.HTTPAddr()+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	for _, x := range []struct {
		method, path, body, auth string
		want                     int
	}{
		{"PUT", "/api/v1/faults", `{"faults":["greylist"]}`, "", 401},
		{"PUT", "/api/v1/faults", `{"faults":["greylist"]}`, "Bearer wrong", 401},
		{"DELETE", "/api/v1/recipients", "", "", 401},
		{"POST", "/api/v1/outage?for=1ms", "", "", 401},
		{"POST", "/api/v1/clock?advance=1h", "", "", 401},
		{"GET", "/api/v1/recipients", "", "", 200},
		{"GET", "/api/v1/clock", "", "", 200},
		{"GET", "/api/v1/wait?quiet=1ns&timeout=0s", "", "", 200},
		{"POST", "/api/v1/clock?advance=1h", "", "Bearer " + token, 200},
		{"PUT", "/api/v1/faults", `{"faults":["greylist"]}`, "Bearer " + token, 200},
		{"PUT", "/api/v1/faults", `{"faults":["greylist"]}{"faults":[]}`, "Bearer " + token, 400},
		{"PUT", "/api/v1/faults", `{"faults":["greylist"]} trailing`, "Bearer " + token, 400},
		{"DELETE", "/api/v1/recipients", "", "Bearer " + token, 204},
	} {
		if got := do(x.method, x.path, x.body, x.auth); got != x.want {
			t.Errorf("%s %s %q (auth %q): %d, want %d", x.method, x.path, x.body, x.auth, got, x.want)
		}
	}
	_ = strconv.Itoa
}
