// SendGrid v3: POST /v3/mail/send (JSON, Bearer key). Each personalization
// is a message; the request is all or nothing, answered 202 with an empty
// body and X-Message-Id. Point @sendgrid/mail at the fake with
// client.setDefaultRequest('baseUrl', url) after setApiKey (which resets it).

package fakesmtp

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

type sendGrid struct{}

func (sendGrid) name() string { return "sendgrid" }

func (sendGrid) authorized(r *http.Request, key string) bool {
	return r.Header.Get("Authorization") == "Bearer "+key
}

type sendGridAddress struct {
	Email string `json:"email"`
	Name  string `json:"name"`
}

type sendGridPersonalization struct {
	To      []sendGridAddress `json:"to"`
	Cc      []sendGridAddress `json:"cc"`
	Bcc     []sendGridAddress `json:"bcc"`
	Subject string            `json:"subject"`
	Headers map[string]string `json:"headers"`
}

type sendGridMail struct {
	Personalizations []sendGridPersonalization `json:"personalizations"`
	From             *sendGridAddress          `json:"from"`
	Subject          string                    `json:"subject"`
	Content          []struct {
		Type  string `json:"type"`
		Value string `json:"value"`
	} `json:"content"`
	Attachments []struct {
		Content string `json:"content"`
	} `json:"attachments"`
	TemplateID   string            `json:"template_id"`
	Headers      map[string]string `json:"headers"`
	MailSettings struct {
		SandboxMode struct {
			Enable bool `json:"enable"`
		} `json:"sandbox_mode"`
	} `json:"mail_settings"`
}

// SendGrid's documented limits.
const (
	sendGridMaxPersonalizations = 1000
	sendGridMaxRecipients       = 1000
	sendGridHelp                = "http://sendgrid.com/docs/API_Reference/Web_API_v3/Mail/errors.html"
)

func (p sendGrid) parse(r *http.Request, body []byte) (*apiSend, *apiResponse) {
	var mail sendGridMail
	if err := json.Unmarshal(body, &mail); err != nil {
		return nil, sendGridError(400, "", "Bad Request: the body is not a valid mail/send JSON object: "+err.Error())
	}
	bad := func(field, msg string) (*apiSend, *apiResponse) { return nil, sendGridError(400, field, msg) }
	switch n := len(mail.Personalizations); {
	case n == 0:
		return bad("personalizations", "The personalizations field is required and must have at least one personalization.")
	case n > sendGridMaxPersonalizations:
		return bad("personalizations", fmt.Sprintf("You may not have more than %d personalizations per API request. You may need to deliver your message in multiple requests.", sendGridMaxPersonalizations))
	case mail.From == nil || mail.From.Email == "":
		return bad("from", "The from object must be provided for every email send. It is an object that requires the email parameter, but may also contain a name parameter.")
	case mail.TemplateID == "" && len(mail.Content) == 0:
		return bad("content", "Unless a valid template_id is provided, the content parameter is required. There must be at least one defined content block. We typically suggest both text/plain and text/html blocks are included, but only one block is required.")
	}
	if _, ok := parseAddress(mail.From.Email); !ok {
		return bad("from.email", "The from email does not contain a valid address.")
	}
	size := len(mail.Subject)
	for _, c := range mail.Content {
		size += len(c.Value)
	}
	for _, a := range mail.Attachments {
		size += len(a.Content)
	}
	send := &apiSend{test: mail.MailSettings.SandboxMode.Enable}
	total := 0
	for i, pz := range mail.Personalizations {
		at := "personalizations." + strconv.Itoa(i)
		if len(pz.To) == 0 {
			return bad(at+".to", "The to array is required for all personalization objects, and must have at least one email object with a valid email address.")
		}
		if pz.Subject == "" && mail.Subject == "" && mail.TemplateID == "" {
			return bad("subject", "The subject is required. You can get around this requirement if you use a template with a subject defined or if every personalization has a subject defined.")
		}
		var rs recipients
		for _, l := range []struct {
			name string
			list []sendGridAddress
		}{{"to", pz.To}, {"cc", pz.Cc}, {"bcc", pz.Bcc}} {
			for j, a := range l.list {
				field := at + "." + l.name + "." + strconv.Itoa(j) + ".email"
				n := len(rs.list)
				if !rs.add(a.Email, field) {
					return bad(field, "Does not contain a valid address.")
				}
				if len(rs.list) == n {
					return bad(at+"."+l.name, "Each email address in the personalization block should be unique between to, cc, and bcc. We found the first duplicate instance of ["+a.Email+"] in the "+at+"."+l.name+" field.")
				}
			}
		}
		if total += len(rs.list); total > sendGridMaxRecipients {
			return bad("personalizations", fmt.Sprintf("The total number of recipients must be no more than %d.", sendGridMaxRecipients))
		}
		id := mapHeader(pz.Headers, "Message-ID")
		if id == "" {
			id = mapHeader(mail.Headers, "Message-ID")
		}
		send.msgs = append(send.msgs, &apiMessage{rcpts: rs.list, fields: rs.fields, messageID: id, size: size + len(pz.Subject)})
	}
	return send, nil
}

func (sendGrid) answer(s *apiSend) *apiResponse {
	if s.test {
		return &apiResponse{status: 200} // sandbox mode: valid, not sent
	}
	sum := sha256.Sum256([]byte("sendgrid\x00" + strconv.FormatUint(s.msgs[0].txn, 10)))
	return (&apiResponse{status: 202}).with("X-Message-Id", base64.RawURLEncoding.EncodeToString(sum[:16]))
}

func sendGridError(status int, field, message string) *apiResponse {
	type item struct {
		Message string  `json:"message"`
		Field   *string `json:"field"`
		Help    *string `json:"help"`
	}
	it := item{Message: message}
	if field != "" {
		help := sendGridHelp
		it.Field, it.Help = &field, &help
	}
	return jsonResponse(status, struct {
		Errors []item `json:"errors"`
	}{[]item{it}})
}

func (sendGrid) fail(f apiFailure) *apiResponse {
	fault := ""
	if f.detail != "" {
		fault = " (onecopy fault: " + f.detail + ")"
	}
	switch f.kind {
	case failInvalid:
		return sendGridError(400, f.field, f.detail)
	case failAuth:
		return sendGridError(401, "", "The provided authorization grant is invalid, expired, or revoked")
	case failTooLarge:
		return sendGridError(413, "", "Payload Too Large: "+f.detail)
	case failThrottled:
		reset := strconv.FormatInt(time.Now().Add(time.Second).Unix(), 10)
		return sendGridError(429, "", "too many requests"+fault).with("Retry-After", retryAfter).
			with("X-RateLimit-Limit", "600").with("X-RateLimit-Remaining", "0").with("X-RateLimit-Reset", reset)
	case failUnavailable:
		return sendGridError(503, "", "service unavailable"+fault).with("Retry-After", retryAfter)
	case failRejected:
		if f.addr != "" {
			return sendGridError(400, f.field, "The recipient "+f.addr+" was rejected."+fault)
		}
		return sendGridError(400, "", "The message was rejected."+fault)
	}
	return sendGridError(500, "", "internal error"+fault)
}
