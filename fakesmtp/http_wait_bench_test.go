// Benchmarks of the SMTP path and of the oracle while waits are
// registered that never hold: the counting paths' cost must not grow
// with the number of waiters.

package fakesmtp_test

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// neverHolds is the i-th of the three kinds of wait, each kept blocked
// for the whole benchmark: a total never reached, an address never sent
// to, and quiet (the benchmark's sessions stay open).
func neverHolds(i int) (fakesmtp.WaitCondition, string) {
	switch i % 3 {
	case 0:
		return fakesmtp.WaitCondition{Copies: 1 << 60}, "copies=1152921504606846976&timeout=5m"
	case 1:
		a := fmt.Sprintf("never%d@x.test", i)
		return fakesmtp.WaitCondition{Address: a}, "address=" + a + "&timeout=5m"
	default:
		return fakesmtp.WaitCondition{Quiet: time.Hour}, "quiet=1h&timeout=5m"
	}
}

// startWaiters registers n waits with srv, through Server.Wait or over
// HTTP, and returns what ends them.
func startWaiters(b *testing.B, srv *fakesmtp.Server, n int, overHTTP bool) (stop func()) {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tr := &http.Transport{MaxConnsPerHost: 0, MaxIdleConnsPerHost: n}
	var wg sync.WaitGroup
	for i := range n {
		cond, query := neverHolds(i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			if !overHTTP {
				srv.Wait(ctx, cond)
				return
			}
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+srv.HTTPAddr()+"/api/v1/wait?"+query, nil)
			if resp, err := tr.RoundTrip(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	waitersReach(b, srv, n)
	return func() {
		cancel()
		wg.Wait()
		tr.CloseIdleConnections()
	}
}

// BenchmarkAcceptWhileWaiting is BenchmarkAccept's 8 connections with 0,
// 10 or 1000 waits blocked (a third of each kind), in process or as long
// polls over HTTP.
func BenchmarkAcceptWhileWaiting(b *testing.B) {
	for _, x := range []struct {
		waiters  int
		overHTTP bool
	}{{0, false}, {10, false}, {1000, false}, {1000, true}} {
		name := "waiters=" + strconv.Itoa(x.waiters)
		if x.overHTTP {
			name += "-http"
		}
		b.Run(name, func(b *testing.B) {
			srv, err := fakesmtp.Start(context.Background(), fakesmtp.Options{MaxConnections: 64, HTTPAddr: "127.0.0.1:0"})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			stop := startWaiters(b, srv, x.waiters, x.overHTTP)
			defer stop()
			benchAccept(b, srv, 8)
		})
	}
}

// BenchmarkRecordWhileWaiting is the oracle's Record from every core,
// with 0 or 1000 waits blocked.
func BenchmarkRecordWhileWaiting(b *testing.B) {
	for _, waiters := range []int{0, 1000} {
		b.Run("waiters="+strconv.Itoa(waiters), func(b *testing.B) {
			srv, err := fakesmtp.Start(context.Background(), fakesmtp.Options{HTTPAddr: "127.0.0.1:0"})
			if err != nil {
				b.Fatal(err)
			}
			defer srv.Close()
			stop := startWaiters(b, srv, waiters, false)
			defer stop()
			o := srv.Oracle()
			addrs := make([][]string, 4096)
			for i := range addrs {
				addrs[i] = []string{"r" + strconv.Itoa(i) + "@x.test"}
			}
			now := time.Now()
			b.ReportAllocs()
			b.ResetTimer()
			began := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				i := 0
				for pb.Next() {
					o.Record(now, addrs[i%len(addrs)], "")
					i++
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(began).Seconds(), "copies/s")
		})
	}
}
