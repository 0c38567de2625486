// Package fakesmtp is a fake SMTP server that counts every accepted copy per
// recipient, injects SMTP faults and knows the protocol moment of every
// connection. It is built on github.com/mhale/smtpd, with a guard around each
// connection that makes the count impossible to fool. Use it like
// httptest.NewServer: Start, Addr, Close.
package fakesmtp

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mhale/smtpd"
	"github.com/prometheus/client_golang/prometheus"
)

// Options configure a Server. The zero value is ready to use.
type Options struct {
	// Addr is the SMTP listen address; default "127.0.0.1:0".
	Addr string
	// HTTPAddr, when set, serves the counts API and /metrics there
	// ("127.0.0.1:0" picks a port).
	HTTPAddr string
	// Hostname is announced in the greeting; default "onecopy.test".
	Hostname string
	// MaxSize is the largest message accepted, in bytes; default 10 MiB.
	MaxSize int
	// MaxRecipients per transaction; default and ceiling 100.
	MaxRecipients int
	// MaxConnections open at once; past it a connection gets 421. Default 1024.
	MaxConnections int
	// MaxLineLength of a command line with its CRLF; default 1000.
	MaxLineLength int
	// MaxErrors is how many error replies a session may provoke before it is
	// closed; default 20.
	MaxErrors int
	// IdleTimeout is how long a command line or a silence inside DATA may
	// take; default 60s.
	IdleTimeout time.Duration
	// SessionTimeout caps a whole session; default 30m.
	SessionTimeout time.Duration
	// WriteTimeout is how long a client may take to read a reply; default 30s.
	WriteTimeout time.Duration
	// Journal, when set, is a file every counted copy is appended to (and
	// synced) before its 250, and replayed from at Start.
	Journal string
	// Hooks are consulted at every protocol moment, in order.
	Hooks []Hook
	// OnDelivery is called for every counted message, before its 250 is
	// written. It must not block.
	OnDelivery func(Delivery)
	// OnFault is called for every fault a hook injected, before the client
	// sees it. It must not block.
	OnFault func(FaultEvent)
	// OnInDoubt is called for every transaction still in flight when its
	// session ended (see InDoubt), after the session's last OnDelivery
	// and OnFault. It must not block.
	OnInDoubt func(InDoubt)
	// Registry receives the server's metrics; nil makes a private one.
	// /metrics serves it.
	Registry *prometheus.Registry
	// Metrics, when set, are pre-built metrics (NewMetrics) the server
	// updates instead of registering its own on Registry, so servers
	// started one after another can share one registry. The per-server
	// histogram onecopy_smtp_copies_per_recipient is then not exported.
	Metrics *Metrics
	// Logger receives protocol errors; nil discards.
	Logger *slog.Logger

	// TLSAddr, when set, is a second SMTP listener that speaks TLS from
	// the first byte (implicit TLS, like port 465); "127.0.0.1:0" picks a
	// port. Default: none.
	TLSAddr string
	// TLSCertFile and TLSKeyFile are a PEM certificate (with its chain)
	// and its key, for STARTTLS and TLSAddr. Default: a throwaway CA and a
	// certificate it signs for 127.0.0.1, ::1, localhost, Hostname and the
	// listen hosts, made at Start; TLSCA returns the CA.
	TLSCertFile, TLSKeyFile string
	// TLSCAFile, when set, is a file Start writes TLSCA's PEM to, for
	// senders to trust (the harness passes it as ONECOPY_SMTP_TLS_CA).
	TLSCAFile string
	// DisableSTARTTLS neither advertises nor accepts STARTTLS, for a
	// sender that would upgrade whenever it can and cannot be given the
	// CA. Default: offered.
	DisableSTARTTLS bool
	// RequireTLS refuses MAIL and AUTH on a session that has not done
	// STARTTLS (530 5.7.0), and advertises AUTH only after it. Default:
	// plaintext allowed.
	RequireTLS bool
	// Users, when set, are the only credentials AUTH accepts (user name to
	// password). Default: AUTH accepts any user and password.
	Users map[string]string
	// RequireAuth refuses MAIL before a successful AUTH (530 5.7.0).
	// Default: AUTH is optional.
	RequireAuth bool
	// APIToken, when set, is required as "Authorization: Bearer TOKEN" by
	// the HTTP API's requests that change state (PUT /api/v1/faults,
	// DELETE /api/v1/recipients, POST /api/v1/outage, POST /api/v1/clock).
	// It must be set when HTTPAddr is not a loopback address: Start
	// refuses otherwise.
	APIToken string
	// APIKey, when set, is the key the fake provider APIs on the HTTP port
	// require, where each provider carries it (see docs/providers.md);
	// "" accepts any credentials.
	APIKey string
	// IdempotencyWindow is how long a provider API with idempotency keys
	// (Resend) remembers one; default 24h, as Resend documents.
	IdempotencyWindow time.Duration
}

// Transports a copy can arrive by.
const (
	TransportSMTP = "smtp"
	TransportHTTP = "http" // a provider's send API (Delivery.Provider says which)
)

// Delivery is one counted message.
type Delivery struct {
	Time    time.Time `json:"time"`
	Session uint64    `json:"session"`
	// Txn numbers the transaction, unique within one server; an InDoubt
	// names the same number.
	Txn        uint64   `json:"txn"`
	Transport  string   `json:"transport"`
	Recipients []string `json:"recipients"` // normalised and distinct
	MessageID  string   `json:"message_id,omitempty"`
	// Size is the message in bytes as the client meant it: dot stuffing
	// undone, without the final dot (the sum of the chunks, for BDAT).
	Size int `json:"size"`
	// User is who the session authenticated as (AUTH), "" if it did not.
	User string `json:"user,omitempty"`
	// TLS: the message came over TLS (STARTTLS or implicit TLS).
	TLS bool `json:"tls,omitempty"`
	// Provider is the API a copy came through over HTTP: ses, sendgrid,
	// mailgun, postmark or resend.
	Provider string `json:"provider,omitempty"`
}

// FaultEvent is one injected fault. Whether it left a transaction in
// doubt is known only when its session ends: see InDoubt.
type FaultEvent struct {
	Time    time.Time `json:"time"`
	Kind    string    `json:"kind"`
	Moment  Moment    `json:"moment"`
	Session uint64    `json:"session"`
	// Reply is what the fault answered instead ("550 5.1.1 ..."), "" when
	// it only delayed or cut the session.
	Reply string `json:"reply,omitempty"`
	// Address is the recipient (at RCPT) or sender (at MAIL) it hit.
	Address string `json:"address,omitempty"`
	// Delay is how long it held the session.
	Delay time.Duration `json:"delay,omitempty"`
	// Cut: it closed the connection.
	Cut bool `json:"cut,omitempty"`
}

func (o *Options) setDefaults() error {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	defDur := func(v *time.Duration, d time.Duration) {
		if *v == 0 {
			*v = d
		}
	}
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.Hostname == "" {
		o.Hostname = "onecopy.test"
	}
	def(&o.MaxSize, 10<<20)
	def(&o.MaxRecipients, 100)
	def(&o.MaxConnections, 1024)
	def(&o.MaxLineLength, 1000)
	def(&o.MaxErrors, 20)
	defDur(&o.IdleTimeout, 60*time.Second)
	defDur(&o.SessionTimeout, 30*time.Minute)
	defDur(&o.WriteTimeout, 30*time.Second)
	defDur(&o.IdempotencyWindow, 24*time.Hour)
	switch {
	case o.MaxRecipients < 0 || o.MaxRecipients > 100:
		return fmt.Errorf("MaxRecipients %d: want 1 to 100 (the SMTP library's own ceiling)", o.MaxRecipients)
	case o.MaxLineLength < 64 || o.MaxLineLength > readBufSize:
		return fmt.Errorf("MaxLineLength %d: want 64 to %d", o.MaxLineLength, readBufSize)
	case o.MaxSize < 0 || o.MaxConnections < 0 || o.MaxErrors < 0:
		return errors.New("MaxSize, MaxConnections and MaxErrors must not be negative")
	}
	if o.Registry == nil {
		o.Registry = prometheus.NewRegistry()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// Server is a running fake SMTP server.
type Server struct {
	opts    Options
	ctx     context.Context
	cancel  context.CancelFunc
	oracle  *Oracle
	metrics *Metrics
	journal *journal
	log     *slog.Logger
	ln      *listener
	tlsLn   *listener // the implicit TLS listener, or nil
	tls     *tlsMaterial
	lib     *smtpd.Server
	httpSrv *http.Server
	httpLn  net.Listener
	api     apiState // the provider APIs on the HTTP port (api.go)
	wait    waitHub  // GET /api/v1/wait (http_wait.go)

	nextID   atomic.Uint64
	nextTxn  atomic.Uint64
	mu       sync.Mutex
	sessions map[uint64]*session
	closing  bool
	wg       sync.WaitGroup
	serving  sync.WaitGroup // the library's Serve loops
	closeErr error
	once     sync.Once
}

// Start listens on opts.Addr and serves until Close, or until ctx ends.
func Start(ctx context.Context, opts Options) (*Server, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("fakesmtp: %w", err)
	}
	srv := &Server{
		opts:     opts,
		oracle:   NewOracle(),
		log:      opts.Logger,
		sessions: make(map[uint64]*session),
	}
	srv.wait.start = time.Now()
	srv.ctx, srv.cancel = context.WithCancel(context.WithoutCancel(ctx))
	var err error
	if srv.metrics = opts.Metrics; srv.metrics == nil {
		if srv.metrics, err = NewMetrics(opts.Registry); err == nil {
			err = opts.Registry.Register(copiesHistogram{srv.oracle})
		}
		if err != nil {
			return nil, fmt.Errorf("fakesmtp: registering metrics: %w", err)
		}
	}
	if srv.tls, err = loadTLS(&opts); err != nil {
		return nil, fmt.Errorf("fakesmtp: %w", err)
	}
	if opts.Journal != "" {
		if srv.journal, err = openJournal(opts.Journal, srv.oracle); err != nil {
			return nil, fmt.Errorf("fakesmtp: %w", err)
		}
	}
	var lc net.ListenConfig
	var undo []io.Closer
	fail := func(err error) (*Server, error) {
		for _, c := range undo {
			c.Close()
		}
		srv.closeJournal()
		return nil, fmt.Errorf("fakesmtp: %w", err)
	}
	inner, err := lc.Listen(ctx, "tcp", opts.Addr)
	if err != nil {
		return fail(fmt.Errorf("listening for SMTP on %s: %w (choose another --smtp address)", opts.Addr, err))
	}
	undo = append(undo, inner)
	srv.ln = &listener{inner: inner, addr: inner.Addr(), srv: srv}
	if opts.TLSAddr != "" {
		tin, err := lc.Listen(ctx, "tcp", opts.TLSAddr)
		if err != nil {
			return fail(fmt.Errorf("listening for SMTP over TLS on %s: %w (choose another TLS address)", opts.TLSAddr, err))
		}
		undo = append(undo, tin)
		srv.tlsLn = &listener{inner: tin, addr: tin.Addr(), srv: srv, tls: true}
	}
	if opts.HTTPAddr != "" {
		if srv.httpLn, err = lc.Listen(ctx, "tcp", opts.HTTPAddr); err != nil {
			return fail(fmt.Errorf("listening for HTTP on %s: %w (choose another --http address)", opts.HTTPAddr, err))
		}
		undo = append(undo, srv.httpLn)
		if ip := srv.httpLn.Addr().(*net.TCPAddr).IP; !ip.IsLoopback() && opts.APIToken == "" {
			return fail(fmt.Errorf("the HTTP API on %s is reachable from other hosts, and anyone could reset the counts or inject faults: give it a token (Options.APIToken; onecopy fakesmtp --token or ONECOPY_API_TOKEN), or bind it to 127.0.0.1", srv.httpLn.Addr()))
		}
		srv.httpSrv = srv.newHTTPServer()
		go srv.httpSrv.Serve(apiListener{srv.httpLn, srv})
	}
	srv.lib = &smtpd.Server{
		Appname:     "onecopy",
		Hostname:    opts.Hostname,
		Handler:     srv.handle,
		HandlerRcpt: func(net.Addr, string, string) bool { return true },
		// The guard enforces sizes and deadlines; the library's own would
		// desynchronise it.
		MaxSize: 0,
		Timeout: 0,
	}
	for _, l := range srv.listeners() {
		srv.serving.Add(1)
		go func() {
			defer srv.serving.Done()
			srv.lib.Serve(l)
		}()
	}
	stop := context.AfterFunc(ctx, func() { srv.Close() })
	go func() { <-srv.ctx.Done(); stop() }()
	return srv, nil
}

// Addr is the SMTP address the server listens on (host:port).
func (srv *Server) Addr() string { return srv.ln.Addr().String() }

// TLSAddr is the implicit TLS listener's address, or "" when
// Options.TLSAddr was empty.
func (srv *Server) TLSAddr() string {
	if srv.tlsLn == nil {
		return ""
	}
	return srv.tlsLn.Addr().String()
}

// TLSCA is the PEM certificate clients must trust to verify the server's:
// the throwaway CA made at Start, or the last certificate of
// Options.TLSCertFile.
func (srv *Server) TLSCA() []byte { return bytes.Clone(srv.tls.caPEM) }

// listeners are the SMTP listeners: the plain one, then the TLS one.
func (srv *Server) listeners() []*listener {
	if srv.tlsLn == nil {
		return []*listener{srv.ln}
	}
	return []*listener{srv.ln, srv.tlsLn}
}

// HTTPAddr is where the API listens, or "" when Options.HTTPAddr was empty.
func (srv *Server) HTTPAddr() string {
	if srv.httpLn == nil {
		return ""
	}
	return srv.httpLn.Addr().String()
}

// SessionsAccepted is how many sessions the server has accepted since it
// started, refused ones aside.
func (srv *Server) SessionsAccepted() uint64 { return srv.nextID.Load() }

// Oracle is the server's count.
func (srv *Server) Oracle() *Oracle { return srv.oracle }

// Reset forgets every count, as DELETE /api/v1/recipients does. With a
// journal the reset is journaled (and synced) first, so the counts do not
// come back at a restart.
func (srv *Server) Reset() error {
	if srv.journal == nil {
		srv.oracle.Reset()
		return nil
	}
	if err := srv.journal.append(journalLine{T: time.Now().UnixNano(), Reset: true}, srv.oracle); err != nil {
		return fmt.Errorf("fakesmtp: resetting the counts: %w", err)
	}
	return nil
}

// Snapshot copies the current counts.
func (srv *Server) Snapshot() Snapshot { return srv.oracle.Snapshot() }

func (srv *Server) openList() []*session {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	list := make([]*session, 0, len(srv.sessions))
	for _, s := range srv.sessions {
		list = append(list, s)
	}
	return list
}

// Sessions reports the protocol moment of every open connection.
func (srv *Server) Sessions() []SessionInfo {
	list := srv.openList()
	infos := make([]SessionInfo, 0, len(list))
	for _, s := range list {
		in := s.info()
		in.Transport = TransportSMTP
		infos = append(infos, in)
	}
	infos = append(infos, srv.apiSessions()...)
	slices.SortFunc(infos, func(a, b SessionInfo) int { return int(a.ID - b.ID) })
	return infos
}

// Close stops accepting, tells idle sessions 421, lets a message that is
// being committed get its reply, waits for every session to end, and
// closes the journal. It is safe to call more than once.
func (srv *Server) Close() error {
	srv.once.Do(func() {
		srv.mu.Lock()
		srv.closing = true
		srv.mu.Unlock()
		list := srv.openList()
		for _, l := range srv.listeners() {
			l.Close()
		}
		srv.cancel()
		for _, s := range list {
			s.stop()
		}
		srv.serving.Wait()
		srv.wg.Wait()
		if srv.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			srv.httpSrv.Shutdown(ctx)
			cancel()
			srv.closeAPI()
		}
		srv.closeErr = srv.closeJournal()
	})
	return srv.closeErr
}

func (srv *Server) closeJournal() error {
	if srv.journal == nil {
		return nil
	}
	return srv.journal.Close()
}

// admit registers a new connection, or refuses it when the server is full
// or closing.
func (srv *Server) admit(c net.Conn, overTLS bool) (*session, bool) {
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if srv.closing {
		c.Close()
		return nil, false
	}
	if len(srv.sessions) >= srv.opts.MaxConnections {
		srv.metrics.protocolErrors.WithLabelValues("too_many_connections").Inc()
		c.SetWriteDeadline(time.Now().Add(time.Second))
		c.Write([]byte("421 4.7.0 Too many connections, try again later\r\n"))
		c.Close()
		return nil, false
	}
	if overTLS {
		c = tls.Server(c, srv.tls.config)
	}
	s := newSession(srv, c, srv.nextID.Add(1))
	s.tls, s.handshaking = overTLS, overTLS
	srv.sessions[s.id] = s
	srv.wg.Add(1)
	srv.metrics.sessions.Inc()
	return s, true
}

func (srv *Server) sessionDone(s *session) {
	srv.mu.Lock()
	srv.wait.sessionEnded() // under the lock that counts it open: see waitState
	delete(srv.sessions, s.id)
	srv.mu.Unlock()
	srv.oracle.changed.notify()
	srv.metrics.sessions.Dec()
	srv.wg.Done()
}

func (srv *Server) faultFired(s *session, ev *Event, a Action) {
	if a.Fault == "" {
		return
	}
	srv.metrics.fault(a.Fault)
	if srv.opts.OnFault != nil {
		srv.opts.OnFault(FaultEvent{Time: ev.Time, Kind: a.Fault, Moment: ev.Moment, Session: s.id,
			Reply: a.Reply, Address: ev.Address, Delay: a.Delay, Cut: a.Close})
	}
}

func (srv *Server) protocolError(s *session, kind, detail string) {
	srv.metrics.protocolErrors.WithLabelValues(kind).Inc()
	srv.log.Warn("smtp protocol error", "session", s.id, "remote", s.remote, "kind", kind, "detail", detail)
}

var errRejected = errors.New("rejected by the connection guard")

// handle is the library's message handler: the one place a copy is counted.
func (srv *Server) handle(remote net.Addr, _ string, to []string, _ []byte) error {
	sa, ok := remote.(sessionAddr)
	if !ok {
		return errors.New("fakesmtp: message from an unguarded connection")
	}
	s := sa.s
	if s.outcome.Reply != "" {
		return errRejected
	}
	// The guard's recipients are the ones counted; the library's must be
	// the same, or the two read the dialogue differently and nothing they
	// say can be trusted.
	rcpts := s.rcpts
	if len(to) != len(rcpts) {
		return srv.desync(s, to)
	}
	for i, a := range to {
		if Normalize(a) != rcpts[i] {
			return srv.desync(s, to)
		}
	}
	// The library saw an empty body: the guard measured the message and
	// found its Message-ID as it streamed (see session.nextData).
	size := s.msgSize
	now := s.clock()
	if srv.journal != nil {
		if err := srv.journal.append(journalLine{T: now.UnixNano(), ID: s.messageID, Rcpt: rcpts}, srv.oracle); err != nil {
			srv.log.Error("journal write failed; message refused with 451", "err", err)
			s.outcome = Action{Reply: "451 4.3.0 Local error: journal write failed"}
			return err
		}
	} else {
		srv.oracle.Record(now, rcpts, s.messageID)
	}
	// Counted here, with the copies: every counted message is an accepted
	// transaction, and nothing else is.
	srv.metrics.transaction("accepted")
	srv.metrics.copies.Add(float64(len(rcpts)))
	srv.metrics.size.Observe(float64(size))
	var id uint64
	if t := s.cur(); t != nil {
		t.delivered, t.messageID, id = true, s.messageID, t.id
	}
	if srv.opts.OnDelivery != nil {
		srv.opts.OnDelivery(Delivery{Time: now, Session: s.id, Txn: id, Transport: TransportSMTP, Recipients: rcpts,
			MessageID: s.messageID, Size: size, User: s.user, TLS: s.tls})
	}
	return nil
}

// desync refuses a message whose recipients the library and the guard
// disagree on: a bug, never the client's doing, reported loudly.
func (srv *Server) desync(s *session, to []string) error {
	srv.protocolError(s, "desync", fmt.Sprintf("library %q, guard %q", to, s.rcpts))
	s.outcome = Action{Reply: "451 4.3.0 Local error: the server lost track of the dialogue"}
	return errRejected
}

// messageID returns the Message-ID header of a message, unfolded, or "".
func messageID(data []byte) string {
	for len(data) > 0 {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			i = len(data) - 1
		}
		line := bytes.TrimRight(data[:i+1], "\r\n")
		data = data[i+1:]
		if len(line) == 0 {
			return "" // end of the header
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok || !equalFold(string(bytes.TrimSpace(name)), "Message-ID") {
			continue
		}
		v := string(bytes.TrimSpace(value))
		for len(data) > 0 && (data[0] == ' ' || data[0] == '\t') {
			j := bytes.IndexByte(data, '\n')
			if j < 0 {
				j = len(data) - 1
			}
			v += string(bytes.TrimSpace(data[:j+1]))
			data = data[j+1:]
		}
		return v
	}
	return ""
}

// listener hands the library guarded connections. It replaces the
// library's busy loop on temporary accept errors with a backoff, and can
// go down for an outage and come back on the same address.
type listener struct {
	srv  *Server
	addr net.Addr
	tls  bool // implicit TLS: connections are TLS from the first byte

	mu     sync.Mutex
	inner  net.Listener
	resume chan struct{} // non-nil while an outage lasts
	closed bool
	timer  *time.Timer
}

func (l *listener) Addr() net.Addr { return l.addr }

func (l *listener) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
	}
	if l.resume != nil {
		close(l.resume)
		l.resume = nil
		return nil
	}
	return l.inner.Close()
}

func (l *listener) Accept() (net.Conn, error) {
	var backoff time.Duration
	for {
		l.mu.Lock()
		inner, resume, closed := l.inner, l.resume, l.closed
		l.mu.Unlock()
		switch {
		case closed:
			return nil, net.ErrClosed
		case resume != nil:
			<-resume
			continue
		}
		c, err := inner.Accept()
		if err != nil {
			// An outage closed inner; it may be over already, with a new
			// listener in its place (a short outage's comeBack can run
			// before this Accept returns): go on with whatever is there
			// now, never give up the port for it.
			l.mu.Lock()
			down := (l.resume != nil || l.inner != inner) && !l.closed
			l.mu.Unlock()
			if down {
				continue
			}
			if errors.Is(err, net.ErrClosed) || !temporary(err) {
				return nil, err
			}
			backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
			l.srv.log.Warn("accept failed; backing off", "err", err, "backoff", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-l.srv.ctx.Done():
				t.Stop()
				return nil, net.ErrClosed
			}
			continue
		}
		backoff = 0
		if s, ok := l.srv.admit(c, l.tls); ok {
			return s, nil
		}
	}
}

// Outage takes the SMTP port down for d: new connections are refused, open
// ones are told 421 and closed (a message being committed gets its reply
// first), and the counts stay as they are. The port comes back on the same
// address after d. An outage already under way is left alone.
func (srv *Server) Outage(d time.Duration) error {
	var errs []error
	started := false
	for _, l := range srv.listeners() {
		ok, err := l.takeDown(d)
		started = started || ok
		errs = append(errs, err)
	}
	if !started {
		return nil
	}
	for _, s := range srv.openList() {
		s.stop()
	}
	srv.log.Info("outage started", "for", d)
	return errors.Join(errs...)
}

// takeDown closes the listener for d, unless it is closed or already down.
func (l *listener) takeDown(d time.Duration) (bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.resume != nil {
		return false, nil
	}
	l.resume = make(chan struct{})
	err := l.inner.Close()
	l.timer = time.AfterFunc(d, func() { l.comeBack(d) })
	return true, err
}

func (l *listener) comeBack(d time.Duration) {
	var lc net.ListenConfig
	inner, err := lc.Listen(l.srv.ctx, "tcp", l.addr.String())
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed || l.resume == nil {
		if inner != nil {
			inner.Close()
		}
		return
	}
	if err != nil {
		// Someone took the port meanwhile: try again shortly.
		l.srv.log.Error("outage: port not back yet", "err", err)
		l.timer = time.AfterFunc(min(max(d, 10*time.Millisecond), 100*time.Millisecond), func() { l.comeBack(d) })
		return
	}
	l.inner = inner
	close(l.resume)
	l.resume = nil
	l.srv.log.Info("outage over")
}

func temporary(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) ||
		errors.Is(err, syscall.ECONNABORTED) || errors.Is(err, syscall.ENOBUFS)
}
