// GET /api/v1/recipients with filters and pages, and
// GET /api/v1/recipients/{address}.

package fakesmtp

import (
	"container/heap"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/onecopy/onecopy/mailbox"
)

// RecipientPage is GET /api/v1/recipients with parameters: the
// recipients that match, in address order, a page at a time.
type RecipientPage struct {
	// Copies is every copy counted, to any address, as without parameters.
	Copies int64 `json:"copies"`
	// Recipients are those of this page, sorted by address.
	Recipients []Recipient `json:"recipients"`
	// Next is the cursor of the next page (its after=), the last address
	// of this one; absent on the last page.
	Next string `json:"next,omitempty"`
}

// pageQuery is what GET /api/v1/recipients was asked.
type pageQuery struct {
	after     string // only addresses sorting after it (normalised)
	limit     int    // at most this many; 0: all
	minCopies uint32 // 2 for duplicated=true, else 1
}

func parsePage(q url.Values) (pageQuery, error) {
	p := pageQuery{minCopies: 1}
	for name, vs := range q {
		if len(vs) != 1 {
			return p, fmt.Errorf("%s= given %d times: give it once", name, len(vs))
		}
		v := vs[0]
		switch name {
		case "duplicated":
			dup, err := strconv.ParseBool(v)
			if err != nil {
				return p, fmt.Errorf("duplicated=%q: want true (only recipients with more than one copy) or false", v)
			}
			if dup {
				p.minCopies = 2
			}
		case "limit":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return p, fmt.Errorf("limit=%q: want a positive count of recipients per page, like limit=100", v)
			}
			p.limit = n
		case "after":
			p.after = clip(Normalize(v))
		default:
			return p, fmt.Errorf("%s=: no such parameter; /api/v1/recipients takes duplicated=true, limit=N and after=ADDRESS (the next of the page before)", name)
		}
	}
	return p, nil
}

// serveRecipients is GET /api/v1/recipients.
func (srv *Server) serveRecipients(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if len(q) == 0 {
		writeJSON(w, srv.oracle.Snapshot()) // the shape it always had
		return
	}
	p, err := parsePage(q)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	recs, more := srv.oracle.page(p)
	page := RecipientPage{Copies: srv.oracle.Copies(), Recipients: recs}
	if more {
		page.Next = recs[len(recs)-1].Address
	}
	writeJSON(w, page)
}

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

// page returns the recipients of p in address order, and whether more
// match after them. With a limit it keeps only the limit+1 smallest
// addresses it has seen (a heap), so a page of a million recipients
// costs the page, not a sorted copy of them all.
func (o *Oracle) page(p pageQuery) ([]Recipient, bool) {
	var kept byAddressDesc
	for i := range o.shards {
		sh := &o.shards[i]
		sh.mu.Lock()
		t := &sh.t
		for n := uint32(0); n < t.n; n++ {
			e := t.entry(n)
			if e.copies < p.minCopies {
				continue
			}
			addr := t.address(e.ref)
			if string(addr) <= p.after {
				continue
			}
			switch {
			case p.limit == 0:
				kept = append(kept, e.recipient(string(addr)))
			case len(kept) <= p.limit:
				heap.Push(&kept, e.recipient(string(addr)))
			case string(addr) < kept[0].Address:
				kept[0] = e.recipient(string(addr))
				heap.Fix(&kept, 0)
			}
		}
		sh.mu.Unlock()
	}
	recs := []Recipient(kept)
	if recs == nil {
		recs = []Recipient{}
	}
	slices.SortFunc(recs, func(a, b Recipient) int { return strings.Compare(a.Address, b.Address) })
	if p.limit > 0 && len(recs) > p.limit {
		return recs[:p.limit], true
	}
	return recs, false
}

// byAddressDesc is a heap with the greatest address on top.
type byAddressDesc []Recipient

func (h byAddressDesc) Len() int           { return len(h) }
func (h byAddressDesc) Less(i, j int) bool { return h[i].Address > h[j].Address }
func (h byAddressDesc) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *byAddressDesc) Push(x any)        { *h = append(*h, x.(Recipient)) }
func (h *byAddressDesc) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}
