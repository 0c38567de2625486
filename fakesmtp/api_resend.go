// Resend: POST /emails and POST /emails/batch (JSON, Bearer key), with
// its Idempotency-Key. Point the SDK at the fake with RESEND_BASE_URL or
// new Resend(key, {baseUrl}).

package fakesmtp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
)

type resend struct{ batch bool }

func (resend) name() string { return "resend" }

func (resend) authorized(r *http.Request, key string) bool {
	return r.Header.Get("Authorization") == "Bearer "+key
}

// stringOrList is a JSON string or array of strings, as Resend's to, cc,
// bcc and reply_to take either.
type stringOrList []string

func (l *stringOrList) UnmarshalJSON(b []byte) error {
	var one string
	if err := json.Unmarshal(b, &one); err == nil {
		*l = stringOrList{one}
		return nil
	}
	var many []string
	if err := json.Unmarshal(b, &many); err != nil {
		return fmt.Errorf("want a string or an array of strings, got %s", b)
	}
	*l = many
	return nil
}

type resendEmail struct {
	From        string            `json:"from"`
	To          stringOrList      `json:"to"`
	Cc          stringOrList      `json:"cc"`
	Bcc         stringOrList      `json:"bcc"`
	ReplyTo     stringOrList      `json:"reply_to"`
	Subject     string            `json:"subject"`
	HTML        string            `json:"html"`
	Text        string            `json:"text"`
	Headers     map[string]string `json:"headers"`
	ScheduledAt string            `json:"scheduled_at"`
	Template    *struct {
		ID string `json:"id"`
	} `json:"template"`
	Attachments []struct {
		Content  string `json:"content"`
		Path     string `json:"path"`
		Filename string `json:"filename"`
	} `json:"attachments"`
}

// Resend's documented limits.
const (
	resendMaxTo    = 50
	resendMaxBatch = 100
	resendMaxKey   = 256
)

func (p resend) parse(r *http.Request, body []byte) (*apiSend, *apiResponse) {
	send := &apiSend{}
	if keys, ok := r.Header["Idempotency-Key"]; ok {
		if len(keys) != 1 || len(keys[0]) < 1 || len(keys[0]) > resendMaxKey {
			return nil, p.fail(apiFailure{kind: failIdemInvalid})
		}
		send.idemKey = keys[0]
	}
	var emails []resendEmail
	if p.batch {
		if err := json.Unmarshal(body, &emails); err != nil {
			return nil, resendError(422, "validation_error", "The request body must be a JSON array of emails: "+err.Error())
		}
		switch {
		case len(emails) == 0:
			return nil, resendError(422, "validation_error", "The batch is empty: send at least one email.")
		case len(emails) > resendMaxBatch:
			return nil, resendError(422, "validation_error", fmt.Sprintf("Too many emails in the batch: %d, the maximum is %d.", len(emails), resendMaxBatch))
		}
		// Strict by default: one invalid email refuses the batch.
		send.batch = strings.EqualFold(r.Header.Get("x-batch-validation"), "permissive")
	} else {
		var e resendEmail
		if err := json.Unmarshal(body, &e); err != nil {
			return nil, resendError(422, "validation_error", "The request body must be a JSON email object: "+err.Error())
		}
		emails = []resendEmail{e}
	}
	for i, e := range emails {
		m, f := p.message(e, p.batch)
		if f != nil {
			if !send.batch {
				if p.batch {
					f.detail = fmt.Sprintf("emails[%d]: %s", i, f.detail)
				}
				return nil, p.fail(*f)
			}
			f.index = i
			m = &apiMessage{err: f}
		}
		if m.messageID == "" && send.idemKey != "" {
			// No Message-ID of its own: the key says which sends repeat.
			m.messageID = send.idemKey
			if p.batch {
				m.messageID += "#" + strconv.Itoa(i)
			}
		}
		send.msgs = append(send.msgs, m)
	}
	return send, nil
}

// message validates one email as Resend does and reads what counts.
func (resend) message(e resendEmail, inBatch bool) (*apiMessage, *apiFailure) {
	missing := func(field string) (*apiMessage, *apiFailure) {
		return nil, &apiFailure{kind: failInvalid, code: "missing_required_field", detail: "Missing `" + field + "` field."}
	}
	switch {
	case e.From == "" && e.Template == nil:
		return missing("from")
	case len(e.To) == 0:
		return missing("to")
	case e.Subject == "" && e.Template == nil:
		return missing("subject")
	case len(e.To) > resendMaxTo:
		return nil, &apiFailure{kind: failInvalid, detail: fmt.Sprintf("Too many recipients in the `to` field: %d, the maximum is %d.", len(e.To), resendMaxTo)}
	case inBatch && (len(e.Attachments) > 0 || e.ScheduledAt != ""):
		return nil, &apiFailure{kind: failInvalid, detail: "The batch endpoint does not support `attachments` or `scheduled_at`."}
	}
	if e.From != "" {
		if _, ok := parseAddress(e.From); !ok {
			return nil, &apiFailure{kind: failInvalid, code: "invalid_parameter", detail: "Invalid `from` field. The email address needs to follow the `email@example.com` or `Name <email@example.com>` format."}
		}
	}
	var rs recipients
	for _, f := range []struct {
		name string
		list stringOrList
	}{{"to", e.To}, {"cc", e.Cc}, {"bcc", e.Bcc}} {
		for _, a := range f.list {
			if !rs.add(a, f.name) {
				return nil, &apiFailure{kind: failInvalid, detail: "Invalid `" + f.name + "` field. The email address needs to follow the `email@example.com` or `Name <email@example.com>` format."}
			}
		}
	}
	size := len(e.Subject) + len(e.HTML) + len(e.Text)
	for _, a := range e.Attachments {
		size += len(a.Content)
	}
	return &apiMessage{rcpts: rs.list, messageID: mapHeader(e.Headers, "Message-ID"), size: size}, nil
}

func (p resend) answer(s *apiSend) *apiResponse {
	type id struct {
		ID string `json:"id"`
	}
	if !p.batch {
		return jsonResponse(200, id{apiUUID("resend", s.msgs[0].txn)})
	}
	type indexed struct {
		Index   int    `json:"index"`
		Message string `json:"message"`
	}
	out := struct {
		Data   []id       `json:"data"`
		Errors *[]indexed `json:"errors,omitempty"` // permissive mode only, and then always
	}{Data: []id{}}
	errs := []indexed{}
	for i, m := range s.msgs {
		if m.err != nil {
			errs = append(errs, indexed{i, p.errorOf(*m.err).message})
			continue
		}
		out.Data = append(out.Data, id{apiUUID("resend", m.txn)})
	}
	if s.batch {
		out.Errors = &errs
	}
	return jsonResponse(200, out)
}

type resendErr struct {
	status  int
	name    string
	message string
}

func resendError(status int, name, message string) *apiResponse {
	return jsonResponse(status, struct {
		StatusCode int    `json:"statusCode"`
		Message    string `json:"message"`
		Name       string `json:"name"`
	}{status, message, name})
}

// errorOf maps a failure to Resend's error names and statuses.
func (resend) errorOf(f apiFailure) resendErr {
	fault := ""
	if f.detail != "" {
		fault = " (onecopy fault: " + f.detail + ")"
	}
	switch f.kind {
	case failInvalid:
		name := "validation_error"
		if f.code != "" {
			name = f.code // missing_required_field, invalid_parameter
		}
		return resendErr{422, name, f.detail}
	case failAuth:
		return resendErr{403, "invalid_api_key", "API key is invalid"}
	case failTooLarge:
		return resendErr{413, "validation_error", "The request body is too large: " + f.detail + "."}
	case failThrottled:
		return resendErr{429, "rate_limit_exceeded", "Too many requests. You can only make 2 requests per second. See rate limit response headers for more information. Or contact support to increase rate limit." + fault}
	case failUnavailable:
		return resendErr{503, "application_error", "Service unavailable, please try again later." + fault}
	case failRejected:
		if f.addr != "" {
			return resendErr{422, "validation_error", "The recipient " + f.addr + " was rejected." + fault}
		}
		return resendErr{422, "validation_error", "The email was rejected." + fault}
	case failIdemInvalid:
		return resendErr{400, "invalid_idempotency_key", "The key must be between 1-256 chars."}
	case failIdemMismatch:
		return resendErr{409, "invalid_idempotent_request", "Same idempotency key used with a different request payload."}
	case failIdemConcurrent:
		return resendErr{409, "concurrent_idempotent_requests", "Same idempotency key used while original request is still in progress."}
	case failNotFound:
		return resendErr{404, "not_found", "The requested endpoint does not exist."}
	}
	return resendErr{500, "internal_server_error", "An unexpected error occurred, please try again later." + fault}
}

func (p resend) fail(f apiFailure) *apiResponse {
	e := p.errorOf(f)
	a := resendError(e.status, e.name, e.message)
	if e.status == 429 || e.status == 503 {
		a.with("Retry-After", retryAfter).with("Ratelimit-Limit", "2").with("Ratelimit-Remaining", "0").with("Ratelimit-Reset", retryAfter)
	}
	return a
}
