// The DATA scanner against the byte-at-a-time state machine it replaced:
// same verdict, same byte count, same state, whatever the input and
// however it is cut into reads.

package fakesmtp

import (
	"math/rand/v2"
	"testing"
)

// refScan is the original byte-at-a-time scanner.
func refScan(s *session, chunk []byte) (int, bool, string) {
	for i, b := range chunk {
		if s.cr {
			if b != '\n' {
				return i, false, "smuggling_bare_cr"
			}
			if s.firstDot && s.lineLen == 1 {
				return i + 1, true, ""
			}
			s.cr, s.firstDot, s.lineLen = false, false, 0
			continue
		}
		switch b {
		case '\r':
			s.cr = true
			continue
		case '\n':
			return i, false, "smuggling_bare_lf"
		case 0:
			return i, false, "nul"
		}
		if s.lineLen == 0 && b == '.' {
			s.firstDot = true
			s.dots++
		}
		s.lineLen++
	}
	return len(chunk), false, ""
}

func TestScanMatchesByteAtATime(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	alphabet := []byte("ab.\r\n\r\n\r\n..x\x00")
	for trial := range 20000 {
		body := make([]byte, rng.IntN(40))
		for i := range body {
			if rng.IntN(8) == 0 {
				body[i] = alphabet[rng.IntN(len(alphabet))]
			} else {
				body[i] = "ab.\r\n"[rng.IntN(5)]
			}
		}
		var got, want session
		rest := body
		for len(rest) > 0 {
			cut := 1 + rng.IntN(len(rest))
			chunk := rest[:cut]
			n, done, err := got.scan(chunk)
			wn, wdone, wkind := refScan(&want, chunk)
			kind := ""
			if pe, ok := err.(*protoError); ok {
				kind = pe.kind
			}
			if n != wn || done != wdone || kind != wkind {
				t.Fatalf("trial %d, body %q, chunk %q: got (%d, %v, %q), want (%d, %v, %q)", trial, body, chunk, n, done, kind, wn, wdone, wkind)
			}
			if wkind == "" && (got.cr != want.cr || got.firstDot != want.firstDot || got.lineLen != want.lineLen || got.dots != want.dots) {
				t.Fatalf("trial %d, body %q, chunk %q: state %v/%v/%d/%d, want %v/%v/%d/%d", trial, body, chunk,
					got.cr, got.firstDot, got.lineLen, got.dots, want.cr, want.firstDot, want.lineLen, want.dots)
			}
			if done || wkind != "" {
				break
			}
			rest = rest[n:]
		}
	}
}
