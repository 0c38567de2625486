// GET /api/v1/recipients/{address}.

package fakesmtp

import (
	"net/http"

	"github.com/onecopy/onecopy/mailbox"
)

// serveRecipient is GET /api/v1/recipients/{address}: 200 with its counts,
// 404 with zero counts (and the address as counted) when it has no copy,
// 400 when it is not an address at all.
func (srv *Server) serveRecipient(w http.ResponseWriter, r *http.Request) {
	addr := r.PathValue("address")
	if err := mailbox.Check(addr); err != nil {
		http.Error(w, err.Error()+"; want a mailbox like /api/v1/recipients/bob@example.com, path-escaped (a / in it as %2F)", http.StatusBadRequest)
		return
	}
	rec := srv.oracle.Get(addr)
	status := http.StatusOK
	if rec.Copies == 0 {
		status = http.StatusNotFound
	}
	writeJSONStatus(w, status, rec)
}
