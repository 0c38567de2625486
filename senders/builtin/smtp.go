// smtp.go: the SMTP code every built-in sender shares: dialling with a
// context, a deadline on every command, message building, classifying
// failures, and waiting with backoff.
package builtin

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/smtp"
	"net/textproto"
	"strings"
	"time"
)

// helloName is what the senders say in EHLO.
const helloName = "sender.onecopy.test"

// session is one SMTP connection. Each command gets its own deadline of
// timeout, since net/smtp has none: a server that stops answering fails the
// command instead of hanging the sender.
type session struct {
	conn    net.Conn
	client  *smtp.Client
	timeout time.Duration
	// dotTimeout, when set, replaces timeout for the reply to the final dot.
	dotTimeout time.Duration
	// broken: the connection can no longer be trusted (dropped, timed out,
	// 421, or interrupted mid-command). Close it and dial again.
	broken bool
}

// stepDot names the wait for the reply to the final dot.
const stepDot = "end of DATA"

// stepError is a failed SMTP step, naming the command that failed.
type stepError struct {
	step string // e.g. "RCPT TO:<bob@x.test>"
	// forRecipient: the step is about one recipient (RCPT, DATA and the
	// message), so a 5xx there bounces that recipient, not the campaign.
	forRecipient bool
	err          error
}

func (e *stepError) Error() string { return "SMTP " + e.step + ": " + e.err.Error() }
func (e *stepError) Unwrap() error { return e.err }

// failure classes, after RFC 5321 §4.2.1 and the ledger's needs.
type class int

const (
	// classConn: no reply we can trust (dial failure, timeout, dropped
	// connection, 421 closing). Reconnect; if DATA was under way the message
	// may have been delivered.
	classConn class = iota
	// classTemp: a 4xx other than 421. The session is fine; try later.
	classTemp
	// classPerm: a 5xx. Trying again will not help.
	classPerm
)

// classify sorts a non-nil error from dial or send.
func classify(err error) class {
	var te *textproto.Error
	if errors.As(err, &te) {
		switch {
		case te.Code == 421:
			return classConn
		case te.Code >= 400 && te.Code < 500:
			return classTemp
		case te.Code >= 500 && te.Code < 600:
			return classPerm
		}
	}
	return classConn
}

// forRecipient reports whether err failed a recipient-specific step.
func forRecipient(err error) bool {
	var se *stepError
	return errors.As(err, &se) && se.forRecipient
}

// dial connects to addr and completes the greeting and EHLO.
func dial(ctx context.Context, addr string, timeout time.Duration) (*session, error) {
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, &stepError{step: "connect to " + addr, err: err}
	}
	s := &session{conn: conn, timeout: timeout}
	host, _, _ := net.SplitHostPort(addr)
	err = s.watch(ctx, func() error {
		if err := s.step(ctx, "greeting", false, func() (err error) {
			s.client, err = smtp.NewClient(conn, host)
			return err
		}); err != nil {
			return err
		}
		// Noop forces net/smtp's lazy EHLO now, so its failure is named.
		return s.step(ctx, "EHLO", false, func() error {
			if err := s.client.Hello(helloName); err != nil {
				return err
			}
			return s.client.Noop()
		})
	})
	if err != nil {
		conn.Close()
		return nil, err
	}
	return s, nil
}

// watch runs fn with the connection aborted (its deadline set in the past)
// as soon as ctx is done.
func (s *session) watch(ctx context.Context, fn func() error) error {
	stop := context.AfterFunc(ctx, func() { s.conn.SetDeadline(time.Unix(1, 0)) })
	err := fn()
	if !stop() {
		// The abort ran or is running: the deadline is no longer ours.
		s.broken = true
	}
	return err
}

// step runs one command under a fresh deadline and wraps its error.
func (s *session) step(ctx context.Context, name string, forRcpt bool, fn func() error) error {
	return s.stepWithin(ctx, name, forRcpt, s.timeout, fn)
}

// stepWithin is step with a deadline of timeout.
func (s *session) stepWithin(ctx context.Context, name string, forRcpt bool, timeout time.Duration, fn func() error) error {
	err := s.conn.SetDeadline(time.Now().Add(timeout))
	if err == nil {
		// Checked after setting the deadline, so a cancellation racing with
		// it is never lost (see watch).
		err = context.Cause(ctx)
	}
	if err == nil {
		err = fn()
		if cause := context.Cause(ctx); err != nil && cause != nil {
			// The abort in watch caused this: say so.
			err = fmt.Errorf("%w, command aborted: %w", cause, err)
		}
	}
	if err == nil {
		return nil
	}
	if classify(err) == classConn {
		s.broken = true
	}
	return &stepError{step: name, forRecipient: forRcpt, err: err}
}

// send runs one transaction (MAIL, RCPT, DATA) delivering msg to one
// recipient. On a 4xx or 5xx it resets the session for the next message.
// Cancelling ctx aborts the transaction where it stands.
func (s *session) send(ctx context.Context, from, to string, msg []byte) error {
	refused, err := s.sendBatch(ctx, from, []string{to}, msg)
	if err == nil {
		err = refused[0]
	}
	return err
}

// sendBatch runs one transaction delivering msg to every address of to that
// the server accepts at RCPT. refused[i] is the 4xx or 5xx reply to to[i]'s
// RCPT (nil when accepted, or not reached because err ended the
// transaction first). err is what failed the transaction as a whole: MAIL,
// DATA, the message, the reply to the final dot, or a connection-class
// failure at any step. With err nil, the accepted recipients got the message,
// and when none was accepted no DATA was sent. After a refusal the session
// is reset for the next message. Cancelling ctx aborts it where it stands.
func (s *session) sendBatch(ctx context.Context, from string, to []string, msg []byte) (refused []error, err error) {
	refused = make([]error, len(to))
	err = s.watch(ctx, func() error {
		accepted, err := s.transaction(ctx, from, to, msg, refused)
		if (err != nil || accepted == 0) && !s.broken {
			if rerr := s.step(ctx, "RSET", false, s.client.Reset); rerr != nil {
				s.broken = true
				if err == nil {
					return rerr
				}
				return fmt.Errorf("%w (and the RSET after it failed: %v)", err, rerr)
			}
		}
		return err
	})
	return refused, err
}

// transaction runs MAIL, one RCPT per address (a 4xx or 5xx refuses that
// address alone, into refused) and, when any was accepted, DATA. It returns
// how many RCPTs were accepted.
func (s *session) transaction(ctx context.Context, from string, to []string, msg []byte, refused []error) (accepted int, err error) {
	if err := s.step(ctx, "MAIL FROM:<"+from+">", false, func() error { return s.client.Mail(from) }); err != nil {
		return 0, err
	}
	for i, rcpt := range to {
		err := s.step(ctx, "RCPT TO:<"+rcpt+">", true, func() error { return s.client.Rcpt(rcpt) })
		if err != nil && classify(err) == classConn {
			return accepted, err
		}
		if refused[i] = err; err == nil {
			accepted++
		}
	}
	if accepted == 0 {
		return 0, nil
	}
	var w io.WriteCloser
	if err := s.step(ctx, "DATA", true, func() (err error) { w, err = s.client.Data(); return err }); err != nil {
		return accepted, err
	}
	if err := s.step(ctx, "message body", true, func() error { _, err := w.Write(msg); return err }); err != nil {
		return accepted, err
	}
	// The reply to the final dot: the only acknowledgement SMTP has.
	return accepted, s.stepWithin(ctx, stepDot, true, cmp.Or(s.dotTimeout, s.timeout), w.Close)
}

// close says QUIT when the session is healthy, then closes the connection.
func (s *session) close() {
	if !s.broken {
		s.conn.SetDeadline(time.Now().Add(s.timeout))
		s.client.Quit()
	}
	s.conn.Close()
}

// buildMessage returns a short text/plain message with CRLF line endings,
// addressed to to, or to undisclosed recipients when to is "".
func buildMessage(from, to, campaign, messageID string, date time.Time) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: <%s>\r\n", from)
	if to == "" {
		// One message for a whole chunk: the envelope names each recipient.
		b.WriteString("To: undisclosed-recipients:;\r\n")
		to = "you"
	} else {
		fmt.Fprintf(&b, "To: <%s>\r\n", to)
	}
	fmt.Fprintf(&b, "Subject: %s\r\n", mime.QEncoding.Encode("utf-8", "onecopy campaign "+campaign))
	fmt.Fprintf(&b, "Date: %s\r\n", date.Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: %s\r\n", messageID)
	b.WriteString("MIME-Version: 1.0\r\n")
	b.WriteString("Content-Type: text/plain; charset=utf-8\r\n")
	b.WriteString("\r\n")
	fmt.Fprintf(&b, "Hello,\r\n\r\nThis is campaign %s for %s.\r\nYou should get it once.\r\n", campaign, to)
	return []byte(b.String())
}

// randomMessageID returns a fresh Message-ID: every send is a new message.
func randomMessageID(sender string) string {
	return "<" + rand.Text() + "@onecopy." + sender + ">"
}

// ledgerMessageID returns the Message-ID fixed per (campaign, normalised
// address), so every resend of one recipient's message is recognisably the
// same message.
func ledgerMessageID(campaign, addr string) string {
	sum := sha256.Sum256([]byte(campaign + "\x00" + addr))
	return "<" + hex.EncodeToString(sum[:])[:32] + "@onecopy.ledger>"
}

// backoff returns base doubled failures-1 times, capped at limit.
func backoff(base, limit time.Duration, failures int) time.Duration {
	d := base
	for i := 1; i < failures && d < limit; i++ {
		d *= 2
	}
	return min(d, limit)
}

// sleep waits d, or returns the cause of ctx ending first.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-t.C:
		return nil
	}
}
