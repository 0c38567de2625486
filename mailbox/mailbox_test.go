package mailbox_test

import (
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/onecopy/onecopy/mailbox"
)

func TestKey(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"bob@example.com", "bob@example.com"},
		{"Bob@EXAMPLE.com", "bob@example.com"},
		{"  Bob@Example.COM\t", "bob@example.com"},
		{"@relay.test:bob@example.com", "bob@example.com"},
		{"@a.test,@b.test:Bob@x.test", "bob@x.test"},
		{`"bob"@x.test`, "bob@x.test"},
		{`"B\ob"@x.test`, "bob@x.test"},
		{`"a b"@x.test`, `"a b"@x.test`},
		{`"a\"b"@x.test`, `"a\"b"@x.test`},
		{"ÄRGER@Bücher.DE", "ärger@bücher.de"},
		{"ΣΟΦΊΑ@x.test", "σοφία@x.test"},
		{"\u212a@x.test", "\u212a@x.test"}, // Kelvin sign: never ASCII k
		{"\u2126@x.test", "\u2126@x.test"}, // Ohm sign: not Ω's lower case
		{"\u0130@x.test", "\u0130@x.test"}, // İ: its lower case is ASCII i
		{"\u00a0bob@x.test", "\u00a0bob@x.test"},
		{"caf\xe9@x.test", "caf\xe9@x.test"}, // Latin-1 byte kept, not U+FFFD
		{"", ""},
	} {
		if got := mailbox.Key(tc.in); got != tc.want {
			t.Errorf("Key(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want error
	}{
		{"bob@example.com", nil},
		{"Postmaster", nil},
		{"@relay.test:bob@example.com", nil},
		{`"a b"@x.test`, nil},
		{"ärger@bücher.de", nil},
		{"user@[192.0.2.1]", nil},
		{"o'brien+tag@x.test", nil},
		{"", mailbox.ErrEmpty},
		{"  ", mailbox.ErrEmpty},
		{"caf\xe9@x.test", mailbox.ErrUTF8},
		{"\u00a0bob@x.test", mailbox.ErrSpace},
		{"bob\u2028@x.test", mailbox.ErrSpace},
		{"bob@x.test\u0085", mailbox.ErrSpace},
		{"bo\u200bb@x.test", mailbox.ErrSpace},
		{"bob\x00@x.test", mailbox.ErrSpace},
		{"bob\r@x.test", mailbox.ErrSpace},
		{"@r:a@x,b@x", mailbox.ErrSyntax},
		{"@r:", mailbox.ErrRoute},
		{"@r", mailbox.ErrRoute},
		{"@:a@x", mailbox.ErrRoute},
		{"@r;x:a@x", mailbox.ErrRoute},
		{"a@x,b@x", mailbox.ErrSyntax},
		{"a b@x", mailbox.ErrSyntax},
		{"a@x@y", mailbox.ErrSyntax},
		{"a@", mailbox.ErrSyntax},
		{"@x", mailbox.ErrRoute},
		{"<a@x>", mailbox.ErrSyntax},
		{`"a@x`, mailbox.ErrSyntax},
		{`"a"b@x`, mailbox.ErrSyntax},
		{"a@x..y", mailbox.ErrSyntax},
		{strings.Repeat("a", 250) + "@x.test", mailbox.ErrTooLong},
	} {
		err := mailbox.Check(tc.in)
		if tc.want == nil && err != nil || tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("Check(%q) = %v, want %v", tc.in, err, tc.want)
		}
	}
}

// The collisions an adversarial probe found: each pair is two mailboxes.
func TestDistinctMailboxesDistinctKeys(t *testing.T) {
	for _, p := range [][2]string{
		{"caf\xe9@x.test", "caf\xe8@x.test"}, // two Latin-1 addresses: both became U+FFFD
		{"\u00a0bob@x.test", "bob@x.test"},   // NBSP trimmed away
		{"\u212a@x.test", "k@x.test"},        // Kelvin sign lower-cased to k
		{"\u2126@x.test", "\u03c9@x.test"},   // Ohm sign and omega
		{"\u0130@x.test", "i@x.test"},        // dotted capital I
		{"@r:a@x,b@x", "a@x,b@x@x"},
		{`"a b"@x`, "ab@x"},
	} {
		if a, b := mailbox.Key(p[0]), mailbox.Key(p[1]); a == b {
			t.Errorf("%q and %q share the key %q", p[0], p[1], a)
		}
	}
}

// Every rune folds to a rune that folds to itself, and only a letter and
// its own upper case fold together.
func TestFoldEveryRune(t *testing.T) {
	seen := map[string]rune{}
	for r := rune(0); r <= unicode.MaxRune; r++ {
		if !utf8.ValidRune(r) {
			continue
		}
		k := mailbox.Key(string(r))
		if r == ' ' || r == '\t' {
			continue
		}
		if mailbox.Key(k) != k {
			t.Fatalf("U+%04X: Key %q is not stable", r, k)
		}
		if (r >= 0x80) != (k[0] >= 0x80) {
			t.Fatalf("U+%04X folds across ASCII to %q", r, k)
		}
		if o, ok := seen[k]; ok {
			kr, _ := utf8.DecodeRuneInString(k)
			pair := func(a rune) bool { return a == kr || unicode.ToUpper(kr) == a }
			if !pair(o) || !pair(r) {
				t.Fatalf("U+%04X and U+%04X share the key %q and are not a case pair", o, r, k)
			}
			continue
		}
		seen[k] = r
	}
}

// A random property: addresses built from random runes share a key exactly
// when they are equal rune by rune up to case pairs.
func TestKeyProperty(t *testing.T) {
	seed := rand.Uint64()
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	alphabet := []rune("aAbBkKiIsSσΣςΩωäÄß\u212a\u2126\u0130\u017f\u1e9e.-+@\"")
	gen := func() string {
		n := 1 + rng.IntN(6)
		var b strings.Builder
		for range n {
			b.WriteRune(alphabet[rng.IntN(len(alphabet))])
		}
		return b.String() + "@x.test"
	}
	sameUpToCase := func(a, b string) bool {
		ra, rb := []rune(a), []rune(b)
		if len(ra) != len(rb) {
			return false
		}
		for i := range ra {
			x, y := ra[i], rb[i]
			if x == y {
				continue
			}
			fx, fy := mailbox.Key(string(x)), mailbox.Key(string(y))
			if fx != fy {
				return false
			}
		}
		return true
	}
	for range 200_000 {
		a, b := gen(), gen()
		if strings.Contains(a, `"`) || strings.Contains(b, `"`) {
			continue // quoted forms are canonicalised: TestKey covers them
		}
		if got, want := mailbox.Key(a) == mailbox.Key(b), sameUpToCase(a, b); got != want {
			t.Fatalf("seed %d: %q and %q: same key %v, same up to case %v", seed, a, b, got, want)
		}
	}
}

func FuzzKey(f *testing.F) {
	for _, s := range []string{"bob@x.test", " Bob@X ", "@r:a@x", `"a b"@x`, "\u212a@x", "caf\xe9@x", "\u00a0a@x", `"\\"@x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k := mailbox.Key(s)
		if mailbox.Key(k) != k {
			t.Fatalf("Key(%q) = %q, whose key is %q", s, k, mailbox.Key(k))
		}
		if mailbox.Valid(s) {
			if !mailbox.Valid(k) {
				t.Fatalf("%q is valid, its key %q is not", s, k)
			}
			if !utf8.ValidString(k) || strings.ContainsAny(k, "\r\n\x00<>,") && !strings.HasPrefix(k, `"`) {
				t.Fatalf("valid %q keyed as %q", s, k)
			}
		}
		if len(k) > len(s) && !strings.Contains(s, `"`) {
			// folding may change byte lengths of non-ASCII letters only
			for _, r := range s {
				if r >= 0x80 {
					return
				}
			}
			t.Fatalf("ASCII %q grew to %q", s, k)
		}
	})
}
