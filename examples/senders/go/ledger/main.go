// Command ledger is a correct sender written the way teams write them, on
// net/smtp and the standard library: it sends the list in batches of -batch
// recipients per transaction over -connections parallel connections,
// appends each batch's number to a ledger file (synced) after its 250,
// gives each batch a Message-ID fixed by its place in the list, retries
// 4xx and lost connections with the same Message-ID, and holds a lock
// against a second instance.
//
// -bug makes it wrong on purpose, so a spec can prove the harness catches it:
//
//	resend-recorded  on every restart, re-send one batch it already recorded
//	record-before    record each batch before sending it (at-most-once)
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/smtp"
	"net/textproto"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/onecopy/onecopy/senders"
)

func main() {
	batch := flag.Int("batch", 1, "recipients per transaction")
	conns := flag.Int("connections", 1, "parallel connections")
	bug := flag.String("bug", "", "resend-recorded | record-before")
	flag.Parse()
	env, err := senders.EnvFrom(os.Getenv)
	if err != nil {
		fail(err)
	}
	lock, err := os.OpenFile(filepath.Join(env.StateDir, "ledger.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err == nil {
		err = syscall.Flock(int(lock.Fd()), syscall.LOCK_EX)
	}
	if err != nil {
		fail(err)
	}
	list, err := senders.ReadList(env.RecipientsFile)
	if err != nil {
		fail(err)
	}
	l, err := openLedger(filepath.Join(env.StateDir, "ledger.log"))
	if err != nil {
		fail(err)
	}
	var todo []int
	for k := 0; k*(*batch) < len(list); k++ {
		if !l.done[k] {
			todo = append(todo, k)
		}
	}
	if *bug == "resend-recorded" && env.Attempt > 1 {
		for k := 0; k*(*batch) < len(list); k++ {
			if l.done[k] {
				todo = append([]int{k}, todo...)
				break
			}
		}
	}
	work := make(chan int, len(todo))
	for _, k := range todo {
		work <- k
	}
	close(work)
	var wg sync.WaitGroup
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var c *client
			for k := range work {
				rcpts := list[k*(*batch) : min((k+1)*(*batch), len(list))]
				if *bug == "record-before" {
					l.record(k)
				}
				for try := 0; ; try++ {
					if c == nil {
						c = dial(env.SMTPAddr)
					}
					err := c.sendBatch(env.Campaign, k, rcpts)
					if err == nil {
						break
					}
					var te *textproto.Error
					if errors.As(err, &te) && te.Code >= 500 {
						break // refused for good (this fixture gives the whole batch up)
					}
					if !errors.As(err, &te) || te.Code == 421 {
						c.Close() // in doubt: the same batch again, same Message-ID
						c = nil
					}
					time.Sleep(min(time.Duration(20<<min(try, 6))*time.Millisecond, time.Second))
				}
				if *bug != "record-before" {
					l.record(k)
				}
			}
			if c != nil {
				c.Quit()
			}
		}()
	}
	wg.Wait()
}

type client struct{ *smtp.Client }

// dial connects, retrying until the server answers.
func dial(addr string) *client {
	for try := 0; ; try++ {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err == nil {
			conn.SetDeadline(time.Now().Add(time.Minute))
			if c, err := smtp.NewClient(conn, "127.0.0.1"); err == nil {
				return &client{c}
			}
			conn.Close()
		}
		time.Sleep(min(time.Duration(20<<min(try, 6))*time.Millisecond, time.Second))
	}
}

func (c *client) sendBatch(campaign string, k int, rcpts []string) error {
	if c.Client == nil {
		return errors.New("no connection")
	}
	if err := c.Mail("campaign@go-ledger.example"); err != nil {
		return err
	}
	for _, r := range rcpts {
		if err := c.Rcpt(r); err != nil {
			c.Reset()
			return err
		}
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "From: <campaign@go-ledger.example>\r\nSubject: %s\r\nMessage-ID: <%s-%d@go-ledger.example>\r\n\r\nHello.\r\n", campaign, campaign, k)
	return w.Close()
}

func (c *client) Close() {
	if c.Client != nil {
		c.Client.Close()
	}
}

// ledger is an append-only file of the batches sent, one number a line.
type ledger struct {
	mu   sync.Mutex
	f    *os.File
	done map[int]bool
}

func openLedger(path string) (*ledger, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	l := &ledger{f: f, done: map[int]bool{}}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if k, err := strconv.Atoi(strings.TrimSpace(sc.Text())); err == nil {
			l.done[k] = true
		}
	}
	return l, sc.Err()
}

func (l *ledger) record(k int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, err := fmt.Fprintf(l.f, "%d\n", k); err != nil {
		fail(err)
	}
	if err := l.f.Sync(); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "go-ledger:", err)
	os.Exit(1)
}
