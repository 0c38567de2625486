// Command fakesmtpd runs the fake SMTP server exactly as `onecopy fakesmtp`
// builds it (guard, counting, metrics, an empty runtime fault set, the HTTP
// API), with a CPU profile on request. It exists for profiling the server
// under smtp-source load; the figures themselves are measured against the
// real `onecopy fakesmtp` by bench/smtpsink.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"

	"github.com/onecopy/onecopy/fakesmtp"
)

func main() {
	smtpAddr := flag.String("smtp", "127.0.0.1:2525", "SMTP listen `ADDR`")
	httpAddr := flag.String("http", "", "counts API and /metrics listen `ADDR` (empty: none)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile to `FILE` until SIGINT/SIGTERM")
	flag.Parse()
	if err := run(*smtpAddr, *httpAddr, *cpuProfile); err != nil {
		fmt.Fprintln(os.Stderr, "fakesmtpd:", err)
		os.Exit(1)
	}
}

func run(smtpAddr, httpAddr, cpuProfile string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	srv, err := fakesmtp.Start(ctx, fakesmtp.Options{Addr: smtpAddr, HTTPAddr: httpAddr,
		Hooks: []fakesmtp.Hook{fakesmtp.NewFaultSet(nil, 1)}})
	if err != nil {
		return err
	}
	fmt.Printf("SMTP on %s\n", srv.Addr())
	<-ctx.Done()
	srv.Close()
	fmt.Printf("stopped: %d copies\n", srv.Oracle().Copies())
	return nil
}
