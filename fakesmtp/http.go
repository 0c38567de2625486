// The HTTP API: counts for test frameworks in any language, waits on them,
// faults changed at runtime, and /metrics. docs/openapi.yaml describes it.

package fakesmtp

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/onecopy/onecopy/docs"
)

// Handler serves the control API, /metrics and /healthz:
//
//	GET    /api/v1/recipients            every recipient with its counts; filtered and paged with
//	                                     ?duplicated=true&limit=N&after=ADDRESS
//	GET    /api/v1/recipients/{address}  one recipient (404 with zero counts if it has none)
//	DELETE /api/v1/recipients            forget every count
//	GET    /api/v1/sessions              the protocol moment of each connection
//	GET    /api/v1/wait?copies=N         block until N copies, address=A has a copy, or quiet=D
//	GET    /api/v1/faults                {"faults": ["tempfail=0.5", "greylist"], "seed": 7}
//	PUT    /api/v1/faults                replace them (same body; seed optional)
//	POST   /api/v1/outage?for=2s         take the SMTP port down for a while
//	GET    /api/v1/clock                 the fake providers' clock
//	POST   /api/v1/clock?advance=25h     move it ahead
//	GET    /api/v1/openapi.yaml          all of this as OpenAPI 3 (docs/openapi.yaml)
//
// and the provider send APIs (mountAPI, api.go).
//
// The faults API edits the first *FaultSet among Options.Hooks and answers
// 404 when there is none. Bad input answers 400 with a message naming it.
// With Options.APIToken set, the requests that change state (PUT, DELETE,
// POST) need "Authorization: Bearer TOKEN", else 401.
func (srv *Server) Handler() http.Handler {
	mux, _ := srv.handler()
	return mux
}

// router is where handlers are mounted: the mux, through routes.
type router interface {
	HandleFunc(pattern string, handler func(http.ResponseWriter, *http.Request))
}

// routes mounts handlers on a mux and keeps every pattern, so a test can
// hold docs/openapi.yaml to exactly what is served.
type routes struct {
	mux      *http.ServeMux
	patterns []string
}

func (rt *routes) Handle(pattern string, h http.Handler) {
	rt.mux.Handle(pattern, h)
	rt.patterns = append(rt.patterns, pattern)
}

func (rt *routes) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	rt.Handle(pattern, http.HandlerFunc(h))
}

// sendRoutes mounts the provider send APIs, each request counted as an
// open session while it is served (for the quiet wait).
type sendRoutes struct {
	rt  *routes
	srv *Server
}

func (s sendRoutes) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	s.rt.HandleFunc(pattern, s.srv.sending(h))
}

// handler builds the HTTP API and lists the patterns it serves.
func (srv *Server) handler() (*http.ServeMux, []string) {
	rt := &routes{mux: http.NewServeMux()}
	change := func(pattern string, h http.HandlerFunc) { rt.Handle(pattern, srv.authorized(h)) }
	rt.HandleFunc("GET /api/v1/recipients", srv.serveRecipients)
	rt.HandleFunc("GET /api/v1/recipients/{address}", srv.serveRecipient)
	change("DELETE /api/v1/recipients", func(w http.ResponseWriter, r *http.Request) {
		if err := srv.Reset(); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	rt.HandleFunc("GET /api/v1/sessions", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, srv.Sessions())
	})
	rt.HandleFunc("GET /api/v1/wait", srv.serveWait)
	rt.HandleFunc("GET /api/v1/faults", func(w http.ResponseWriter, r *http.Request) {
		if fs := srv.faultSet(w); fs != nil {
			writeJSON(w, faultsBody(fs))
		}
	})
	change("PUT /api/v1/faults", srv.putFaults)
	change("POST /api/v1/outage", func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query().Get("for")
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			http.Error(w, fmt.Sprintf("for=%q: want a positive duration, like /api/v1/outage?for=2s", v), http.StatusBadRequest)
			return
		}
		if err := srv.Outage(d); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusAccepted)
	})
	rt.HandleFunc("GET /api/v1/clock", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, srv.clockBody())
	})
	// Moving the clock expires idempotency keys: a change like the others.
	change("POST /api/v1/clock", func(w http.ResponseWriter, r *http.Request) {
		v := r.URL.Query().Get("advance")
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			http.Error(w, fmt.Sprintf("advance=%q: want a positive duration, like /api/v1/clock?advance=25h", v), http.StatusBadRequest)
			return
		}
		srv.AdvanceClock(d)
		writeJSON(w, srv.clockBody())
	})
	rt.HandleFunc("GET /api/v1/openapi.yaml", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/yaml")
		io.WriteString(w, docs.OpenAPI())
	})
	rt.Handle("GET /metrics", promhttp.HandlerFor(srv.opts.Registry, promhttp.HandlerOpts{Registry: srv.opts.Registry}))
	rt.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	srv.mountAPI(sendRoutes{rt, srv})
	return rt.mux, rt.patterns
}

// putFaults is PUT /api/v1/faults.
func (srv *Server) putFaults(w http.ResponseWriter, r *http.Request) {
	fs := srv.faultSet(w)
	if fs == nil {
		return
	}
	var body faultsRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	err := dec.Decode(&body)
	if err == nil {
		// One value, nothing after it: a second one (or junk) is
		// a client that meant something else.
		var more json.RawMessage
		if dec.Decode(&more) != io.EOF {
			err = errors.New("data after the JSON body")
		}
	}
	if err != nil {
		http.Error(w, `want a JSON body (one, nothing after it) like {"faults": ["tempfail=0.5", "greylist"], "seed": 7}: `+err.Error(), http.StatusBadRequest)
		return
	}
	specs := make([]FaultSpec, 0, len(body.Faults))
	for i, s := range body.Faults {
		f, err := ParseFault(s)
		if err == nil && f.Kind == "outage" {
			err = fmt.Errorf("%q: an outage is not a session fault; use POST /api/v1/outage?for=DUR", s)
		}
		if err != nil {
			http.Error(w, fmt.Sprintf("faults[%d]: %s", i, strings.TrimPrefix(err.Error(), "--fault ")), http.StatusBadRequest)
			return
		}
		specs = append(specs, f)
	}
	_, seed := fs.Specs()
	if body.Seed != nil {
		seed = *body.Seed
	}
	fs.Set(specs, seed)
	writeJSON(w, faultsBody(fs))
}

// authorized requires the API token of a request that changes state.
func (srv *Server) authorized(h http.HandlerFunc) http.Handler {
	token := srv.opts.APIToken
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get("Authorization")), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="onecopy"`)
			http.Error(w, "this request changes the server's state: send the API token as Authorization: Bearer TOKEN", http.StatusUnauthorized)
			return
		}
		h(w, r)
	})
}

// faultSet finds the hook the faults API edits, or answers 404.
func (srv *Server) faultSet(w http.ResponseWriter) *FaultSet {
	for _, h := range srv.opts.Hooks {
		if fs, ok := h.(*FaultSet); ok {
			return fs
		}
	}
	http.Error(w, "this server has no runtime fault set (no *fakesmtp.FaultSet among Options.Hooks)", http.StatusNotFound)
	return nil
}

// faultsRequest is PUT /api/v1/faults's body.
type faultsRequest struct {
	Faults []string `json:"faults"`
	Seed   *uint64  `json:"seed,omitempty"` // absent: keep the seed
}

// faultsJSON is GET and PUT /api/v1/faults's answer.
type faultsJSON struct {
	Faults []string `json:"faults"`
	Seed   uint64   `json:"seed"`
}

func faultsBody(fs *FaultSet) faultsJSON {
	specs, seed := fs.Specs()
	names := make([]string, len(specs))
	for i, f := range specs {
		names[i] = f.String()
	}
	return faultsJSON{names, seed}
}

// clockJSON is GET and POST /api/v1/clock's answer.
type clockJSON struct {
	Now    time.Time `json:"now"`
	Offset string    `json:"offset"` // how far ahead of the real time, as a Go duration
}

func (srv *Server) clockBody() clockJSON {
	return clockJSON{srv.Clock(), time.Duration(srv.api.offset.Load()).String()}
}

func writeJSON(w http.ResponseWriter, v any) { writeJSONStatus(w, http.StatusOK, v) }

func writeJSONStatus(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(v)
}
