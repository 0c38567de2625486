// GET /api/v1/recipients filtered and paged, and
// GET /api/v1/recipients/{address}: 200, 404 with zero counts, 400.

package fakesmtp_test

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// recordedServer is a server whose oracle holds n recipients r000@x.test
// ... (sorted as numbered), every third of them with two copies.
func recordedServer(t *testing.T, n int) (*fakesmtp.Server, *apiClient) {
	t.Helper()
	srv := start(t, fakesmtp.Options{HTTPAddr: "127.0.0.1:0"})
	now := time.Now()
	for i := range n {
		addr := fmt.Sprintf("r%03d@x.test", i)
		srv.Oracle().Record(now, []string{addr}, fmt.Sprintf("<%d@x>", i))
		if i%3 == 0 {
			srv.Oracle().Record(now, []string{addr}, fmt.Sprintf("<%d@x>", i))
		}
	}
	return srv, newAPI(t, srv)
}

func TestRecipientsWithoutParametersKeepTheirShape(t *testing.T) {
	_, api := recordedServer(t, 5)
	code, b := api.do("GET", "/api/v1/recipients")
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/recipients: %d %s", code, b)
	}
	var body map[string]json.RawMessage
	if err := json.Unmarshal(b, &body); err != nil {
		t.Fatal(err)
	}
	if keys := slices.Sorted(maps.Keys(body)); !slices.Equal(keys, []string{"copies", "recipients"}) {
		t.Errorf("fields %v, want exactly copies and recipients", keys)
	}
	var all apiRecipients
	api.getJSON("/api/v1/recipients", &all)
	if all.Copies != 7 || len(all.Recipients) != 5 {
		t.Errorf("%d copies, %d recipients; want 7 and 5", all.Copies, len(all.Recipients))
	}
}

type apiPage struct {
	Copies     int64          `json:"copies"`
	Recipients []apiRecipient `json:"recipients"`
	Next       *string        `json:"next"`
}

// pages follows next from the first page of query to the last, and
// returns every address seen, in order.
func (a *apiClient) pages(query string) (addrs []string, pages int) {
	a.t.Helper()
	after := ""
	for {
		q := query
		if after != "" {
			q += "&after=" + url.QueryEscape(after)
		}
		var p apiPage
		a.getJSON("/api/v1/recipients?"+q, &p)
		pages++
		for _, r := range p.Recipients {
			addrs = append(addrs, r.Address)
		}
		if p.Next == nil {
			return addrs, pages
		}
		if *p.Next != p.Recipients[len(p.Recipients)-1].Address {
			a.t.Fatalf("?%s: next %q is not the page's last address %q", q, *p.Next, p.Recipients[len(p.Recipients)-1].Address)
		}
		after = *p.Next
		if pages > 1000 {
			a.t.Fatalf("?%s: no last page after 1000", query)
		}
	}
}

func TestRecipientsPaged(t *testing.T) {
	srv, api := recordedServer(t, 25)
	var want []string
	for _, r := range srv.Snapshot().Recipients {
		want = append(want, r.Address)
	}
	for _, limit := range []int{1, 7, 25, 26, 1000} {
		got, pages := api.pages(fmt.Sprintf("limit=%d", limit))
		if !slices.Equal(got, want) {
			t.Errorf("limit=%d: pages gave %v, want %v", limit, got, want)
		}
		if wantPages := (25 + limit - 1) / limit; pages != wantPages {
			t.Errorf("limit=%d: %d pages, want %d (no empty last page)", limit, pages, wantPages)
		}
	}
	page := func(query string) (p apiPage) {
		t.Helper()
		api.getJSON("/api/v1/recipients?"+query, &p)
		return p
	}
	if p := page("limit=10"); p.Copies != 34 {
		t.Errorf("a page says %d copies, want the server's 34", p.Copies)
	}
	// The cursor is an address, keyed as the counts are; the page starts
	// strictly after it, whether or not it has a copy itself.
	if p := page("limit=2&after=R004@X.TEST"); len(p.Recipients) != 2 || p.Recipients[0].Address != "r005@x.test" || p.Recipients[1].Address != "r006@x.test" {
		t.Errorf("after=R004@X.TEST: %+v, want r005 and r006", p.Recipients)
	}
	if p := page("after=r004@zzz"); len(p.Recipients) != 20 || p.Recipients[0].Address != "r005@x.test" || p.Next != nil {
		t.Errorf("after=r004@zzz (no limit): %d recipients from %+v, next %v; want the 20 from r005, no next", len(p.Recipients), p.Recipients[:1], p.Next)
	}
	if p := page("after=zzz"); p.Recipients == nil || len(p.Recipients) != 0 || p.Next != nil {
		t.Errorf("after the last address: %+v, want an empty list (not null) and no next", p)
	}
}

func TestRecipientsDuplicated(t *testing.T) {
	srv, api := recordedServer(t, 25)
	var want []string
	for _, r := range srv.Snapshot().Recipients {
		if r.Copies > 1 {
			want = append(want, r.Address)
		}
	}
	if len(want) != 9 {
		t.Fatalf("setup: %d duplicated, want 9", len(want))
	}
	var p apiPage
	api.getJSON("/api/v1/recipients?duplicated=true", &p)
	var got []string
	for _, r := range p.Recipients {
		got = append(got, r.Address)
		if r.Copies != 2 {
			t.Errorf("duplicated=true: %+v has %d copies", r, r.Copies)
		}
	}
	if !slices.Equal(got, want) || p.Copies != 34 || p.Next != nil {
		t.Errorf("duplicated=true: %v (copies %d, next %v), want %v (34, none)", got, p.Copies, p.Next, want)
	}
	if got, _ := api.pages("duplicated=true&limit=4"); !slices.Equal(got, want) {
		t.Errorf("duplicated=true&limit=4 paged: %v, want %v", got, want)
	}
	api.getJSON("/api/v1/recipients?duplicated=false", &p)
	if len(p.Recipients) != 25 {
		t.Errorf("duplicated=false: %d recipients, want all 25", len(p.Recipients))
	}
}

func TestRecipientsBadParameters(t *testing.T) {
	_, api := recordedServer(t, 3)
	for _, x := range []struct{ query, mention string }{
		{"limit=0", "limit="},
		{"limit=-3", "limit="},
		{"limit=ten", "limit="},
		{"duplicated=maybe", "duplicated="},
		{"limit=2&limit=3", "once"},
		{"duplicate=true", "no such parameter"},
	} {
		code, b := api.do("GET", "/api/v1/recipients?"+x.query)
		if code != http.StatusBadRequest || !strings.Contains(string(b), x.mention) {
			t.Errorf("?%s: %d %q, want 400 mentioning %q", x.query, code, b, x.mention)
		}
	}
}

func TestRecipientNotFoundAndBadAddress(t *testing.T) {
	srv, api := recordedServer(t, 0)
	srv.Oracle().Record(time.Now(), []string{"a/b@x.test"}, "")
	srv.Oracle().Record(time.Now(), []string{"bob@example.com"}, "")

	for _, x := range []struct {
		path  string
		code  int
		addr  string
		count int
	}{
		{"/api/v1/recipients/Bob@Example.COM", 200, "bob@example.com", 1},
		{"/api/v1/recipients/bob%40example.com", 200, "bob@example.com", 1},
		{"/api/v1/recipients/" + url.PathEscape("a/b@x.test"), 200, "a/b@x.test", 1},
		{"/api/v1/recipients/Nobody@Example.COM", 404, "nobody@example.com", 0},
		{"/api/v1/recipients/postmaster", 404, "postmaster", 0},
	} {
		code, b := api.do("GET", x.path)
		var r fakesmtp.Recipient
		if err := json.Unmarshal(b, &r); code != x.code || err != nil {
			t.Errorf("GET %s: %d %s (%v), want %d with a JSON body", x.path, code, b, err, x.code)
			continue
		}
		if r.Address != x.addr || r.Copies != x.count || (x.count == 0) != (r.MessageIDs == 0) {
			t.Errorf("GET %s: %+v, want %s with %d copies", x.path, r, x.addr, x.count)
		}
	}
	for _, x := range []struct{ path, why string }{
		{"/api/v1/recipients/" + url.PathEscape("two words@x.test"), "not a mailbox"},
		{"/api/v1/recipients/" + url.PathEscape("tab\there@x.test"), "space or control"},
		{"/api/v1/recipients/a@b@c", "not a mailbox"},
		{"/api/v1/recipients/" + url.PathEscape("<bob@x.test>"), "not a mailbox"},
		{"/api/v1/recipients/%FF@x.test", "UTF-8"},
	} {
		code, b := api.do("GET", x.path)
		if code != http.StatusBadRequest || !strings.Contains(string(b), x.why) {
			t.Errorf("GET %s: %d %q, want 400 saying %q", x.path, code, b, x.why)
		}
	}
	// After a reset the address has no copy any more.
	if code, _ := api.do("DELETE", "/api/v1/recipients"); code != http.StatusNoContent {
		t.Fatalf("DELETE: %d", code)
	}
	if code, b := api.do("GET", "/api/v1/recipients/bob@example.com"); code != http.StatusNotFound {
		t.Errorf("after a reset: %d %s, want 404", code, b)
	}
}
