// Idempotency keys as Resend documents them, and the two specs they serve:
// a sender that reuses its key on retries gets exactly one copy per
// address under cuts; a sender with a fixed Message-ID and no key gets
// effectively-once (every repeat explained by an in-doubt request); a
// retry after the key's window sends again.

package fakesmtp_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/prometheus/client_golang/prometheus"
)

const resendOne = `{"from":"a@x.test","to":"bob@x.test","subject":"s","text":"t"}`

func TestAPIIdempotencyReplay(t *testing.T) {
	reg := prometheus.NewRegistry()
	rig := apiServer(t, fakesmtp.Options{Registry: reg})
	first := rig.postJSON("/emails", resendOne, "Idempotency-Key", "welcome/1")
	again := rig.postJSON("/emails", resendOne, "Idempotency-Key", "welcome/1")
	if first.status != 200 || again.status != 200 || string(first.body) != string(again.body) {
		t.Errorf("same key, same body: %s then %s, want the first answer twice", first, again)
	}
	rig.counts(t, map[string]int{"bob@x.test": 1})
	// Without a Message-ID of its own, the key identifies the message.
	if ds := rig.deliveries(); len(ds) != 1 || ds[0].MessageID != "welcome/1" {
		t.Errorf("deliveries %+v, want one, identified by its key", ds)
	}
	other := rig.postJSON("/emails", strings.Replace(resendOne, `"t"`, `"changed"`, 1), "Idempotency-Key", "welcome/1")
	var e struct {
		StatusCode int
		Name       string
	}
	if other.json(t, &e); other.status != 409 || e.Name != "invalid_idempotent_request" {
		t.Errorf("same key, other body: %s, want 409 invalid_idempotent_request", other)
	}
	r := rig.postJSON("/emails", resendOne, "Idempotency-Key", strings.Repeat("k", 257))
	if r.json(t, &e); r.status != 400 || e.Name != "invalid_idempotency_key" {
		t.Errorf("a 257-character key: %s, want 400 invalid_idempotency_key", r)
	}
	// A batch with a key replays whole; its messages are told apart.
	batch := `[{"from":"a@x.test","to":"c@x.test","subject":"s","text":"t"},{"from":"a@x.test","to":"d@x.test","subject":"s","text":"t"}]`
	b1 := rig.postJSON("/emails/batch", batch, "Idempotency-Key", "team/7")
	b2 := rig.postJSON("/emails/batch", batch, "Idempotency-Key", "team/7")
	if b1.status != 200 || string(b1.body) != string(b2.body) {
		t.Errorf("batch replay: %s then %s", b1, b2)
	}
	rig.counts(t, map[string]int{"bob@x.test": 1, "c@x.test": 1, "d@x.test": 1})
	if ds := rig.deliveries(); len(ds) != 3 || ds[1].MessageID != "team/7#0" || ds[2].MessageID != "team/7#1" {
		t.Errorf("deliveries %+v", ds)
	}
	if v := metricValue(t, reg, "onecopy_api_transactions_total", "provider", "resend", "result", "replayed"); v != 3 {
		t.Errorf("replayed transactions: %v, want 3", v)
	}
}

// A second request with the key while the first is still served gets 409
// concurrent_idempotent_requests; once the first is answered, a replay.
func TestAPIIdempotencyConcurrent(t *testing.T) {
	rig := apiFaultServer(t, 1, "slow-ack=1h")
	first := make(chan apiResult)
	go func() { first <- rig.postJSON("/emails", resendOne, "Idempotency-Key", "k") }()
	faultEventually(t, "the first answer is held", func() bool {
		ss := rig.srv.Sessions()
		return len(ss) == 1 && ss[0].Moment == fakesmtp.MomentCommitted
	})
	hc := &http.Client{Timeout: faultWait}
	r := apiPost(hc, rig.base+"/emails", "application/json", []byte(resendOne), "Idempotency-Key", "k")
	var e struct{ Name string }
	if r.json(t, &e); r.status != 409 || e.Name != "concurrent_idempotent_requests" {
		t.Errorf("while the first is in flight: %s, want 409 concurrent_idempotent_requests", r)
	}
	rig.srv.Close() // lets the held answer go
	if r := <-first; r.status != 200 {
		t.Fatalf("first: %s", r)
	}
	faultCopies(t, rig.srv, map[string]int{"bob@x.test": 1})
}

// Only a request that counted keeps its key: a throttled one frees it.
func TestAPIIdempotencyFreedByARefusal(t *testing.T) {
	faults := fakesmtp.NewFaultSet(faultSpecs(t, "tempfail=1"), 1)
	rig := apiServer(t, fakesmtp.Options{Hooks: []fakesmtp.Hook{faults}})
	if r := rig.postJSON("/emails", resendOne, "Idempotency-Key", "k"); r.status/100 == 2 {
		t.Fatalf("under tempfail=1: %s", r)
	}
	faults.Set(nil, 1)
	if r := rig.postJSON("/emails", resendOne, "Idempotency-Key", "k"); r.status != 200 {
		t.Fatalf("the retry: %s", r)
	}
	rig.counts(t, map[string]int{"bob@x.test": 1})
}

// The window runs on the fake's clock: POST /api/v1/clock?advance= moves
// it, and a retry past the window sends a second copy.
func TestAPIIdempotencyWindow(t *testing.T) {
	rig := apiServer(t, fakesmtp.Options{IdempotencyWindow: time.Hour})
	advance := func(d string) {
		t.Helper()
		resp, err := rig.hc.Post(rig.base+"/api/v1/clock?advance="+d, "", nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("POST /api/v1/clock?advance=%s: %v %v", d, resp, err)
		}
		var body struct{ Offset string }
		json.NewDecoder(resp.Body).Decode(&body)
		resp.Body.Close()
		t.Logf("clock offset %s", body.Offset)
	}
	rig.postJSON("/emails", resendOne, "Idempotency-Key", "k")
	advance("59m")
	rig.postJSON("/emails", resendOne, "Idempotency-Key", "k")
	rig.counts(t, map[string]int{"bob@x.test": 1})
	advance("2m")
	if r := rig.postJSON("/emails", resendOne, "Idempotency-Key", "k"); r.status != 200 {
		t.Fatal(r)
	}
	rig.counts(t, map[string]int{"bob@x.test": 2})
	if got, _ := rig.recipients(t); got["bob@x.test"][1] != 1 {
		t.Errorf("bob: %d distinct Message-IDs, want 1 (both copies carry the key)", got["bob@x.test"][1])
	}
	if r, err := rig.hc.Post(rig.base+"/api/v1/clock?advance=-1h", "", nil); err != nil || r.StatusCode != 400 {
		t.Errorf("a negative advance: %v %v, want 400", r, err)
	}
}

// retrySender is a sender as an SDK user writes one: each address until
// its request is answered 2xx, the same request body (so the same
// Message-ID, and the same key when it uses one) on every retry, over a
// kept-alive connection.
func retrySender(t *testing.T, rig *apiRig, p apiProvider, addrs []string, key bool) {
	t.Helper()
	hc := &http.Client{Transport: &http.Transport{}, Timeout: 300 * time.Millisecond}
	for _, a := range addrs {
		id := "<" + a + "@ledger>"
		var hdr []string
		if key {
			hdr = []string{"Idempotency-Key", id}
		}
		for try := 0; ; try++ {
			if try > 100 {
				t.Fatalf("%s: no answer after %d tries", a, try)
			}
			r := apiPost(hc, rig.base+p.path, p.ctype, p.body(id, a), hdr...)
			if r.err == nil && r.status/100 == 2 {
				break
			}
			if r.err == nil && r.status != 409 {
				t.Fatalf("%s: %s", a, r)
			}
		}
	}
	hc.CloseIdleConnections()
}

// judge checks a run the way the harness's effectively-once verdict does:
// nothing missing, every extra copy of an address repeats its one
// Message-ID and is explained by a distinct delivered in-doubt request
// that named the address. It returns the extra copies.
func judge(t *testing.T, rig *apiRig, addrs []string) (extra int) {
	t.Helper()
	rig.noSessions(t)
	explained := map[string]int{}
	for len(rig.rec.doubt) > 0 {
		d := <-rig.rec.doubt
		if d.Delivered {
			for _, a := range d.Recipients {
				explained[a]++
			}
		}
	}
	got, _ := rig.recipients(t)
	for _, a := range addrs {
		c := got[a]
		switch {
		case c[0] == 0:
			t.Errorf("%s: missing", a)
		case c[1] != 1:
			t.Errorf("%s: %d distinct Message-IDs, want 1", a, c[1])
		case c[0]-1 > explained[a]:
			t.Errorf("%s: %d copies, %d explained by in-doubt requests", a, c[0], explained[a])
		}
		extra += c[0] - 1
	}
	return extra
}

func addrList(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("r%03d@x.test", i)
	}
	return out
}

// The Resend spec: with the key reused, exactly once under cuts after
// the count and held answers; without it (the same sender, same faults),
// repeats: the check can fail.
func TestAPISpecIdempotencyKeyExactlyOnce(t *testing.T) {
	addrs := addrList(30)
	faults := []string{"drop-after-data=0.3", "slow-ack=1s@0.2"}
	rig := apiFaultServer(t, 3, faults...)
	retrySender(t, rig, apiProviders[0], addrs, true)
	if extra := judge(t, rig, addrs); extra != 0 {
		t.Errorf("with the key: %d extra copies, want exactly once", extra)
	}
	if n := rig.rec.count("drop-after-data"); n == 0 {
		t.Fatal("seed 3 cut nothing: the spec proves nothing")
	}

	rig = apiFaultServer(t, 3, faults...)
	retrySender(t, rig, apiProviders[0], addrs, false)
	if extra := judge(t, rig, addrs); extra == 0 {
		t.Error("without the key: no extra copy under the same faults, so the check above could not fail")
	}
}

// Providers without keys: a fixed Message-ID per address makes a sender
// effectively-once, every repeat explained by an in-doubt request.
func TestAPISpecLedgerEffectivelyOnce(t *testing.T) {
	addrs := addrList(20)
	for _, p := range apiProviders {
		t.Run(p.name, func(t *testing.T) {
			rig := apiFaultServer(t, 5, "drop-after-data=0.3", "slow-ack=1s@0.2")
			retrySender(t, rig, p, addrs, false)
			if extra := judge(t, rig, addrs); extra == 0 {
				t.Error("no repeats under seed 5: the faults hit no answer, and the spec proves nothing")
			}
		})
	}
}

// The retry after the window: a key kept for longer than the provider
// keeps it no longer protects, and the repeat is caught.
func TestAPISpecRetryAfterWindowCaught(t *testing.T) {
	var srv *fakesmtp.Server
	var cut atomic.Bool
	hook := fakesmtp.HookAt(fakesmtp.Moments(fakesmtp.MomentCommitted), fakesmtp.HookFunc(func(context.Context, *fakesmtp.Event) fakesmtp.Action {
		if cut.Swap(true) {
			return fakesmtp.Action{}
		}
		srv.AdvanceClock(25 * time.Hour) // the sender's retry comes a day later
		return fakesmtp.Action{Close: true, Fault: "drop-after-data"}
	}))
	rig := apiServer(t, fakesmtp.Options{Hooks: []fakesmtp.Hook{hook}})
	srv = rig.srv
	retrySender(t, rig, apiProviders[0], []string{"bob@x.test"}, true)
	got, _ := rig.recipients(t)
	if got["bob@x.test"] != [2]int{2, 1} {
		t.Errorf("bob: %v, want 2 copies of one Message-ID: the retry after the window sent again", got["bob@x.test"])
	}
	if extra := judge(t, rig, []string{"bob@x.test"}); extra != 1 {
		t.Errorf("%d extra copies, want the 1 the expired key let through (explained: the first request was cut)", extra)
	}
}
