// The HTTP API: counts for test frameworks in any language, and /metrics.

package fakesmtp

import (
	"encoding/json"
	"net/http"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Handler serves the counts API, /metrics and /healthz:
//
//	GET    /api/v1/recipients            every recipient with its counts
//	GET    /api/v1/recipients/{address}  one recipient (zero counts if none)
//	DELETE /api/v1/recipients            forget every count
//	GET    /api/v1/sessions              the protocol moment of each connection
func (srv *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/recipients", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, srv.oracle.Snapshot())
	})
	mux.HandleFunc("GET /api/v1/recipients/{address}", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, srv.oracle.Get(r.PathValue("address")))
	})
	mux.HandleFunc("DELETE /api/v1/recipients", func(w http.ResponseWriter, r *http.Request) {
		srv.oracle.Reset()
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("GET /api/v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, srv.Sessions())
	})
	mux.Handle("GET /metrics", promhttp.HandlerFor(srv.opts.Registry, promhttp.HandlerOpts{Registry: srv.opts.Registry}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	return mux
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
