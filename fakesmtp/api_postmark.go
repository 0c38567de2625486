// Postmark: POST /email, /email/batch, /email/withTemplate and
// /email/batchWithTemplates (JSON, X-Postmark-Server-Token). Batches answer
// message by message with HTTP 200. Point postmark.js at the fake with
// new ServerClient(token, {requestHost: "127.0.0.1:PORT", useHttps: false}).

package fakesmtp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

type postmark struct{ path string }

func (postmark) name() string { return "postmark" }

// postmarkTestToken makes Postmark validate a send without sending it.
const postmarkTestToken = "POSTMARK_API_TEST"

func (postmark) authorized(r *http.Request, key string) bool {
	t := r.Header.Get("X-Postmark-Server-Token")
	return t == key || t == postmarkTestToken
}

type postmarkMessage struct {
	From          string
	To            string
	Cc            string
	Bcc           string
	Subject       string
	HtmlBody      string
	TextBody      string
	ReplyTo       string
	Tag           string
	MessageStream string
	Headers       []struct{ Name, Value string }
	Attachments   []struct{ Name, Content, ContentType string }
	// withTemplate
	TemplateId    json.Number
	TemplateAlias string
	TemplateModel json.RawMessage
}

// Postmark's documented limits and error codes.
const (
	postmarkMaxRcpts   = 50
	postmarkMaxBatch   = 500
	postmarkBadJSON    = 402
	postmarkBadRequest = 300
	postmarkInactive   = 406
	postmarkBadToken   = 10
)

func (p postmark) batch() bool    { return strings.Contains(p.path, "atch") }
func (p postmark) template() bool { return strings.Contains(p.path, "emplate") }

func (p postmark) parse(r *http.Request, body []byte) (*apiSend, *apiResponse) {
	send := &apiSend{batch: p.batch(), test: r.Header.Get("X-Postmark-Server-Token") == postmarkTestToken}
	var msgs []postmarkMessage
	var err error
	switch {
	case p.path == "/email/batchWithTemplates":
		var b struct{ Messages []postmarkMessage }
		err = json.Unmarshal(body, &b)
		msgs = b.Messages
	case send.batch:
		err = json.Unmarshal(body, &msgs)
	default:
		var m postmarkMessage
		err = json.Unmarshal(body, &m)
		msgs = []postmarkMessage{m}
	}
	switch {
	case err != nil:
		return nil, postmarkError(422, postmarkBadJSON, "Received invalid JSON input: "+err.Error())
	case send.batch && len(msgs) == 0:
		return nil, postmarkError(422, postmarkBadRequest, "The batch holds no messages.")
	case len(msgs) > postmarkMaxBatch:
		return nil, postmarkError(422, postmarkBadRequest, fmt.Sprintf("Batch of %d messages: the limit is %d.", len(msgs), postmarkMaxBatch))
	}
	for i, pm := range msgs {
		m, f := p.message(pm)
		if f != nil {
			if !send.batch {
				return nil, p.fail(*f)
			}
			f.index = i
			m = &apiMessage{err: f} // a batch answers it in its place
		}
		send.msgs = append(send.msgs, m)
	}
	return send, nil
}

func (p postmark) message(pm postmarkMessage) (*apiMessage, *apiFailure) {
	bad := func(format string, args ...any) (*apiMessage, *apiFailure) {
		return nil, &apiFailure{kind: failInvalid, detail: fmt.Sprintf(format, args...)}
	}
	if _, ok := parseAddress(pm.From); !ok {
		return bad("Invalid 'From' address: '%s'.", pm.From)
	}
	var rs recipients
	for _, f := range []struct{ name, list string }{{"To", pm.To}, {"Cc", pm.Cc}, {"Bcc", pm.Bcc}} {
		if !rs.addList(f.list, f.name) {
			return bad("Error parsing '%s': Illegal email address '%s'. It must contain the '@' symbol.", f.name, f.list)
		}
	}
	switch {
	case len(rs.list) == 0:
		return bad("Zero recipients specified")
	case len(rs.list) > postmarkMaxRcpts:
		return bad("You can send to at most %d recipients (To, Cc and Bcc together); this message has %d.", postmarkMaxRcpts, len(rs.list))
	case p.template() && pm.TemplateId == "" && pm.TemplateAlias == "":
		return bad("The 'TemplateId' or 'TemplateAlias' is required.")
	case !p.template() && pm.HtmlBody == "" && pm.TextBody == "":
		return bad("Provide either email TextBody or HtmlBody or both.")
	}
	size := len(pm.Subject) + len(pm.HtmlBody) + len(pm.TextBody) + len(pm.TemplateModel)
	for _, a := range pm.Attachments {
		size += len(a.Content)
	}
	id := headerValue(pm.Headers, "Message-ID", func(h struct{ Name, Value string }) (string, string) { return h.Name, h.Value })
	return &apiMessage{rcpts: rs.list, messageID: id, size: size, label: pm.To}, nil
}

type postmarkResult struct {
	To          string `json:",omitempty"`
	SubmittedAt string `json:",omitempty"`
	MessageID   string `json:",omitempty"`
	ErrorCode   int
	Message     string
}

func (p postmark) answer(s *apiSend) *apiResponse {
	at := s.now.Format("2006-01-02T15:04:05.0000000-07:00")
	results := make([]postmarkResult, len(s.msgs))
	for i, m := range s.msgs {
		if m.err != nil {
			_, code, msg := p.errorOf(*m.err)
			results[i] = postmarkResult{ErrorCode: code, Message: msg}
			continue
		}
		id := apiUUID("postmark", m.txn)
		if s.test {
			id = apiUUID("postmark-test "+s.now.String(), uint64(i)) // never sent: no transaction
		}
		results[i] = postmarkResult{To: m.label, SubmittedAt: at, MessageID: id, Message: "OK"}
	}
	if p.batch() {
		return jsonResponse(200, results)
	}
	return jsonResponse(200, results[0])
}

func postmarkError(status, code int, message string) *apiResponse {
	return jsonResponse(status, struct {
		ErrorCode int
		Message   string
	}{code, message})
}

// errorOf maps a failure to Postmark's status, ErrorCode and message.
func (postmark) errorOf(f apiFailure) (status, code int, message string) {
	fault := ""
	if f.detail != "" {
		fault = " (onecopy fault: " + f.detail + ")"
	}
	switch f.kind {
	case failInvalid:
		return 422, postmarkBadRequest, f.detail
	case failAuth:
		return 401, postmarkBadToken, "Request does not contain a valid Server token."
	case failTooLarge:
		return 413, 0, "Payload Too Large: " + f.detail + "."
	case failThrottled:
		return 429, 0, "Rate limit exceeded: too many requests." + fault
	case failUnavailable:
		return 503, 0, "Service unavailable, please try again later." + fault
	case failRejected:
		if f.addr != "" {
			// The shape postmark.js reads the inactive addresses from.
			return 422, postmarkInactive, "You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: " + f.addr +
				". Inactive recipients are ones that have generated a hard bounce, a spam complaint, or a manual suppression." + fault
		}
		return 422, postmarkBadRequest, "The message was rejected." + fault
	}
	return 500, 0, "Internal server error." + fault
}

func (p postmark) fail(f apiFailure) *apiResponse {
	status, code, msg := p.errorOf(f)
	a := postmarkError(status, code, msg)
	if status == 429 || status == 503 {
		a.with("Retry-After", retryAfter)
	}
	return a
}
