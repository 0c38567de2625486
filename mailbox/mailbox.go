// Package mailbox is the one definition of a mailbox's identity in onecopy:
// the key under which the oracle counts copies, and the check that an
// address is one the key is defined for. The fake SMTP server, the harness
// and the senders all call it, so "the same mailbox" means the same thing
// everywhere. docs/addresses.md explains the rules and why.
package mailbox

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Why Check refuses an address. Each error Check returns wraps one of them.
var (
	ErrEmpty   = errors.New("empty address")
	ErrUTF8    = errors.New("not valid UTF-8")
	ErrSpace   = errors.New("contains a space or control character")
	ErrRoute   = errors.New("malformed source route")
	ErrSyntax  = errors.New("not a mailbox")
	ErrTooLong = errors.New("longer than 256 octets")
)

// maxLen is RFC 5321's limit on a path (4.5.3.1.3), brackets excluded.
const maxLen = 254

// Key returns the counter key of addr: ASCII spaces and tabs around it
// trimmed, a source route (@a,@b:) dropped, a quoted local part written in
// its simplest equivalent form, and letters folded to lower case (ASCII
// ones always; others only to a lower-case letter that is not ASCII and
// whose upper case is that letter again). Two addresses share a key only
// when they name the same mailbox under those rules. Key is defined for
// every string (invalid UTF-8 bytes are kept as they are, never replaced),
// and Key(Key(a)) == Key(a); whether addr is a mailbox at all is Check's
// business.
func Key(addr string) string {
	s := trim(addr)
	if rest, ok := stripRoute(s); ok {
		s = trim(rest)
	}
	if len(s) > 0 && s[0] == '"' {
		if local, rest, ok := quoted(s); ok && (rest == "" || rest[0] == '@') {
			s = simplest(local) + rest
		}
	}
	return fold(s)
}

// Check reports why addr is not a mailbox onecopy counts, or nil. It
// accepts what RFC 5321 and RFC 6531 (UTF-8 addresses) allow in a path,
// a source route included, and a bare local part (like Postmaster); it
// refuses invalid UTF-8, spaces and control characters (a non-ASCII space
// such as U+00A0 too: trimming one would make two mailboxes one), a
// malformed source route, and anything that could be read as more than one
// address.
func Check(addr string) error {
	s := trim(addr)
	fail := func(why error) error { return fmt.Errorf("address %q: %w", addr, why) }
	switch {
	case s == "":
		return fail(ErrEmpty)
	case !utf8.ValidString(s):
		return fail(ErrUTF8)
	}
	for _, r := range s {
		if forbidden(r) {
			return fail(ErrSpace)
		}
	}
	if s[0] == '@' {
		rest, ok := stripRoute(s)
		if !ok {
			return fail(ErrRoute)
		}
		s = rest
	}
	if len(s) > maxLen {
		return fail(ErrTooLong)
	}
	rest := s
	if s[0] == '"' {
		local, r, ok := quoted(s)
		if !ok {
			return fail(ErrSyntax)
		}
		for i := 0; i < len(local); i++ {
			if local[i] < ' ' || local[i] == 0x7f {
				return fail(ErrSpace)
			}
		}
		rest = r
	} else {
		i := strings.IndexByte(s, '@')
		if i < 0 {
			i = len(s)
		}
		if !dotString(s[:i]) {
			return fail(ErrSyntax)
		}
		rest = s[i:]
	}
	if rest == "" {
		return nil // a bare local part, like Postmaster
	}
	if rest[0] != '@' || !domain(rest[1:]) {
		return fail(ErrSyntax)
	}
	return nil
}

// Valid reports whether Check accepts addr.
func Valid(addr string) bool { return Check(addr) == nil }

// trim drops ASCII spaces and tabs around s, and nothing else: U+00A0 and
// the other Unicode spaces are part of the address (Check refuses them).
func trim(s string) string {
	return strings.Trim(s, " \t")
}

// forbidden: controls, every kind of space, and the invisible characters
// that render as nothing (zero-width space, word joiner, BOM, bidi
// controls). Zero-width joiner and non-joiner stay: scripts need them.
func forbidden(r rune) bool {
	switch {
	case r == ' ':
		return false // only inside quotes; the syntax checks that
	case r < 0x80:
		return r < ' ' || r == 0x7f
	case r == 0x200c || r == 0x200d:
		return false
	}
	return unicode.IsControl(r) || unicode.IsSpace(r) || unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp, unicode.Cf)
}

// stripRoute drops an RFC 5321 source route, "@one,@two:" before the
// mailbox. ok is false when s starts with '@' but is no valid route.
func stripRoute(s string) (string, bool) {
	if s == "" || s[0] != '@' {
		return s, false
	}
	end := strings.IndexByte(s, ':')
	if end < 0 {
		return s, false
	}
	for _, hop := range strings.Split(s[:end], ",") {
		if len(hop) < 2 || hop[0] != '@' || !domain(hop[1:]) {
			return s, false
		}
	}
	rest := s[end+1:]
	if rest == "" || rest[0] == '@' {
		return s, false
	}
	return rest, true
}

// quoted splits a quoted local part off s (which starts with '"'): local
// is its content unescaped, rest what follows the closing quote.
func quoted(s string) (local, rest string, ok bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			if i+1 == len(s) || s[i+1] < ' ' || s[i+1] > '~' {
				return "", "", false
			}
			i++
			b.WriteByte(s[i])
		case '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(c)
		}
	}
	return "", "", false
}

// simplest writes a local part in its simplest form: bare when it is a
// dot-string, else quoted with only '"' and '\' escaped. RFC 5321 4.1.2:
// the forms are equivalent, so they are one mailbox.
func simplest(local string) string {
	if dotString(local) && !strings.Contains(local, "..") && local[0] != '.' && local[len(local)-1] != '.' {
		return local
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(local); i++ {
		if c := local[i]; c == '"' || c == '\\' {
			b.WriteByte('\\')
		}
		b.WriteByte(local[i])
	}
	b.WriteByte('"')
	return b.String()
}

// atext is RFC 5322's atom character set, less the dot.
func atext(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-/=?^_`{|}~", c) >= 0
}

// dotString: atext, dots and UTF-8 letters; empty is not one. Consecutive
// dots are tolerated (real systems have such addresses); nothing that
// could separate two addresses is.
func dotString(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x80 && c != '.' && !atext(c) {
			return false
		}
	}
	return true
}

// domain: dot-separated labels of letters, digits, '-' and '_' (ASCII or
// UTF-8), or an address literal in brackets.
func domain(d string) bool {
	if d == "" {
		return false
	}
	if d[0] == '[' {
		if len(d) < 3 || d[len(d)-1] != ']' {
			return false
		}
		for i := 1; i < len(d)-1; i++ {
			if c := d[i]; c <= ' ' || c > '~' || c == '[' || c == ']' || c == '\\' {
				return false
			}
		}
		return true
	}
	for d != "" {
		label, rest, _ := strings.Cut(d, ".")
		if label == "" || rest == "" && len(label) < len(d) {
			return false // an empty label, or a trailing dot
		}
		d = rest
		for i := 0; i < len(label); i++ {
			c := label[i]
			if c < 0x80 && c != '-' && c != '_' && !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
				return false
			}
		}
	}
	return true
}

// fold lower-cases s letter by letter. ASCII letters fold as usual. A
// non-ASCII letter folds only to a lower case that is itself non-ASCII and
// whose upper case is the letter again: the Kelvin sign (U+212A), whose
// lower case is ASCII 'k', stays itself, and so does the Ohm sign (lower
// case ω, whose upper case is Ω, not the Ohm sign), so no two letters that
// are not each other's case pair ever share a key. Bytes that are not
// UTF-8 are kept as they are.
func fold(s string) string {
	i := 0
	for i < len(s) {
		c := s[i]
		if c >= 0x80 || 'A' <= c && c <= 'Z' {
			break
		}
		i++
	}
	if i == len(s) {
		return s // the common case: already lower-case ASCII
	}
	b := make([]byte, 0, len(s))
	b = append(b, s[:i]...)
	for i < len(s) {
		c := s[i]
		if c < 0x80 {
			if 'A' <= c && c <= 'Z' {
				c += 'a' - 'A'
			}
			b = append(b, c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && n == 1 {
			b = append(b, c) // not UTF-8: keep the byte, never U+FFFD
			i++
			continue
		}
		b = utf8.AppendRune(b, foldRune(r))
		i += n
	}
	return string(b)
}

// foldRune is fold for one non-ASCII rune.
func foldRune(r rune) rune {
	l := unicode.ToLower(r)
	if l != r && l >= 0x80 && unicode.ToUpper(l) == r {
		return l
	}
	return r
}
