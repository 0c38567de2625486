// Benchmarks: whole SMTP transactions through the guard, and the oracle's
// Record under contention.

package fakesmtp_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// benchClient is a minimal SMTP client without pipelining: one command,
// one reply, with buffered I/O and no allocation per reply.
type benchClient struct {
	conn net.Conn
	r    *bufio.Reader
	w    *bufio.Writer
}

func dialBench(addr string) (*benchClient, error) {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c := &benchClient{conn: conn, r: bufio.NewReader(conn), w: bufio.NewWriter(conn)}
	if err := c.expect('2'); err != nil {
		conn.Close()
		return nil, err
	}
	if err := c.cmd("EHLO bench.test\r\n", '2'); err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// expect reads one reply (every line of a multi-line one) and checks the
// first digit of its code.
func (c *benchClient) expect(first byte) error {
	for {
		line, err := c.r.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) < 4 || line[0] != first {
			return fmt.Errorf("unexpected reply %q", line)
		}
		if line[3] != '-' {
			return nil
		}
	}
}

func (c *benchClient) cmd(s string, first byte) error {
	c.w.WriteString(s)
	if err := c.w.Flush(); err != nil {
		return err
	}
	return c.expect(first)
}

var benchBody = "From: a@x.test\r\nSubject: bench\r\n\r\n" + strings.Repeat("hello, world: a line of body text\r\n", 20) + ".\r\n"

// send runs one transaction to rcptTo.
func (c *benchClient) send(rcptTo string) error {
	if err := c.cmd("MAIL FROM:<a@x.test>\r\n", '2'); err != nil {
		return err
	}
	if err := c.cmd("RCPT TO:<"+rcptTo+">\r\n", '2'); err != nil {
		return err
	}
	if err := c.cmd("DATA\r\n", '3'); err != nil {
		return err
	}
	return c.cmd(benchBody, '2')
}

// BenchmarkAccept measures accepted messages per second through the
// guard, each of N clients holding one connection.
func BenchmarkAccept(b *testing.B) {
	for _, conns := range []int{1, 8, 64} {
		b.Run("conns="+strconv.Itoa(conns), func(b *testing.B) {
			srv, err := fakesmtp.Start(context.Background(), fakesmtp.Options{MaxConnections: 2 * conns})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			benchAccept(b, srv, conns)
		})
	}
}

// benchAccept sends b.N messages to srv over conns connections, one
// recipient each, and reports msgs/s.
func benchAccept(b *testing.B, srv *fakesmtp.Server, conns int) {
	b.Helper()
	before := srv.Oracle().Copies()
	clients := make([]*benchClient, conns)
	for i := range clients {
		var err error
		if clients[i], err = dialBench(srv.Addr()); err != nil {
			b.Fatal(err)
		}
		defer clients[i].conn.Close()
	}
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	began := time.Now()
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := c.send("r" + strconv.FormatInt(i, 10) + "@x.test"); err != nil {
					failed.Store(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	b.StopTimer()
	if err, _ := failed.Load().(error); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
	if got := srv.Oracle().Copies() - before; got != int64(b.N) {
		b.Fatalf("oracle counted %d copies for %d messages sent", got, b.N)
	}
}

// pipelined runs messages as a pipelining client does (RFC 2920): each
// message's final dot goes in one write with the next message's MAIL, RCPT
// and DATA, or the whole message in one write with BDAT LAST, so a message
// costs one round trip instead of four.
func (c *benchClient) pipelined(chunking bool, next func() (string, bool)) error {
	tx := func(to string) { c.w.WriteString("MAIL FROM:<a@x.test>\r\nRCPT TO:<" + to + ">\r\n") }
	flush := func(firsts string) error {
		if err := c.w.Flush(); err != nil {
			return err
		}
		for i := 0; i < len(firsts); i++ {
			if err := c.expect(firsts[i]); err != nil {
				return err
			}
		}
		return nil
	}
	body := benchBody[:len(benchBody)-len(".\r\n")]
	bdat := "BDAT " + strconv.Itoa(len(body)) + " LAST\r\n" + body
	to, ok := next()
	if !ok {
		return nil
	}
	if chunking {
		for ; ok; to, ok = next() {
			tx(to)
			c.w.WriteString(bdat)
			if err := flush("222"); err != nil {
				return err
			}
		}
		return nil
	}
	tx(to)
	c.w.WriteString("DATA\r\n")
	if err := flush("223"); err != nil {
		return err
	}
	for {
		c.w.WriteString(benchBody)
		if to, ok = next(); !ok {
			return flush("2")
		}
		tx(to)
		c.w.WriteString("DATA\r\n")
		if err := flush("2223"); err != nil {
			return err
		}
	}
}

// BenchmarkAcceptPipelined is BenchmarkAccept for a pipelining client,
// with DATA and with CHUNKING (BDAT LAST).
func BenchmarkAcceptPipelined(b *testing.B) {
	for _, chunking := range []bool{false, true} {
		for _, conns := range []int{1, 8, 64} {
			name := "data"
			if chunking {
				name = "bdat"
			}
			b.Run(name+"/conns="+strconv.Itoa(conns), func(b *testing.B) {
				srv, err := fakesmtp.Start(context.Background(), fakesmtp.Options{MaxConnections: 2 * conns})
				if err != nil {
					b.Fatal(err)
				}
				defer srv.Close()
				clients := make([]*benchClient, conns)
				for i := range clients {
					if clients[i], err = dialBench(srv.Addr()); err != nil {
						b.Fatal(err)
					}
					defer clients[i].conn.Close()
				}
				var seq atomic.Int64
				next := func() (string, bool) {
					i := seq.Add(1)
					return "r" + strconv.FormatInt(i, 10) + "@x.test", i <= int64(b.N)
				}
				var failed atomic.Value
				var wg sync.WaitGroup
				b.ReportAllocs()
				b.ResetTimer()
				began := time.Now()
				for _, c := range clients {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if err := c.pipelined(chunking, next); err != nil {
							failed.Store(err)
						}
					}()
				}
				wg.Wait()
				elapsed := time.Since(began)
				b.StopTimer()
				if err, _ := failed.Load().(error); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/elapsed.Seconds(), "msgs/s")
				if got := srv.Oracle().Copies(); got != int64(b.N) {
					b.Fatalf("oracle counted %d copies for %d messages sent", got, b.N)
				}
			})
		}
	}
}

// BenchmarkOracleRecord measures Record from parallel goroutines over a
// pool of recipients, half of the messages with a Message-ID.
func BenchmarkOracleRecord(b *testing.B) {
	const pool = 1 << 16
	addrs := make([]string, pool)
	ids := make([]string, pool)
	for i := range addrs {
		addrs[i] = "user" + strconv.Itoa(i) + "@example.com"
		ids[i] = "<" + strconv.Itoa(i) + "@bench>"
	}
	o := fakesmtp.NewOracle()
	now := time.Now()
	var seq atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		rcpts := make([]string, 1)
		for pb.Next() {
			i := int(seq.Add(1))
			rcpts[0] = addrs[i%pool]
			id := ""
			if i%2 == 0 {
				id = ids[(i/pool)%pool]
			}
			o.Record(now, rcpts, id)
		}
	})
	b.StopTimer()
	if got := o.Copies(); got != int64(b.N) {
		b.Fatalf("oracle counted %d copies for %d records", got, b.N)
	}
}
