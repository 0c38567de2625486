// The providers' own Node.js SDKs against the fake APIs, unchanged but
// for each SDK's base-URL setting: testdata/providers/send.mjs sends a
// message, a to/cc/bcc one, a batch where the API has one, and one the
// fault layer rejects, and the counts are checked exactly.

package fakesmtp_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// nodeSDKs finds node and the installed SDKs, or skips saying why.
func nodeSDKs(t *testing.T) (node, dir string) {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not on PATH: the provider SDK tests need Node.js 20 or later")
	}
	dir, err = filepath.Abs(filepath.Join("testdata", "providers"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "node_modules")); errors.Is(err, os.ErrNotExist) {
		t.Skip("the providers' SDKs are not installed: run `npm ci` in fakesmtp/testdata/providers (CI does)")
	}
	return node, dir
}

// nodeSend runs send.mjs for provider against rig and decodes what it printed.
func nodeSend(t *testing.T, node, dir, provider string, rig *apiRig, v any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "send.mjs", provider)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "ONECOPY_API_URL="+rig.base, "NODE_NO_WARNINGS=1")
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node send.mjs %s: %v\n%s", provider, err, stderr.String())
	}
	if err := json.Unmarshal(out, v); err != nil {
		t.Fatalf("node send.mjs %s printed %q: %v", provider, out, err)
	}
}

func TestNodeSDKs(t *testing.T) {
	node, dir := nodeSDKs(t)
	type rejected struct {
		Name       string
		Status     int
		Field      string
		Code       int
		Recipients []string
		Details    string
	}
	type result struct {
		Single, Multi, Replayed string
		Batch                   json.RawMessage
		Reject                  *rejected
	}
	for _, c := range []struct {
		provider string
		batch    bool
		check    func(t *testing.T, r result)
	}{
		{"ses", false, func(t *testing.T, r result) {
			if !strings.HasSuffix(r.Single, "-000000") || r.Reject == nil || r.Reject.Name != "MessageRejected" || r.Reject.Status != 400 {
				t.Errorf("@aws-sdk/client-sesv2: %+v, want SES message ids and MessageRejected", r)
			}
		}},
		{"sendgrid", true, func(t *testing.T, r result) {
			if len(r.Single) != 22 || r.Reject == nil || r.Reject.Status != 400 || r.Reject.Field != "personalizations.0.to.0.email" {
				t.Errorf("@sendgrid/mail: %+v, want X-Message-Ids and a 400 naming the field", r)
			}
		}},
		{"mailgun", true, func(t *testing.T, r result) {
			if r.Multi != "<multi.mailgun@onecopy.test>" || r.Reject == nil || r.Reject.Status != 400 || !strings.Contains(r.Reject.Details, "reject@mailgun.test") {
				t.Errorf("mailgun.js: %+v, want the sender's Message-ID back and a 400 naming the address", r)
			}
		}},
		{"postmark", true, func(t *testing.T, r result) {
			if r.Reject == nil || r.Reject.Name != "InactiveRecipientsError" || r.Reject.Code != 406 || len(r.Reject.Recipients) != 1 || r.Reject.Recipients[0] != "reject@postmark.test" {
				t.Errorf("postmark.js: %+v, want InactiveRecipientsError with the address parsed out", r)
			}
		}},
		{"resend", true, func(t *testing.T, r result) {
			if r.Replayed != r.Single || r.Reject == nil || r.Reject.Name != "validation_error" || r.Reject.Status != 422 {
				t.Errorf("resend: %+v, want the idempotent retry answered with the first id, and a validation_error", r)
			}
		}},
	} {
		t.Run(c.provider, func(t *testing.T) {
			rig := apiFaultServer(t, 1, "reject=reject@"+c.provider+".test")
			var r result
			nodeSend(t, node, dir, c.provider, rig, &r)
			c.check(t, r)
			at := func(l string) string { return l + "@" + c.provider + ".test" }
			want := map[string]int{at("single"): 1, at("to1"): 1, at("to2"): 1, at("cc"): 1, at("bcc"): 1}
			if c.batch {
				want[at("batch1")], want[at("batch2")] = 1, 1
			}
			rig.counts(t, want)
			multi := 0
			for _, d := range rig.deliveries() {
				name := d.Provider
				if name != c.provider || d.Transport != fakesmtp.TransportHTTP {
					t.Errorf("delivery %+v: want provider %s over http", d, c.provider)
				}
				if d.MessageID == "<multi."+c.provider+"@onecopy.test>" {
					multi += len(d.Recipients)
				}
			}
			if multi != 4 {
				t.Errorf("%d copies carry the multi message's Message-ID, want its 4 recipients", multi)
			}
		})
	}
}
