// A differential fuzzer of whole SMTP dialogues. A client generates and
// mutates sessions (pipelined groups, white space and case variants, CR,
// LF, NUL and 8-bit bytes, smuggling attempts, BDAT, STARTTLS, AUTH, odd
// addresses), keeps its own ledger of what every reply told it, and after
// every session checks the server against it: each message counted exactly
// when the client read a 250 for it (or, where it could not read the reply,
// at most once), never one whose DATA did not end in CRLF.CRLF, every reply
// the kind its command can get, no hang, the next session served, and the
// HTTP API and the metrics agreeing with the oracle.
//
// It runs for a few seconds in the normal suite; ONECOPY_FUZZ_TIME sets
// how long (make fuzz: 10m) and ONECOPY_FUZZ_SEED replays a run.

package fakesmtp_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/prometheus/client_golang/prometheus"
)

// fuzzReplyWait is how long a reply the server owes may take before the
// session counts as hung: far above any reply on a loaded machine.
const fuzzReplyWait = 10 * time.Second

type fuzzRun struct {
	t      *testing.T
	rng    *rand.Rand
	srv    *fakesmtp.Server
	reg    *prometheus.Registry
	tlsCfg *tls.Config

	mu        sync.Mutex
	delivered map[string][]fakesmtp.Delivery // by Message-ID

	// The client's ledger, by Message-ID.
	told  map[string][]string // read a 250: the recipients it was told accepted
	maybe map[string][]string // reply never read: counted at most once
	never map[string]string   // must not be counted, and why

	reported                 map[string]bool // messages already found wrong
	sessions, sent, received int64
	violations               []string
	transcript               strings.Builder
}

// Addresses: each base is a key; its variants name the same mailbox.
var fuzzBases = []string{"v@x.test", "w@x.test", "bob@example.com", "ärger@bücher.test", "σοφία@x.test", "\u212a@x.test", "k@x.test", "o'brien+tag@x.test", "bounce@fuzz.test"}

// fuzzAddr returns a path for RCPT or MAIL and the key the client expects
// (valid: a server must refuse it when false).
func (f *fuzzRun) fuzzAddr() (path, key string, valid bool) {
	base := fuzzBases[f.rng.IntN(len(fuzzBases))]
	switch f.rng.IntN(12) {
	case 0: // ASCII case variant
		var b strings.Builder
		for _, r := range base {
			if r < 0x80 && f.rng.IntN(2) == 0 {
				r = []rune(strings.ToUpper(string(r)))[0]
			}
			b.WriteRune(r)
		}
		return b.String(), base, true
	case 1: // a case pair outside ASCII
		return strings.NewReplacer("ä", "Ä", "ü", "Ü", "σ", "Σ", "ο", "Ο", "φ", "Φ", "ί", "Ί", "α", "Α").Replace(base), base, true
	case 2: // a source route
		return "@relay.test,@r2.test:" + base, base, true
	case 3: // a quoted local part
		l, d, _ := strings.Cut(base, "@")
		return `"` + l + `"@` + d, base, true
	case 4:
		return "\u00a0" + base, "", false
	case 5:
		return "caf\xe9" + base, "", false
	case 6:
		return "@r.test:" + base + ",x@y.test", "", false
	case 7:
		return base + " x", "", false
	}
	return base, base, true
}

// mutate applies a white space or case variant to a command line (without
// CRLF). ok: the variant is still the same command to a correct server
// (only verb case and doubled spaces); when false the server may refuse it,
// and must refuse it unless it is refused for another reason first.
func (f *fuzzRun) mutate(line string) (string, bool) {
	verb, rest, _ := strings.Cut(line, " ")
	switch f.rng.IntN(24) {
	case 0:
		return strings.ToLower(verb) + " " + rest, true
	case 1:
		if rest != "" {
			return verb + "   " + rest, true
		}
	case 2:
		return "\t" + line, false
	case 3:
		return line + "\t", false
	case 4:
		return line + "\f", false
	case 5:
		return " " + line, false
	case 6:
		if rest != "" {
			return verb + "\t" + rest, false
		}
	case 7:
		return "\u00a0" + line, false
	case 8:
		return line + "\u0085", false
	case 9, 10:
		// A letter of a verb or keyword (not of the address, where it
		// makes another mailbox) spelt with one that upper-cases to it.
		from, to := "I", "ı"
		if f.rng.IntN(2) == 0 {
			from, to = "S", "ſ"
		}
		head, path, tail := line, "", ""
		if i, j := strings.IndexByte(line, '<'), strings.LastIndexByte(line, '>'); i >= 0 && j > i {
			head, path, tail = line[:i], line[i:j+1], line[j+1:]
		}
		if strings.Contains(head, from) {
			return strings.Replace(head, from, to, 1) + path + tail, false
		}
		if strings.Contains(tail, from) {
			return head + path + strings.Replace(tail, from, to, 1), false
		}
	case 11:
		return line + "\v", false
	}
	return line, true
}

// cmdKind is what a command is, for the replies it may get.
type cmdKind int

const (
	kHello cmdKind = iota
	kMail
	kRcpt
	kData
	kDot
	kBdat
	kRset
	kNoop
	kQuit
	kStartTLS
	kAuth
	kJunk
)

// owed is a reply the client waits for.
type owed struct {
	kind  cmdKind
	sure  bool   // the line is one a correct server takes as the command
	key   string // kRcpt: the key; "" when the address was made invalid
	msgID string // kDot, kBdat
	last  bool   // kBdat
	good  bool   // kDot: the body ends in CRLF.CRLF and holds no bare CR, LF or NUL
	line  string
	// kStartTLS: a command was pipelined behind it, which a server may
	// read as the start of the handshake when it arrives late.
	inject bool
}

// fsess is one client session and its view of the transaction.
type fsess struct {
	f      *fuzzRun
	id     int
	conn   net.Conn
	r      *bufio.Reader
	tls    bool
	authed bool
	gone   bool // the connection is over (EOF, reset or the client's own close)

	mailOK bool
	rcpts  []string
	dataOK bool // the last DATA got 354
	msgs   int
	log    strings.Builder
}

func (s *fsess) logf(format string, args ...any) {
	if s.log.Len() < 16<<10 {
		fmt.Fprintf(&s.log, format, args...)
	}
}

func (s *fsess) violation(format string, args ...any) {
	msg := fmt.Sprintf("session %d: %s", s.id, fmt.Sprintf(format, args...))
	s.f.mu.Lock()
	s.f.violations = append(s.f.violations, msg+"\n--- transcript ---\n"+s.log.String())
	s.f.mu.Unlock()
	s.gone = true
}

// send writes a group of bytes while replies are read, so neither side
// blocks on a full buffer.
func (s *fsess) send(b string) chan error {
	done := make(chan error, 1)
	s.f.sent += int64(len(b))
	s.logf(">>> %q\n", b)
	go func() {
		s.conn.SetWriteDeadline(time.Now().Add(fuzzReplyWait))
		_, err := io.WriteString(s.conn, b)
		done <- err
	}()
	return done
}

// reply reads one reply; "" and the error when there is none.
func (s *fsess) reply() (string, error) {
	s.conn.SetReadDeadline(time.Now().Add(fuzzReplyWait))
	var lines []string
	for {
		line, err := s.r.ReadString('\n')
		s.f.received += int64(len(line))
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		lines = append(lines, line)
		if len(line) < 4 || line[3] != '-' {
			r := strings.Join(lines, "\n")
			s.logf("<<< %s\n", r)
			return r, nil
		}
	}
}

func code(r string) int {
	if len(r) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(r[:3])
	return n
}

// plausible: the codes each kind of command may be answered with.
func plausible(k cmdKind, c int) bool {
	if c == 421 {
		return true // the server may close any time, saying why
	}
	switch c / 100 {
	case 4, 5:
		return true
	}
	switch k {
	case kData:
		return c == 354
	case kQuit:
		return c == 221
	case kStartTLS:
		return c == 220
	case kAuth:
		return c == 235 || c == 334
	case kHello, kMail, kRcpt, kDot, kBdat, kRset, kNoop, kJunk:
		return c == 250 || c == 251 && k == kRcpt
	}
	return false
}

// await reads the replies a group owes, in order, and applies them.
func (s *fsess) await(group []owed, written chan error) {
	for i, o := range group {
		if s.gone {
			s.lost(group[i:])
			break
		}
		r, err := s.reply()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				s.violation("no reply to %q within %v, connection open: hung", o.line, fuzzReplyWait)
			}
			s.gone = true
			s.lost(group[i:])
			break
		}
		s.apply(o, r)
	}
	if err := <-written; err != nil && !s.gone {
		s.gone = true
	}
}

// lost: replies never read. A message whose final reply is among them is
// in doubt: counted at most once.
func (s *fsess) lost(group []owed) {
	for _, o := range group {
		switch {
		case o.kind == kDot && o.good, o.kind == kBdat && o.last && s.mailOK:
			s.f.maybe[o.msgID] = slices.Clone(s.rcpts)
		case o.kind == kDot || o.kind == kBdat:
			s.f.never[o.msgID] = "its final reply was never read and it was malformed or not the last chunk"
		}
	}
}

func (s *fsess) reset() { s.mailOK, s.rcpts = false, nil }

// apply checks one reply against its command and updates the client's view.
func (s *fsess) apply(o owed, r string) {
	c := code(r)
	if !plausible(o.kind, c) {
		s.violation("reply %q to %q: out of step with the commands", r, o.line)
		return
	}
	ok := c/100 == 2 || c/100 == 3
	if ok && !o.sure && o.kind != kJunk {
		s.violation("%q answered %q: a line a correct server must refuse was taken as a command", o.line, r)
		return
	}
	switch o.kind {
	case kHello:
		if ok {
			s.reset()
		}
	case kMail:
		if ok {
			if s.mailOK {
				s.violation("a nested MAIL got %q", r)
			}
			s.mailOK, s.rcpts = true, nil
		}
	case kRcpt:
		if ok {
			switch {
			case !s.mailOK:
				s.violation("RCPT got %q with no transaction open", r)
			case o.key == "":
				s.violation("an invalid address %q got %q", o.line, r)
			case !slices.Contains(s.rcpts, o.key):
				s.rcpts = append(s.rcpts, o.key)
			}
		}
	case kData:
		if ok && (!s.mailOK || len(s.rcpts) == 0) {
			s.violation("DATA got %q with no recipient accepted", r)
		}
		s.dataOK = ok
	case kDot:
		switch {
		case ok && !o.good:
			s.violation("a message whose DATA did not end in CRLF.CRLF (or held bare CR, LF or NUL) got %q", r)
		case ok:
			s.f.told[o.msgID] = slices.Clone(s.rcpts)
		default:
			s.f.never[o.msgID] = "refused: " + r
		}
		s.reset()
	case kBdat:
		if !o.sure {
			// A BDAT line the server could not read: it cannot frame the
			// chunk, so it must close rather than read it as commands.
			if r2, err := s.reply(); err == nil {
				s.violation("after %q answered %q the session went on (%q): the chunk ran as commands", o.line, r, r2)
				return
			}
			s.gone = true
		}
		switch {
		case !ok:
			s.f.never[o.msgID] = "refused: " + r
			s.reset()
		case !s.mailOK || len(s.rcpts) == 0:
			s.violation("BDAT got %q with no recipient accepted", r)
		case o.last:
			s.f.told[o.msgID] = slices.Clone(s.rcpts)
			s.reset()
		}
	case kRset:
		if ok {
			s.reset()
		}
	case kQuit:
		if ok {
			s.gone = true
		}
	case kStartTLS:
		if ok {
			s.reset()
			tc := tls.Client(s.conn, s.f.tlsCfg)
			tc.SetDeadline(time.Now().Add(fuzzReplyWait))
			if err := tc.Handshake(); err != nil {
				if !o.inject {
					s.violation("TLS handshake after %q: %v", r, err)
				}
				s.gone = true
				return
			}
			tc.SetDeadline(time.Time{})
			s.conn, s.r, s.tls, s.authed = tc, bufio.NewReader(tc), true, false
		}
	case kAuth:
		if c == 235 {
			s.authed = true
		}
	}
}

// body makes a DATA body: good (terminated, stuffed, clean), or not.
func (f *fuzzRun) body(id string) (string, bool) {
	var b strings.Builder
	b.WriteString("Message-ID: <" + id + ">\r\nSubject: fuzz\r\n\r\n")
	for range f.rng.IntN(30) {
		switch f.rng.IntN(10) {
		case 0:
			b.WriteString("..a stuffed line\r\n")
		case 1:
			b.WriteString("..\r\n")
		case 2:
			b.WriteString("8-bit: ärger σοφία \xff\xfe\r\n")
		case 3:
			b.WriteString(strings.Repeat("x", f.rng.IntN(998)) + "\r\n")
		case 4:
			b.WriteString(strings.Repeat("long body line ", f.rng.IntN(200)) + "\r\n")
		default:
			b.WriteString("line " + strconv.Itoa(f.rng.IntN(1000)) + "\r\n")
		}
	}
	good := true
	if f.rng.IntN(8) == 0 {
		good = false
		v := []string{"\n.\r\n", "\n.\n", "\r.\r", "\r.\n", "\n.\r", "\r\n.\n", "\r.\r\n", "\r\n.\r", "\r\n\x00.\r\n", "bare\nLF\r\n", "nul\x00\r\n"}
		b.WriteString("smuggle" + v[f.rng.IntN(len(v))] + "MAIL FROM:<a@x.test>\r\nRCPT TO:<smuggled@fuzz.test>\r\nDATA\r\nMessage-ID: <smuggled-" + id + ">\r\n\r\nx\r\n.\r\n")
	}
	b.WriteString(".\r\n")
	return b.String(), good
}

// session runs one generated dialogue.
func (f *fuzzRun) session(id int) {
	s := &fsess{f: f, id: id}
	var err error
	implicit := f.rng.IntN(8) == 0
	if implicit {
		s.conn, err = tls.DialWithDialer(&net.Dialer{Timeout: fuzzReplyWait}, "tcp", f.srv.TLSAddr(), f.tlsCfg)
		s.tls = true
	} else {
		s.conn, err = net.DialTimeout("tcp", f.srv.Addr(), fuzzReplyWait)
	}
	if err != nil {
		s.violation("new session not served: %v", err)
		return
	}
	defer s.conn.Close()
	s.r = bufio.NewReader(s.conn)
	if g, err := s.reply(); err != nil || code(g) != 220 {
		s.violation("greeting %q, %v: new sessions not served", g, err)
		return
	}
	nextMsg := func() string {
		s.msgs++
		return fmt.Sprintf("s%d-m%d@fuzz", id, s.msgs)
	}
	line := func(kind cmdKind, l string, o owed) (string, owed) {
		o.kind, o.sure = kind, true
		if f.rng.IntN(5) == 0 {
			var same bool
			l, same = f.mutate(l)
			o.sure = same
		}
		o.line = l
		return l + "\r\n", o
	}
	groups := 1 + f.rng.IntN(10)
	for g := 0; g < groups && !s.gone; g++ {
		var out strings.Builder
		var group []owed
		add := func(b string, o owed) { out.WriteString(b); group = append(group, o) }
		hello := "EHLO fuzz.test"
		if f.rng.IntN(4) == 0 {
			hello = "HELO fuzz.test"
		}
		if g == 0 || f.rng.IntN(6) == 0 {
			add(line(kHello, hello, owed{}))
		}
		switch f.rng.IntN(14) {
		case 0: // STARTTLS, alone at the end of its group (RFC 3207)
			if !s.tls {
				l, o := line(kStartTLS, "STARTTLS", owed{})
				inject := f.rng.IntN(10) == 0
				o.inject = inject
				add(l, o)
				if inject {
					add("NOOP\r\n", owed{kind: kNoop, sure: true, line: "NOOP (injected)"}) // injection: refused and closed
				}
				s.await(group, s.send(out.String()))
				if !s.gone && s.tls {
					l, o := line(kHello, "EHLO fuzz.test", owed{})
					s.await([]owed{o}, s.send(l))
				}
				continue
			}
		case 1: // AUTH PLAIN with an initial response, or LOGIN step by step
			if !s.authed && !s.mailOK {
				if f.rng.IntN(2) == 0 {
					l, o := line(kAuth, "AUTH PLAIN "+base64.StdEncoding.EncodeToString([]byte("\x00user"+strconv.Itoa(id)+"\x00pw")), owed{})
					add(l, o)
				} else {
					s.await(group, s.send(out.String()))
					out.Reset()
					group = nil
					s.authLogin(id)
					continue
				}
			}
		case 2:
			add("NOOP\r\n", owed{kind: kNoop, sure: true, line: "NOOP"})
			add("VRFY v@x.test\r\n", owed{kind: kJunk, sure: true, line: "VRFY"})
			add("JUNK junk\r\n", owed{kind: kJunk, sure: true, line: "JUNK"})
		case 3: // a line with a NUL: refused, the session goes on
			add("NO\x00OP\r\n", owed{kind: kJunk, line: "NO\\0OP"})
		}
		// A transaction: MAIL, RCPTs, then DATA or BDAT.
		mail := "MAIL FROM:<a@x.test>"
		switch f.rng.IntN(6) {
		case 0:
			mail += " BODY=8BITMIME SMTPUTF8"
		case 1:
			mail += " SIZE=" + strconv.Itoa(f.rng.IntN(20000))
		case 2:
			mail += " RET=HDRS ENVID=e" + strconv.Itoa(id)
		}
		add(line(kMail, mail, owed{}))
		for range f.rng.IntN(5) {
			path, key, valid := f.fuzzAddr()
			l, o := line(kRcpt, "RCPT TO:<"+path+">", owed{key: key})
			o.sure = o.sure && valid
			if !valid {
				o.key = ""
			}
			add(l, o)
		}
		if f.rng.IntN(3) == 0 {
			// CHUNKING: the chunks pipelined with the rest of the group.
			id := nextMsg()
			body := "Message-ID: <" + id + ">\r\n\r\n" + strings.Repeat("chunk \x00 \r \n .\r\n", f.rng.IntN(50))
			for len(body) > 0 {
				n := min(len(body), 1+f.rng.IntN(300))
				if f.rng.IntN(3) == 0 {
					n = len(body)
				}
				last := n == len(body)
				cmd := "BDAT " + strconv.Itoa(n)
				if last {
					cmd += " LAST"
				}
				l, o := line(kBdat, cmd, owed{msgID: id, last: last})
				if !o.sure {
					// A mangled BDAT line: its chunk cannot be framed, so
					// the server must close; nothing after it is sent.
					add(l+body[:n], o)
					f.never[id] = "a mangled BDAT"
					break
				}
				add(l+body[:n], o)
				body = body[n:]
			}
			if f.rng.IntN(4) == 0 {
				add("RSET\r\n", owed{kind: kRset, sure: true, line: "RSET"})
			}
			s.await(group, s.send(out.String()))
			continue
		}
		l, o := line(kData, "DATA", owed{})
		add(l, o)
		s.dataOK = false
		s.await(group, s.send(out.String()))
		if s.gone || !s.dataOpen(group) {
			continue
		}
		id := nextMsg()
		b, good := f.body(id)
		if f.rng.IntN(20) == 0 {
			// The client dies mid-DATA.
			s.send(b[:len(b)/2])
			s.gone = true
			f.never[id] = "the client died mid-DATA"
			break
		}
		if !good {
			f.never[id] = "malformed DATA"
		}
		f.never["smuggled-"+id] = "smuggled inside another message's DATA"
		tail := []owed{{kind: kDot, sure: good, msgID: id, good: good, line: "<final dot>"}}
		if f.rng.IntN(3) == 0 {
			// The next MAIL pipelined behind the final dot (RFC 2920).
			b += "MAIL FROM:<a@x.test>\r\n"
			tail = append(tail, owed{kind: kMail, sure: true, line: "MAIL (behind the dot)"})
		}
		s.await(tail, s.send(b))
		if s.mailOK && !s.gone {
			s.await([]owed{{kind: kRset, sure: true, line: "RSET"}}, s.send("RSET\r\n"))
		}
	}
	switch {
	case s.gone:
	case f.rng.IntN(4) == 0: // the client vanishes without QUIT
	case f.rng.IntN(10) == 0: // a bare LF: refused and closed
		s.await([]owed{{kind: kJunk, line: "NOOP<LF>"}}, s.send("NOOP\n"))
	case f.rng.IntN(10) == 0: // an over-long line
		s.await([]owed{{kind: kJunk, line: "<long line>"}}, s.send("NOOP "+strings.Repeat("x", 2000)+"\r\n"))
	default:
		s.await([]owed{{kind: kQuit, sure: true, line: "QUIT"}}, s.send("QUIT\r\n"))
	}
	f.transcript.Reset()
	f.transcript.WriteString(s.log.String())
}

// dataOpen: the group's DATA got 354.
func (s *fsess) dataOpen(group []owed) bool {
	return !s.gone && len(group) > 0 && group[len(group)-1].kind == kData && s.dataOK
}

func (s *fsess) authLogin(id int) {
	steps := []string{"AUTH LOGIN", base64.StdEncoding.EncodeToString([]byte("login" + strconv.Itoa(id))), base64.StdEncoding.EncodeToString([]byte("pw"))}
	for i, st := range steps {
		done := s.send(st + "\r\n")
		r, err := s.reply()
		<-done
		if err != nil {
			s.gone = true
			return
		}
		c := code(r)
		if c != 334 && c != 235 && c/100 != 5 && c != 421 || c == 235 && i < 2 || c == 334 && i == 2 {
			s.violation("AUTH LOGIN step %d (%q) answered %q", i, st, r)
			return
		}
		if c != 334 {
			s.authed = c == 235
			return
		}
	}
}

// check compares the server with the ledger, once the server has ended
// every session.
func (f *fuzzRun) check() {
	f.mu.Lock()
	defer f.mu.Unlock()
	fail := func(format string, args ...any) {
		f.violations = append(f.violations, fmt.Sprintf(format, args...)+"\n--- last session ---\n"+f.transcript.String())
	}
	for id, ds := range f.delivered {
		if f.reported[id] {
			continue
		}
		n := len(f.violations)
		defer func() {
			if len(f.violations) > n {
				f.reported[id] = true
			}
		}()
		told, isTold := f.told[id]
		maybe, isMaybe := f.maybe[id]
		why, isNever := f.never[id]
		switch {
		case len(ds) > 1:
			fail("message %s counted %d times", id, len(ds))
		case isTold && !slices.Equal(ds[0].Recipients, told):
			fail("message %s counted for %v, the client was told %v", id, ds[0].Recipients, told)
		case isMaybe && !slices.Equal(ds[0].Recipients, maybe):
			fail("message %s (reply unread) counted for %v, the client had %v accepted", id, ds[0].Recipients, maybe)
		case isNever && !isTold:
			fail("message %s counted, yet it must not be: %s", id, why)
		case !isTold && !isMaybe && !isNever:
			fail("message %s counted, and the client never sent it as a message", id)
		}
	}
	for id, rcpts := range f.told {
		if len(f.delivered[id]) == 0 {
			fail("message %s: the client read a 250 for %v, the server never counted it", id, rcpts)
		}
	}
	// The oracle holds exactly what was delivered.
	want := map[string]int{}
	var total int64
	for _, ds := range f.delivered {
		for _, d := range ds {
			for _, r := range d.Recipients {
				want[r]++
				total++
			}
		}
	}
	snap := f.srv.Snapshot()
	if got := counts(snap); !sameCounts(got, want) || snap.Copies != total {
		fail("oracle %v (%d copies), deliveries %v (%d)", got, snap.Copies, want, total)
	}
}

// checkAPI compares /api/v1/recipients and /metrics with the oracle.
func (f *fuzzRun) checkAPI() {
	snap := f.srv.Snapshot()
	resp, err := http.Get("http://" + f.srv.HTTPAddr() + "/api/v1/recipients")
	if err != nil {
		f.violations = append(f.violations, "GET /api/v1/recipients: "+err.Error())
		return
	}
	var api fakesmtp.Snapshot
	err = json.NewDecoder(resp.Body).Decode(&api)
	resp.Body.Close()
	if err != nil || api.Copies != snap.Copies || !sameCounts(counts(api), counts(snap)) {
		f.violations = append(f.violations, fmt.Sprintf("/api/v1/recipients %v (%d copies, %v) differs from the oracle %v (%d)", counts(api), api.Copies, err, counts(snap), snap.Copies))
	}
	f.mu.Lock()
	n := 0
	for _, ds := range f.delivered {
		n += len(ds)
	}
	f.mu.Unlock()
	if v := metricValue(f.t, f.reg, "onecopy_smtp_copies_total"); int64(v) != snap.Copies {
		f.violations = append(f.violations, fmt.Sprintf("onecopy_smtp_copies_total %v, oracle %d", v, snap.Copies))
	}
	if v := metricValue(f.t, f.reg, "onecopy_smtp_transactions_total", "result", "accepted"); int(v) != n {
		f.violations = append(f.violations, fmt.Sprintf("onecopy_smtp_transactions_total{result=accepted} %v, counted messages %d", v, n))
	}
}

func TestDifferentialDialogues(t *testing.T) {
	d := 3 * time.Second
	if v := os.Getenv("ONECOPY_FUZZ_TIME"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("ONECOPY_FUZZ_TIME=%q: %v", v, err)
		}
	}
	if testing.Short() {
		d = time.Second
	}
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv("ONECOPY_FUZZ_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("ONECOPY_FUZZ_SEED=%q: %v", v, err)
		}
	}
	t.Logf("seed %d (replay: ONECOPY_FUZZ_SEED=%d go test -race -run '^TestDifferentialDialogues$' ./fakesmtp)", seed, seed)
	f := &fuzzRun{t: t, rng: rand.New(rand.NewPCG(seed, 0xf022)), reg: prometheus.NewRegistry(),
		delivered: map[string][]fakesmtp.Delivery{}, reported: map[string]bool{}, told: map[string][]string{}, maybe: map[string][]string{}, never: map[string]string{}}
	specs := faultSpecs(t, "tempfail=0.03", "reject=bounce@fuzz.test", "drop-after-data=0.03", "drop-during-data=0.02")
	srv, err := fakesmtp.Start(context.Background(), fakesmtp.Options{
		HTTPAddr: "127.0.0.1:0", TLSAddr: "127.0.0.1:0", Registry: f.reg, MaxSize: 8 << 10,
		IdleTimeout: 5 * time.Second, Hooks: []fakesmtp.Hook{fakesmtp.NewFaultSet(specs, seed)},
		OnDelivery: func(d fakesmtp.Delivery) {
			f.mu.Lock()
			id := strings.TrimSuffix(strings.TrimPrefix(d.MessageID, "<"), ">")
			f.delivered[id] = append(f.delivered[id], d)
			f.mu.Unlock()
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	f.srv, f.tlsCfg = srv, tlsConfig(t, srv)
	deadline := time.Now().Add(d)
	for i := 1; time.Now().Before(deadline) && len(f.violations) < 5; i++ {
		f.session(i)
		f.sessions++
		if !eventually(t, fuzzReplyWait, func() bool { return len(srv.Sessions()) == 0 }) {
			f.violations = append(f.violations, fmt.Sprintf("session %d still open on the server %v after the client left: %+v", i, fuzzReplyWait, srv.Sessions()))
			break
		}
		f.check()
		if i%100 == 0 {
			f.checkAPI()
		}
	}
	f.checkAPI()
	t.Logf("%d sessions, %d bytes sent, %d received, %d messages counted, %d told, %d in doubt, %d refused or malformed; %d violations",
		f.sessions, f.sent, f.received, len(f.delivered), len(f.told), len(f.maybe), len(f.never), len(f.violations))
	for _, v := range f.violations {
		t.Errorf("seed %d: %s", seed, v)
	}
}

// FuzzSessionBytes sends an arbitrary byte stream as one session, reads
// every reply until the server closes, and holds the server to the one
// thing a client can check of any dialogue: it counted exactly as many
// messages as it answered "Ok: queued" (every reply is read, so none is in
// doubt).
func FuzzSessionBytes(f *testing.F) {
	for _, s := range []string{
		"EHLO a\r\nMAIL FROM:<a@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nhi\r\n.\r\nQUIT\r\n",
		"EHLO a\r\nMAIL FROM:<a@x>\r\nRCPT TO:<v@x>\r\nBDAT 4 LAST\r\nhi\r\nQUIT\r\n",
		"EHLO a\r\n\tMAIL FROM:<a@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nhi\r\n.\r\n",
		"MAIL FROM:<a@x>\r\nRCPT TO:<v@x>\r\nDATA\r\nhi\n.\r\nMAIL FROM:<a@x>\r\nRCPT TO:<w@x>\r\nDATA\r\nx\r\n.\r\n",
		"MAIL FROM:<a@x>\r\nRCPT TO:<v@x>\r\nBDAT\t20 LAST\r\nMAIL FROM:<a@x>\r\nRCPT TO:<w@x>\r\nDATA\r\nx\r\n.\r\n",
	} {
		f.Add([]byte(s))
	}
	var mu sync.Mutex
	counted := 0
	srv, err := fakesmtp.Start(context.Background(), fakesmtp.Options{
		MaxSize:    4096,
		OnDelivery: func(fakesmtp.Delivery) { mu.Lock(); counted++; mu.Unlock() },
	})
	if err != nil {
		f.Fatal(err)
	}
	defer srv.Close()
	f.Fuzz(func(t *testing.T, in []byte) {
		mu.Lock()
		before := counted
		mu.Unlock()
		conn, err := net.DialTimeout("tcp", srv.Addr(), fuzzReplyWait)
		if err != nil {
			t.Fatalf("new session not served: %v", err)
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(fuzzReplyWait))
		go func() {
			conn.Write(in)
			conn.(*net.TCPConn).CloseWrite()
		}()
		all, err := io.ReadAll(conn)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatalf("the server neither answered nor closed within %v; got %q", fuzzReplyWait, all)
		}
		// Polled every millisecond, not eventually's 10: this runs for
		// every input of the fuzzer.
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for deadline := time.Now().Add(fuzzReplyWait); len(srv.Sessions()) > 0; <-tick.C {
			if time.Now().After(deadline) {
				t.Fatalf("session still open %v after the client left", fuzzReplyWait)
			}
		}
		queued := strings.Count(string(all), "250 2.0.0 Ok: queued\r\n")
		mu.Lock()
		got := counted - before
		mu.Unlock()
		if got != queued {
			t.Fatalf("counted %d messages, answered %d \"Ok: queued\"; replies %q", got, queued, all)
		}
	})
}
