// The connection guard: a net.Conn wrapper between the client and
// mhale/smtpd that follows the SMTP dialogue. It is the one parser of it:
// it hands the library one canonical command (or one validated DATA body)
// at a time and sees every reply, so it always knows the protocol moment
// of its session, rejects what would desynchronise the library (SMTP
// smuggling, bare LF, white space other than a space, over-long lines,
// junk addresses), answers what the library cannot say (STARTTLS, AUTH,
// BDAT, the EHLO extensions), and gives hooks their say before each reply.
// TLS terminates below it: it always reads plaintext.

package fakesmtp

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/onecopy/onecopy/mailbox"
)

// replyTo says which command the next reply from the library answers.
type replyTo int

const (
	replyGreeting replyTo = iota
	replyOther
	replyHelo
	replyMail
	replyRcpt
	replyData
	replyDataEnd
	replyBdatData // the DATA the guard sends for BDAT LAST: its 354 is swallowed
	replyInternal // the guard's own RSET after a failed DATA: swallowed
	replyQuit
)

const (
	readBufSize = 4096
	rsetLine    = "RSET\r\n"
)

var (
	dataEnd = []byte(".\r\n")
	dataCmd = []byte("DATA\r\n")
	crlf    = []byte("\r\n")
)

// protoError is a client mistake the guard answers itself.
type protoError struct {
	kind  string // metric label
	reply string
	fatal bool // the dialogue cannot be trusted any more: close
}

func (e *protoError) Error() string { return e.kind + ": " + e.reply }

// closedError is what the library reads once the guard has ended a session.
// It is a net.Error that is not a timeout, so the library stops quietly
// instead of writing a reply of its own.
type closedError struct{ why string }

func (e closedError) Error() string   { return "fakesmtp: session closed: " + e.why }
func (closedError) Timeout() bool     { return false }
func (closedError) Temporary() bool   { return false }
func (e closedError) Unwrap() error   { return net.ErrClosed }
func (e closedError) Is(t error) bool { return t == net.ErrClosed }

// sessionAddr is the RemoteAddr the library sees. It does not parse as
// host:port, so the library's reverse DNS lookup fails at once instead of
// waiting on a resolver, and the handler finds its session through it.
type sessionAddr struct{ s *session }

func (a sessionAddr) Network() string { return "onecopy" }
func (a sessionAddr) String() string  { return "session-" + strconv.FormatUint(a.s.id, 10) }

// session is one guarded connection. Read and Write are called only by the
// library's session goroutine; mu guards what Close and Sessions touch.
type session struct {
	srv     *Server
	id      uint64
	raw     net.Conn
	remote  string
	ctx     context.Context
	cancel  context.CancelFunc
	started time.Time
	hooks   []sessionHook

	// Times of the session are kept as durations since started, read from
	// the monotonic clock alone (elapsed): half the cost of time.Now, which
	// reads the wall clock too, and plain integers to compare. now is when
	// the last client bytes arrived (or a hook's delay ended): the time of
	// the moments set meanwhile and the base of the write deadline. A
	// message takes four reads, not thirty clock readings.
	startNs  int64 // started, in unix nanoseconds
	now      time.Duration
	rdl, wdl time.Duration // the deadlines last set on raw (wdl under mu); 0: none

	rbuf       []byte
	rpos, rend int
	inOff      int64  // stream offset of rbuf[0]: client bytes consumed before it
	lineOff    int64  // stream offset of the command line last read
	pending    []byte // validated bytes the library has yet to read
	cmdBuf     []byte // the command line pending points into, reused
	wbuf       []byte // replies being written, or held for a pipelining client (under mu)
	held       bool   // wbuf may hold replies; only the session goroutine touches it

	expect     replyTo
	wpart      []byte // a reply the library has not finished writing
	inTx       bool
	rcpts      []string
	rcptWanted string
	messages   int
	errors     int
	needReset  bool
	flight     []txn // transactions in flight, oldest first (see indoubt.go)
	ehlo       bool  // the HELO or EHLO being answered is an EHLO
	forgive    int   // 503s and 554s owed to a refused MAIL's pipelined group (replyForgiven)
	bdat       bool  // the transaction's body is arriving in BDAT chunks
	tls        bool  // the session is over TLS (STARTTLS, or the implicit TLS listener)
	authed     bool  // AUTH succeeded
	user       string

	// DATA state
	inData    bool
	streamed  bool // MomentDataStreaming was announced
	lineLen   int
	cr        bool
	firstDot  bool
	size      int // bytes of the body as sent, final dot line included
	dots      int // lines that began with a dot (stuffed), the final one included
	oversize  bool
	header    []byte // the header section as sent, up to its empty line
	inBody    bool   // the header's empty line has gone by
	outcome   Action
	messageID string // of the message that just ended
	msgSize   int    // of the message that just ended, as the client meant it

	moment atomic.Int32
	since  atomic.Int64

	mu          sync.Mutex
	committing  bool // a message is between its final dot and its reply
	handshaking bool // a TLS handshake is under way on raw
	shutdown    bool
	closed      bool
	ending      Ending // how the session ended; set once, EndClient unless the server ended it
	endFault    string
	doneOnce    sync.Once
}

// sessionHook is a hook with the moments it may act at, when it says.
type sessionHook struct {
	h  Hook
	mh MomentHook // nil: every moment
}

func (h sessionHook) wants(m Moment) bool { return h.mh == nil || h.mh.Moments().Has(m) }

func newSession(srv *Server, raw net.Conn, id uint64) *session {
	ctx, cancel := context.WithCancel(srv.ctx)
	now := time.Now()
	s := &session{
		srv:     srv,
		id:      id,
		raw:     raw,
		remote:  raw.RemoteAddr().String(),
		ctx:     ctx,
		cancel:  cancel,
		started: now,
		startNs: now.UnixNano(),
		rbuf:    make([]byte, readBufSize),
	}
	if len(srv.opts.Hooks) > 0 {
		s.hooks = make([]sessionHook, len(srv.opts.Hooks))
		for i, h := range srv.opts.Hooks {
			s.hooks[i].h = h
			s.hooks[i].mh, _ = h.(MomentHook)
		}
	}
	s.setMoment(MomentConnect)
	return s
}

// elapsed is the time since the session started, from the monotonic clock.
func (s *session) elapsed() time.Duration { return time.Since(s.started) }

// clock is the time now as the session counts it: its start plus the time
// elapsed since, which a step of the system clock during the session does
// not move.
func (s *session) clock() time.Time { return s.started.Add(s.elapsed()) }

// setMoment records the moment the session reached, as of s.now.
func (s *session) setMoment(m Moment) {
	s.moment.Store(int32(m))
	s.since.Store(s.startNs + int64(s.now))
}

// wants reports whether any hook may act at m.
func (s *session) wants(m Moment) bool {
	for _, h := range s.hooks {
		if h.wants(m) {
			return true
		}
	}
	return false
}

// deadlineSlack is how much later than asked a deadline may fire. Setting
// a deadline costs a clock reading and a timer update (~300 ns here), four
// times a message each way; with the slack a session refreshes each of its
// deadlines about once per slack instead. A timeout thus fires between its
// configured duration and that plus 1/16 of it (at most a second later).
func deadlineSlack(d time.Duration) time.Duration { return min(d/16, time.Second) }

// setReadDeadline makes a read fail no sooner than want (and no later than
// want plus the slack, never past the session's end); times are since the
// session started.
func (s *session) setReadDeadline(want time.Duration) {
	end := s.srv.opts.SessionTimeout
	want = min(want, end)
	d := min(want+deadlineSlack(s.srv.opts.IdleTimeout), end)
	if s.rdl >= want && s.rdl <= d {
		return
	}
	s.setReadDeadlineExactly(d)
}

// setReadDeadlineExactly sets the read deadline to d since the start, for
// the short wait of linger, which is not the idle timeout.
func (s *session) setReadDeadlineExactly(d time.Duration) {
	s.rdl = d
	s.raw.SetReadDeadline(s.started.Add(d))
}

func (s *session) info() SessionInfo {
	s.mu.Lock()
	msgs := s.messages
	s.mu.Unlock()
	return SessionInfo{
		ID:       s.id,
		Moment:   Moment(s.moment.Load()),
		Since:    time.Unix(0, s.since.Load()),
		Remote:   s.remote,
		Messages: msgs,
	}
}

// hook asks the server's hooks what to do at moment m and applies the delay.
func (s *session) hook(m Moment, ev Event) Action {
	if !s.wants(m) {
		return Action{}
	}
	return s.callHooks(m, ev)
}

// callHooks is hook's slow path: ev escapes to the heap (hooks get a
// pointer), which must not cost the moments no hook wants.
func (s *session) callHooks(m Moment, ev Event) Action {
	ev.Moment, ev.Session, ev.Time, ev.Messages = m, s.id, s.clock(), s.messages
	if ev.Recipients == nil && m >= MomentDataEnd {
		ev.Recipients = s.rcpts
	}
	var act Action
	for _, sh := range s.hooks {
		if !sh.wants(m) {
			continue
		}
		a := sh.h.At(s.ctx, &ev)
		if a.zero() {
			continue
		}
		s.srv.faultFired(s, &ev, a)
		act.Delay += a.Delay
		if act.Fault == "" {
			act.Fault = a.Fault // a delay-only fault (slow-ack) must still be reported
		}
		if a.Reply != "" || a.Close {
			act.Reply, act.Close, act.Fault = a.Reply, a.Close, a.Fault
			break
		}
	}
	if act.Delay > 0 {
		s.flush()
		t := time.NewTimer(act.Delay)
		select {
		case <-t.C:
		case <-s.ctx.Done():
			t.Stop()
		}
		s.now = s.elapsed()
	}
	return act
}

// LocalAddr, RemoteAddr and the deadline setters make session a net.Conn.
// Deadlines belong to the guard: the library's are ignored.
func (s *session) LocalAddr() net.Addr              { return s.raw.LocalAddr() }
func (s *session) RemoteAddr() net.Addr             { return sessionAddr{s} }
func (s *session) SetDeadline(time.Time) error      { return nil }
func (s *session) SetReadDeadline(time.Time) error  { return nil }
func (s *session) SetWriteDeadline(time.Time) error { return nil }

// Close is called by the library when its session ends.
func (s *session) Close() error {
	s.closeRaw()
	s.doneOnce.Do(func() {
		s.moment.Store(int32(MomentClosed))
		s.since.Store(time.Now().UnixNano())
		s.mu.Lock()
		if s.ending == "" {
			s.ending = EndClient
		}
		s.mu.Unlock()
		s.ended()
		s.cancel()
		s.srv.sessionDone(s)
	})
	return nil
}

// end records how the server ended the session; the first word stands.
func (s *session) end(e Ending, fault string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ending == "" {
		s.ending, s.endFault = e, fault
	}
}

func (s *session) closeRaw() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.flushLocked() // a 221 held behind a pipelined QUIT, say
		s.closed = true
		s.raw.Close()
	}
}

// stop is the server shutting down: a session that is not committing a
// message is told 421 and closed now; one that is committing finishes its
// reply first and closes itself after it.
func (s *session) stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shutdown = true
	if s.committing || s.closed {
		return
	}
	if s.ending == "" {
		s.ending = EndShutdown
	}
	if s.handshaking {
		// A write would wait for the handshake (or be garbage in it).
		s.closed = true
		s.raw.Close()
		return
	}
	// After the replies still held for a pipelining client, in order.
	s.wbuf = append(s.wbuf, "421 4.3.2 Service shutting down, closing transmission channel\r\n"...)
	s.writeLocked(s.wbuf, s.elapsed())
	s.wbuf = s.wbuf[:0]
	s.closed = true
	s.raw.Close()
}

// writeLine sends a reply line and its CRLF to the client under the write
// deadline, after any replies held before it. hold: the reply may wait in
// s.wbuf while the client's next pipelined command is already in, so a
// pipelined group is answered in one write (RFC 2920 4: the server
// "SHOULD" batch its replies); a command that arrived alone is answered at
// once. Only the session goroutine calls it.
func (s *session) writeLine(line []byte, hold bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return closedError{"connection already closed"}
	}
	s.wbuf = append(append(s.wbuf, line...), '\r', '\n')
	if hold && s.rpos < s.rend && len(s.wbuf) < readBufSize {
		s.held = true
		return nil
	}
	s.held = false
	return s.flushLocked()
}

// flush writes the replies held for a pipelining client. Before the
// session waits for anything (the client's bytes, a hook's delay) and
// before a final reply counts as written, they go out.
func (s *session) flush() error {
	if !s.held {
		return nil // the usual case, without the lock: nothing pipelined
	}
	s.held = false
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return closedError{"connection already closed"}
	}
	return s.flushLocked()
}

func (s *session) flushLocked() error {
	if len(s.wbuf) == 0 {
		return nil
	}
	err := s.writeLocked(s.wbuf, s.now)
	s.wbuf = s.wbuf[:0]
	return err
}

// writeLocked writes b under a write deadline of WriteTimeout from now
// (since the start; refreshed lazily, see deadlineSlack).
func (s *session) writeLocked(b []byte, now time.Duration) error {
	want := now + s.srv.opts.WriteTimeout
	if d := want + deadlineSlack(s.srv.opts.WriteTimeout); s.wdl < want || s.wdl > d {
		s.wdl = d
		s.raw.SetWriteDeadline(s.started.Add(d))
	}
	_, err := s.raw.Write(b)
	if err != nil && !s.closed {
		// A reply the client did not take ends the session. Left open, it
		// would go on for ever: the library's buffered writer keeps the
		// error and never writes again, so the guard would stop seeing
		// replies (and lose the protocol moment) while the library went
		// on reading commands and answering nobody.
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.srv.protocolError(s, "write_timeout", "")
		}
		s.closed = true
		s.raw.Close()
	}
	return err
}

// reply writes one reply to the client after the latency hook, and ends the
// session after too many errors.
func (s *session) reply(line string) error { return s.replyBytes([]byte(line)) }

// replyBytes is reply for a line (without its CRLF) the caller does not
// keep: the library's own replies pass through here without a copy.
func (s *session) replyBytes(line []byte) error { return s.replyCounted(line, true) }

// replyCounted is replyBytes; count: an error reply counts towards
// MaxErrors.
func (s *session) replyCounted(line []byte, count bool) error {
	if s.wants(MomentReply) {
		if a := s.hook(MomentReply, Event{Reply: string(line)}); a.Reply != "" || a.Close {
			return s.abort(a.Reply, EndCut, a.Fault)
		}
	}
	if err := s.writeLine(line, true); err != nil {
		return err
	}
	if code := replyCode(line); count && (code == 500 || code == 501 || code == 503 || code == 535) {
		s.errors++
		if s.errors >= s.srv.opts.MaxErrors {
			s.srv.protocolError(s, "too_many_errors", string(line))
			return s.abort("421 4.7.0 Too many errors, closing transmission channel", EndProtocol, "")
		}
	}
	return nil
}

// abort writes a last reply (if any) and closes the connection; e and
// fault say why, for the in-doubt report.
func (s *session) abort(last string, e Ending, why string) error {
	fault := ""
	if e == EndCut {
		fault = why
	}
	s.end(e, fault)
	if last != "" && s.writeLine([]byte(last), false) == nil {
		s.linger()
	}
	s.closeRaw()
	if why == "" {
		why = last
	}
	return closedError{why}
}

// lingerTime bounds how long a session drains a client after its last
// reply, and lingerBytes how much.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 1 << 20
)

// linger half-closes the connection after a last reply and drains what the
// client still sends, briefly. Closing with unread input makes the kernel
// reset the connection, and a reset can discard the reply before the client
// reads it: a junk flood or an over-long line would end in "connection
// reset" instead of the 421 or 500 that says why. Not while the server
// shuts down: Close must not wait for it.
func (s *session) linger() {
	hc, ok := s.raw.(interface{ CloseWrite() error })
	if !ok || s.ctx.Err() != nil || hc.CloseWrite() != nil {
		return
	}
	s.setReadDeadlineExactly(s.elapsed() + lingerTime)
	for n := 0; n < lingerBytes; {
		m, err := s.raw.Read(s.rbuf)
		n += m
		if err != nil {
			return
		}
	}
}

// fail handles an error met while reading from the client.
func (s *session) fail(err error) error {
	var pe *protoError
	switch {
	case errors.As(err, &pe):
		s.srv.protocolError(s, pe.kind, pe.reply)
		if pe.fatal {
			return s.abort(pe.reply, EndProtocol, pe.kind)
		}
		return s.reply(pe.reply)
	case errors.Is(err, os.ErrDeadlineExceeded):
		kind := "idle_timeout"
		if time.Since(s.started) >= s.srv.opts.SessionTimeout {
			kind = "session_timeout"
		}
		s.srv.protocolError(s, kind, "")
		// The reply's write deadline runs from now, not from the last
		// bytes the client sent: those are an idle timeout ago, and with
		// the default timeouts (idle 60s, write 30s) the deadline would
		// already have passed, and the 421 would never be written.
		s.now = s.elapsed()
		return s.abort("421 4.4.2 "+strings.ReplaceAll(kind, "_", " ")+", closing transmission channel", EndTimeout, kind)
	}
	s.closeRaw()
	return closedError{err.Error()}
}

// fill reads more client bytes into rbuf, keeping what is unread.
func (s *session) fill(deadline time.Duration) error {
	if s.rpos > 0 {
		s.inOff += int64(s.rpos)
		s.rend = copy(s.rbuf, s.rbuf[s.rpos:s.rend])
		s.rpos = 0
	}
	if s.rend == len(s.rbuf) {
		return &protoError{"line_too_long", "500 5.5.2 Line too long", true}
	}
	s.flush() // a failure closed the connection: the read below says so
	s.setReadDeadline(deadline)
	n, err := s.raw.Read(s.rbuf[s.rend:])
	s.rend += n
	if n > 0 {
		s.now = s.elapsed()
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// readLine returns the next command line without its CRLF.
func (s *session) readLine() (string, error) {
	var deadline time.Duration // set at the first read: a pipelined line needs none
	for {
		buf := s.rbuf[s.rpos:s.rend]
		if i := bytes.IndexByte(buf, '\n'); i >= 0 {
			s.lineOff = s.inOff + int64(s.rpos)
			s.rpos += i + 1
			if i+1 > s.srv.opts.MaxLineLength {
				return "", &protoError{"line_too_long", "500 5.5.2 Line too long", true}
			}
			if i == 0 || buf[i-1] != '\r' {
				return "", &protoError{"bare_lf", "500 5.5.2 Bare <LF> received: lines must end with <CR><LF>", true}
			}
			line := buf[:i-1]
			if bytes.IndexByte(line, '\r') >= 0 {
				return "", &protoError{"bare_cr", "500 5.5.2 Bare <CR> received", true}
			}
			if bytes.IndexByte(line, 0) >= 0 {
				return "", &protoError{"nul", "500 5.5.2 NUL in command", false}
			}
			return string(line), nil
		}
		if len(buf) >= s.srv.opts.MaxLineLength {
			return "", &protoError{"line_too_long", "500 5.5.2 Line too long", true}
		}
		if deadline == 0 {
			deadline = s.elapsed() + s.srv.opts.IdleTimeout
		}
		if err := s.fill(deadline); err != nil {
			return "", err
		}
	}
}

// Read gives the library its next validated unit. Once the guard has
// ended the session it gives nothing more, not even commands the client
// had already pipelined: after a last reply written from Write (too many
// errors, a hook's Close, shutdown) the library's writer has failed for
// good, yet it goes on reading, and it would run, and count, them.
func (s *session) Read(p []byte) (int, error) {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed {
		return 0, closedError{"session ended"}
	}
	for len(s.pending) == 0 {
		var err error
		switch {
		case s.inData:
			err = s.nextData()
		case s.needReset:
			s.needReset = false
			s.expect = replyInternal
			s.pending = []byte(rsetLine)
		default:
			err = s.nextCommand()
		}
		if err != nil {
			return 0, err
		}
	}
	n := copy(p, s.pending)
	s.pending = s.pending[n:]
	return n, nil
}

func (s *session) resetTx() {
	s.inTx, s.bdat = false, false
	s.rcpts = nil // hooks may keep the old slice (Event.Recipients): never write into it again
}

// nextCommand reads commands until one is for the library, answering the
// ones the guard handles itself. What the library gets is never the line
// as the client wrote it: a canonical line rebuilt from what the guard's
// parser understood (an upper-case verb, single spaces, a bare path), so
// the two can never read one line two ways.
func (s *session) nextCommand() error {
	for {
		line, err := s.readLine()
		if err != nil {
			if err = s.fail(err); err != nil {
				return err
			}
			continue
		}
		v, arg, kind := parseCommand(line)
		if kind != "" {
			s.srv.protocolError(s, kind, line)
			if maybeBDAT(line) {
				// Its chunk follows, of a size the guard cannot trust:
				// read as commands, it would run whatever it holds.
				return s.abort(badLineReply(kind)+"; a BDAT chunk may follow, closing", EndProtocol, kind)
			}
			if err := s.reply(badLineReply(kind)); err != nil {
				return err
			}
			continue
		}
		s.expect = replyOther
		passed, err := s.command(v, arg, line)
		if err != nil {
			return err
		}
		if passed {
			return nil
		}
	}
}

// badLineReply answers a line parseCommand refused, by kind.
func badLineReply(kind string) string {
	switch kind {
	case "bad_whitespace":
		return "500 5.5.2 Syntax error: white space other than one space between words"
	case "control_char":
		return "500 5.5.2 Syntax error: control character in command"
	}
	return "500 5.5.2 Syntax error: command is not valid UTF-8"
}

// command handles one parsed command. passed: the library has something to
// read (s.pending), or the Read loop has internal work (s.needReset).
func (s *session) command(v verb, arg, line string) (passed bool, err error) {
	switch v {
	case verbHELO, verbEHLO:
		if !validDomain(arg) {
			s.srv.protocolError(s, "bad_helo", line)
			return false, s.reply("501 5.5.4 Invalid domain in " + v.String())
		}
		s.resetTx()
		s.forgive = 0
		s.ehlo = v == verbEHLO
		s.expect = replyHelo
		return s.pass(v.String(), " ", arg)
	case verbMAIL:
		return s.mail(arg, line)
	case verbRCPT:
		return s.rcpt(arg, line)
	case verbDATA:
		switch {
		case arg != "":
			return false, s.reply("501 5.5.4 Syntax: DATA takes no parameters")
		case !s.inTx:
			return false, s.replyForgiven("503 5.5.1 Bad sequence of commands (MAIL required before DATA)")
		case len(s.rcpts) == 0:
			return false, s.replyForgiven("554 5.5.1 No valid recipients")
		case s.bdat:
			return false, s.reply("503 5.5.1 Bad sequence of commands (DATA in a BDAT transaction)")
		}
		if a := s.hook(MomentData, Event{Recipients: s.rcpts}); a.Reply != "" || a.Close {
			return false, s.answer(a)
		}
		s.setMoment(MomentData)
		s.expect = replyData
		return s.pass("DATA")
	case verbBDAT:
		return s.chunk(arg, line)
	case verbRSET:
		if arg != "" {
			return false, s.reply("501 5.5.4 Syntax: RSET takes no parameters")
		}
		s.resetTx()
		s.forgive = 0
		return s.pass("RSET")
	case verbNOOP:
		return s.pass("NOOP")
	case verbQUIT:
		if arg != "" {
			return false, s.reply("501 5.5.4 Syntax: QUIT takes no parameters")
		}
		s.settle(s.lineOff)
		s.expect = replyQuit
		return s.pass("QUIT")
	case verbVRFY, verbEXPN, verbHELP:
		return false, s.reply("502 5.5.1 Command not implemented")
	case verbSTARTTLS:
		return s.startTLS(arg)
	case verbAUTH:
		return false, s.auth(arg)
	}
	if maybeBDAT(line) {
		s.srv.protocolError(s, "bad_bdat", line)
		return false, s.abort("500 5.5.2 Syntax error; a BDAT chunk may follow, closing", EndProtocol, "bad_bdat")
	}
	return false, s.reply("500 5.5.2 Syntax error, command unrecognized")
}

// pass hands the library the canonical line made of parts. pending is
// always drained before the next command is read, so one buffer per
// session serves every command.
func (s *session) pass(parts ...string) (bool, error) {
	s.cmdBuf = s.cmdBuf[:0]
	for _, p := range parts {
		s.cmdBuf = append(s.cmdBuf, p...)
	}
	s.cmdBuf = append(s.cmdBuf, '\r', '\n')
	s.pending = s.cmdBuf
	return true, nil
}

// mail handles MAIL FROM. Whatever refuses it leaves the RCPT, DATA and
// BDAT a pipelining client sent behind it (RFC 2920) to be answered 503 or
// 554 without counting towards MaxErrors.
func (s *session) mail(arg, line string) (bool, error) {
	s.settle(s.lineOff)
	if s.inTx {
		return false, s.reply("503 5.5.1 Nested MAIL command")
	}
	s.forgive = s.srv.opts.MaxRecipients + 2
	path, params, ok := parsePath(arg, "FROM:")
	if ok && path != "" && !mailbox.Valid(path) {
		ok = false
	}
	switch {
	case !ok:
		s.srv.protocolError(s, "bad_address", line)
		return false, s.reply("501 5.1.7 Bad sender address syntax")
	case s.srv.opts.RequireTLS && !s.tls:
		return false, s.reply("530 5.7.0 Must issue a STARTTLS command first")
	case s.srv.opts.RequireAuth && !s.authed:
		return false, s.reply("530 5.7.0 Authentication required")
	}
	size, perr := mailParams(params)
	switch {
	case perr != "":
		return false, s.reply(string(perr))
	case size > int64(s.srv.opts.MaxSize):
		s.srv.protocolError(s, "message_too_big", line)
		return false, s.reply("552 5.3.4 Message size exceeds fixed maximum message size")
	}
	if a := s.hook(MomentMail, Event{Address: Normalize(path)}); a.Reply != "" || a.Close {
		return false, s.answer(a)
	}
	s.setMoment(MomentMail)
	s.expect = replyMail
	return s.pass("MAIL FROM:<", path, ">")
}

// rcpt handles RCPT TO.
func (s *session) rcpt(arg, line string) (bool, error) {
	if !s.inTx {
		return false, s.replyForgiven("503 5.5.1 Bad sequence of commands (MAIL required before RCPT)")
	}
	path, params, ok := parsePath(arg, "TO:")
	if ok && path != "" && !mailbox.Valid(path) {
		ok = false
	}
	key := Normalize(path)
	switch {
	case !ok:
		s.srv.protocolError(s, "bad_address", line)
		return false, s.reply("501 5.1.3 Bad recipient address syntax")
	case key == "":
		return false, s.reply("501 5.1.3 Null recipient <> not allowed")
	}
	if perr := rcptParams(params); perr != "" {
		return false, s.reply(string(perr))
	}
	switch {
	case contains(s.rcpts, key):
		return false, s.reply("250 2.1.5 Ok (duplicate recipient, counted once)")
	case len(s.rcpts) >= s.srv.opts.MaxRecipients:
		return false, s.reply("452 4.5.3 Too many recipients")
	}
	if a := s.hook(MomentRcpt, Event{Address: key}); a.Reply != "" || a.Close {
		return false, s.answer(a)
	}
	s.setMoment(MomentRcpt)
	s.rcptWanted = key
	s.expect = replyRcpt
	return s.pass("RCPT TO:<", path, ">")
}

// chunk handles BDAT (RFC 3030). The chunk's bytes follow the command
// line at once, so they are read whatever the answer: a chunk left unread
// would run as commands. The message goes to the library as a DATA with an
// empty body once BDAT LAST has arrived, so it is counted, and its reply
// is the final one, exactly as for DATA.
func (s *session) chunk(arg, line string) (bool, error) {
	n, last, ok := parseBDAT(arg)
	if !ok {
		s.srv.protocolError(s, "bad_bdat", line)
		return false, s.abort("501 5.5.4 Syntax: BDAT size [LAST]; the chunk cannot be skipped, closing", EndProtocol, "bad_bdat")
	}
	refuse := ""
	switch {
	case !s.inTx:
		refuse = "503 5.5.1 Bad sequence of commands (MAIL required before BDAT)"
	case len(s.rcpts) == 0:
		refuse = "554 5.5.1 No valid recipients"
	case !s.bdat:
		if a := s.hook(MomentData, Event{Recipients: s.rcpts}); a.Close {
			return false, s.answer(a)
		} else if a.Reply != "" {
			refuse = a.Reply
		}
	}
	if refuse != "" {
		if err := s.takeChunk(n, false); err != nil {
			return false, err
		}
		if !s.inTx {
			return false, s.replyForgiven(refuse)
		}
		// RFC 3030 2: an error reply to BDAT fails the transaction; the
		// client starts the next one with MAIL, which must not be nested.
		s.resetTx()
		s.needReset = true
		if err := s.replyForgiven(refuse); err != nil {
			return false, err
		}
		if err := s.finalReply(); err != nil {
			return false, err
		}
		return true, nil
	}
	if !s.bdat {
		s.bdat = true
		s.startData()
		s.inData = false // the guard reads the chunks itself
		s.setMoment(MomentDataStreaming)
		if a := s.hook(MomentDataStreaming, Event{Recipients: s.rcpts}); a.Reply != "" || a.Close {
			return false, s.abort(a.Reply, EndCut, a.Fault)
		}
	}
	if err := s.takeChunk(n, true); err != nil {
		return false, err
	}
	if s.oversize {
		// Refused at once, and the transaction with it (RFC 3030 says the
		// client sends no more chunks after an error reply).
		s.srv.metrics.transaction("rejected")
		s.resetTx()
		s.needReset = true
		s.setMoment(MomentGreeting)
		if err := s.reply(s.outcome.Reply); err != nil {
			return false, err
		}
		if err := s.finalReply(); err != nil {
			return false, err
		}
		return true, nil
	}
	if !last {
		return false, s.reply("250 2.0.0 " + strconv.FormatInt(n, 10) + " octets received")
	}
	s.msgSize = s.size
	s.expect = replyBdatData
	s.pending = dataCmd
	return true, s.bodyEnd()
}

// takeChunk reads n bytes of a BDAT chunk; keep: they are the message's.
func (s *session) takeChunk(n int64, keep bool) error {
	for n > 0 {
		if s.rpos == s.rend {
			if err := s.fill(s.elapsed() + s.srv.opts.IdleTimeout); err != nil {
				if keep {
					s.srv.metrics.transaction("aborted")
				}
				if err = s.fail(err); err == nil {
					err = closedError{"chunk cut short"}
				}
				return err
			}
		}
		k := int(min(int64(s.rend-s.rpos), n))
		b := s.rbuf[s.rpos : s.rpos+k]
		s.rpos += k
		n -= int64(k)
		if !keep || s.oversize {
			continue
		}
		if s.size+k > s.srv.opts.MaxSize {
			s.oversize = true
			s.srv.protocolError(s, "message_too_big", "")
			s.outcome = Action{Reply: "552 5.3.4 Message size exceeds fixed maximum message size"}
			continue
		}
		s.size += k
		s.keepHeader(b)
	}
	return nil
}

// replyForgiven writes a 503 or 554 owed to a command a pipelining client
// sent behind a refused MAIL (or RCPTs all refused): up to a transaction's
// worth of them do not count towards MaxErrors.
func (s *session) replyForgiven(line string) error {
	if s.forgive > 0 {
		s.forgive--
		return s.replyCounted([]byte(line), false)
	}
	return s.reply(line)
}

// answer applies a hook's action to a command instead of the library.
func (s *session) answer(a Action) error {
	if a.Close {
		return s.abort(a.Reply, EndCut, a.Fault)
	}
	return s.reply(a.Reply)
}

// nextData validates the DATA body as it streams. Only <CR><LF>.<CR><LF>
// ends it; a bare CR or LF anywhere (the SMTP smuggling variants) or a NUL
// ends the session instead, before the library could read a second
// message out of one.
//
// The library gets an empty body: just the final dot, once the guard has
// seen the real one. The guard, which must look at every byte anyway,
// measures the message and finds its Message-ID in the header it keeps,
// and the handler takes both from the session. The library would copy the
// body line by line (an allocation per line) into a buffer and then again
// behind its Received header, and hold whole messages of up to MaxSize in
// memory for every session: under load, a tenth of the server's CPU on
// small messages and most of it on large ones.
func (s *session) nextData() error {
	if !s.streamed {
		s.streamed = true
		if a := s.hook(MomentDataStreaming, Event{Recipients: s.rcpts}); a.Reply != "" || a.Close {
			return s.abort(a.Reply, EndCut, a.Fault)
		}
	}
	if s.rpos == s.rend {
		if err := s.fill(s.elapsed() + s.srv.opts.IdleTimeout); err != nil {
			s.srv.metrics.transaction("aborted")
			return s.fail(err)
		}
	}
	chunk := s.rbuf[s.rpos:s.rend]
	n, done, perr := s.scan(chunk)
	s.rpos += n
	if perr != nil {
		s.srv.metrics.transaction("aborted")
		return s.fail(perr)
	}
	body := chunk[:n]
	if !s.oversize && s.size+n > s.srv.opts.MaxSize+len(dataEnd) {
		s.oversize = true
		s.srv.protocolError(s, "message_too_big", "")
		s.outcome = Action{Reply: "552 5.3.4 Message size exceeds fixed maximum message size"}
	}
	if !s.oversize {
		s.size += n
		s.keepHeader(body)
	}
	if !done {
		return nil
	}
	// Stuffing dots are not the client's; nor is the final dot line.
	s.msgSize = s.size - len(dataEnd) - (s.dots - 1)
	s.pending = dataEnd
	s.inData = false
	s.expect = replyDataEnd
	return s.bodyEnd()
}

// bodyEnd is the end of a message's body (its final dot, or BDAT LAST):
// the hooks' say at MomentDataEnd, then the commit, unless the server is
// shutting down.
func (s *session) bodyEnd() error {
	s.messageID = messageID(s.header)
	s.setMoment(MomentDataEnd)
	if s.outcome.zero() {
		s.outcome = s.hook(MomentDataEnd, Event{})
		s.outcome.Delay = 0
		if s.outcome.Close {
			s.srv.metrics.transaction("aborted")
			return s.abort(s.outcome.Reply, EndCut, s.outcome.Fault)
		}
	}
	s.mu.Lock()
	stopping := s.shutdown
	s.committing = !stopping
	s.mu.Unlock()
	if stopping {
		s.srv.metrics.transaction("aborted")
		return s.abort("421 4.3.2 Service shutting down, message not accepted", EndShutdown, "shutdown")
	}
	return nil
}

// scan advances the DATA state machine over chunk. It returns how many
// bytes belong to the body (the final dot line included when done).
func (s *session) scan(chunk []byte) (n int, done bool, err error) {
	// The state lives in locals, and the bytes between two CRs are checked
	// by bytes.IndexByte (vectorised) rather than one by one: this runs
	// over every byte of every message.
	cr, firstDot, lineLen, dots := s.cr, s.firstDot, s.lineLen, s.dots
	defer func() { s.cr, s.firstDot, s.lineLen, s.dots = cr, firstDot, lineLen, dots }()
	for i := 0; i < len(chunk); {
		if cr {
			if chunk[i] != '\n' {
				return i, false, &protoError{"smuggling_bare_cr", "554 5.6.0 Bare <CR> in message data (possible SMTP smuggling), closing", true}
			}
			if firstDot && lineLen == 1 {
				return i + 1, true, nil
			}
			cr, firstDot, lineLen = false, false, 0
			i++
			continue
		}
		if lineLen == 0 && chunk[i] == '.' {
			firstDot = true
			dots++
		}
		// The run up to the next CR (or the end of the chunk) must hold
		// no LF and no NUL.
		end := len(chunk)
		if k := bytes.IndexByte(chunk[i:], '\r'); k >= 0 {
			end = i + k
		}
		run := chunk[i:end]
		lf, nul := bytes.IndexByte(run, '\n'), bytes.IndexByte(run, 0)
		switch {
		case lf >= 0 && (nul < 0 || lf < nul):
			return i + lf, false, &protoError{"smuggling_bare_lf", "554 5.6.0 Bare <LF> in message data (possible SMTP smuggling), closing", true}
		case nul >= 0:
			return i + nul, false, &protoError{"nul", "554 5.6.0 NUL in message data, closing", true}
		}
		lineLen += len(run)
		i = end
		if end < len(chunk) {
			cr = true
			i++
		}
	}
	return len(chunk), false, nil
}

// Write receives the library's replies, lets hooks act on them, and tracks
// the dialogue.
func (s *session) Write(p []byte) (int, error) {
	b := p
	if len(s.wpart) > 0 || !bytes.HasSuffix(b, crlf) {
		s.wpart = append(s.wpart, b...)
		if !bytes.HasSuffix(s.wpart, crlf) {
			return len(p), nil
		}
		b, s.wpart = s.wpart, nil
	}
	line := b[:len(b)-2]
	code := replyCode(line)
	var err error
	switch s.expect {
	case replyGreeting:
		if s.handshaking { // the implicit TLS listener
			if err := s.handshake(); err != nil {
				return len(p), err
			}
		}
		if a := s.hook(MomentConnect, Event{}); a.Reply != "" || a.Close {
			return len(p), s.abort(a.Reply, EndCut, a.Fault)
		}
		err = s.replyBytes(line)
		s.setMoment(MomentGreeting)
	case replyInternal:
		return len(p), nil
	case replyHelo:
		if code == 250 && s.ehlo {
			line = s.ehloReply(line)
		}
		err = s.replyBytes(line)
	case replyMail:
		if code == 250 {
			s.inTx = true
			s.forgive = 0
			s.openTxn()
		}
		err = s.replyBytes(line)
	case replyRcpt:
		if code == 250 {
			s.rcpts = append(s.rcpts, s.rcptWanted)
			if t := s.cur(); t != nil {
				t.rcpts = s.rcpts
			}
		}
		err = s.replyBytes(line)
	case replyData:
		if code == 354 {
			s.startData()
		}
		err = s.replyBytes(line)
		if code == 354 {
			s.setMoment(MomentDataStreaming)
		}
	case replyBdatData:
		if code == 354 {
			// The library takes the BDAT message as a DATA with an empty
			// body: the 354 is not the client's, the final dot is next.
			s.pending = dataEnd
			s.expect = replyDataEnd
			return len(p), nil
		}
		err = s.endData(line, code)
	case replyDataEnd:
		err = s.endData(line, code)
	default:
		err = s.replyBytes(line)
	}
	s.expect = replyOther
	if err != nil {
		return len(p), err
	}
	return len(p), nil
}

// headerLimit bounds the header section the guard keeps to find the
// Message-ID in: a header that never ends must not hold a session's
// memory without bound. A Message-ID header that starts past it is not
// seen, and the message counts as one without an id.
const headerLimit = 64 << 10

// keepHeader appends what of body belongs to the message's header section
// (everything before the first empty line) to s.header, up to headerLimit.
func (s *session) keepHeader(body []byte) {
	if s.inBody {
		return
	}
	from := max(len(s.header)-3, 0)
	full := false
	if room := headerLimit - len(s.header); len(body) >= room {
		body, full = body[:room], true
	}
	s.header = append(s.header, body...)
	if bytes.HasPrefix(s.header, crlf) {
		s.header, s.inBody = s.header[:0], true // no header at all
		return
	}
	if i := bytes.Index(s.header[from:], []byte("\r\n\r\n")); i >= 0 {
		s.header, s.inBody = s.header[:from+i+2], true
		return
	}
	if full {
		// Past the limit: keep the whole lines, look no further.
		s.inBody = true
		if i := bytes.LastIndex(s.header, crlf); i >= 0 {
			s.header = s.header[:i+2]
		} else {
			s.header = s.header[:0]
		}
	}
}

func (s *session) startData() {
	s.inData, s.streamed = true, false
	s.lineLen, s.cr, s.firstDot = 0, false, false
	s.size, s.dots, s.oversize = 0, 0, false
	s.header, s.inBody = s.header[:0], false
	s.outcome, s.messageID, s.msgSize = Action{}, "", 0
}

// endData answers the final dot: the guard's own verdict when it had one,
// otherwise the library's 250 after the handler counted the message.
func (s *session) endData(line []byte, code int) error {
	defer func() {
		s.mu.Lock()
		s.committing = false
		stopping := s.shutdown
		s.mu.Unlock()
		if stopping {
			s.abort("421 4.3.2 Service shutting down, closing transmission channel", EndShutdown, "shutdown")
		}
	}()
	ev := Event{Recipients: s.rcpts, MessageID: s.messageID}
	s.resetTx()
	if code != 250 {
		if s.outcome.Reply != "" {
			line = []byte(s.outcome.Reply)
			code = replyCode(line)
		}
		if code >= 500 {
			s.srv.metrics.transaction("rejected")
		} else {
			s.srv.metrics.transaction("deferred")
		}
		s.needReset = true // the library keeps the old envelope after a failed DATA
		s.setMoment(MomentGreeting)
		err := s.replyBytes(line)
		if err == nil {
			err = s.finalReply()
		}
		return err
	}
	s.setMoment(MomentCommitted)
	a := s.hook(MomentCommitted, ev)
	if a.Close {
		s.mu.Lock()
		s.messages++
		s.mu.Unlock()
		return s.abort("", EndCut, a.Fault)
	}
	err := s.replyBytes(line)
	if err == nil {
		err = s.finalReply()
	}
	s.mu.Lock()
	s.messages++
	s.mu.Unlock()
	s.setMoment(MomentAcked)
	ev.Messages = s.messages
	if a := s.hook(MomentAcked, ev); a.Reply != "" || a.Close {
		return s.abort(a.Reply, EndCut, a.Fault)
	}
	return err
}

// ehloReply is the EHLO reply the guard stands behind: the library's first
// line (its greeting of the client), then exactly the extensions the guard
// implements. The library's own list says SIZE 0 and nothing else.
func (s *session) ehloReply(lib []byte) []byte {
	first := lib
	if i := bytes.Index(lib, crlf); i >= 0 {
		first = lib[:i]
	}
	o := &s.srv.opts
	b := make([]byte, 0, len(first)+160)
	b = append(b, "250-"...)
	if len(first) > 4 {
		b = append(b, first[4:]...)
	}
	b = append(b, "\r\n250-PIPELINING\r\n250-SIZE "...)
	b = strconv.AppendInt(b, int64(o.MaxSize), 10)
	b = append(b, "\r\n250-8BITMIME\r\n250-SMTPUTF8\r\n250-DSN\r\n250-CHUNKING\r\n"...)
	if s.srv.tls != nil && !o.DisableSTARTTLS && !s.tls {
		b = append(b, "250-STARTTLS\r\n"...)
	}
	if !o.RequireTLS || s.tls {
		b = append(b, "250-AUTH "+authMechanisms+"\r\n"...)
	}
	return append(b, "250 ENHANCEDSTATUSCODES"...)
}

// replyCode is the three-digit code a reply line starts with, or 0.
func replyCode[T string | []byte](line T) int {
	if len(line) < 3 {
		return 0
	}
	c := 0
	for i := range 3 {
		d := line[i]
		if d < '0' || d > '9' {
			return 0
		}
		c = 10*c + int(d-'0')
	}
	return c
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
