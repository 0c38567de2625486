// The guard's parsers of the SMTP dialogue: command lines, paths and their
// parameters, BDAT sizes. They are the one parser of the dialogue: the
// library only ever sees the canonical lines the guard rebuilds from what
// they accepted (docs/fakesmtp.md, "One parser").

package fakesmtp

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// verb is a command the guard knows.
type verb uint8

const (
	verbUnknown verb = iota
	verbHELO
	verbEHLO
	verbMAIL
	verbRCPT
	verbDATA
	verbBDAT
	verbRSET
	verbNOOP
	verbQUIT
	verbVRFY
	verbEXPN
	verbHELP
	verbSTARTTLS
	verbAUTH
)

var verbNames = [...]string{"", "HELO", "EHLO", "MAIL", "RCPT", "DATA", "BDAT", "RSET", "NOOP", "QUIT", "VRFY", "EXPN", "HELP", "STARTTLS", "AUTH"}

func (v verb) String() string { return verbNames[v] }

// maxVerb is the longest verb the guard knows (STARTTLS).
const maxVerb = 8

// parseCommand splits a command line (without its CRLF) into its verb and
// argument: the verb ASCII letters matched without regard to case, then
// one or more spaces, then the argument with trailing spaces dropped. A
// line the library would read differently (white space other than a space
// around or inside it, control characters, bytes that are not UTF-8, a
// Unicode space) is refused with the protocol error kind that says why;
// an empty line or an unknown verb is verbUnknown with no kind.
func parseCommand(line string) (v verb, arg string, kind string) {
	ascii := true
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\t' || c == '\v' || c == '\f':
			return verbUnknown, "", "bad_whitespace"
		case c < ' ' || c == 0x7f:
			return verbUnknown, "", "control_char"
		case c >= 0x80:
			ascii = false
		}
	}
	if !ascii {
		if !utf8.ValidString(line) {
			return verbUnknown, "", "bad_utf8"
		}
		for _, r := range line {
			if r >= 0x80 && (unicode.IsSpace(r) || unicode.IsControl(r) || unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp)) {
				return verbUnknown, "", "bad_whitespace"
			}
		}
	}
	if line == "" {
		return verbUnknown, "", ""
	}
	if line[0] == ' ' {
		return verbUnknown, "", "bad_whitespace"
	}
	n := 0
	for n < len(line) && isLetter(line[n]) {
		n++
	}
	if n < len(line) && line[n] != ' ' || n == 0 || n > maxVerb {
		return verbUnknown, "", ""
	}
	if v = lookupVerb(line[:n]); v == verbUnknown {
		return verbUnknown, "", ""
	}
	rest := strings.TrimLeft(line[n:], " ")
	return v, strings.TrimRight(rest, " "), ""
}

// equalFold compares ASCII case-insensitively: strings.EqualFold folds
// Unicode too, and reads "LAſT" (long s) as LAST, which no other SMTP
// parser does.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x != y && (!isLetter(x) || x|0x20 != y|0x20) {
			return false
		}
	}
	return true
}

func isLetter(c byte) bool { return 'A' <= c&^0x20 && c&^0x20 <= 'Z' }

// lookupVerb matches w (ASCII letters) against the known verbs.
func lookupVerb(w string) verb {
	var up [maxVerb]byte
	for i := 0; i < len(w); i++ {
		up[i] = w[i] &^ 0x20
	}
	u := up[:len(w)]
	for v := verbHELO; int(v) < len(verbNames); v++ {
		if string(u) == verbNames[v] {
			return v
		}
	}
	return verbUnknown
}

// maybeBDAT reports whether a line parseCommand refused could still be
// meant as BDAT by some reading: its first word, past any white space or
// control characters, is BDAT in any case.
func maybeBDAT(line string) bool {
	i := 0
	for i < len(line) {
		r, n := utf8.DecodeRuneInString(line[i:])
		if r > ' ' && r != 0x7f && !unicode.IsSpace(r) && !unicode.IsControl(r) && !unicode.In(r, unicode.Zs, unicode.Zl, unicode.Zp) {
			break
		}
		i += n
	}
	return len(line)-i >= 4 && strings.EqualFold(line[i:i+4], "BDAT") // Unicode folding on purpose: any reading
}

// validDomain accepts what may follow HELO/EHLO: a domain or an address
// literal, in printable ASCII. Anything printf-like is refused, because the
// library echoes it through a format string.
func validDomain(d string) bool {
	if d == "" || len(d) > 255 {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if c <= ' ' || c >= 0x7f || c == '%' || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// parsePath parses "FROM:<path> [params]" or "TO:<path> [params]": one
// angle-bracketed path (a space before it tolerated), nothing inside it
// that could be a second address, and params after one or more spaces.
// Whether the path is a mailbox is mailbox.Check's business.
func parsePath(arg, prefix string) (path, params string, ok bool) {
	if len(arg) < len(prefix) || !equalFold(arg[:len(prefix)], prefix) {
		return "", "", false
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ")
	if !strings.HasPrefix(rest, "<") {
		return "", "", false
	}
	end := pathEnd(rest)
	if end < 0 {
		return "", "", false
	}
	path, rest = rest[1:end], rest[end+1:]
	if rest != "" && rest[0] != ' ' {
		return "", "", false
	}
	params = strings.TrimLeft(rest, " ")
	for p := params; p != ""; {
		var k, v string
		k, v, _, p = nextParam(p)
		if strings.ContainsAny(v, "<>\"") && !(equalFold(k, "AUTH") && strings.HasPrefix(v, "<") && strings.HasSuffix(v, ">")) ||
			strings.ContainsAny(k, "<>\"") {
			return "", "", false // junk after the path, maybe a second address
		}
	}
	return path, params, true
}

// pathEnd finds the '>' closing the path that starts rest, honouring a
// quoted local part; -1 when the path holds characters no address may.
func pathEnd(rest string) int {
	quoted := false
	for i := 1; i < len(rest); i++ {
		c := rest[i]
		switch {
		case c < ' ' || c == 0x7f:
			return -1
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case quoted:
		case c == '>':
			return i
		case c == '<' || c == ' ' || c == ',' && !strings.HasPrefix(rest[1:], "@"):
			return -1
		}
	}
	return -1
}

// nextParam cuts the first space-separated parameter off params.
func nextParam(params string) (key, value string, hasValue bool, rest string) {
	p, rest, _ := strings.Cut(params, " ")
	rest = strings.TrimLeft(rest, " ")
	key, value, hasValue = strings.Cut(p, "=")
	return key, value, hasValue, rest
}

// esmtpKeyword: RFC 5321's esmtp-keyword, (ALPHA / DIGIT) *(ALPHA / DIGIT / "-").
func esmtpKeyword(k string) bool {
	if k == "" || k[0] == '-' {
		return false
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !isLetter(c) && !('0' <= c && c <= '9') && c != '-' {
			return false
		}
	}
	return true
}

// esmtpValue: RFC 5321's esmtp-value (no '=', no space, no control), with
// RFC 6531's UTF-8 (the line is valid UTF-8 already).
func esmtpValue(v string) bool {
	if v == "" {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c <= ' ' || c == '=' || c == 0x7f {
			return false
		}
	}
	return true
}

func digits(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

func atoi64(s string) int64 {
	var n int64
	for i := 0; i < len(s); i++ {
		n = 10*n + int64(s[i]-'0')
	}
	return n
}

// paramError is the reply refusing a parameter: a syntax error (501), or
// one the server does not support (555).
type paramError string

const (
	errParamSyntax  paramError = "501 5.5.4 Syntax error in parameters"
	errParamUnknown paramError = "555 5.5.4 Unsupported parameter"
	errBodyType     paramError = "555 5.5.4 Unsupported BODY type (7BIT and 8BITMIME are)"
)

// mailParams checks MAIL's parameters (SIZE, BODY, SMTPUTF8, RET, ENVID,
// AUTH) and returns the declared SIZE, -1 when none. The DSN ones are
// accepted and ignored: the fake server sends no notifications.
func mailParams(params string) (size int64, err paramError) {
	size = -1
	for params != "" {
		var k, v string
		var hasV bool
		k, v, hasV, params = nextParam(params)
		if !esmtpKeyword(k) || hasV && !esmtpValue(v) {
			return 0, errParamSyntax
		}
		switch {
		case equalFold(k, "SIZE"):
			if !hasV || !digits(v, 18) {
				return 0, errParamSyntax
			}
			size = atoi64(v)
		case equalFold(k, "BODY"):
			switch {
			case !hasV:
				return 0, errParamSyntax
			case !equalFold(v, "7BIT") && !equalFold(v, "8BITMIME"):
				return 0, errBodyType
			}
		case equalFold(k, "SMTPUTF8"):
			if hasV {
				return 0, errParamSyntax
			}
		case equalFold(k, "RET"):
			if !hasV || !equalFold(v, "FULL") && !equalFold(v, "HDRS") {
				return 0, errParamSyntax
			}
		case equalFold(k, "ENVID"), equalFold(k, "AUTH"):
			if !hasV {
				return 0, errParamSyntax
			}
		default:
			return 0, errParamUnknown
		}
	}
	return size, ""
}

// rcptParams checks RCPT's parameters: the DSN ones (NOTIFY, ORCPT),
// accepted and ignored.
func rcptParams(params string) paramError {
	for params != "" {
		var k, v string
		var hasV bool
		k, v, hasV, params = nextParam(params)
		if !esmtpKeyword(k) || !hasV || !esmtpValue(v) {
			return errParamSyntax
		}
		switch {
		case equalFold(k, "NOTIFY"):
			if !validNotify(v) {
				return errParamSyntax
			}
		case equalFold(k, "ORCPT"):
			if t, _, ok := strings.Cut(v, ";"); !ok || t == "" {
				return errParamSyntax
			}
		default:
			return errParamUnknown
		}
	}
	return ""
}

// validNotify: NEVER, or a list of SUCCESS, FAILURE and DELAY (RFC 3461).
func validNotify(v string) bool {
	if equalFold(v, "NEVER") {
		return true
	}
	for v != "" {
		var w string
		w, v, _ = strings.Cut(v, ",")
		if !equalFold(w, "SUCCESS") && !equalFold(w, "FAILURE") && !equalFold(w, "DELAY") {
			return false
		}
	}
	return true
}

// maxChunk bounds one BDAT chunk's declared size, so the guard never
// counts past what an int64 holds; the message limit is MaxSize.
const maxChunk = 1 << 40

// parseBDAT parses BDAT's argument, "SIZE [LAST]".
func parseBDAT(arg string) (n int64, last, ok bool) {
	size, rest, _ := strings.Cut(arg, " ")
	rest = strings.TrimLeft(rest, " ")
	if !digits(size, 13) {
		return 0, false, false
	}
	if n = atoi64(size); n > maxChunk {
		return 0, false, false
	}
	switch {
	case rest == "":
		return n, false, true
	case equalFold(rest, "LAST"):
		return n, true, true
	}
	return 0, false, false
}
