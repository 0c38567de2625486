// Command naive is the buggy job, in Go on net/smtp: one loop over the
// list, a fresh Message-ID every time, no memory between attempts. Any
// error ends the attempt, and the job runner (onecopy) starts it again from
// the top: the head of the list gets a copy per attempt.
package main

import (
	"crypto/rand"
	"fmt"
	"net/smtp"
	"os"

	"github.com/onecopy/onecopy/senders"
)

func main() {
	env, err := senders.EnvFrom(os.Getenv)
	if err != nil {
		fail(err)
	}
	list, err := senders.ReadList(env.RecipientsFile)
	if err != nil {
		fail(err)
	}
	c, err := smtp.Dial(env.SMTPAddr)
	if err != nil {
		fail(err)
	}
	for _, rcpt := range list {
		if err := c.Mail("newsletter@example.com"); err != nil {
			fail(err)
		}
		if err := c.Rcpt(rcpt); err != nil {
			fail(err)
		}
		w, err := c.Data()
		if err != nil {
			fail(err)
		}
		fmt.Fprintf(w, "From: <newsletter@example.com>\r\nTo: <%s>\r\nSubject: Our news\r\nMessage-ID: <%s@example.com>\r\n\r\nHello!\r\n", rcpt, rand.Text())
		if err := w.Close(); err != nil {
			fail(err)
		}
	}
	c.Quit()
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "naive:", err)
	os.Exit(1)
}
