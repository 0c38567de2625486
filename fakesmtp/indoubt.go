// In-doubt transactions, observed at the server: a transaction is in flight
// from its MAIL until the client sends the next MAIL or QUIT after the
// transaction's final reply. A session that ends with one in flight leaves
// a transaction whose outcome its client cannot know (docs/verdicts.md).

package fakesmtp

import "time"

// Ending says how a session ended, as the server saw it.
type Ending string

// The ways a session ends.
const (
	// EndClient: the client closed or reset the connection (it exited, was
	// killed, crashed, or gave up waiting).
	EndClient Ending = "client"
	// EndCut: a hook cut the connection (a fault such as drop-after-data,
	// or a harness kill point); InDoubt.Fault names the fault, if any.
	EndCut Ending = "cut"
	// EndTimeout: the server's idle or session timeout closed it.
	EndTimeout Ending = "timeout"
	// EndShutdown: the server closed it, shutting down or for an outage.
	EndShutdown Ending = "shutdown"
	// EndProtocol: the guard closed it after a protocol error.
	EndProtocol Ending = "protocol"
)

// InDoubt is a transaction that was in flight when its session ended.
type InDoubt struct {
	Time      time.Time `json:"time"` // when the session ended
	Session   uint64    `json:"session"`
	Txn       uint64    `json:"txn"`
	Transport string    `json:"transport"`
	Provider  string    `json:"provider,omitempty"` // over HTTP: the provider API
	// Recipients accepted in the transaction, normalised and distinct.
	Recipients []string `json:"recipients"`
	MessageID  string   `json:"message_id,omitempty"`
	// Delivered: the server counted it (one copy per recipient).
	Delivered bool `json:"delivered"`
	// Acked: its final reply was written out in full before the session
	// ended (the client may still not have read it).
	Acked bool `json:"acked"`
	// Ended says how the session ended, and Fault which fault cut it.
	Ended Ending `json:"ended"`
	Fault string `json:"fault,omitempty"`
	// User is who the session had authenticated as (AUTH) at the
	// transaction's MAIL, "" if nobody.
	User string `json:"user,omitempty"`
}

// txn is one transaction of a session, from its accepted MAIL on.
type txn struct {
	id        uint64
	user      string
	rcpts     []string
	messageID string
	delivered bool
	// final: its last reply (to the end of DATA) was written; mark is
	// then how many client bytes had arrived by that moment: a MAIL or
	// QUIT that starts past it was sent after the reply.
	final bool
	mark  int64
}

// openTxn starts the transaction of an accepted MAIL.
func (s *session) openTxn() {
	s.flight = append(s.flight, txn{id: s.srv.nextTxn.Add(1), user: s.user})
}

// cur is the transaction under way, or nil.
func (s *session) cur() *txn {
	if n := len(s.flight); n > 0 && !s.flight[n-1].final {
		return &s.flight[n-1]
	}
	return nil
}

// settle ends the flight of every transaction whose final reply was
// written before the command starting at stream offset off arrived: the
// client sent MAIL or QUIT after it could read that reply. Transactions
// that never got a final reply (abandoned with RSET) end here too.
func (s *session) settle(off int64) {
	keep := s.flight[:0]
	for i, t := range s.flight {
		open := !t.final && s.inTx && i == len(s.flight)-1 // a nested MAIL: still under way
		if open || t.final && off < t.mark {
			keep = append(keep, t)
		}
	}
	clear(s.flight[len(keep):])
	s.flight = keep
}

// finalReply writes out the replies held so far, the final one last, and
// marks the transaction under way as answered: its final reply is written.
func (s *session) finalReply() error {
	if err := s.flush(); err != nil {
		return err
	}
	if t := s.cur(); t != nil {
		t.final, t.mark = true, s.inOff+int64(s.rend)
	}
	return nil
}

// ended reports the transactions still in flight when the session ends.
// A transaction with no accepted recipient leaves nothing in doubt.
func (s *session) ended() {
	cb := s.srv.opts.OnInDoubt
	if cb == nil || len(s.flight) == 0 {
		return
	}
	now := time.Now()
	for _, t := range s.flight {
		if len(t.rcpts) == 0 {
			continue
		}
		cb(InDoubt{Time: now, Session: s.id, Txn: t.id, Transport: TransportSMTP, Recipients: t.rcpts,
			MessageID: t.messageID, Delivered: t.delivered, Acked: t.final, Ended: s.ending, Fault: s.endFault, User: t.user})
	}
	s.flight = nil
}
