// Protocol moments and hooks: the points of an SMTP session where faults are
// injected and where a harness can kill a sender at exactly the worst instant.

package fakesmtp

import (
	"context"
	"fmt"
	"time"
)

// Moment is where a session stands in the SMTP dialogue.
type Moment int32

// The moments of a session, in dialogue order.
const (
	// MomentConnect: a connection was accepted; the greeting is about to be written.
	MomentConnect Moment = iota
	// MomentGreeting: the greeting was written; no transaction is open.
	MomentGreeting
	// MomentMail: MAIL FROM was received.
	MomentMail
	// MomentRcpt: RCPT TO was received.
	MomentRcpt
	// MomentData: the DATA command was received, 354 not yet written.
	MomentData
	// MomentDataStreaming: 354 was written and the body is streaming.
	MomentDataStreaming
	// MomentDataEnd: the final dot arrived; nothing is counted yet.
	MomentDataEnd
	// MomentCommitted: the message was counted and its 250 is not yet written.
	// A sender that dies now has a copy delivered that it cannot know about.
	MomentCommitted
	// MomentAcked: the 250 after DATA was written.
	MomentAcked
	// MomentReply: any reply is about to be written (for latency).
	MomentReply
	// MomentClosed: the session is over.
	MomentClosed
)

var momentNames = [...]string{
	"connect", "greeting", "mail", "rcpt", "data", "data-streaming",
	"data-end", "committed", "acked", "reply", "closed",
}

func (m Moment) String() string {
	if m >= 0 && int(m) < len(momentNames) {
		return momentNames[m]
	}
	return "unknown"
}

// MarshalText writes the moment's name.
func (m Moment) MarshalText() ([]byte, error) { return []byte(m.String()), nil }

// UnmarshalText reads a moment's name, so that what MarshalText wrote (in
// GET /api/v1/sessions, say) decodes back.
func (m *Moment) UnmarshalText(b []byte) error {
	for i, name := range momentNames {
		if name == string(b) {
			*m = Moment(i)
			return nil
		}
	}
	return fmt.Errorf("fakesmtp: unknown protocol moment %q", b)
}

// Event is what a hook sees of a session at a moment.
type Event struct {
	Moment  Moment
	Session uint64 // session id, unique within one server
	Time    time.Time
	// Address is the normalised argument of MAIL or RCPT at those moments.
	Address string
	// Recipients of the transaction (normalised), at MomentDataEnd and later.
	Recipients []string
	// MessageID of the message at MomentCommitted and MomentAcked.
	MessageID string
	// Messages accepted on this session before this event.
	Messages int
	// Reply is the reply about to be written, at MomentReply.
	Reply string
}

// Action is what a hook asks the session to do. The zero Action proceeds.
type Action struct {
	// Delay holds the session before it proceeds (the client waits).
	Delay time.Duration
	// Reply, when set, is written instead of what the session would have
	// answered ("451 4.7.1 Try again later"). At MomentDataEnd it rejects the
	// message: nothing is counted. It is ignored at MomentCommitted, where the
	// message already counts.
	Reply string
	// Close cuts the connection, after Reply if one is set. At MomentCommitted
	// it drops the 250: the message counts, the client never learns it.
	Close bool
	// Fault names the fault that chose this action, for metrics and reports.
	Fault string
}

func (a Action) zero() bool { return a.Delay == 0 && a.Reply == "" && !a.Close }

// Hook is consulted by every session at each moment. It runs in the session's
// goroutine, so the client waits while it runs; ctx ends when the session or
// the server does.
type Hook interface {
	At(ctx context.Context, ev *Event) Action
}

// HookFunc adapts a function to a Hook.
type HookFunc func(ctx context.Context, ev *Event) Action

// At calls f.
func (f HookFunc) At(ctx context.Context, ev *Event) Action { return f(ctx, ev) }

// MomentSet is a set of moments.
type MomentSet uint32

// Moments returns the set of ms.
func Moments(ms ...Moment) MomentSet {
	var s MomentSet
	for _, m := range ms {
		s |= 1 << uint(m)
	}
	return s
}

// AllMoments holds every moment.
const AllMoments = MomentSet(1<<(MomentClosed+1) - 1)

// Has reports whether m is in s.
func (s MomentSet) Has(m Moment) bool { return s&(1<<uint(m)) != 0 }

// MomentHook is a Hook that says at which moments it may act. A session
// consults it only there, and at a moment no hook wants it builds no
// Event and reads no clock: the hot path of a server whose hooks only
// care about, say, the commit point costs nothing at every other reply.
// Moments is called at every moment, so it must be cheap; it may change
// its answer over time (a FaultSet whose faults are replaced does).
type MomentHook interface {
	Hook
	Moments() MomentSet
}

// HookAt returns a MomentHook that calls h at the moments in ms only.
func HookAt(ms MomentSet, h Hook) MomentHook { return momentHook{h, ms} }

type momentHook struct {
	Hook
	ms MomentSet
}

func (h momentHook) Moments() MomentSet { return h.ms }

// momentsOf is the set of moments at which h may act.
func momentsOf(h Hook) MomentSet {
	if mh, ok := h.(MomentHook); ok {
		return mh.Moments()
	}
	return AllMoments
}

// SessionInfo is the protocol moment of one open connection.
type SessionInfo struct {
	ID       uint64    `json:"id"`
	Moment   Moment    `json:"moment"`
	Since    time.Time `json:"since"`
	Remote   string    `json:"remote"`
	Messages int       `json:"messages"`
	// Transport is smtp, or http for a connection to the provider APIs
	// (whose server end is then Server.HTTPAddr), and Provider the API of
	// its last send request.
	Transport string `json:"transport"`
	Provider  string `json:"provider,omitempty"`
}
