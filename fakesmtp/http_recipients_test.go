// GET /api/v1/recipients/{address}: 200, 404 with zero counts, 400.

package fakesmtp_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
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
