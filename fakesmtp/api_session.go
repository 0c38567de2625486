// Connections of the HTTP port as sessions. Each gets a session id from
// the SMTP sessions' counter at its first send request and shows in
// Sessions() with its remote address, so the harness finds the sender
// process that holds it exactly as for SMTP. A send request is in flight
// from its headers until the next request on the same connection; a
// connection that ends with one in flight reports what it leaves in doubt
// (docs/providers.md).

package fakesmtp

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// apiState is the provider APIs' share of a Server.
type apiState struct {
	mu      sync.Mutex
	conns   map[*apiConn]struct{} // open connections of the HTTP port
	closing bool
	wg      sync.WaitGroup // one per admitted connection, until it has reported its end

	offset atomic.Int64 // how far the fake's clock runs ahead, in ns (AdvanceClock)
	idem   idemStore
}

// apiListener hands the HTTP server connections it can follow.
type apiListener struct {
	net.Listener
	srv *Server
}

// Accept implements net.Listener.
func (l apiListener) Accept() (net.Conn, error) {
	for {
		raw, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if c := l.srv.admitAPI(raw); c != nil {
			return c, nil
		}
	}
}

type apiConnKey struct{}

// newHTTPServer serves Handler on the HTTP port, following every
// connection (ConnState) and ending requests when the server closes
// (BaseContext).
func (srv *Server) newHTTPServer() *http.Server {
	return &http.Server{
		Handler:           srv.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       srv.opts.IdleTimeout,
		ErrorLog:          slog.NewLogLogger(srv.log.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return srv.ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			if ac, ok := c.(*apiConn); ok {
				return context.WithValue(ctx, apiConnKey{}, ac)
			}
			return ctx
		},
		ConnState: func(c net.Conn, st http.ConnState) {
			ac, ok := c.(*apiConn)
			if !ok {
				return
			}
			switch st {
			case http.StateActive:
				ac.settle() // a further request: the client could read the last answer
			case http.StateIdle:
				ac.idle()
			case http.StateClosed:
				ac.end(EndClient, "")
			}
		},
	}
}

// admitAPI follows a new connection of the HTTP port, or refuses it when
// the server is closing.
func (srv *Server) admitAPI(raw net.Conn) *apiConn {
	a := &srv.api
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.closing {
		raw.Close()
		return nil
	}
	c := &apiConn{Conn: raw, srv: srv, remote: raw.RemoteAddr().String()}
	if a.conns == nil {
		a.conns = map[*apiConn]struct{}{}
	}
	a.conns[c] = struct{}{}
	a.wg.Add(1)
	return c
}

// apiConnOf is the connection a request came on: one of the server's own,
// or, for a Handler mounted elsewhere, a stand-in that lives as long as
// the request.
func (srv *Server) apiConnOf(r *http.Request) *apiConn {
	if c, ok := r.Context().Value(apiConnKey{}).(*apiConn); ok {
		return c
	}
	c := &apiConn{srv: srv, remote: r.RemoteAddr, detached: true}
	srv.api.mu.Lock()
	if srv.api.conns == nil {
		srv.api.conns = map[*apiConn]struct{}{}
	}
	srv.api.conns[c] = struct{}{}
	srv.api.mu.Unlock()
	return c
}

func (srv *Server) dropAPI(c *apiConn) {
	srv.api.mu.Lock()
	delete(srv.api.conns, c)
	srv.api.mu.Unlock()
	if !c.detached {
		srv.api.wg.Done()
	}
}

// closeAPI ends what Shutdown left open (requests still being served) and
// waits until every connection has reported its end.
func (srv *Server) closeAPI() {
	srv.api.mu.Lock()
	srv.api.closing = true
	srv.api.mu.Unlock()
	srv.httpSrv.Close()
	srv.api.wg.Wait()
}

// apiSessions reports the connections that have made a send request.
func (srv *Server) apiSessions() []SessionInfo {
	srv.api.mu.Lock()
	list := make([]*apiConn, 0, len(srv.api.conns))
	for c := range srv.api.conns {
		list = append(list, c)
	}
	srv.api.mu.Unlock()
	var infos []SessionInfo
	for _, c := range list {
		c.mu.Lock()
		if c.id != 0 && !c.ended {
			infos = append(infos, SessionInfo{ID: c.id, Moment: c.moment, Since: c.since, Remote: c.remote,
				Messages: c.messages, Transport: TransportHTTP, Provider: c.provider})
		}
		c.mu.Unlock()
	}
	return infos
}

// apiConn is one connection of the HTTP port. net/http serves its
// requests one at a time, in one goroutine; mu guards what Sessions and
// the end of the connection read from others.
type apiConn struct {
	net.Conn
	srv      *Server
	remote   string
	detached bool // no connection to follow: see apiConnOf

	connected bool // MomentConnect was consulted (serving goroutine only)

	mu       sync.Mutex
	id       uint64 // session id from the first send request on; 0 before
	provider string
	moment   Moment
	since    time.Time
	messages int
	// flight holds the messages of the last send request until the next
	// request on the connection; acked: its answer was written in full.
	flight []*apiMessage
	acked  bool
	idleAt time.Time // when the connection went idle, for telling the idle timeout
	ending Ending
	fault  string
	ended  bool
}

// CloseWrite lets net/http half-close before closing, as on a TCPConn.
func (c *apiConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// request registers a send request: the connection becomes a session.
func (c *apiConn) request(provider string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.id == 0 {
		c.id = c.srv.nextID.Add(1)
	}
	c.provider = provider
	c.moment, c.since = MomentConnect, time.Now()
}

func (c *apiConn) setMoment(m Moment) {
	c.mu.Lock()
	c.moment, c.since = m, time.Now()
	c.mu.Unlock()
}

// inFlight makes msgs the request in flight on the connection.
func (c *apiConn) inFlight(msgs []*apiMessage) {
	c.mu.Lock()
	c.flight, c.acked = msgs, false
	c.mu.Unlock()
}

// answered records that an answer was written in full.
func (c *apiConn) answered(counted bool) {
	c.mu.Lock()
	c.acked = true
	c.moment, c.since = MomentGreeting, time.Now()
	if counted {
		c.moment = MomentAcked
	}
	c.mu.Unlock()
}

func (c *apiConn) delivered(n int) {
	c.mu.Lock()
	c.messages += n
	c.mu.Unlock()
}

func (c *apiConn) messageCount() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.messages
}

func (c *apiConn) settle() {
	c.mu.Lock()
	c.flight, c.idleAt = nil, time.Time{}
	c.mu.Unlock()
}

func (c *apiConn) idle() {
	c.mu.Lock()
	c.idleAt = time.Now()
	c.mu.Unlock()
}

// cut ends the connection without an answer (or, graceful, after one):
// the handler takes it over and closes it, with SO_LINGER 0 unless
// graceful so the client sees a reset, and the end is reported at once.
func (c *apiConn) cut(w http.ResponseWriter, e Ending, fault string, graceful bool) {
	c.mu.Lock()
	if c.ending == "" {
		c.ending, c.fault = e, fault
	}
	c.mu.Unlock()
	conn, _, err := http.NewResponseController(w).Hijack()
	if err == nil {
		raw := conn
		if ac, ok := conn.(*apiConn); ok {
			raw = ac.Conn
		}
		if tc, ok := raw.(*net.TCPConn); ok && !graceful {
			tc.SetLinger(0)
		}
		conn.Close()
	}
	c.end(e, fault)
	if err != nil {
		// A writer that cannot be taken over (HTTP/2, a wrapper): abort
		// the answer, or net/http would write an empty 200 for it.
		panic(http.ErrAbortHandler)
	}
}

// endDetached ends a stand-in connection with its request. Whether the
// client read an answer written in full cannot be known without the
// connection, so only cut or unanswered requests are reported.
func (c *apiConn) endDetached() {
	c.mu.Lock()
	if c.acked {
		c.flight = nil
	}
	c.mu.Unlock()
	c.end(EndClient, "")
}

// end reports, once, the messages still in flight when the connection
// ended: delivered or not, answered or not, and how it ended. The first
// word on the ending stands; a connection that sat idle for the idle
// timeout was ended by the server.
func (c *apiConn) end(e Ending, fault string) {
	c.mu.Lock()
	if c.ended {
		c.mu.Unlock()
		return
	}
	c.ended = true
	if c.ending == "" {
		switch {
		case c.srv.ctx.Err() != nil:
			c.ending = EndShutdown
		case e == EndClient && !c.idleAt.IsZero() && time.Since(c.idleAt) >= c.srv.opts.IdleTimeout:
			c.ending = EndTimeout
		default:
			c.ending, c.fault = e, fault
		}
	}
	flight, acked, id, provider, ending, why := c.flight, c.acked, c.id, c.provider, c.ending, c.fault
	c.flight, c.moment, c.since = nil, MomentClosed, time.Now()
	c.mu.Unlock()
	if cb := c.srv.opts.OnInDoubt; cb != nil && id != 0 {
		if ending != EndCut {
			why = ""
		}
		now := time.Now()
		for _, m := range flight {
			if m.txn == 0 || len(m.accepted) == 0 {
				continue // never under way, or every recipient refused
			}
			cb(InDoubt{Time: now, Session: id, Txn: m.txn, Transport: TransportHTTP, Provider: provider,
				Recipients: m.accepted, MessageID: m.messageID, Delivered: m.delivered, Acked: acked, Ended: ending, Fault: why})
		}
	}
	c.srv.dropAPI(c)
}

// down reports whether an outage holds the SMTP port down: the provider
// APIs answer 503 meanwhile, the control API stays up.
func (l *listener) down() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.resume != nil && !l.closed
}

// Clock is the fake providers' clock: the real time, plus however far
// AdvanceClock moved it. Idempotency keys expire by it.
func (srv *Server) Clock() time.Time {
	return time.Now().Add(time.Duration(srv.api.offset.Load()))
}

// AdvanceClock moves the fake providers' clock d ahead, so a retry after
// an idempotency window can be tested without waiting a day, and returns
// the new time. Counting and SMTP keep the real time.
func (srv *Server) AdvanceClock(d time.Duration) time.Time {
	srv.api.offset.Add(int64(d))
	return srv.Clock()
}
