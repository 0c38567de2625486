// Amazon SES: the v2 SendEmail operation (POST /v2/email/outbound-emails,
// restJson1: Simple, Raw and Template content) and the v1 query API's
// SendEmail and SendRawEmail (POST / with Action=..., XML answers). The
// SigV4 signature is not verified; with Options.APIKey set, the access
// key id it names must be that key. Point the AWS SDKs at the fake with
// their BaseEndpoint / endpoint option or AWS_ENDPOINT_URL_SES.

package fakesmtp

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// sesMaxRecipients is SES's limit per message, To, Cc and Bcc together.
const sesMaxRecipients = 50

// sesAuthorized reports whether the SigV4 Authorization header names key
// as its access key id.
func sesAuthorized(r *http.Request, key string) bool {
	_, cred, ok := strings.Cut(r.Header.Get("Authorization"), "Credential=")
	id, _, _ := strings.Cut(cred, "/")
	return ok && id == key
}

// sesMessageID is an SES-shaped message id for a transaction.
func sesMessageID(txn uint64) string {
	sum := sha256.Sum256([]byte("ses\x00" + strconv.FormatUint(txn, 10)))
	return "0100" + hex.EncodeToString(sum[:6]) + "-" + apiUUID("ses", txn) + "-000000"
}

// sesRecipients validates a message's destination as SES does.
func sesRecipients(to, cc, bcc []string) (recipients, *apiFailure) {
	var rs recipients
	for _, list := range [][]string{to, cc, bcc} {
		for _, a := range list {
			if !rs.add(a, "") {
				return rs, &apiFailure{kind: failInvalid, code: "InvalidParameterValue", detail: "Missing final '@domain' in " + strconv.Quote(a)}
			}
		}
	}
	switch {
	case len(rs.list) == 0:
		return rs, &apiFailure{kind: failInvalid, code: "InvalidParameterValue", detail: "The message has no recipients: give a destination (or To, Cc or Bcc headers in a raw message)."}
	case len(rs.list) > sesMaxRecipients:
		return rs, &apiFailure{kind: failInvalid, code: "InvalidParameterValue", detail: fmt.Sprintf("Recipient count exceeds %d.", sesMaxRecipients)}
	}
	return rs, nil
}

// sesRaw reads a raw message: recipients from dest when given, else from
// its own headers.
func sesRaw(raw []byte, dest []string) (*apiMessage, *apiFailure) {
	id, hdr, err := rawMessage(raw)
	if err != nil {
		return nil, &apiFailure{kind: failInvalid, code: "InvalidParameterValue", detail: err.Error()}
	}
	if len(dest) > 0 {
		var f *apiFailure
		if hdr, f = sesRecipients(dest, nil, nil); f != nil {
			return nil, f
		}
	} else if _, f := sesRecipients(hdr.list, nil, nil); f != nil {
		return nil, f
	}
	return &apiMessage{rcpts: hdr.list, messageID: id, size: len(raw)}, nil
}

// sesFailure is the SES error code, status and message of a failure.
func sesFailure(f apiFailure, throttleStatus int) (status int, code, message string) {
	fault := ""
	if f.detail != "" {
		fault = " (onecopy fault: " + f.detail + ")"
	}
	switch f.kind {
	case failInvalid:
		return 400, f.code, f.detail
	case failAuth:
		return 403, "InvalidClientTokenId", "The security token included in the request is invalid."
	case failTooLarge:
		return 400, "MessageRejected", "Message length is more than the limit: " + f.detail + "."
	case failThrottled:
		return throttleStatus, "", "Maximum sending rate exceeded." + fault
	case failUnavailable:
		return 503, "ServiceUnavailable", "Service is unavailable. Please try again later." + fault
	case failRejected:
		if f.addr != "" {
			return 400, "MessageRejected", "Email address rejected: " + f.addr + "." + fault
		}
		return 400, "MessageRejected", "Message rejected." + fault
	case failNotFound:
		return 400, "InvalidAction", f.detail
	}
	return 500, "InternalFailure", "The request processing has failed because of an unknown error, exception or failure." + fault
}

// sesV2 is SendEmail of the v2 API.
type sesV2 struct{}

func (sesV2) name() string { return "ses" }

func (sesV2) authorized(r *http.Request, key string) bool { return sesAuthorized(r, key) }

type sesContent struct{ Data, Charset string }

type sesHeader struct{ Name, Value string }

type sesV2Request struct {
	FromEmailAddress string
	Destination      *struct{ ToAddresses, CcAddresses, BccAddresses []string }
	Content          *struct {
		Simple *struct {
			Subject     *sesContent
			Body        *struct{ Text, Html *sesContent }
			Headers     []sesHeader
			Attachments []struct{ RawContent []byte }
		}
		Raw *struct {
			Data []byte // base64 in the JSON
		}
		Template *struct {
			TemplateName, TemplateArn, TemplateData string
			Headers                                 []sesHeader
			TemplateContent                         *struct{ Subject, Text, Html string }
		}
	}
}

func (p sesV2) parse(r *http.Request, body []byte) (*apiSend, *apiResponse) {
	var req sesV2Request
	if err := json.Unmarshal(body, &req); err != nil {
		return nil, p.fail(apiFailure{kind: failInvalid, code: "BadRequestException", detail: "The request body is not a SendEmail JSON object: " + err.Error()})
	}
	bad := func(msg string) (*apiSend, *apiResponse) {
		return nil, p.fail(apiFailure{kind: failInvalid, code: "BadRequestException", detail: msg})
	}
	c := req.Content
	kinds := 0
	if c != nil {
		for _, set := range []bool{c.Simple != nil, c.Raw != nil, c.Template != nil} {
			if set {
				kinds++
			}
		}
	}
	if kinds != 1 {
		return bad("Content must hold exactly one of Simple, Raw or Template.")
	}
	var dest struct{ ToAddresses, CcAddresses, BccAddresses []string }
	if req.Destination != nil {
		dest = *req.Destination
	}
	var m *apiMessage
	var f *apiFailure
	switch {
	case c.Raw != nil:
		m, f = sesRaw(c.Raw.Data, append(append(dest.ToAddresses, dest.CcAddresses...), dest.BccAddresses...))
	default:
		if req.FromEmailAddress == "" {
			return bad("FromEmailAddress is required with Simple and Template content.")
		}
		var rs recipients
		if rs, f = sesRecipients(dest.ToAddresses, dest.CcAddresses, dest.BccAddresses); f != nil {
			break
		}
		m = &apiMessage{rcpts: rs.list}
		nv := func(h sesHeader) (string, string) { return h.Name, h.Value }
		if s := c.Simple; s != nil {
			if s.Subject == nil || s.Body == nil || (s.Body.Text == nil && s.Body.Html == nil) {
				return bad("Simple content needs a Subject and a Text or Html Body.")
			}
			m.messageID = headerValue(s.Headers, "Message-ID", nv)
			m.size = len(s.Subject.Data)
			for _, b := range []*sesContent{s.Body.Text, s.Body.Html} {
				if b != nil {
					m.size += len(b.Data)
				}
			}
			for _, a := range s.Attachments {
				m.size += len(a.RawContent)
			}
		} else {
			t := c.Template
			if t.TemplateName == "" && t.TemplateArn == "" && t.TemplateContent == nil {
				return bad("Template content needs a TemplateName, a TemplateArn or TemplateContent.")
			}
			m.messageID = headerValue(t.Headers, "Message-ID", nv)
			m.size = len(t.TemplateData)
			if tc := t.TemplateContent; tc != nil {
				m.size += len(tc.Subject) + len(tc.Text) + len(tc.Html)
			}
		}
	}
	if f != nil {
		f.code = "BadRequestException"
		return nil, p.fail(*f)
	}
	return &apiSend{msgs: []*apiMessage{m}}, nil
}

func (sesV2) answer(s *apiSend) *apiResponse {
	return jsonResponse(200, struct{ MessageId string }{sesMessageID(s.msgs[0].txn)}).
		with("X-Amzn-Requestid", apiUUID("ses-request", s.msgs[0].txn))
}

func (sesV2) fail(f apiFailure) *apiResponse {
	status, code, msg := sesFailure(f, 429)
	switch {
	case code == "":
		code = "TooManyRequestsException"
	case code == "InvalidClientTokenId":
		code = "UnrecognizedClientException"
	case code == "InvalidParameterValue" || code == "InvalidAction":
		code = "BadRequestException"
	}
	a := jsonResponse(status, struct {
		Message string `json:"message"`
	}{msg}).with("X-Amzn-Errortype", code).with("X-Amzn-Requestid", apiUUID("ses-error", uint64(len(msg))))
	if status == 429 || status == 503 {
		a.with("Retry-After", retryAfter)
	}
	return a
}

// sesV1 is the v1 query API: SendEmail and SendRawEmail.
type sesV1 struct{}

func (sesV1) name() string { return "ses" }

func (sesV1) authorized(r *http.Request, key string) bool { return sesAuthorized(r, key) }

// sesMembers reads an AWS query list: prefix.member.1, prefix.member.2, ...
func sesMembers(form url.Values, prefix string) []string {
	var out []string
	for i := 1; ; i++ {
		v, ok := form[prefix+".member."+strconv.Itoa(i)]
		if !ok || len(v) == 0 {
			return out
		}
		out = append(out, v[0])
	}
}

func (p sesV1) parse(r *http.Request, body []byte) (*apiSend, *apiResponse) {
	form, err := url.ParseQuery(string(body))
	if err != nil {
		return nil, p.fail(apiFailure{kind: failInvalid, code: "InvalidParameterValue", detail: "The request body is not a form: " + err.Error()})
	}
	var m *apiMessage
	var f *apiFailure
	missing := func(name string) *apiFailure {
		return &apiFailure{kind: failInvalid, code: "MissingParameter", detail: "The request must contain the parameter " + name + "."}
	}
	switch action := form.Get("Action"); action {
	case "SendEmail":
		switch {
		case form.Get("Source") == "":
			f = missing("Source")
		case form.Get("Message.Subject.Data") == "" && form.Get("Message.Body.Text.Data") == "" && form.Get("Message.Body.Html.Data") == "":
			f = missing("Message")
		}
		if f != nil {
			break
		}
		var rs recipients
		if rs, f = sesRecipients(sesMembers(form, "Destination.ToAddresses"), sesMembers(form, "Destination.CcAddresses"), sesMembers(form, "Destination.BccAddresses")); f == nil {
			m = &apiMessage{rcpts: rs.list, size: len(form.Get("Message.Subject.Data")) + len(form.Get("Message.Body.Text.Data")) + len(form.Get("Message.Body.Html.Data"))}
		}
	case "SendRawEmail":
		data := form.Get("RawMessage.Data")
		if data == "" {
			f = missing("RawMessage.Data")
			break
		}
		raw, err := base64.StdEncoding.DecodeString(data)
		if err != nil {
			f = &apiFailure{kind: failInvalid, code: "InvalidParameterValue", detail: "RawMessage.Data is not base64: " + err.Error()}
			break
		}
		m, f = sesRaw(raw, sesMembers(form, "Destinations"))
	default:
		f = &apiFailure{kind: failNotFound, detail: "Could not find operation " + action + " for version 2010-12-01"}
	}
	if f != nil {
		return nil, p.fail(*f)
	}
	m.label = form.Get("Action")
	return &apiSend{msgs: []*apiMessage{m}}, nil
}

const sesXMLNS = "http://ses.amazonaws.com/doc/2010-12-01/"

func (sesV1) answer(s *apiSend) *apiResponse {
	m := s.msgs[0] // m.label is the action, SendEmail or SendRawEmail: the elements are named after it
	body := fmt.Sprintf(`%s<%[2]sResponse xmlns="%[3]s"><%[2]sResult><MessageId>%[4]s</MessageId></%[2]sResult>`+
		`<ResponseMetadata><RequestId>%[5]s</RequestId></ResponseMetadata></%[2]sResponse>`,
		xml.Header, m.label, sesXMLNS, sesMessageID(m.txn), apiUUID("ses-request", m.txn))
	return &apiResponse{status: 200, header: http.Header{"Content-Type": {"text/xml"}}, body: []byte(body)}
}

func (sesV1) fail(f apiFailure) *apiResponse {
	status, code, msg := sesFailure(f, 400)
	if code == "" {
		code = "Throttling"
	}
	typ := "Sender"
	if status >= 500 {
		typ = "Receiver"
	}
	type errBody struct {
		Type, Code, Message string
	}
	a := xmlResponse(status, struct {
		XMLName   xml.Name `xml:"ErrorResponse"`
		XMLNS     string   `xml:"xmlns,attr"`
		Error     errBody
		RequestId string
	}{XMLNS: sesXMLNS, Error: errBody{typ, code, msg}, RequestId: apiUUID("ses-error", uint64(len(msg)))})
	if status == 503 || code == "Throttling" {
		a.with("Retry-After", retryAfter)
	}
	return a
}
