// Package verdict judges a run from its history and its list alone: which
// copies each expected address got, which extra copies an in-doubt
// transaction explains, and so which delivery guarantee the run showed
// (docs/verdicts.md). It never reads the running side: a kept history is
// re-judged to the same verdict, and the rule is tested from golden files.
package verdict

import "fmt"

// Level is a delivery guarantee.
type Level string

// The levels, strongest first. Fail is the verdict when none holds.
const (
	ExactlyOnce     Level = "exactly-once"
	EffectivelyOnce Level = "effectively-once"
	AtLeastOnce     Level = "at-least-once"
	AtMostOnce      Level = "at-most-once"
	Fail            Level = "fail"
)

// Levels lists the levels a run can be expected to reach, strongest first.
func Levels() []Level { return []Level{ExactlyOnce, EffectivelyOnce, AtLeastOnce, AtMostOnce} }

// ParseLevel accepts a level name.
func ParseLevel(s string) (Level, error) {
	for _, l := range Levels() {
		if string(l) == s {
			return l, nil
		}
	}
	return "", fmt.Errorf("unknown level %q: want one of exactly-once, effectively-once, at-least-once, at-most-once", s)
}

func (l Level) String() string { return string(l) }

// Reaches reports whether holds includes expect.
func Reaches(holds []Level, expect Level) bool {
	for _, l := range holds {
		if l == expect {
			return true
		}
	}
	return false
}
