// Gomega matchers for onecopy reports, with failure messages that say what
// happened, to whom, and how to replay it.

package scenariotest

import (
	"fmt"
	"strings"

	"github.com/onsi/gomega/types"

	"github.com/onecopy/onecopy/harness"
)

// reportMatcher checks one property of a *harness.Report.
type reportMatcher struct {
	want string
	ok   func(*harness.Report) bool
}

func (m reportMatcher) Match(actual any) (bool, error) {
	rep, isReport := actual.(*harness.Report)
	if !isReport || rep == nil {
		return false, fmt.Errorf("want a non-nil *harness.Report, got %T", actual)
	}
	return m.ok(rep), nil
}

func (m reportMatcher) FailureMessage(actual any) string {
	return "Expected the run to " + m.want + ", but it did not.\n" + describe(actual.(*harness.Report))
}

func (m reportMatcher) NegatedFailureMessage(actual any) string {
	return "Expected the run not to " + m.want + ", but it did.\n" + describe(actual.(*harness.Report))
}

// ReachLevel succeeds when level holds for the run (exactly-once implies
// effectively-once and at-least-once, and so on).
func ReachLevel(level harness.Level) types.GomegaMatcher {
	return reportMatcher{"reach " + string(level), func(r *harness.Report) bool {
		for _, l := range r.Holds {
			if l == level {
				return true
			}
		}
		return false
	}}
}

// BeExactlyOnce succeeds when every recipient got exactly one copy.
func BeExactlyOnce() types.GomegaMatcher { return ReachLevel(harness.ExactlyOnce) }

// BeEffectivelyOnce succeeds when nothing is missing and every extra copy
// repeats its Message-ID, within the in-doubt events.
func BeEffectivelyOnce() types.GomegaMatcher { return ReachLevel(harness.EffectivelyOnce) }

// HaveNoMissing succeeds when every deliverable recipient got a copy.
func HaveNoMissing() types.GomegaMatcher {
	return reportMatcher{"leave no recipient without a copy", func(r *harness.Report) bool { return r.Missing == 0 }}
}

// describe renders a report for a failure message: verdict and reason,
// the histogram, the worst and missing addresses, the sender's last output
// and the replay command.
func describe(rep *harness.Report) string {
	var b strings.Builder
	rep.Summary(&b)
	return b.String()
}
