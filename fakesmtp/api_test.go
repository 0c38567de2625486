// The provider APIs' wire formats, provider by provider, with a plain
// net/http client: what each endpoint answers, what it counts, and that
// copies over HTTP land in the same oracle as SMTP ones.

package fakesmtp_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// apiRig is a server with its HTTP port, what it reported, and a client.
type apiRig struct {
	srv   *fakesmtp.Server
	rec   *faultRecorder
	base  string
	tr    *http.Transport
	hc    *http.Client
	mu    sync.Mutex
	deliv []fakesmtp.Delivery
}

// apiServer starts a server answering the provider APIs. Its client keeps
// connections alive, as the providers' SDKs do.
func apiServer(t *testing.T, opts fakesmtp.Options) *apiRig {
	t.Helper()
	rig := &apiRig{rec: newFaultRecorder()}
	opts.HTTPAddr = "127.0.0.1:0"
	opts.OnFault, opts.OnInDoubt = rig.rec.on, rig.rec.onDoubt
	opts.OnDelivery = func(d fakesmtp.Delivery) {
		rig.mu.Lock()
		rig.deliv = append(rig.deliv, d)
		rig.mu.Unlock()
	}
	rig.srv = start(t, opts)
	rig.base = "http://" + rig.srv.HTTPAddr()
	rig.tr = &http.Transport{MaxIdleConnsPerHost: 4}
	rig.hc = &http.Client{Transport: rig.tr, Timeout: faultWait}
	t.Cleanup(rig.tr.CloseIdleConnections)
	return rig
}

// apiFaultServer is apiServer with the fault catalog, seeded like the CLI.
func apiFaultServer(t *testing.T, seed uint64, specs ...string) *apiRig {
	t.Helper()
	return apiServer(t, fakesmtp.Options{Hooks: []fakesmtp.Hook{fakesmtp.NewFaultSet(faultSpecs(t, specs...), seed)}})
}

func (rig *apiRig) deliveries() []fakesmtp.Delivery {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	return slices.Clone(rig.deliv)
}

// apiResult is one answer.
type apiResult struct {
	status int
	header http.Header
	body   []byte
	close  bool  // the server said Connection: close (net/http takes the header out)
	err    error // the request failed: no answer
}

func (r apiResult) String() string {
	if r.err != nil {
		return "error: " + r.err.Error()
	}
	return fmt.Sprintf("%d %s", r.status, r.body)
}

// json decodes the body into v and fails the test if it cannot.
func (r apiResult) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("answer %s: not JSON: %v", r, err)
	}
}

// post sends a request with headers given as name, value pairs.
func (rig *apiRig) post(path, contentType string, body []byte, hdr ...string) apiResult {
	return apiPost(rig.hc, rig.base+path, contentType, body, hdr...)
}

func (rig *apiRig) postJSON(path, body string, hdr ...string) apiResult {
	return rig.post(path, "application/json", []byte(body), hdr...)
}

func apiPost(hc *http.Client, u, contentType string, body []byte, hdr ...string) apiResult {
	req, err := http.NewRequest(http.MethodPost, u, bytes.NewReader(body))
	if err != nil {
		return apiResult{err: err}
	}
	req.Header.Set("Content-Type", contentType)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := hc.Do(req)
	if err != nil {
		return apiResult{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return apiResult{status: resp.StatusCode, header: resp.Header, body: b, close: resp.Close, err: err}
}

// recipients reads GET /api/v1/recipients: copies and distinct
// Message-IDs per address, and the total.
func (rig *apiRig) recipients(t *testing.T) (map[string][2]int, int64) {
	t.Helper()
	resp, err := rig.hc.Get(rig.base + "/api/v1/recipients")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var snap fakesmtp.Snapshot
	if err := json.NewDecoder(resp.Body).Decode(&snap); err != nil {
		t.Fatal(err)
	}
	out := map[string][2]int{}
	for _, r := range snap.Recipients {
		out[r.Address] = [2]int{r.Copies, r.MessageIDs}
	}
	return out, snap.Copies
}

// counts checks copies per address, through both Snapshot and the HTTP
// API, and that nobody else got any.
func (rig *apiRig) counts(t *testing.T, want map[string]int) {
	t.Helper()
	faultCopies(t, rig.srv, want)
	got, total := rig.recipients(t)
	n := 0
	for addr, c := range want {
		n += c
		if got[addr][0] != c {
			t.Errorf("GET /api/v1/recipients: %s has %d copies, want %d", addr, got[addr][0], c)
		}
	}
	if total != int64(n) {
		t.Errorf("GET /api/v1/recipients: %d copies in all, want %d", total, n)
	}
}

// noSessions waits until the server has no HTTP session left, after the
// client dropped its idle connections.
func (rig *apiRig) noSessions(t *testing.T) {
	t.Helper()
	rig.tr.CloseIdleConnections()
	faultEventually(t, "every session ends", func() bool { return len(rig.srv.Sessions()) == 0 })
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestAPIResend(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{})
	r := rig.postJSON("/emails", `{"from":"Acme <a@x.test>","to":["Bob <Bob@X.test>","carol@x.test"],"cc":"dave@x.test",
		"bcc":["bob@x.test"],"subject":"hi","html":"<p>hi</p>","headers":{"message-id":"<1@x>"}}`, "Authorization", "Bearer re_test")
	var one struct{ ID string }
	if r.json(t, &one); r.status != 200 || !uuidRE.MatchString(one.ID) {
		t.Fatalf("POST /emails: %s, want 200 and a UUID id", r)
	}
	r = rig.postJSON("/emails/batch", `[{"from":"a@x.test","to":"erin@x.test","subject":"1","text":"t"},
		{"from":"a@x.test","to":"frank@x.test","subject":"2","text":"t","headers":{"Message-ID":"<2@x>"}}]`)
	var batch struct{ Data []struct{ ID string } }
	if r.json(t, &batch); r.status != 200 || len(batch.Data) != 2 || batch.Data[0].ID == batch.Data[1].ID || strings.Contains(string(r.body), "errors") {
		t.Fatalf("POST /emails/batch: %s, want 200 and two ids, no errors array", r)
	}
	rig.counts(t, map[string]int{"bob@x.test": 1, "carol@x.test": 1, "dave@x.test": 1, "erin@x.test": 1, "frank@x.test": 1})

	ds := rig.deliveries()
	if len(ds) != 3 {
		t.Fatalf("%d deliveries, want 3 (one per message): %+v", len(ds), ds)
	}
	d := ds[0]
	if d.Transport != fakesmtp.TransportHTTP || d.Provider != "resend" || d.MessageID != "<1@x>" || d.Txn == 0 || d.Session == 0 ||
		!slices.Equal(d.Recipients, []string{"bob@x.test", "carol@x.test", "dave@x.test"}) {
		t.Errorf("delivery %+v: want http/resend, <1@x>, bob, carol, dave once each", d)
	}
	if ds[1].Txn == ds[2].Txn || ds[1].Session != ds[2].Session || ds[0].Session != ds[1].Session {
		t.Errorf("deliveries %+v: want one transaction per message, one session for the kept-alive connection", ds)
	}
}

func TestAPIResendBatchValidation(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{})
	batch := `[{"from":"a@x.test","to":"ok@x.test","subject":"1","text":"t"},{"from":"a@x.test","to":"not an address","subject":"2","text":"t"}]`
	r := rig.postJSON("/emails/batch", batch)
	var e struct {
		StatusCode int
		Name       string
		Message    string
	}
	if r.json(t, &e); r.status != 422 || e.StatusCode != 422 || e.Name != "validation_error" || !strings.Contains(e.Message, "emails[1]") {
		t.Errorf("strict batch with an invalid email: %s, want 422 validation_error naming emails[1]", r)
	}
	rig.counts(t, map[string]int{})

	r = rig.postJSON("/emails/batch", batch, "x-batch-validation", "permissive")
	var out struct {
		Data   []struct{ ID string }
		Errors []struct {
			Index   int
			Message string
		}
	}
	if r.json(t, &out); r.status != 200 || len(out.Data) != 1 || len(out.Errors) != 1 || out.Errors[0].Index != 1 {
		t.Errorf("permissive batch: %s, want 200, one id and the error of index 1", r)
	}
	rig.counts(t, map[string]int{"ok@x.test": 1})

	for _, c := range []struct{ body, name string }{
		{`{"to":"b@x.test","subject":"s","text":"t"}`, "missing_required_field"},
		{`{"from":"a@x.test","subject":"s","text":"t"}`, "missing_required_field"},
		{`{"from":"nope","to":"b@x.test","subject":"s","text":"t"}`, "invalid_parameter"},
		{`not json`, "validation_error"},
	} {
		r := rig.postJSON("/emails", c.body)
		if r.json(t, &e); r.status != 422 || e.Name != c.name {
			t.Errorf("POST /emails %s: %s, want 422 %s", c.body, r, c.name)
		}
	}
}

func TestAPIPostmark(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{})
	r := rig.postJSON("/email", `{"From":"a@x.test","To":"Bob Q. Public <bob@x.test>, carol@x.test","Bcc":"dave@x.test",
		"Subject":"s","TextBody":"t","Headers":[{"Name":"Message-ID","Value":"<p1@x>"}]}`, "X-Postmark-Server-Token", "server-token")
	var one struct {
		To, SubmittedAt, MessageID, Message string
		ErrorCode                           int
	}
	if r.json(t, &one); r.status != 200 || one.ErrorCode != 0 || one.Message != "OK" || !uuidRE.MatchString(one.MessageID) ||
		one.To != "Bob Q. Public <bob@x.test>, carol@x.test" {
		t.Fatalf("POST /email: %s, want 200 OK echoing To", r)
	}
	if _, err := time.Parse(time.RFC3339Nano, one.SubmittedAt); err != nil {
		t.Errorf("SubmittedAt %q: %v", one.SubmittedAt, err)
	}
	// A batch answers message by message: one invalid message is refused
	// in its place, the others go.
	r = rig.postJSON("/email/batch", `[{"From":"a@x.test","To":"erin@x.test","Subject":"s","TextBody":"t"},
		{"From":"a@x.test","To":"","Subject":"s","TextBody":"t"},
		{"From":"a@x.test","To":"frank@x.test","Subject":"s","HtmlBody":"<p>t</p>"}]`)
	var results []struct {
		ErrorCode int
		Message   string
		MessageID string
	}
	if r.json(t, &results); r.status != 200 || len(results) != 3 || results[0].ErrorCode != 0 || results[1].ErrorCode != 300 || results[2].MessageID == "" {
		t.Fatalf("POST /email/batch: %s, want 200 with the middle message refused (300)", r)
	}
	r = rig.postJSON("/email/withTemplate", `{"From":"a@x.test","To":"gina@x.test","TemplateAlias":"welcome","TemplateModel":{"n":1}}`)
	if r.status != 200 {
		t.Errorf("POST /email/withTemplate: %s", r)
	}
	r = rig.postJSON("/email/batchWithTemplates", `{"Messages":[{"From":"a@x.test","To":"hank@x.test","TemplateId":7}]}`)
	if r.status != 200 || !strings.HasPrefix(string(r.body), "[") {
		t.Errorf("POST /email/batchWithTemplates: %s", r)
	}
	// The test token validates and sends nothing.
	r = rig.postJSON("/email", `{"From":"a@x.test","To":"ivan@x.test","Subject":"s","TextBody":"t"}`, "X-Postmark-Server-Token", "POSTMARK_API_TEST")
	if r.status != 200 {
		t.Errorf("POST /email with POSTMARK_API_TEST: %s", r)
	}
	r = rig.postJSON("/email", `{"From":"a@x.test","To":"x@x.test","Subject":"s"}`)
	var e struct {
		ErrorCode int
		Message   string
	}
	if r.json(t, &e); r.status != 422 || e.ErrorCode != 300 {
		t.Errorf("no body: %s, want 422 ErrorCode 300", r)
	}
	r = rig.postJSON("/email", `{`)
	if r.json(t, &e); r.status != 422 || e.ErrorCode != 402 {
		t.Errorf("bad JSON: %s, want 422 ErrorCode 402", r)
	}
	rig.counts(t, map[string]int{"bob@x.test": 1, "carol@x.test": 1, "dave@x.test": 1, "erin@x.test": 1, "frank@x.test": 1, "gina@x.test": 1, "hank@x.test": 1})
}

func TestAPISendGrid(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{})
	r := rig.postJSON("/v3/mail/send", `{"personalizations":[
		{"to":[{"email":"bob@x.test","name":"Bob"}],"cc":[{"email":"carol@x.test"}],"headers":{"Message-ID":"<s1@x>"}},
		{"to":[{"email":"Bob@x.test"}],"bcc":[{"email":"dave@x.test"}]}],
		"from":{"email":"a@x.test"},"subject":"s","content":[{"type":"text/plain","value":"v"}]}`, "Authorization", "Bearer SG.x")
	if r.status != 202 || len(r.body) != 0 || len(r.header.Get("X-Message-Id")) != 22 {
		t.Fatalf("POST /v3/mail/send: %s %v, want 202, an empty body and X-Message-Id", r, r.header)
	}
	// Each personalization is a message of its own.
	rig.counts(t, map[string]int{"bob@x.test": 2, "carol@x.test": 1, "dave@x.test": 1})
	if got, _ := rig.recipients(t); got["bob@x.test"][1] != 2 {
		t.Errorf("bob: %d distinct Message-IDs, want 2 (one set, one absent)", got["bob@x.test"][1])
	}
	// Sandbox mode: validated, answered 200, not sent.
	r = rig.postJSON("/v3/mail/send", `{"personalizations":[{"to":[{"email":"erin@x.test"}]}],"from":{"email":"a@x.test"},
		"subject":"s","content":[{"type":"text/plain","value":"v"}],"mail_settings":{"sandbox_mode":{"enable":true}}}`)
	if r.status != 200 {
		t.Errorf("sandbox mode: %s, want 200", r)
	}
	r = rig.postJSON("/v3/mail/send", `{"personalizations":[{"to":[]}],"from":{"email":"a@x.test"},"subject":"s","content":[{"type":"text/plain","value":"v"}]}`)
	var e struct {
		Errors []struct {
			Message string
			Field   *string
		}
	}
	if r.json(t, &e); r.status != 400 || len(e.Errors) != 1 || e.Errors[0].Field == nil || *e.Errors[0].Field != "personalizations.0.to" {
		t.Errorf("empty to: %s, want 400 naming personalizations.0.to", r)
	}
	r = rig.postJSON("/v3/mail/send", `{"personalizations":[{"to":[{"email":"a@x.test"}],"cc":[{"email":"A@x.test"}]}],"from":{"email":"a@x.test"},"subject":"s","content":[{"type":"text/plain","value":"v"}]}`)
	if r.status != 400 || !strings.Contains(string(r.body), "unique") {
		t.Errorf("duplicate in a personalization: %s, want 400", r)
	}
	rig.counts(t, map[string]int{"bob@x.test": 2, "carol@x.test": 1, "dave@x.test": 1})
}

func TestAPIMailgun(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{})
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for _, kv := range [][2]string{{"from", "a@x.test"}, {"to", "bob@x.test, Carol <carol@x.test>"}, {"to", "dave@x.test"},
		{"bcc", "erin@x.test"}, {"subject", "s"}, {"text", "t"}, {"h:Message-Id", "<m1@x>"}} {
		mw.WriteField(kv[0], kv[1])
	}
	mw.Close()
	r := rig.post("/v3/mg.x.test/messages", mw.FormDataContentType(), buf.Bytes())
	var ok struct{ ID, Message string }
	if r.json(t, &ok); r.status != 200 || ok.ID != "<m1@x>" || ok.Message != "Queued. Thank you." {
		t.Fatalf("multipart messages: %s, want 200 Queued with the sender's Message-ID", r)
	}
	form := url.Values{"from": {"a@x.test"}, "to": {"frank@x.test"}, "subject": {"s"}, "html": {"<p>t</p>"}}
	r = rig.post("/v3/mg.x.test/messages", "application/x-www-form-urlencoded", []byte(form.Encode()))
	if r.json(t, &ok); r.status != 200 || !strings.HasSuffix(ok.ID, "@mg.x.test>") {
		t.Errorf("urlencoded messages: %s, want 200 and an id on the domain", r)
	}
	// messages.mime: the recipients are the to field, the Message-ID the MIME's.
	buf.Reset()
	mw = multipart.NewWriter(&buf)
	mw.WriteField("to", "gina@x.test")
	fw, _ := mw.CreateFormFile("message", "MimeMessage")
	fw.Write([]byte("From: a@x.test\r\nTo: gina@x.test\r\nBcc: not-counted@x.test\r\nMessage-ID: <mime@x>\r\nSubject: s\r\n\r\nbody\r\n"))
	mw.Close()
	r = rig.post("/v3/mg.x.test/messages.mime", mw.FormDataContentType(), buf.Bytes())
	if r.json(t, &ok); r.status != 200 || ok.ID != "<mime@x>" {
		t.Errorf("messages.mime: %s", r)
	}
	form.Set("o:testmode", "yes")
	form.Set("to", "hank@x.test")
	if r = rig.post("/v3/mg.x.test/messages", "application/x-www-form-urlencoded", []byte(form.Encode())); r.status != 200 {
		t.Errorf("test mode: %s", r)
	}
	var e struct{ Message string }
	r = rig.post("/v3/mg.x.test/messages", "application/x-www-form-urlencoded", []byte("from=a%40x.test&subject=s&text=t"))
	if r.json(t, &e); r.status != 400 || e.Message != "to parameter is missing" {
		t.Errorf("no to: %s", r)
	}
	rig.counts(t, map[string]int{"bob@x.test": 1, "carol@x.test": 1, "dave@x.test": 1, "erin@x.test": 1, "frank@x.test": 1, "gina@x.test": 1})
}

func TestAPISES(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{})
	r := rig.postJSON("/v2/email/outbound-emails", `{"FromEmailAddress":"a@x.test","Destination":{"ToAddresses":["bob@x.test"],
		"CcAddresses":["carol@x.test"],"BccAddresses":["dave@x.test"]},"Content":{"Simple":{"Subject":{"Data":"s"},
		"Body":{"Text":{"Data":"t"}},"Headers":[{"Name":"Message-ID","Value":"<v2@x>"}]}}}`)
	var out struct{ MessageId string }
	if r.json(t, &out); r.status != 200 || !strings.HasSuffix(out.MessageId, "-000000") {
		t.Fatalf("v2 Simple: %s", r)
	}
	raw := "From: a@x.test\r\nTo: erin@x.test\r\nCc: frank@x.test\r\nMessage-ID: <raw@x>\r\nSubject: s\r\n\r\nbody\r\n"
	r = rig.postJSON("/v2/email/outbound-emails", `{"Content":{"Raw":{"Data":"`+base64.StdEncoding.EncodeToString([]byte(raw))+`"}}}`)
	if r.status != 200 {
		t.Fatalf("v2 Raw from its headers: %s", r)
	}
	r = rig.postJSON("/v2/email/outbound-emails", `{"FromEmailAddress":"a@x.test","Destination":{"ToAddresses":["gina@x.test"]},
		"Content":{"Template":{"TemplateName":"t","TemplateData":"{}"}}}`)
	if r.status != 200 {
		t.Fatalf("v2 Template: %s", r)
	}
	r = rig.postJSON("/v2/email/outbound-emails", `{"FromEmailAddress":"a@x.test","Destination":{"ToAddresses":["x@x.test"]},"Content":{}}`)
	if r.status != 400 || r.header.Get("X-Amzn-Errortype") != "BadRequestException" {
		t.Errorf("v2 without content: %s %v, want 400 BadRequestException", r, r.header)
	}
	// v1 query API.
	form := url.Values{"Action": {"SendEmail"}, "Version": {"2010-12-01"}, "Source": {"a@x.test"},
		"Destination.ToAddresses.member.1": {"hank@x.test"}, "Destination.ToAddresses.member.2": {"ivan@x.test"},
		"Message.Subject.Data": {"s"}, "Message.Body.Text.Data": {"t"}}
	r = rig.post("/", "application/x-www-form-urlencoded", []byte(form.Encode()))
	if r.status != 200 || !regexp.MustCompile(`<SendEmailResponse xmlns="[^"]+"><SendEmailResult><MessageId>[^<]+</MessageId></SendEmailResult>`).Match(r.body) {
		t.Fatalf("v1 SendEmail: %s", r)
	}
	form = url.Values{"Action": {"SendRawEmail"}, "Version": {"2010-12-01"}, "Destinations.member.1": {"judy@x.test"},
		"RawMessage.Data": {base64.StdEncoding.EncodeToString([]byte(raw))}}
	r = rig.post("/", "application/x-www-form-urlencoded", []byte(form.Encode()))
	if r.status != 200 || !bytes.Contains(r.body, []byte("<SendRawEmailResult>")) {
		t.Fatalf("v1 SendRawEmail: %s", r)
	}
	r = rig.post("/", "application/x-www-form-urlencoded", []byte("Action=SendBounce"))
	if r.status != 400 || !bytes.Contains(r.body, []byte("<Code>InvalidAction</Code>")) {
		t.Errorf("v1 unknown action: %s", r)
	}
	rig.counts(t, map[string]int{"bob@x.test": 1, "carol@x.test": 1, "dave@x.test": 1, "erin@x.test": 1, "frank@x.test": 1,
		"gina@x.test": 1, "hank@x.test": 1, "ivan@x.test": 1, "judy@x.test": 1})
}

// With Options.APIKey, each provider wants the key where it carries it.
func TestAPIKey(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{APIKey: "k3y"})
	basic := func(user, pass string) string {
		return "Basic " + base64.StdEncoding.EncodeToString([]byte(user+":"+pass))
	}
	sig := func(id string) string {
		return "AWS4-HMAC-SHA256 Credential=" + id + "/20260101/us-east-1/ses/aws4_request, SignedHeaders=host, Signature=00"
	}
	for _, c := range []struct {
		path, ctype, body, header, good, bad string
		status                               int
	}{
		{"/emails", "application/json", `{"from":"a@x.test","to":"r@x.test","subject":"s","text":"t"}`, "Authorization", "Bearer k3y", "Bearer nope", 403},
		{"/email", "application/json", `{"From":"a@x.test","To":"p@x.test","Subject":"s","TextBody":"t"}`, "X-Postmark-Server-Token", "k3y", "nope", 401},
		{"/v3/mail/send", "application/json", `{"personalizations":[{"to":[{"email":"s@x.test"}]}],"from":{"email":"a@x.test"},"subject":"s","content":[{"type":"text/plain","value":"v"}]}`,
			"Authorization", "Bearer k3y", "Bearer nope", 401},
		{"/v3/d.test/messages", "application/x-www-form-urlencoded", "from=a%40x.test&to=m%40x.test&subject=s&text=t", "Authorization", basic("api", "k3y"), basic("api", "nope"), 401},
		{"/v2/email/outbound-emails", "application/json", `{"FromEmailAddress":"a@x.test","Destination":{"ToAddresses":["e@x.test"]},"Content":{"Simple":{"Subject":{"Data":"s"},"Body":{"Text":{"Data":"t"}}}}}`,
			"Authorization", sig("k3y"), sig("AKIDNOPE"), 403},
	} {
		if r := rig.post(c.path, c.ctype, []byte(c.body), c.header, c.bad); r.status != c.status {
			t.Errorf("%s with a wrong key: %s, want %d", c.path, r, c.status)
		}
		if r := rig.post(c.path, c.ctype, []byte(c.body), c.header, c.good); r.status/100 != 2 {
			t.Errorf("%s with the key: %s, want it sent", c.path, r)
		}
	}
	rig.counts(t, map[string]int{"r@x.test": 1, "p@x.test": 1, "s@x.test": 1, "m@x.test": 1, "e@x.test": 1})
}

// Copies over HTTP and over SMTP are one count, and every connection of
// either is a session numbered from one counter.
func TestAPISameOracleAndSessionsAsSMTP(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{})
	c := faultDial(t, rig.srv.Addr())
	c.deliver(t, "<1@x>", "bob@x.test")
	if r := rig.postJSON("/emails", `{"from":"a@x.test","to":"BOB@x.test","subject":"s","text":"t","headers":{"Message-ID":"<1@x>"}}`); r.status != 200 {
		t.Fatal(r)
	}
	got, _ := rig.recipients(t)
	if got["bob@x.test"] != [2]int{2, 1} {
		t.Errorf("bob: %v, want 2 copies of one Message-ID (one by SMTP, one by HTTP)", got["bob@x.test"])
	}
	var smtpID, httpID uint64
	var httpInfo fakesmtp.SessionInfo
	faultEventually(t, "the HTTP session stands at acked", func() bool { // it moves on once the answer is out
		for _, s := range rig.srv.Sessions() {
			switch s.Transport {
			case fakesmtp.TransportSMTP:
				smtpID = s.ID
			case fakesmtp.TransportHTTP:
				httpID, httpInfo = s.ID, s
			}
		}
		return httpInfo.Moment == fakesmtp.MomentAcked
	})
	if smtpID == 0 || httpID != smtpID+1 {
		t.Errorf("sessions %+v: want the SMTP one and the HTTP one numbered from one counter", rig.srv.Sessions())
	}
	if httpInfo.Provider != "resend" || httpInfo.Moment != fakesmtp.MomentAcked || httpInfo.Messages != 1 || !strings.HasPrefix(httpInfo.Remote, "127.0.0.1:") {
		t.Errorf("HTTP session %+v: want resend, acked, 1 message, the client's address", httpInfo)
	}
	ds := rig.deliveries()
	if len(ds) != 2 || ds[0].Transport != "smtp" || ds[1].Transport != "http" || ds[1].Session != httpID || ds[1].Txn == ds[0].Txn {
		t.Errorf("deliveries %+v: want an smtp then an http one, with their sessions and distinct transactions", ds)
	}
}

// The APIs' metrics: copies by transport, requests by provider and
// answer, messages by result, and still no label per address.
func TestAPIMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	rig := apiServer(t, fakesmtp.Options{Registry: reg, Hooks: []fakesmtp.Hook{fakesmtp.NewFaultSet(faultSpecs(t, "reject=bob@x.test"), 1)}})
	p := apiProviders[0]
	rig.send(p, "", "carol@x.test", "dave@x.test")
	rig.send(p, "", "bob@x.test")
	rig.postJSON(p.path, "{")
	cutReg := prometheus.NewRegistry()
	cutRig := apiServer(t, fakesmtp.Options{Registry: cutReg, Hooks: []fakesmtp.Hook{fakesmtp.NewFaultSet(faultSpecs(t, "drop-after-data=1"), 1)}})
	cutRig.send(p, "", "erin@x.test")
	if v := metricValue(t, cutReg, "onecopy_api_requests_total", "provider", "resend", "code", "reset"); v != 1 {
		t.Errorf("requests cut: %v, want 1 reset", v)
	}
	if v := metricValue(t, cutReg, "onecopy_smtp_copies_total", "transport", "http"); v != 1 {
		t.Errorf("copies of the cut request: %v, want 1 (counted before the cut)", v)
	}

	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, pr := range problems {
		t.Errorf("lint: %s: %s", pr.Metric, pr.Text)
	}
	for _, m := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"onecopy_smtp_copies_total", []string{"transport", "http"}, 2},
		{"onecopy_api_requests_total", []string{"provider", "resend", "code", "200"}, 1},
		{"onecopy_api_requests_total", []string{"provider", "resend", "code", "422"}, 2},
		{"onecopy_api_transactions_total", []string{"provider", "resend", "result", "accepted"}, 1},
		{"onecopy_api_transactions_total", []string{"provider", "resend", "result", "rejected"}, 1},
		{"onecopy_smtp_faults_total", []string{"kind", "reject"}, 1},
	} {
		if got := metricValue(t, reg, m.name, m.labels...); got != m.want {
			t.Errorf("%s%v = %v, want %v", m.name, m.labels, got, m.want)
		}
	}
	series, _ := testutil.GatherAndCount(reg)
	for i := range 20 {
		rig.send(p, fmt.Sprintf("<%d@x>", i), fmt.Sprintf("many%d@x.test", i))
	}
	if n, _ := testutil.GatherAndCount(reg); n != series {
		t.Errorf("series went from %d to %d with 20 more recipients: a label per address or message?", series, n)
	}
}
