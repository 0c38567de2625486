// servers_test.go: the SMTP servers the tests send to: a counting server on
// mhale/smtpd for happy paths, and a scripted server that answers commands
// from per-verb reply queues, for faults.
package builtin

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mhale/smtpd"

	"github.com/onecopy/onecopy/senders"
)

// delivery is one accepted message for one recipient.
type delivery struct{ To, MessageID string }

// countingServer is a real SMTP server that records every accepted message.
type countingServer struct {
	Addr string

	mu      sync.Mutex
	got     []delivery
	raw     [][]byte
	reject  map[string]bool               // normalised addresses to refuse at RCPT (550)
	onRcpt  func(to string)               // called at each RCPT, before the reply
	onCount func(n int, d delivery) error // called before the 250; an error makes it a 451
	// onData is called with each message's recipients before it is
	// counted, without the lock, so it may block one sender while others
	// go on.
	onData func(to []string)
}

func newCountingServer(t *testing.T) *countingServer {
	t.Helper()
	cs := &countingServer{reject: map[string]bool{}}
	srv := &smtpd.Server{
		Hostname: "test",
		Timeout:  5 * time.Second,
		HandlerRcpt: func(_ net.Addr, _ string, to string) bool {
			cs.mu.Lock()
			defer cs.mu.Unlock()
			if cs.onRcpt != nil {
				cs.onRcpt(to)
			}
			return !cs.reject[senders.Normalize(to)]
		},
		Handler: func(_ net.Addr, _ string, to []string, data []byte) error {
			m, err := mail.ReadMessage(bytes.NewReader(data))
			if err != nil {
				return err
			}
			cs.mu.Lock()
			hold := cs.onData
			cs.mu.Unlock()
			if hold != nil {
				hold(to)
			}
			cs.mu.Lock()
			defer cs.mu.Unlock()
			before := len(cs.got)
			for _, rcpt := range to {
				d := delivery{To: rcpt, MessageID: m.Header.Get("Message-ID")}
				cs.got = append(cs.got, d)
				cs.raw = append(cs.raw, data)
				if cs.onCount != nil {
					if err := cs.onCount(len(cs.got), d); err != nil {
						// The whole message is refused: none of its recipients counts.
						cs.got, cs.raw = cs.got[:before], cs.raw[:before]
						return err
					}
				}
			}
			return nil
		},
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { ln.Close(); srv.Close() })
	cs.Addr = ln.Addr().String()
	return cs
}

func (cs *countingServer) setReject(addr string, on bool) {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.reject[senders.Normalize(addr)] = on
}

func (cs *countingServer) deliveries() []delivery {
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return append([]delivery(nil), cs.got...)
}

// scriptedServer answers SMTP by script: replies[verb] is a queue of reply
// lines consumed one per command, with "250 OK" (or 354 for DATA) when
// empty. Verbs are EHLO, MAIL, RCPT, DATA and END (the reply to the final
// dot); a queue under "RCPT addr" answers that address first. Special
// replies: "DROP" closes the connection without answering, "HANG" never
// answers, "SLOW reply" (END only) counts the message and answers reply
// after slowAck. A message is counted when its END reply is a 250, DROP or
// SLOW (accepted, then cut off or late: a copy the client may never hear
// of).
type scriptedServer struct {
	Addr string

	mu      sync.Mutex
	replies map[string][]string
	got     []delivery
	cmds    []string // "RCPT a@x.test", ...
	conns   int
	open    []net.Conn
	hung    chan struct{} // closed when the first HANG reply is reached
	hangs   sync.Once
}

// slowAck is how long a SLOW reply is held back: well past the 200ms the
// short-timeout mutant waits, well within every other test timeout.
const slowAck = 400 * time.Millisecond

func newScriptedServer(t *testing.T, replies map[string][]string) *scriptedServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &scriptedServer{Addr: ln.Addr().String(), replies: replies, hung: make(chan struct{})}
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns++
			s.open = append(s.open, conn)
			s.mu.Unlock()
			wg.Go(func() { s.serve(conn) })
		}
	})
	t.Cleanup(func() {
		ln.Close()
		s.mu.Lock()
		for _, c := range s.open {
			c.Close()
		}
		s.mu.Unlock()
		wg.Wait()
	})
	return s
}

func (s *scriptedServer) next(verb, def string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	q := s.replies[verb]
	if len(q) == 0 {
		return def
	}
	s.replies[verb] = q[1:]
	return q[0]
}

func (s *scriptedServer) serve(conn net.Conn) {
	defer conn.Close()
	r := bufio.NewReader(conn)
	// answer writes reply, or acts on DROP/HANG; false ends the session.
	answer := func(reply string) bool {
		switch reply {
		case "DROP":
			return false
		case "HANG":
			s.hangs.Do(func() { close(s.hung) })
			io.Copy(io.Discard, r)
			return false
		}
		fmt.Fprintf(conn, "%s\r\n", reply)
		return !strings.HasPrefix(reply, "421")
	}
	if !answer("220 scripted ESMTP") {
		return
	}
	var rcpts []string
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb, arg, _ := strings.Cut(line, " ")
		verb = strings.ToUpper(verb)
		s.mu.Lock()
		s.cmds = append(s.cmds, strings.TrimSpace(verb+" "+strings.Trim(strings.TrimPrefix(strings.TrimPrefix(arg, "TO:"), "FROM:"), "<>")))
		s.mu.Unlock()
		var reply string
		switch verb {
		case "EHLO", "HELO":
			reply = s.next("EHLO", "250 scripted")
		case "MAIL":
			rcpts = nil
			reply = s.next("MAIL", "250 OK")
		case "RCPT":
			reply = s.next("RCPT "+strings.Trim(strings.TrimPrefix(arg, "TO:"), "<>"), "")
			if reply == "" {
				reply = s.next("RCPT", "250 OK")
			}
			if strings.HasPrefix(reply, "2") {
				rcpts = append(rcpts, strings.Trim(strings.TrimPrefix(arg, "TO:"), "<>"))
			}
		case "DATA":
			if reply = s.next("DATA", "354 go ahead"); !strings.HasPrefix(reply, "354") {
				break
			}
			if !answer(reply) {
				return
			}
			var body bytes.Buffer
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				body.WriteString(strings.TrimPrefix(l, "."))
			}
			reply = s.next("END", "250 OK")
			late, slow := strings.CutPrefix(reply, "SLOW ")
			if slow {
				reply = late
			}
			if reply == "DROP" || strings.HasPrefix(reply, "250") {
				m, err := mail.ReadMessage(&body)
				id := ""
				if err == nil {
					id = m.Header.Get("Message-ID")
				}
				s.mu.Lock()
				for _, to := range rcpts {
					s.got = append(s.got, delivery{To: to, MessageID: id})
				}
				s.mu.Unlock()
			}
			if slow {
				time.Sleep(slowAck) // the server's slow post-DATA work, not synchronisation
			}
			rcpts = nil
		case "RSET", "NOOP":
			rcpts = nil
			reply = "250 OK"
		case "QUIT":
			answer("221 bye")
			return
		default:
			reply = "502 unknown command"
		}
		if !answer(reply) {
			return
		}
	}
}

func (s *scriptedServer) deliveries() []delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]delivery(nil), s.got...)
}

// commands returns the commands seen whose verb is verb, e.g. "RCPT a@x.test".
func (s *scriptedServer) commands(verb string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, c := range s.cmds {
		if strings.HasPrefix(c, verb+" ") || c == verb {
			out = append(out, c)
		}
	}
	return out
}

func (s *scriptedServer) connections() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns
}

// testEnv writes list to a file in a fresh state directory and returns the
// environment a harness would give a sender talking to addr.
func testEnv(t *testing.T, addr string, list ...string) senders.Env {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "list.txt")
	if err := os.WriteFile(path, []byte(strings.Join(list, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	if err := os.Mkdir(state, 0o755); err != nil {
		t.Fatal(err)
	}
	return senders.Env{SMTPAddr: addr, RecipientsFile: path, StateDir: state, Campaign: "c1", Attempt: 1, Instance: 1}
}

// newSender returns a built-in with fast backoff and test logging.
func newSender(t *testing.T, name string) senders.Sender {
	t.Helper()
	s, err := New(name, Options{Timeout: 5 * time.Second, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// counts returns copies per normalised recipient.
func counts(ds []delivery) map[string]int {
	m := map[string]int{}
	for _, d := range ds {
		m[senders.Normalize(d.To)]++
	}
	return m
}

// addrs returns n synthetic addresses.
func addrs(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("user%03d@example.test", i+1)
	}
	return out
}

func mustSend(t *testing.T, s senders.Sender, env senders.Env) {
	t.Helper()
	if err := s.Send(context.Background(), env); err != nil {
		t.Fatalf("Send: %v", err)
	}
}

// newTestLogger discards logs.
func newTestLogger() *slog.Logger { return slog.New(slog.DiscardHandler) }
