package verdict_test

import (
	"slices"
	"testing"

	"github.com/onecopy/onecopy/verdict"
)

func TestHoldsAndVerdict(t *testing.T) {
	const (
		exactly     = verdict.ExactlyOnce
		effectively = verdict.EffectivelyOnce
		atLeast     = verdict.AtLeastOnce
		atMost      = verdict.AtMostOnce
	)
	for _, c := range []struct {
		name    string
		t       verdict.Tally
		holds   []verdict.Level
		verdict verdict.Level
	}{
		{"one copy each: every level holds", verdict.Tally{Recipients: 10, Delivered: 10},
			[]verdict.Level{exactly, effectively, atLeast, atMost}, exactly},
		{"every extra copy explained", verdict.Tally{Recipients: 10, Delivered: 10, Duplicated: 2, Extra: 3, Explained: 3, InDoubt: 1},
			[]verdict.Level{effectively, atLeast}, effectively},
		{"one extra copy unexplained, however many in-doubt transactions", verdict.Tally{Recipients: 10, Delivered: 10, Duplicated: 2, Extra: 3, Explained: 2, Unexplained: 1, InDoubt: 9},
			[]verdict.Level{atLeast}, atLeast},
		{"missing, every one explained, no repeats", verdict.Tally{Recipients: 10, Delivered: 8, Missing: 2, MissingExplained: 2},
			[]verdict.Level{atMost}, atMost},
		{"missing, not every one explained", verdict.Tally{Recipients: 10, Delivered: 7, Missing: 3, MissingExplained: 2},
			nil, verdict.Fail},
		{"an address not on the list got a copy", verdict.Tally{Recipients: 10, Delivered: 10, Unexpected: 1},
			nil, verdict.Fail},
		{"the repro: missing and repeated", verdict.Tally{Recipients: 999, Delivered: 500, Missing: 499, Duplicated: 500, Extra: 1500, Unexplained: 1500, NewIDs: 500, Bounced: 1},
			nil, verdict.Fail},
	} {
		t.Run(c.name, func(t *testing.T) {
			if got := c.t.Holds(); !slices.Equal(got, c.holds) && !(len(got) == 0 && len(c.holds) == 0) {
				t.Errorf("holds %v, want %v", got, c.holds)
			}
			if got := c.t.Verdict(); got != c.verdict {
				t.Errorf("verdict %s, want %s", got, c.verdict)
			}
		})
	}
}

func TestParseLevel(t *testing.T) {
	for _, l := range verdict.Levels() {
		if got, err := verdict.ParseLevel(string(l)); err != nil || got != l {
			t.Errorf("ParseLevel(%q) = %v, %v", l, got, err)
		}
	}
	if _, err := verdict.ParseLevel("fail"); err == nil {
		t.Error("fail is a verdict, not a level to expect")
	}
}
