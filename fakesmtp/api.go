// The fake email provider APIs over HTTP: the send endpoints of Amazon SES,
// SendGrid, Mailgun, Postmark and Resend on the server's HTTP port, in each
// provider's wire format, counted by the same oracle as SMTP and run
// through the same hooks at the SMTP-analogous moments, so the fault
// catalog and the harness's kill points carry over unchanged. Each
// provider file (api_ses.go, ...) only reads its requests and writes its
// answers; the life of a request is serveSend's (docs/providers.md).

package fakesmtp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/mail"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// apiProvider is one provider's wire format.
type apiProvider interface {
	// name is Delivery.Provider: ses, sendgrid, mailgun, postmark, resend.
	name() string
	// authorized reports whether r carries key where the provider wants it.
	authorized(r *http.Request, key string) bool
	// parse reads a send request: its messages, or the provider's answer
	// to a malformed one.
	parse(r *http.Request, body []byte) (*apiSend, *apiResponse)
	// answer is the response to a request whose messages were each
	// accepted (counted, with a txn) or refused (err set).
	answer(s *apiSend) *apiResponse
	// fail is the provider's error answer of a kind.
	fail(f apiFailure) *apiResponse
}

// apiSend is one send request, as parsed.
type apiSend struct {
	msgs []*apiMessage
	// batch: the endpoint answers each message on its own (Postmark's
	// batch, Resend's permissive batch), so a refused message leaves the
	// others accepted. Otherwise one refusal refuses the whole request.
	batch bool
	// test: the provider's test mode (SendGrid's sandbox, Mailgun's
	// o:testmode, Postmark's POSTMARK_API_TEST token): validated and
	// answered like a send, never counted.
	test bool
	// idemKey is the Idempotency-Key of a provider that honours one.
	idemKey string
	// now is the fake's clock when the request was answered (for
	// timestamps in responses).
	now time.Time
}

// apiMessage is one message of a send request.
type apiMessage struct {
	rcpts     []string // normalised and distinct: to, cc, bcc
	messageID string   // the Message-ID header the sender set, else from the idempotency key
	size      int      // bytes of content the request carried for it
	label     string   // what the provider echoes of it in answers (Postmark's To)
	// fields names the request field of each address, where the provider
	// names fields in its errors (SendGrid).
	fields map[string]string

	// Set while the request is served.
	txn       uint64
	accepted  []string    // rcpts no recipient hook refused
	err       *apiFailure // why it was refused; nil when accepted
	delivered bool        // counted
}

// failKind classifies the answers that are not a send.
type failKind int

const (
	failInvalid        failKind = iota // a malformed request (detail says how)
	failAuth                           // the key is missing or wrong
	failTooLarge                       // the body is over the limit
	failThrottled                      // a 4xx from a hook: slow down (429)
	failUnavailable                    // a 421 or 4.3.x from a hook, or an outage (503)
	failRejected                       // a 5xx from a hook (addr: at that recipient)
	failInternal                       // counting failed (the journal): nothing sent
	failIdemInvalid                    // an Idempotency-Key of a bad length
	failIdemMismatch                   // a key reused with another payload
	failIdemConcurrent                 // a key whose first request is still in flight
	failNotFound                       // no such operation
)

// apiFailure is an answer other than a send.
type apiFailure struct {
	kind   failKind
	detail string      // the validation problem, or the SMTP reply a hook chose
	addr   string      // failRejected at a recipient: the normalised address
	field  string      // the request field at fault, where the provider names one
	code   string      // the provider's own error code, when its parser chose one
	index  int         // the message's position in its request
	msg    *apiMessage // the message refused, when one was
}

// retryAfter is what throttling answers ask clients to wait, in seconds.
const retryAfter = "1"

// apiResponse is an answer ready to write.
type apiResponse struct {
	status int
	header http.Header
	body   []byte
}

func jsonResponse(status int, v any) *apiResponse {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false) // "Bob <bob@x>" as the providers write it
	if err := enc.Encode(v); err != nil {
		panic("fakesmtp: encoding a provider answer: " + err.Error()) // our own types: cannot fail
	}
	return &apiResponse{status: status, header: http.Header{"Content-Type": {"application/json; charset=utf-8"}}, body: bytes.TrimSuffix(b.Bytes(), []byte("\n"))}
}

func xmlResponse(status int, v any) *apiResponse {
	b, err := xml.Marshal(v)
	if err != nil {
		panic("fakesmtp: encoding a provider answer: " + err.Error())
	}
	return &apiResponse{status: status, header: http.Header{"Content-Type": {"text/xml"}}, body: append([]byte(xml.Header), b...)}
}

// with sets a header of the answer and returns it.
func (a *apiResponse) with(key, value string) *apiResponse {
	if a.header == nil {
		a.header = http.Header{}
	}
	a.header.Set(key, value)
	return a
}

// apiMetrics are the provider APIs' own series. Their copies are the
// transport="http" series of onecopy_smtp_copies_total, made at the first
// one so a server that only speaks SMTP shows what it always did.
type apiMetrics struct {
	transactions *prometheus.CounterVec
	requests     *prometheus.CounterVec
}

func newAPIMetrics() apiMetrics {
	return apiMetrics{
		transactions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_api_transactions_total",
			Help: "Messages of provider API send requests whose body was read, by provider and result: accepted (counted), deferred (a 4xx answer), rejected (a 5xx-class refusal), aborted (the connection cut, or counting failed, before it counted), replayed (an idempotent retry answered from the first request).",
		}, []string{"provider", "result"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "onecopy_api_requests_total",
			Help: "Requests to the provider send APIs, by provider and answer: the HTTP status written, or reset when the connection was cut instead.",
		}, []string{"provider", "code"}),
	}
}

func (q *apiReq) transaction(result string, n int) {
	if n > 0 {
		q.srv.metrics.api.transactions.WithLabelValues(q.p.name(), result).Add(float64(n))
	}
}

func (q *apiReq) request(code string) {
	q.srv.metrics.api.requests.WithLabelValues(q.p.name(), code).Inc()
}

// mountAPI adds the providers' send endpoints to the HTTP API (the fake's
// clock is with the control API, http.go). Each provider answers under its
// own request paths, so its SDK works with its base URL set to the
// server's.
func (srv *Server) mountAPI(mux router) {
	send := func(p apiProvider) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) { srv.serveSend(p, w, r) }
	}
	ses, sesQuery := sesV2{}, sesV1{}
	mux.HandleFunc("POST /v2/email/outbound-emails", send(ses))
	mux.HandleFunc("POST /{$}", send(sesQuery))
	mux.HandleFunc("POST /v3/mail/send", send(sendGrid{}))
	mux.HandleFunc("POST /v3/{domain}/messages", send(mailgun{}))
	mux.HandleFunc("POST /v3/{domain}/messages.mime", send(mailgun{mime: true}))
	for _, path := range []string{"/email", "/email/batch", "/email/withTemplate", "/email/batchWithTemplates"} {
		mux.HandleFunc("POST "+path, send(postmark{path: path}))
	}
	mux.HandleFunc("POST /emails", send(resend{}))
	mux.HandleFunc("POST /emails/batch", send(resend{batch: true}))
}

// apiReq is one send request being served.
type apiReq struct {
	srv  *Server
	p    apiProvider
	c    *apiConn
	w    http.ResponseWriter
	r    *http.Request
	ctx  context.Context // ends when the client goes (once its body is read) or the server closes
	send *apiSend
	// closeAfter: answer with Connection: close (a hook's reply with Close).
	closeAfter bool
}

// serveSend is the life of every send request: the same steps, hooks and
// counting whatever the provider. The hooks run at the SMTP moments with
// the same Event shape: connect (first send request of a connection),
// mail (every request), data-streaming (headers read, body not yet),
// rcpt (each recipient of each message), data-end (body read, nothing
// counted), committed (counted, answer not written), reply (before the
// answer), acked (after it).
func (srv *Server) serveSend(p apiProvider, w http.ResponseWriter, r *http.Request) {
	q := &apiReq{srv: srv, p: p, w: w, r: r, ctx: r.Context()}
	q.c = srv.apiConnOf(r)
	if q.c.detached {
		defer q.c.endDetached()
	}
	q.c.request(p.name())
	if srv.ln.down() {
		q.respond(p.fail(apiFailure{kind: failUnavailable, detail: "the SMTP port is down for an outage"}), false)
		return
	}
	if !q.c.connected {
		q.c.connected = true // requests of one connection are served one at a time
		if q.refused(MomentConnect, Event{}) {
			return
		}
	}
	if key := srv.opts.APIKey; key != "" && !p.authorized(r, key) {
		q.respond(p.fail(apiFailure{kind: failAuth}), false)
		return
	}
	if q.refused(MomentMail, Event{}) {
		return
	}
	q.c.setMoment(MomentDataStreaming)
	if a := q.hook(MomentDataStreaming, Event{}); a.Reply != "" || a.Close {
		switch f, cut := q.translate(a); {
		case cut:
			q.cutMidBody(a.Fault)
			return
		case f != nil:
			q.respond(p.fail(*f), false)
			return
		}
	}
	// net/http bounds the headers, not the body: a client may take the
	// idle timeout to send it, as within DATA over SMTP.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Now().Add(srv.opts.IdleTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, srv.apiBodyLimit()))
	rc.SetReadDeadline(time.Time{})
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			q.respond(p.fail(apiFailure{kind: failTooLarge, detail: fmt.Sprintf("request body over %d bytes", tooBig.Limit)}), false)
			return
		}
		// The client went or stalled mid-body: nothing can count, and
		// there is nobody to answer.
		ending := EndClient
		if errors.Is(err, os.ErrDeadlineExceeded) {
			ending = EndTimeout
		}
		q.cut(ending, "", false, "")
		return
	}
	q.c.setMoment(MomentDataEnd)
	send, bad := p.parse(r, body)
	if bad != nil {
		q.respond(bad, false)
		return
	}
	send.now = srv.Clock()
	q.send = send
	q.c.inFlight(send.msgs)
	if send.test {
		q.respond(p.answer(send), false)
		return
	}
	if send.idemKey != "" {
		entry, verdict := srv.api.idem.begin(p.name(), send.idemKey, fingerprint(r, body), send.now, srv.opts.IdempotencyWindow)
		switch verdict {
		case idemReplay:
			q.c.inFlight(nil) // nothing of this request counts
			q.transaction("replayed", len(send.msgs))
			q.respond(entry.resp, false)
			return
		case idemMismatch:
			q.c.inFlight(nil)
			q.respond(p.fail(apiFailure{kind: failIdemMismatch}), false)
			return
		case idemConcurrent:
			q.c.inFlight(nil)
			q.respond(p.fail(apiFailure{kind: failIdemConcurrent}), false)
			return
		}
		var kept *apiResponse // what a retry with this key replays; nil frees the key
		defer func() { srv.api.idem.finish(p.name(), send.idemKey, entry, kept) }()
		q.serveMessages(&kept)
		return
	}
	q.serveMessages(nil)
}

// serveMessages decides, counts and answers the parsed messages. kept,
// when not nil, receives the answer of a request that counted something:
// what an idempotent retry gets instead of a second copy.
func (q *apiReq) serveMessages(kept **apiResponse) {
	srv, p, send := q.srv, q.p, q.send
	for _, m := range send.msgs {
		m.txn = srv.nextTxn.Add(1)
		m.accepted = m.rcpts
	}
	// Every recipient is asked, even after a refusal, as every RCPT of an
	// SMTP transaction is: greylisting learns a whole batch at once.
	var throttle *apiFailure
	q.c.setMoment(MomentRcpt)
	for i, m := range send.msgs {
		for _, addr := range m.rcpts {
			a := q.hook(MomentRcpt, Event{Address: addr})
			if a.Reply == "" && !a.Close {
				continue
			}
			f, cut := q.translate(a)
			switch {
			case cut:
				q.cut(EndCut, a.Fault, false, "aborted")
				return
			case f == nil:
			case f.kind == failRejected:
				m.accepted = without(m.accepted, addr)
				if m.err == nil {
					f.addr, f.index, f.msg = addr, i, m
					if m.fields != nil {
						f.field = m.fields[addr]
					}
					m.err = f
				}
			case throttle == nil:
				throttle = f
			}
		}
	}
	if throttle != nil {
		q.transaction("deferred", len(send.msgs))
		q.respond(p.fail(*throttle), false)
		return
	}
	if !send.batch {
		for _, m := range send.msgs {
			if m.err != nil {
				q.transaction("rejected", len(send.msgs))
				q.respond(p.fail(*m.err), false)
				return
			}
		}
	}
	var all []string
	for _, m := range send.msgs {
		if m.err == nil {
			all = append(all, m.accepted...)
		}
	}
	q.c.setMoment(MomentDataEnd)
	if a := q.hook(MomentDataEnd, Event{Recipients: all}); a.Reply != "" || a.Close {
		switch f, cut := q.translate(a); {
		case cut:
			q.cut(EndCut, a.Fault, false, "aborted")
			return
		case f != nil:
			result := "deferred"
			if f.kind == failRejected {
				result = "rejected"
			}
			q.transaction(result, len(send.msgs))
			q.respond(p.fail(*f), false)
			return
		}
	}
	delivered, failed := q.commit()
	refused := 0
	for _, m := range send.msgs {
		if m.err != nil {
			refused++
		}
	}
	q.transaction("rejected", refused-failed)
	var resp *apiResponse
	switch {
	case failed > 0 && !send.batch:
		resp = p.fail(apiFailure{kind: failInternal, detail: "counting failed: the journal could not be written"})
	default:
		resp = p.answer(send)
	}
	if delivered > 0 && kept != nil {
		*kept = resp // counted: a retry replays this, even if the client never reads it
	}
	if delivered == 0 {
		q.respond(resp, false)
		return
	}
	// The copies count; the answer is not written yet.
	q.c.setMoment(MomentCommitted)
	ev := Event{Recipients: all}
	if len(send.msgs) == 1 {
		ev.MessageID = send.msgs[0].messageID
	}
	a := q.hook(MomentCommitted, ev)
	if a.Close {
		q.c.delivered(delivered)
		q.cut(EndCut, a.Fault, false, "")
		return
	}
	if q.ctx.Err() != nil && srv.ctx.Err() == nil {
		// The client hung up while the answer was held (slow-ack).
		q.c.delivered(delivered)
		q.cut(EndClient, "", false, "")
		return
	}
	q.c.delivered(delivered)
	if !q.respond(resp, true) {
		return
	}
	ev.Messages = q.c.messageCount()
	if a := q.hook(MomentAcked, ev); a.Reply != "" || a.Close {
		q.cut(EndCut, a.Fault, true, "")
	}
}

// commit counts every message not refused: journaled first when there is
// a journal, then recorded, then reported. A journal failure refuses that
// message and the ones after it.
func (q *apiReq) commit() (delivered, failed int) {
	srv := q.srv
	now := time.Now()
	broken := false
	for i, m := range q.send.msgs {
		if m.err != nil {
			continue
		}
		switch {
		case broken:
		case srv.journal != nil:
			// Journaled and recorded under the journal's lock, in the
			// journal's order (a reset between two copies replays so).
			if err := srv.journal.append(journalLine{T: now.UnixNano(), ID: m.messageID, Rcpt: m.accepted}, srv.oracle); err != nil {
				srv.log.Error("journal write failed; provider API messages refused", "err", err)
				broken = true
			}
		default:
			srv.oracle.Record(now, m.accepted, m.messageID)
		}
		if broken {
			failed++
			m.err = &apiFailure{kind: failInternal, detail: "counting failed: the journal could not be written", index: i, msg: m}
			continue
		}
		m.delivered = true
		delivered++
		srv.metrics.copiesVec.WithLabelValues(TransportHTTP).Add(float64(len(m.accepted)))
		srv.metrics.size.Observe(float64(m.size))
		if srv.opts.OnDelivery != nil {
			srv.opts.OnDelivery(Delivery{Time: now, Session: q.c.id, Txn: m.txn, Transport: TransportHTTP, Provider: q.p.name(),
				Recipients: m.accepted, MessageID: m.messageID, Size: m.size})
		}
	}
	q.transaction("accepted", delivered)
	q.transaction("aborted", failed)
	return delivered, failed
}

// refused runs the hooks of a moment before the body is read; true when
// they answered (or cut) instead of letting the request go on.
func (q *apiReq) refused(m Moment, ev Event) bool {
	q.c.setMoment(m)
	a := q.hook(m, ev)
	if a.Reply == "" && !a.Close {
		return false
	}
	f, cut := q.translate(a)
	switch {
	case cut:
		q.cut(EndCut, a.Fault, false, "")
	case f != nil:
		q.respond(q.p.fail(*f), false)
	default:
		return false
	}
	return true
}

// translate turns a hook's SMTP-flavoured action into HTTP: a Close with
// no reply cuts the connection (cut); a 421 or a 4.3.x reply (the server's
// own trouble) is the provider's 503, any other 4xx its throttling answer,
// and a 5xx its refusal. A Close with a reply answers, then closes. A
// reply that refuses nothing (2xx, 3xx) lets the request go on (nil, false).
func (q *apiReq) translate(a Action) (f *apiFailure, cut bool) {
	code := replyCode(a.Reply)
	if code < 400 {
		return nil, a.Close
	}
	q.closeAfter = q.closeAfter || a.Close
	f = &apiFailure{detail: a.Reply}
	switch {
	case code >= 500:
		f.kind = failRejected
	case code == 421 || strings.HasPrefix(strings.TrimSpace(a.Reply[min(3, len(a.Reply)):]), "4.3."):
		f.kind = failUnavailable
	default:
		f.kind = failThrottled
	}
	return f, false
}

// hook asks the server's hooks what to do at moment m, as an SMTP session
// does, and holds the request for their delay.
func (q *apiReq) hook(m Moment, ev Event) Action {
	srv := q.srv
	var act Action
	called := false
	for _, h := range srv.opts.Hooks {
		if !momentsOf(h).Has(m) {
			continue
		}
		if !called {
			called = true
			ev.Moment, ev.Session, ev.Time, ev.Messages = m, q.c.id, time.Now(), q.c.messageCount()
		}
		a := h.At(q.ctx, &ev)
		if a.zero() {
			continue
		}
		srv.apiFaultFired(q.c.id, &ev, a)
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
		t := time.NewTimer(act.Delay)
		select {
		case <-t.C:
		case <-q.ctx.Done():
			t.Stop()
		}
	}
	return act
}

// apiFaultFired is faultFired for a connection of the HTTP port.
func (srv *Server) apiFaultFired(session uint64, ev *Event, a Action) {
	if a.Fault == "" {
		return
	}
	srv.metrics.fault(a.Fault)
	if srv.opts.OnFault != nil {
		srv.opts.OnFault(FaultEvent{Time: ev.Time, Kind: a.Fault, Moment: ev.Moment, Session: session,
			Reply: a.Reply, Address: ev.Address, Delay: a.Delay, Cut: a.Close})
	}
}

// respond writes an answer after the latency hook, under the write
// timeout; true when it was written out in full. counted says the
// request delivered something (the session then stands at MomentAcked).
func (q *apiReq) respond(a *apiResponse, counted bool) bool {
	srv := q.srv
	reply := strconv.Itoa(a.status) + " " + http.StatusText(a.status)
	if h := q.hook(MomentReply, Event{Reply: reply}); h.Reply != "" || h.Close {
		q.cut(EndCut, h.Fault, false, "")
		return false
	}
	hdr := q.w.Header()
	for k, v := range a.header {
		hdr[k] = v
	}
	hdr.Set("Content-Length", strconv.Itoa(len(a.body)))
	if q.closeAfter {
		hdr.Set("Connection", "close")
	}
	rc := http.NewResponseController(q.w)
	rc.SetWriteDeadline(time.Now().Add(srv.opts.WriteTimeout))
	// Counted before the client can read the answer, as copies are.
	q.request(strconv.Itoa(a.status))
	q.w.WriteHeader(a.status)
	_, err := q.w.Write(a.body)
	if err == nil {
		err = rc.Flush()
	}
	if err != nil {
		return false
	}
	q.c.answered(counted)
	return true
}

// cut ends the connection instead of answering: reset (SO_LINGER 0) like
// a crash or a cable pulled, or, graceful, after an answer was written. It
// reports at once what the connection leaves in doubt. aborted, when set,
// counts the request's messages as aborted transactions.
func (q *apiReq) cut(e Ending, fault string, graceful bool, aborted string) {
	if aborted != "" && q.send != nil {
		q.transaction(aborted, len(q.send.msgs))
	}
	if !graceful {
		q.request("reset")
	}
	q.c.cut(q.w, e, fault, graceful)
}

// cutMidBody is a Close while the body streams (drop-during-data, the
// during-data kill point). Nothing counts; what is left of the body is
// read briefly, so the in-doubt report can name the recipients the
// request was for.
func (q *apiReq) cutMidBody(fault string) {
	q.c.setMoment(MomentDataStreaming)
	if body, err := io.ReadAll(io.LimitReader(q.drainer(), q.srv.apiBodyLimit())); err == nil || len(body) > 0 {
		if send, bad := q.p.parse(q.r, body); bad == nil && !send.test {
			for _, m := range send.msgs {
				m.txn, m.accepted = q.srv.nextTxn.Add(1), m.rcpts
			}
			q.c.inFlight(send.msgs)
		}
	}
	q.request("reset")
	q.c.cut(q.w, EndCut, fault, false)
}

// drainer reads the rest of the request body for at most lingerTime.
func (q *apiReq) drainer() io.Reader {
	http.NewResponseController(q.w).SetReadDeadline(time.Now().Add(lingerTime))
	return q.r.Body
}

// apiBodyLimit bounds a request body: room for a message of MaxSize
// encoded in base64 inside JSON, or for a batch.
func (srv *Server) apiBodyLimit() int64 {
	return 2*int64(srv.opts.MaxSize) + 1<<20
}

// fingerprint identifies a request's payload for idempotency: same key,
// same endpoint and body is a retry; anything else is a different request.
func fingerprint(r *http.Request, body []byte) [32]byte {
	h := sha256.New()
	io.WriteString(h, r.Method+" "+r.URL.Path+"\x00")
	h.Write(body)
	var sum [32]byte
	h.Sum(sum[:0])
	return sum
}

func without(list []string, s string) []string {
	out := make([]string, 0, len(list))
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

// recipients gathers the normalised, distinct recipients of a message.
type recipients struct {
	list   []string
	fields map[string]string
}

// add parses one address ("Name <a@b>" or a bare a@b) and keeps its
// normalised form; field names where it came from. It reports false for
// something that is not an address.
func (rs *recipients) add(addr, field string) bool {
	a, ok := parseAddress(addr)
	if !ok {
		return false
	}
	k := Normalize(a)
	if !contains(rs.list, k) {
		rs.list = append(rs.list, k)
		if field != "" {
			if rs.fields == nil {
				rs.fields = map[string]string{}
			}
			rs.fields[k] = field
		}
	}
	return true
}

// addList parses a comma-separated list of addresses (Postmark, Mailgun).
func (rs *recipients) addList(list, field string) bool {
	if strings.TrimSpace(list) == "" {
		return true
	}
	if as, err := mail.ParseAddressList(list); err == nil {
		for _, a := range as {
			rs.add(a.Address, field)
		}
		return true
	}
	for _, a := range strings.Split(list, ",") {
		if strings.TrimSpace(a) == "" {
			continue
		}
		if !rs.add(a, field) {
			return false
		}
	}
	return true
}

// parseAddress returns the addr-spec of "Name <a@b>" or "a@b". It is
// lenient where net/mail is strict about display names (dots, unquoted
// punctuation), since providers accept those, but wants an @ with
// something on both sides and no spaces or brackets in the address.
func parseAddress(s string) (string, bool) {
	s = strings.TrimSpace(s)
	if a, err := mail.ParseAddress(s); err == nil {
		return a.Address, true
	}
	if i := strings.LastIndexByte(s, '<'); i >= 0 && strings.HasSuffix(s, ">") {
		s = s[i+1 : len(s)-1]
	}
	at := strings.LastIndexByte(s, '@')
	if at <= 0 || at == len(s)-1 || strings.ContainsAny(s, " \t\r\n<>,;\"") {
		return "", false
	}
	return s, true
}

// rawMessage reads what a raw MIME message says of itself: its
// Message-ID and the recipients of its To, Cc and Bcc headers.
func rawMessage(raw []byte) (id string, rcpts recipients, err error) {
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		return "", rcpts, fmt.Errorf("the raw message does not parse as MIME: %w", err)
	}
	for _, h := range []string{"To", "Cc", "Bcc"} {
		if v := m.Header.Get(h); v != "" && !rcpts.addList(v, "") {
			return "", rcpts, fmt.Errorf("the raw message's %s header holds something that is not an address: %q", h, v)
		}
	}
	return strings.TrimSpace(messageID(raw)), rcpts, nil
}

// headerValue finds a header by name, ignoring case, in the name/value
// pairs a provider takes.
func headerValue[T any](list []T, name string, nv func(T) (string, string)) string {
	for _, h := range list {
		if n, v := nv(h); strings.EqualFold(strings.TrimSpace(n), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// mapHeader finds a header by name, ignoring case, in a JSON object.
func mapHeader(m map[string]string, name string) string {
	for k, v := range m {
		if strings.EqualFold(strings.TrimSpace(k), name) {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// apiUUID is a UUID-shaped id for a transaction: deterministic, so a run
// replays with the same ids, and distinct per transaction of a server.
func apiUUID(salt string, txn uint64) string {
	sum := sha256.Sum256([]byte(salt + "\x00" + strconv.FormatUint(txn, 10)))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
