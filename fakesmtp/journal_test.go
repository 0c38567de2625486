// Case 21 of docs/robustness.md: fakesmtp restarted on the same port binds at
// once, and with a journal the counts survive; a torn last line is
// dropped, a corrupt one in the middle stops the start with file:line.

package fakesmtp_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/onecopy/onecopy/fakesmtp"
)

// sendRaw delivers one message with a Message-ID over a new connection.
func sendRaw(t *testing.T, addr, id string, rcpts ...string) {
	t.Helper()
	c := dialRaw(t, addr)
	c.expect("220")
	c.mustSend(ehlo)
	c.expect("250")
	c.transaction("Subject: j\r\nMessage-ID: "+id+"\r\n\r\nhi\r\n.\r\n", rcpts...)
	c.mustSend("QUIT\r\n")
	c.expect("221")
	c.conn.Close()
}

func startAt(t *testing.T, opts fakesmtp.Options) *fakesmtp.Server {
	t.Helper()
	srv, err := fakesmtp.Start(context.Background(), opts)
	if err != nil {
		t.Fatalf("Start(%s): %v", opts.Addr, err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func TestRestartSamePortKeepsJournaledCounts(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "journal.jsonl")
	srv := startAt(t, fakesmtp.Options{Journal: journal})
	addr := srv.Addr()
	sendRaw(t, addr, "<1@x>", "v@x.test", "w@x.test")
	sendRaw(t, addr, "<1@x>", "V@x.test")
	sendRaw(t, addr, "<2@x>", "v@x.test")
	// A client still connected when the server stops leaves the port's
	// connections in TIME_WAIT on the server side.
	idle := dialRaw(t, addr)
	idle.expect("220")
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	idle.expect("421")

	check := func(srv *fakesmtp.Server, v, vIDs, w int) {
		t.Helper()
		snap := srv.Snapshot()
		if r := snap.Lookup("v@x.test"); r.Copies != v || r.MessageIDs != vIDs {
			t.Errorf("v: copies %d ids %d, want %d and %d", r.Copies, r.MessageIDs, v, vIDs)
		}
		if r := snap.Lookup("w@x.test"); r.Copies != w {
			t.Errorf("w: copies %d, want %d", r.Copies, w)
		}
		if snap.Copies != int64(v+w) {
			t.Errorf("copies %d, want %d", snap.Copies, v+w)
		}
	}
	// At once, no retry: the same address must bind.
	srv = startAt(t, fakesmtp.Options{Addr: addr, Journal: journal})
	check(srv, 3, 2, 1)
	sendRaw(t, addr, "<3@x>", "v@x.test")
	check(srv, 4, 3, 1)
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	srv = startAt(t, fakesmtp.Options{Addr: addr, Journal: journal})
	check(srv, 4, 3, 1)

	t.Run("baseline", func(t *testing.T) {
		// The library's Close leaves its listener open: nothing can bind
		// the port again until the process exits. (And it has no
		// journal: counts die with it.)
		b := startBaseline(t, baselineOpts{})
		b.parked(t)
		b.srv.Close()
		ln, err := net.Listen("tcp", b.addr)
		if err == nil {
			ln.Close()
			t.Fatalf("baseline released its port on Close; the case could not fail")
		}
		t.Logf("baseline shows the bug: restart on %s after Close: %v", b.addr, err)
	})
}

// The journal line of a copy is on disk when the copy is committed, before
// its 250 goes out.
func TestJournalWrittenBeforeReply(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "journal.jsonl")
	var mu sync.Mutex
	var atCommit []string
	hook := fakesmtp.HookFunc(func(_ context.Context, ev *fakesmtp.Event) fakesmtp.Action {
		if ev.Moment == fakesmtp.MomentCommitted {
			b, err := os.ReadFile(journal)
			mu.Lock()
			atCommit = append(atCommit, fmt.Sprintf("%t %v", bytes.Contains(b, []byte(strings.Trim(ev.MessageID, "<>"))), err))
			mu.Unlock()
		}
		return fakesmtp.Action{}
	})
	srv := startAt(t, fakesmtp.Options{Journal: journal, Hooks: []fakesmtp.Hook{hook}})
	sendRaw(t, srv.Addr(), "<first@x>", "v@x.test")
	sendRaw(t, srv.Addr(), "<second@x>", "v@x.test")
	mu.Lock()
	defer mu.Unlock()
	if want := []string{"true <nil>", "true <nil>"}; strings.Join(atCommit, ",") != strings.Join(want, ",") {
		t.Fatalf("journal holds the message at commit: %v, want %v", atCommit, want)
	}
}

func journalLine(t *testing.T, ns int64, id string, rcpts ...string) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"t": ns, "id": id, "rcpt": rcpts})
	if err != nil {
		t.Fatal(err)
	}
	return string(b) + "\n"
}

func TestJournalTornLastLineDropped(t *testing.T) {
	journal := filepath.Join(t.TempDir(), "journal.jsonl")
	good := journalLine(t, 1, "<1@x>", "v@x.test") + journalLine(t, 2, "<2@x>", "v@x.test", "w@x.test")
	torn := `{"t":3,"id":"<3@x>","rcpt":["v@x.te`
	if err := os.WriteFile(journal, []byte(good+torn), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := startAt(t, fakesmtp.Options{Journal: journal})
	if snap := srv.Snapshot(); snap.Copies != 3 || snap.Lookup("v@x.test").Copies != 2 {
		t.Fatalf("after a torn last line: %+v, want v=2 w=1", snap)
	}
	b, err := os.ReadFile(journal)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != good {
		t.Fatalf("journal after start: %q, want the torn line cut off: %q", b, good)
	}
	// The next copy starts a line of its own, not glued to the torn one.
	sendRaw(t, srv.Addr(), "<4@x>", "w@x.test")
	srv.Close()
	srv = startAt(t, fakesmtp.Options{Journal: journal})
	if snap := srv.Snapshot(); snap.Copies != 4 || snap.Lookup("w@x.test").Copies != 2 {
		t.Fatalf("after a restart: %+v, want v=2 w=2", snap)
	}
}

func TestJournalCorruptLineNamesFileAndLine(t *testing.T) {
	for _, tc := range []struct {
		name, content string
		line          int
	}{
		{"not JSON", journalLine(t, 1, "", "v@x.test") + "garbage\n" + journalLine(t, 3, "", "v@x.test"), 2},
		{"no recipients", journalLine(t, 1, "", "v@x.test") + journalLine(t, 2, "", "w@x.test") + `{"t":3,"rcpt":[]}` + "\n", 3},
		{"first line", "{\n" + journalLine(t, 2, "", "v@x.test"), 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			journal := filepath.Join(t.TempDir(), "journal.jsonl")
			if err := os.WriteFile(journal, []byte(tc.content), 0o644); err != nil {
				t.Fatal(err)
			}
			srv, err := fakesmtp.Start(context.Background(), fakesmtp.Options{Journal: journal})
			if err == nil {
				srv.Close()
				t.Fatalf("Start accepted a corrupt journal")
			}
			if want := fmt.Sprintf("%s:%d", journal, tc.line); !strings.Contains(err.Error(), want) {
				t.Fatalf("error %q does not name %s", err, want)
			}
			// A refused start leaves the journal as it was.
			if b, _ := os.ReadFile(journal); string(b) != tc.content {
				t.Errorf("journal changed by a refused start: %q", b)
			}
		})
	}
}
