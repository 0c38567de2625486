// Command baresmtpd is the floor fakesmtp is built on: mhale/smtpd alone,
// with a handler that counts copies per recipient in a map under a mutex,
// and nothing else (no guard, no hooks, no metrics, no HTTP API). It is
// the third server of bench/sinkbench (-bare): the distance between it and
// fakesmtp is what the guard, the oracle and the metrics cost; the
// distance between it and smtp-sink is the library's and Go's own.
//
// GET /count on the -http address answers "COPIES DISTINCT".
package main

import (
	"context"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"syscall"

	"github.com/mhale/smtpd"
)

func main() {
	smtpAddr := flag.String("smtp", "127.0.0.1:2525", "SMTP listen `ADDR`")
	httpAddr := flag.String("http", "", "count API listen `ADDR` (empty: none)")
	procs := flag.Int("procs", 1, "GOMAXPROCS (0: Go's default), as onecopy fakesmtp --procs")
	flag.Parse()
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	var mu sync.Mutex
	counts := map[string]int{}
	copies := 0
	srv := &smtpd.Server{
		Appname:  "bare",
		Hostname: "bare.test",
		Handler: func(_ net.Addr, _ string, to []string, _ []byte) error {
			mu.Lock()
			for _, a := range to {
				counts[strings.ToLower(a)]++
				copies++
			}
			mu.Unlock()
			return nil
		},
	}
	ln, err := net.Listen("tcp", *smtpAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "baresmtpd:", err)
		os.Exit(1)
	}
	if *httpAddr != "" {
		go http.ListenAndServe(*httpAddr, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			mu.Lock()
			defer mu.Unlock()
			fmt.Fprintf(w, "%d %d\n", copies, len(counts))
		}))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go srv.Serve(ln)
	<-ctx.Done()
	ln.Close()
}
