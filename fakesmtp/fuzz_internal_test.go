// Go fuzz targets on the guard's parsers (go test -fuzz): whatever they
// accept, the canonical line the library gets reads back the same, and no
// reading of it with white space trimmed differs.

package fakesmtp

import (
	"strings"
	"testing"
	"unicode"

	"github.com/onecopy/onecopy/mailbox"
)

func FuzzCommandLine(f *testing.F) {
	for _, s := range []string{
		"MAIL FROM:<a@x.test> BODY=8BITMIME SMTPUTF8", "rcpt  to:<V@x.test> NOTIFY=NEVER", "\tMAIL FROM:<a@x>",
		"DATA\f", "BDAT 10 LAST", "bdat\t10", " QUIT", "maıl FROM:<a@x>", "RCPT TO:<@r:a@x,b@x>", "EHLO x\u0085",
		"AUTH PLAIN AGEAYg==", "RCPT TO:<\"a b\"@x>", "MAIL FROM:<> AUTH=<>", "BDAT 99999999999999",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		if strings.ContainsAny(line, "\r\n\x00") {
			return // readLine refuses these before parseCommand sees them
		}
		v, arg, kind := parseCommand(line)
		if kind != "" || v == verbUnknown {
			if v != verbUnknown || arg != "" {
				t.Fatalf("%q refused (%q) yet parsed as %v %q", line, kind, v, arg)
			}
			if v == verbUnknown && isBDATWord(line) && !maybeBDAT(line) {
				t.Fatalf("%q may be a BDAT the guard refused, and it would read its chunk as commands", line)
			}
			return
		}
		// The canonical line: what the library would get for v.
		canon := v.String()
		if arg != "" {
			canon += " " + arg
		}
		if strings.TrimFunc(canon, unicode.IsSpace) != canon {
			t.Fatalf("%q: canonical %q has white space a trimming reader drops", line, canon)
		}
		if v2, arg2, kind2 := parseCommand(canon); v2 != v || arg2 != arg || kind2 != "" {
			t.Fatalf("%q: canonical %q reads as %v %q %q, not %v %q", line, canon, v2, arg2, kind2, v, arg)
		}
		switch v {
		case verbMAIL, verbRCPT:
			prefix := "FROM:"
			if v == verbRCPT {
				prefix = "TO:"
			}
			path, params, ok := parsePath(arg, prefix)
			if !ok {
				return
			}
			if v == verbMAIL {
				mailParams(params)
			} else {
				rcptParams(params)
			}
			if path == "" || !mailbox.Valid(path) {
				return
			}
			rebuilt := prefix + "<" + path + ">"
			if p2, params2, ok2 := parsePath(rebuilt, prefix); !ok2 || p2 != path || params2 != "" {
				t.Fatalf("%q: the rebuilt %q reads as %q %q %v", line, rebuilt, p2, params2, ok2)
			}
			if k := mailbox.Key(path); k == "" || mailbox.Key(k) != k {
				t.Fatalf("%q: key %q of %q is not stable", line, k, path)
			}
			if strings.Count(path, ">") > 0 && !strings.Contains(path, `"`) {
				t.Fatalf("%q: path %q holds a '>' outside quotes", line, path)
			}
		case verbBDAT:
			if n, _, ok := parseBDAT(arg); ok && (n < 0 || n > maxChunk) {
				t.Fatalf("%q: chunk size %d", line, n)
			}
		case verbHELO, verbEHLO:
			if validDomain(arg) && strings.ContainsAny(arg, "% <>") {
				t.Fatalf("%q: domain %q would go through the library's format string", line, arg)
			}
		}
	})
}

// isBDATWord: the first word of line, trimmed as strings.TrimSpace would,
// is BDAT in some case, by Unicode rules (the way a lenient reader reads).
func isBDATWord(line string) bool {
	w := strings.TrimLeftFunc(line, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) })
	return len(w) >= 4 && strings.EqualFold(w[:4], "BDAT")
}

// BenchmarkParseRcpt is the guard's parsing of one RCPT line: the command,
// the path and its parameters, the mailbox check and key. It must not
// allocate.
func BenchmarkParseRcpt(b *testing.B) {
	// Lower case: a key with capitals is a new string, which the guard keeps.
	line := "RCPT TO:<bob.smith+tag@example.com> NOTIFY=SUCCESS,FAILURE"
	b.ReportAllocs()
	for b.Loop() {
		v, arg, kind := parseCommand(line)
		path, params, ok := parsePath(arg, "TO:")
		if v != verbRCPT || kind != "" || !ok || !mailbox.Valid(path) || rcptParams(params) != "" || mailbox.Key(path) == "" {
			b.Fatal("misparsed")
		}
	}
}
