// Mailgun: POST /v3/{domain}/messages (form fields) and
// /v3/{domain}/messages.mime (a MIME message and its to), multipart or
// urlencoded, basic auth api:KEY. Point mailgun.js at the fake with
// mailgun.client({username: 'api', key, url}).

package fakesmtp

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

type mailgun struct{ mime bool }

func (mailgun) name() string { return "mailgun" }

func (mailgun) authorized(r *http.Request, key string) bool {
	_, pass, ok := r.BasicAuth()
	return ok && pass == key
}

// mailgunMaxRecipients is Mailgun's limit per message.
const mailgunMaxRecipients = 1000

// form reads a multipart or urlencoded body.
func mailgunForm(r *http.Request, body []byte, limit int64) (url.Values, map[string][][]byte, error) {
	req := &http.Request{Method: http.MethodPost, Header: r.Header, Body: io.NopCloser(bytes.NewReader(body)), ContentLength: int64(len(body))}
	err := req.ParseMultipartForm(limit)
	if errors.Is(err, http.ErrNotMultipart) {
		err = nil // urlencoded: ParseForm already read it
	}
	if err != nil {
		return nil, nil, err
	}
	files := map[string][][]byte{}
	if mf := req.MultipartForm; mf != nil {
		defer mf.RemoveAll()
		for k, fhs := range mf.File {
			for _, fh := range fhs {
				f, err := fh.Open()
				if err != nil {
					return nil, nil, err
				}
				b, err := io.ReadAll(f)
				f.Close()
				if err != nil {
					return nil, nil, err
				}
				files[k] = append(files[k], b)
			}
		}
	}
	return req.PostForm, files, nil
}

func (p mailgun) parse(r *http.Request, body []byte) (*apiSend, *apiResponse) {
	form, files, err := mailgunForm(r, body, int64(len(body))+1)
	if err != nil {
		return nil, mailgunError(400, "The request body is not a form: "+err.Error())
	}
	bad := func(msg string) (*apiSend, *apiResponse) { return nil, mailgunError(400, msg) }
	send := &apiSend{test: yes(form.Get("o:testmode"))}
	m := &apiMessage{label: r.PathValue("domain")}
	var rs recipients
	fields := []string{"to", "cc", "bcc"}
	if p.mime {
		fields = fields[:1] // only to says where a MIME message goes
	}
	for _, f := range fields {
		for _, v := range form[f] {
			if !rs.addList(v, f) {
				return bad(f + " parameter is not a valid address. please check documentation")
			}
		}
	}
	if len(form["to"]) == 0 {
		return bad("to parameter is missing")
	}
	if len(rs.list) > mailgunMaxRecipients {
		return bad(fmt.Sprintf("Too many recipients: %d, at most %d per message.", len(rs.list), mailgunMaxRecipients))
	}
	m.rcpts = rs.list
	if p.mime {
		raw := []byte(form.Get("message"))
		if fs := files["message"]; len(fs) > 0 {
			raw = fs[0]
		}
		if len(raw) == 0 {
			return bad("message parameter is missing")
		}
		m.messageID, m.size = strings.TrimSpace(messageID(raw)), len(raw)
		send.msgs = []*apiMessage{m}
		return send, nil
	}
	switch {
	case form.Get("from") == "":
		return bad("from parameter is missing")
	case form.Get("subject") == "" && form.Get("template") == "":
		return bad("subject parameter is missing")
	case form.Get("text") == "" && form.Get("html") == "" && form.Get("amp-html") == "" && form.Get("template") == "":
		return bad("Need at least one of 'text', 'html', 'amp-html' or 'template' parameters specified")
	}
	if _, ok := parseAddress(form.Get("from")); !ok {
		return bad("from parameter is not a valid address. please check documentation")
	}
	for k, vs := range form {
		if strings.EqualFold(k, "h:Message-Id") && len(vs) > 0 {
			m.messageID = strings.TrimSpace(vs[0])
		}
	}
	m.size = len(form.Get("subject")) + len(form.Get("text")) + len(form.Get("html"))
	for _, k := range []string{"attachment", "inline"} {
		for _, f := range files[k] {
			m.size += len(f)
		}
	}
	send.msgs = []*apiMessage{m}
	return send, nil
}

func yes(v string) bool {
	switch strings.ToLower(strings.TrimSpace(v)) {
	case "yes", "true", "1":
		return true
	}
	return false
}

func (mailgun) answer(s *apiSend) *apiResponse {
	m := s.msgs[0]
	id := m.messageID
	if id == "" {
		sum := sha256.Sum256([]byte("mailgun\x00" + strconv.FormatUint(m.txn, 10) + s.now.String()))
		id = "<" + s.now.UTC().Format("20060102150405") + "." + hex.EncodeToString(sum[:8]) + "@" + m.label + ">"
	} else if !strings.HasPrefix(id, "<") {
		id = "<" + id + ">"
	}
	return jsonResponse(200, struct {
		ID      string `json:"id"`
		Message string `json:"message"`
	}{id, "Queued. Thank you."})
}

func mailgunError(status int, message string) *apiResponse {
	return jsonResponse(status, struct {
		Message string `json:"message"`
	}{message})
}

func (mailgun) fail(f apiFailure) *apiResponse {
	fault := ""
	if f.detail != "" {
		fault = " (onecopy fault: " + f.detail + ")"
	}
	switch f.kind {
	case failInvalid:
		return mailgunError(400, f.detail)
	case failAuth:
		return &apiResponse{status: 401, header: http.Header{"Content-Type": {"text/plain; charset=utf-8"}}, body: []byte("Forbidden")}
	case failTooLarge:
		return mailgunError(413, "Request Entity Too Large: "+f.detail)
	case failThrottled:
		return mailgunError(429, "Too many requests"+fault).with("Retry-After", retryAfter)
	case failUnavailable:
		return mailgunError(503, "Service Unavailable"+fault).with("Retry-After", retryAfter)
	case failRejected:
		if f.addr != "" {
			return mailgunError(400, "Recipient "+f.addr+" rejected."+fault)
		}
		return mailgunError(400, "Message rejected."+fault)
	}
	return mailgunError(500, "Internal Server Error"+fault)
}
