// Serving /metrics for onecopy run and onecopy soak: one registry built
// here, never a global one.

package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/onecopy/onecopy/harness"
)

// serveMetrics registers the harness metrics on a fresh registry and serves
// it on addr at /metrics until stop is called. The address it prints is
// the one bound, so 127.0.0.1:0 works.
func serveMetrics(addr string, stderr io.Writer) (m *harness.Metrics, stop func(), err error) {
	reg := prometheus.NewRegistry()
	if m, err = harness.NewMetrics(reg); err != nil {
		return nil, nil, fmt.Errorf("registering metrics: %w", err)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, nil, fmt.Errorf("--metrics-addr %s: %w", addr, err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	fmt.Fprintf(stderr, "onecopy: metrics on http://%s/metrics\n", ln.Addr())
	return m, func() { srv.Close() }, nil
}
