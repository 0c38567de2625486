// The fault catalog over HTTP, provider by provider: the same --fault
// names and seeds as over SMTP, answered the way each provider answers
// (its refusal for a rejected recipient, its 429 or 503 for a 4xx, a
// reset connection for a cut), counted and reported the same way.

package fakesmtp_test

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// apiProvider is how a test sends one message through one provider's API
// and reads its answers.
type apiProvider struct {
	name, path, ctype string
	body              func(id string, to ...string) []byte
	// rejected: the answer is the provider's refusal of addr.
	rejected func(r apiResult, addr string) bool
	// throttled: the answer is its "slow down" (429, or SES v1's 400
	// Throttling) or its 503.
	throttled func(r apiResult) bool
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func jsonList(list []string) string {
	b, _ := json.Marshal(list)
	return string(b)
}

func status429or503(r apiResult) bool {
	return (r.status == 429 || r.status == 503) && r.header.Get("Retry-After") != ""
}

var apiProviders = []apiProvider{
	{
		name: "resend", path: "/emails", ctype: "application/json",
		body: func(id string, to ...string) []byte {
			return []byte(`{"from":"a@x.test","to":` + jsonList(to) + `,"subject":"s","text":"t","headers":{"Message-ID":` + jsonString(id) + `}}`)
		},
		rejected: func(r apiResult, addr string) bool {
			return r.status == 422 && bytes.Contains(r.body, []byte(`"name":"validation_error"`)) && bytes.Contains(r.body, []byte(addr))
		},
		throttled: status429or503,
	},
	{
		name: "postmark", path: "/email", ctype: "application/json",
		body: func(id string, to ...string) []byte {
			return []byte(`{"From":"a@x.test","To":` + jsonString(strings.Join(to, ", ")) + `,"Subject":"s","TextBody":"t","Headers":[{"Name":"Message-ID","Value":` + jsonString(id) + `}]}`)
		},
		rejected: func(r apiResult, addr string) bool {
			return r.status == 422 && bytes.Contains(r.body, []byte(`"ErrorCode":406`)) && bytes.Contains(r.body, []byte("Found inactive addresses: "+addr+"."))
		},
		throttled: status429or503,
	},
	{
		name: "sendgrid", path: "/v3/mail/send", ctype: "application/json",
		body: func(id string, to ...string) []byte {
			var as []string
			for _, a := range to {
				as = append(as, `{"email":`+jsonString(a)+`}`)
			}
			return []byte(`{"personalizations":[{"to":[` + strings.Join(as, ",") + `],"headers":{"Message-ID":` + jsonString(id) + `}}],"from":{"email":"a@x.test"},"subject":"s","content":[{"type":"text/plain","value":"t"}]}`)
		},
		rejected: func(r apiResult, addr string) bool {
			return r.status == 400 && bytes.Contains(r.body, []byte(`"field":"personalizations.0.to.`)) && bytes.Contains(r.body, []byte(addr))
		},
		throttled: status429or503,
	},
	{
		name: "mailgun", path: "/v3/mg.x.test/messages", ctype: "application/x-www-form-urlencoded",
		body: func(id string, to ...string) []byte {
			return []byte(url.Values{"from": {"a@x.test"}, "to": to, "subject": {"s"}, "text": {"t"}, "h:Message-Id": {id}}.Encode())
		},
		rejected: func(r apiResult, addr string) bool {
			return r.status == 400 && bytes.Contains(r.body, []byte(addr))
		},
		throttled: status429or503,
	},
	{
		name: "ses-v2", path: "/v2/email/outbound-emails", ctype: "application/json",
		body: func(id string, to ...string) []byte {
			return []byte(`{"FromEmailAddress":"a@x.test","Destination":{"ToAddresses":` + jsonList(to) + `},"Content":{"Simple":{"Subject":{"Data":"s"},"Body":{"Text":{"Data":"t"}},"Headers":[{"Name":"Message-ID","Value":` + jsonString(id) + `}]}}}`)
		},
		rejected: func(r apiResult, addr string) bool {
			return r.status == 400 && r.header.Get("X-Amzn-Errortype") == "MessageRejected" && bytes.Contains(r.body, []byte(addr))
		},
		throttled: func(r apiResult) bool {
			return (r.status == 429 && r.header.Get("X-Amzn-Errortype") == "TooManyRequestsException") || (r.status == 503 && r.header.Get("X-Amzn-Errortype") == "ServiceUnavailable")
		},
	},
	{
		name: "ses-v1", path: "/", ctype: "application/x-www-form-urlencoded",
		body: func(id string, to ...string) []byte {
			raw := "From: a@x.test\r\nTo: " + strings.Join(to, ", ") + "\r\nMessage-ID: " + id + "\r\nSubject: s\r\n\r\nt\r\n"
			return []byte(url.Values{"Action": {"SendRawEmail"}, "Version": {"2010-12-01"}, "RawMessage.Data": {base64.StdEncoding.EncodeToString([]byte(raw))}}.Encode())
		},
		rejected: func(r apiResult, addr string) bool {
			return r.status == 400 && bytes.Contains(r.body, []byte("<Code>MessageRejected</Code>")) && bytes.Contains(r.body, []byte(addr))
		},
		throttled: func(r apiResult) bool {
			return (r.status == 400 && bytes.Contains(r.body, []byte("<Code>Throttling</Code>"))) || (r.status == 503 && bytes.Contains(r.body, []byte("<Code>ServiceUnavailable</Code>")))
		},
	},
}

// send sends one message through p.
func (rig *apiRig) send(p apiProvider, id string, to ...string) apiResult {
	return rig.post(p.path, p.ctype, p.body(id, to...))
}

func TestAPIFaultReject(t *testing.T) {
	for _, p := range apiProviders {
		t.Run(p.name, func(t *testing.T) {
			rig := apiFaultServer(t, 1, "reject=Bob@X.test")
			r := rig.send(p, "<1@x>", "carol@x.test", "bob@x.test")
			if !p.rejected(r, "bob@x.test") {
				t.Errorf("a message to carol and the rejected bob: %s %v, want %s's refusal naming bob", r, r.header, p.name)
			}
			if r = rig.send(p, "<2@x>", "carol@x.test"); r.status/100 != 2 {
				t.Errorf("carol alone: %s", r)
			}
			rig.counts(t, map[string]int{"carol@x.test": 1}) // the whole first message was refused
			ev := rig.rec.next(t, "reject")
			if ev.Moment != fakesmtp.MomentRcpt || ev.Address != "bob@x.test" || !strings.HasPrefix(ev.Reply, "550 5.1.1") || ev.Session == 0 {
				t.Errorf("fault event %+v: want reject of bob at rcpt with its 550", ev)
			}
		})
	}
}

// A batch with per-message answers is partly accepted; a strict one is
// refused whole.
func TestAPIFaultRejectInBatch(t *testing.T) {
	rig := apiFaultServer(t, 1, "reject=bob@x.test")
	r := rig.postJSON("/email/batch", `[{"From":"a@x.test","To":"bob@x.test","Subject":"s","TextBody":"t"},{"From":"a@x.test","To":"carol@x.test","Subject":"s","TextBody":"t"}]`)
	var pm []struct {
		ErrorCode int
		MessageID string
	}
	if r.json(t, &pm); r.status != 200 || len(pm) != 2 || pm[0].ErrorCode != 406 || pm[1].ErrorCode != 0 || pm[1].MessageID == "" {
		t.Errorf("Postmark batch: %s, want 200 with bob refused (406) and carol sent", r)
	}
	batch := `[{"from":"a@x.test","to":"dave@x.test","subject":"s","text":"t"},{"from":"a@x.test","to":"bob@x.test","subject":"s","text":"t"}]`
	if r = rig.postJSON("/emails/batch", batch); r.status != 422 {
		t.Errorf("Resend strict batch: %s, want 422 for the whole batch", r)
	}
	r = rig.postJSON("/emails/batch", batch, "x-batch-validation", "permissive")
	var rs struct {
		Data   []struct{ ID string }
		Errors []struct{ Index int }
	}
	if r.json(t, &rs); r.status != 200 || len(rs.Data) != 1 || len(rs.Errors) != 1 || rs.Errors[0].Index != 1 {
		t.Errorf("Resend permissive batch: %s, want dave sent and index 1 refused", r)
	}
	rig.counts(t, map[string]int{"carol@x.test": 1, "dave@x.test": 1})
}

func TestAPIFaultTempfail(t *testing.T) {
	for _, p := range apiProviders {
		t.Run(p.name, func(t *testing.T) {
			rig := apiFaultServer(t, 1, "tempfail=1")
			codes := map[int]bool{}
			for i := range 6 {
				r := rig.send(p, "", fmt.Sprintf("u%d@x.test", i))
				if !p.throttled(r) {
					t.Fatalf("send %d: %s %v, want %s's 429 or 503 with Retry-After", i, r, r.header, p.name)
				}
				codes[r.status] = true
			}
			if len(codes) != 2 {
				t.Errorf("statuses %v over 6 sends, seed 1: want both kinds (451/450/452 draw 503 or 429)", codes)
			}
			rig.counts(t, map[string]int{})
		})
	}
}

// Greylisting learns every recipient of a refused request, so a batch
// goes through on its first retry.
func TestAPIFaultGreylist(t *testing.T) {
	rig := apiFaultServer(t, 1, "greylist")
	batch := `[{"from":"a@x.test","to":["a1@x.test","a2@x.test"],"subject":"s","text":"t"},{"from":"a@x.test","to":"a3@x.test","subject":"s","text":"t"}]`
	if r := rig.postJSON("/emails/batch", batch); r.status != 429 || r.header.Get("Retry-After") == "" {
		t.Fatalf("first try: %s, want 429 with Retry-After", r)
	}
	if r := rig.postJSON("/emails/batch", batch); r.status != 200 {
		t.Fatalf("retry: %s, want 200", r)
	}
	rig.counts(t, map[string]int{"a1@x.test": 1, "a2@x.test": 1, "a3@x.test": 1})
	if n := rig.rec.count("greylist"); n != 3 {
		t.Errorf("%d greylist faults, want one per address", n)
	}
}

func TestAPIFaultDropAfterData(t *testing.T) {
	for _, p := range apiProviders {
		t.Run(p.name, func(t *testing.T) {
			rig := apiFaultServer(t, 1, "drop-after-data=1")
			r := rig.send(p, "<d@x>", "bob@x.test", "carol@x.test")
			if r.err == nil {
				t.Fatalf("answer %s, want the connection reset before any answer", r)
			}
			rig.counts(t, map[string]int{"bob@x.test": 1, "carol@x.test": 1}) // counted before the cut
			d := rig.rec.nextDoubt(t)
			if !d.Delivered || d.Acked || d.Ended != fakesmtp.EndCut || d.Fault != "drop-after-data" || d.Transport != "http" ||
				d.Provider != strings.TrimSuffix(strings.TrimSuffix(p.name, "-v2"), "-v1") || d.MessageID != "<d@x>" ||
				!slices.Equal(d.Recipients, []string{"bob@x.test", "carol@x.test"}) {
				t.Errorf("in doubt: %+v, want bob and carol delivered, not acked, cut by drop-after-data", d)
			}
			if ev := rig.rec.next(t, "drop-after-data"); !ev.Cut || ev.Moment != fakesmtp.MomentCommitted {
				t.Errorf("fault event %+v: want a cut at committed", ev)
			}
		})
	}
}

func TestAPIFaultDropDuringData(t *testing.T) {
	for _, p := range apiProviders {
		t.Run(p.name, func(t *testing.T) {
			rig := apiFaultServer(t, 1, "drop-during-data=1")
			if r := rig.send(p, "<d@x>", "bob@x.test"); r.err == nil {
				t.Fatalf("answer %s, want the connection reset", r)
			}
			rig.counts(t, map[string]int{"bob@x.test": 0})
			if d := rig.rec.nextDoubt(t); d.Delivered || d.Acked || d.Ended != fakesmtp.EndCut || !slices.Equal(d.Recipients, []string{"bob@x.test"}) {
				t.Errorf("in doubt: %+v, want bob undelivered, cut", d)
			}
		})
	}
}

// A client that gives up on a held answer leaves a delivered message it
// never heard of.
func TestAPIFaultSlowAckImpatientClient(t *testing.T) {
	rig := apiFaultServer(t, 1, "slow-ack=30s")
	hc := &http.Client{Transport: rig.tr, Timeout: 200 * time.Millisecond}
	began := time.Now()
	r := apiPost(hc, rig.base+"/emails", "application/json", apiProviders[0].body("<s@x>", "bob@x.test"))
	if r.err == nil || !strings.Contains(r.err.Error(), "Timeout") {
		t.Fatalf("answer %s, want the client's timeout", r)
	}
	d := rig.rec.nextDoubt(t)
	if !d.Delivered || d.Acked || d.Ended != fakesmtp.EndClient {
		t.Errorf("in doubt: %+v, want delivered, not acked, ended by the client", d)
	}
	if waited := time.Since(began); waited > 20*time.Second {
		t.Errorf("the hold outlived its client by %s", waited)
	}
	rig.counts(t, map[string]int{"bob@x.test": 1})
}

func TestAPIFaultSlowAckAndLatency(t *testing.T) {
	for _, spec := range []string{"slow-ack=300ms", "latency=300ms"} {
		rig := apiFaultServer(t, 1, spec)
		began := time.Now()
		if r := rig.send(apiProviders[1], "<s@x>", "bob@x.test"); r.status != 200 {
			t.Fatalf("%s: %s", spec, r)
		}
		if waited := time.Since(began); waited < 300*time.Millisecond {
			t.Errorf("%s: answered after %s", spec, waited)
		}
		rig.counts(t, map[string]int{"bob@x.test": 1})
	}
}

func TestAPIFaultRefuse(t *testing.T) {
	rig := apiFaultServer(t, 1, "refuse=1")
	for _, p := range apiProviders {
		r := rig.send(p, "", "bob@x.test")
		if !p.throttled(r) || r.status != 503 || !r.close {
			t.Errorf("%s: %s %v, want 503 and Connection: close", p.name, r, r.header)
		}
	}
	rig.counts(t, map[string]int{})
	rig.noSessions(t)
	select {
	case d := <-rig.rec.doubt:
		t.Errorf("in doubt %+v after a refused connection", d)
	default:
	}
}

// conn-limit=N: a connection carries N messages; the next request on it
// is told 503 and the connection closed; a new one goes on.
func TestAPIFaultConnLimit(t *testing.T) {
	rig := apiFaultServer(t, 1, "conn-limit=2")
	var got []int
	for i := range 4 {
		got = append(got, rig.send(apiProviders[0], "", fmt.Sprintf("u%d@x.test", i)).status)
	}
	if want := []int{200, 200, 503, 200}; !slices.Equal(got, want) {
		t.Errorf("statuses %v, want %v", got, want)
	}
	rig.counts(t, map[string]int{"u0@x.test": 1, "u1@x.test": 1, "u3@x.test": 1})
}

// An outage takes the SMTP port down; the send APIs answer 503 meanwhile
// and the control API stays up.
func TestAPIFaultOutage(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{})
	if err := rig.srv.Outage(time.Hour); err != nil {
		t.Fatal(err)
	}
	for _, p := range apiProviders {
		if r := rig.send(p, "", "bob@x.test"); r.status != 503 {
			t.Errorf("%s during the outage: %s, want 503", p.name, r)
		}
	}
	if _, total := rig.recipients(t); total != 0 {
		t.Errorf("%d copies during an outage", total)
	}
	rig2 := apiServer(t, fakesmtp.Options{})
	rig2.srv.Outage(100 * time.Millisecond)
	faultEventually(t, "the outage ends", func() bool { return rig2.send(apiProviders[0], "", "bob@x.test").status == 200 })
	rig2.counts(t, map[string]int{"bob@x.test": 1})
}

// Same seed, same faults, over HTTP as over SMTP.
func TestAPIFaultSameSeedSameSequence(t *testing.T) {
	run := func(seed uint64) []int {
		rig := apiFaultServer(t, seed, "tempfail=0.5")
		var out []int
		for i := range 30 {
			out = append(out, rig.send(apiProviders[2], "", fmt.Sprintf("u%d@x.test", i)).status)
		}
		return out
	}
	a, b, c := run(7), run(7), run(8)
	if !slices.Equal(a, b) {
		t.Errorf("seed 7 twice: %v and %v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 7 and 8 gave the same %v", a)
	}
}

// The runtime faults API changes the faults of HTTP requests too.
func TestAPIFaultRuntimeAPI(t *testing.T) {
	rig := apiFaultServer(t, 1)
	put := func(body string) {
		req, _ := http.NewRequest(http.MethodPut, rig.base+"/api/v1/faults", strings.NewReader(body))
		resp, err := rig.hc.Do(req)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("PUT /api/v1/faults: %v %v", resp, err)
		}
		resp.Body.Close()
	}
	put(`{"faults":["reject=bob@x.test"]}`)
	if r := rig.send(apiProviders[0], "", "bob@x.test"); r.status != 422 {
		t.Errorf("after PUT reject: %s", r)
	}
	put(`{"faults":[]}`)
	if r := rig.send(apiProviders[0], "", "bob@x.test"); r.status != 200 {
		t.Errorf("after PUT none: %s", r)
	}
	rig.counts(t, map[string]int{"bob@x.test": 1})
}
