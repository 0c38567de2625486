package fakesmtp_test

import (
	"context"
	"fmt"
	"net/smtp"
	"strings"
	"sync"
	"testing"

	"github.com/onecopy/onecopy/fakesmtp"
)

func start(t *testing.T, opts fakesmtp.Options) *fakesmtp.Server {
	t.Helper()
	srv, err := fakesmtp.Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	return srv
}

func message(id string, to ...string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "From: a@x.test\r\nTo: %s\r\n", strings.Join(to, ", "))
	if id != "" {
		fmt.Fprintf(&b, "Message-ID: %s\r\n", id)
	}
	b.WriteString("Subject: hi\r\n\r\nhello\r\n..dot\r\n.\r\nend\r\n")
	return []byte(b.String())
}

func TestNetSMTPMultiRcptCaseVariantsAndRepeatedIDs(t *testing.T) {
	// SendMail upgrades whenever STARTTLS is offered and verifies the
	// certificate against the system roots, which lack the throwaway CA
	// (TestSendMailTrustingTheCA gives it the CA the way a sender gets it).
	srv := start(t, fakesmtp.Options{DisableSTARTTLS: true})
	send := func(id string, to ...string) {
		t.Helper()
		if err := smtp.SendMail(srv.Addr(), nil, "a@x.test", to, message(id, to...)); err != nil {
			t.Fatalf("SendMail: %v", err)
		}
	}
	send("<1@x>", "Bob@Example.COM", "carol@x.test", "dave@x.test")
	send("<1@x>", "bob@example.com")
	send("", "carol@x.test")
	send("", "carol@x.test")
	send("<2@x>", "BOB@example.com", "bob@example.com") // same mailbox twice in one transaction: one copy

	snap := srv.Snapshot()
	if snap.Copies != 7 {
		t.Errorf("copies = %d, want 7", snap.Copies)
	}
	want := map[string][2]int{"bob@example.com": {3, 2}, "carol@x.test": {3, 3}, "dave@x.test": {1, 1}}
	if len(snap.Recipients) != len(want) {
		t.Errorf("recipients = %+v, want %d of them", snap.Recipients, len(want))
	}
	for addr, w := range want {
		r := snap.Lookup(addr)
		if r.Copies != w[0] || r.MessageIDs != w[1] {
			t.Errorf("%s: copies=%d ids=%d, want %d and %d", addr, r.Copies, r.MessageIDs, w[0], w[1])
		}
	}
}

func TestConcurrentSessionsCountExactly(t *testing.T) {
	// SendMail upgrades whenever STARTTLS is offered and verifies the
	// certificate against the system roots, which lack the throwaway CA
	// (TestSendMailTrustingTheCA gives it the CA the way a sender gets it).
	srv := start(t, fakesmtp.Options{DisableSTARTTLS: true})
	const clients, each = 200, 5
	var wg sync.WaitGroup
	errs := make(chan error, clients)
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				to := fmt.Sprintf("user%d@x.test", c*each+i)
				if err := smtp.SendMail(srv.Addr(), nil, "a@x.test", []string{to}, message("", to)); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	snap := srv.Snapshot()
	if snap.Copies != clients*each || len(snap.Recipients) != clients*each {
		t.Fatalf("copies=%d recipients=%d, want %d each", snap.Copies, len(snap.Recipients), clients*each)
	}
}
