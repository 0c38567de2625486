// Benchmarks: accepted messages per second through each provider API at
// 16 concurrent clients over loopback, each with a kept-alive connection,
// beside SMTP in the same run, every count checked exact.

package fakesmtp_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

const benchClients = 16

// benchRun starts srv's clients, each sending with send(i) until b.N
// messages were sent, and reports msgs/s.
func benchRun(b *testing.B, srv *fakesmtp.Server, newClient func() (send func(i int64) error, done func())) {
	b.Helper()
	sends := make([]func(int64) error, benchClients)
	for i := range sends {
		send, done := newClient()
		sends[i] = send
		defer done()
	}
	var next atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	b.ResetTimer()
	began := time.Now()
	for _, send := range sends {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				if err := send(i); err != nil {
					failed.Store(err)
					return
				}
			}
		})
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
}

// BenchmarkProviders: SMTP and every provider endpoint, one recipient per
// message, a runtime fault set with no faults (as `onecopy fakesmtp`
// runs).
func BenchmarkProviders(b *testing.B) {
	start := func(b *testing.B) *fakesmtp.Server {
		srv, err := fakesmtp.Start(context.Background(), fakesmtp.Options{
			HTTPAddr: "127.0.0.1:0", MaxConnections: 4 * benchClients,
			Hooks: []fakesmtp.Hook{fakesmtp.NewFaultSet(nil, 1)},
		})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { srv.Close() })
		return srv
	}
	b.Run("smtp", func(b *testing.B) {
		srv := start(b)
		benchRun(b, srv, func() (func(int64) error, func()) {
			c, err := dialBench(srv.Addr())
			if err != nil {
				b.Fatal(err)
			}
			return func(i int64) error { return c.send("r" + strconv.FormatInt(i, 10) + "@x.test") }, func() { c.conn.Close() }
		})
	})
	for _, p := range apiProviders {
		b.Run(p.name, func(b *testing.B) {
			srv := start(b)
			u := "http://" + srv.HTTPAddr() + p.path
			benchRun(b, srv, func() (func(int64) error, func()) {
				tr := &http.Transport{MaxIdleConnsPerHost: 1}
				hc := &http.Client{Transport: tr}
				return func(i int64) error {
					n := strconv.FormatInt(i, 10)
					r := apiPost(hc, u, p.ctype, p.body("<"+n+"@bench>", "r"+n+"@x.test"))
					if r.err != nil || r.status/100 != 2 {
						return fmt.Errorf("%s message %d: %s", p.name, i, r)
					}
					return nil
				}, tr.CloseIdleConnections
			})
		})
	}
}
