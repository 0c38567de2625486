// list_test.go: tests for the naive, checkpoint and early senders.
package builtin

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/mail"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/onecopy/onecopy/senders"
)

func TestNaiveSendsEveryLineInOrder(t *testing.T) {
	srv := newCountingServer(t)
	list := []string{"a@x.test", "B@x.test", "b@x.test", "c@x.test"}
	env := testEnv(t, srv.Addr, list...)
	mustSend(t, newSender(t, "naive"), env)

	got := srv.deliveries()
	var to []string
	ids := map[string]bool{}
	for _, d := range got {
		to = append(to, d.To)
		ids[d.MessageID] = true
	}
	if !reflect.DeepEqual(to, list) {
		t.Fatalf("delivered to %q, want %q (one per line, in order)", to, list)
	}
	if len(ids) != len(list) {
		t.Fatalf("%d distinct Message-IDs for %d messages; want a fresh one each", len(ids), len(list))
	}
}

func TestMessageHeaders(t *testing.T) {
	srv := newCountingServer(t)
	env := testEnv(t, srv.Addr, "a@x.test")
	mustSend(t, newSender(t, "naive"), env)
	srv.mu.Lock()
	raw := srv.raw[0]
	srv.mu.Unlock()
	m, err := mail.ReadMessage(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []string{"From", "To", "Date", "Message-ID", "MIME-Version", "Content-Type"} {
		if m.Header.Get(h) == "" {
			t.Errorf("header %s missing", h)
		}
	}
	if !strings.Contains(m.Header.Get("Subject"), env.Campaign) {
		t.Errorf("Subject %q lacks the campaign", m.Header.Get("Subject"))
	}
	if _, err := m.Header.Date(); err != nil {
		t.Errorf("Date: %v", err)
	}
	if bytes.Contains(bytes.ReplaceAll(raw, []byte("\r\n"), nil), []byte("\n")) {
		t.Error("bare LF in message; want CRLF line endings")
	}
}

// The blog-post bug: a 550 on recipient 3 fails the job, the job runner
// retries it three times, and recipients 1-2 get four copies each.
func TestNaiveRetriesDuplicateTheHead(t *testing.T) {
	srv := newCountingServer(t)
	list := addrs(5)
	srv.setReject(list[2], true)
	env := testEnv(t, srv.Addr, list...)
	s := newSender(t, "naive")
	for attempt := 1; attempt <= 4; attempt++ {
		env.Attempt = attempt
		err := s.Send(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), "550") {
			t.Fatalf("attempt %d: got %v, want the 550 to abort it", attempt, err)
		}
	}
	want := map[string]int{list[0]: 4, list[1]: 4}
	if got := counts(srv.deliveries()); !reflect.DeepEqual(got, want) {
		t.Fatalf("copies %v, want %v", got, want)
	}
}

func TestNaiveTimesOutOnSilentServer(t *testing.T) {
	srv := newScriptedServer(t, map[string][]string{"RCPT": {"HANG"}})
	env := testEnv(t, srv.Addr, "a@x.test")
	s, err := New("naive", Options{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	err = s.Send(context.Background(), env)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !strings.Contains(err.Error(), "RCPT") {
		t.Fatalf("got %v, want a timeout naming RCPT", err)
	}
}

func TestNaiveCancelledContextAborts(t *testing.T) {
	srv := newScriptedServer(t, map[string][]string{"RCPT": {"HANG"}})
	env := testEnv(t, srv.Addr, "a@x.test")
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- newSender(t, "naive").Send(ctx, env) }()
	// The RCPT hangs until the connection closes; cancelling must end it
	// well before the 5s command timeout.
	select {
	case <-srv.hung:
	case err := <-done:
		t.Fatalf("returned before RCPT: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("Send ignored the cancelled context")
	}
}

func readCheckpointFile(t *testing.T, env senders.Env) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(env.StateDir, checkpointFile))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestCheckpointResumesAfterLastSent(t *testing.T) {
	srv := newCountingServer(t)
	list := addrs(5)
	srv.setReject(list[2], true)
	env := testEnv(t, srv.Addr, list...)
	s := newSender(t, "checkpoint")
	if err := s.Send(context.Background(), env); err == nil {
		t.Fatal("want the 550 to abort the attempt")
	}
	if cp := readCheckpointFile(t, env); cp != "2" {
		t.Fatalf("checkpoint %q, want 2", cp)
	}
	srv.setReject(list[2], false)
	mustSend(t, s, env)
	mustSend(t, s, env) // complete: sends nothing more
	want := map[string]int{}
	for _, a := range list {
		want[a] = 1
	}
	if got := counts(srv.deliveries()); !reflect.DeepEqual(got, want) {
		t.Fatalf("copies %v, want %v", got, want)
	}
}

// A kill between the 250 and the checkpoint write, simulated by rolling the
// checkpoint back: the message goes out again with a NEW Message-ID.
func TestCheckpointLostRecordResendsWithNewMessageID(t *testing.T) {
	srv := newCountingServer(t)
	env := testEnv(t, srv.Addr, addrs(3)...)
	s := newSender(t, "checkpoint")
	mustSend(t, s, env)
	if err := writeCheckpoint(filepath.Join(env.StateDir, checkpointFile), 2); err != nil {
		t.Fatal(err)
	}
	mustSend(t, s, env)
	got := srv.deliveries()
	if len(got) != 4 || got[2].To != got[3].To || got[2].MessageID == got[3].MessageID {
		t.Fatalf("deliveries %+v; want the 3rd address twice with two Message-IDs", got)
	}
}

func TestCheckpointCorruptFile(t *testing.T) {
	env := testEnv(t, "127.0.0.1:1", addrs(3)...)
	path := filepath.Join(env.StateDir, checkpointFile)
	for _, bad := range []string{"abc", "-1", "4"} {
		if err := os.WriteFile(path, []byte(bad), 0o644); err != nil {
			t.Fatal(err)
		}
		err := newSender(t, "checkpoint").Send(context.Background(), env)
		if err == nil || !strings.Contains(err.Error(), path) {
			t.Errorf("checkpoint %q: got %v, want an error naming %s", bad, err, path)
		}
	}
}

// Record before send: the recipient in hand when the attempt fails is lost.
func TestEarlyLosesTheRecipientInHand(t *testing.T) {
	srv := newCountingServer(t)
	list := addrs(5)
	srv.setReject(list[2], true)
	env := testEnv(t, srv.Addr, list...)
	s := newSender(t, "early")
	if err := s.Send(context.Background(), env); err == nil {
		t.Fatal("want the 550 to abort the attempt")
	}
	if cp := readCheckpointFile(t, env); cp != "3" {
		t.Fatalf("checkpoint %q, want 3 (advanced before the send)", cp)
	}
	srv.setReject(list[2], false)
	mustSend(t, s, env)
	want := map[string]int{list[0]: 1, list[1]: 1, list[3]: 1, list[4]: 1}
	if got := counts(srv.deliveries()); !reflect.DeepEqual(got, want) {
		t.Fatalf("copies %v, want %v (%s lost)", got, want, list[2])
	}
}
