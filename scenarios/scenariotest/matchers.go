// Gomega matchers for onecopy reports, with failure messages that say what
// happened, to whom, and how to replay it.

package scenariotest

import (
	"fmt"
	"strings"

	"github.com/onsi/gomega/types"

	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

// reportMatcher checks one property of a *report.Report.
type reportMatcher struct {
	want string
	ok   func(*report.Report) bool
}

func (m reportMatcher) Match(actual any) (bool, error) {
	rep, isReport := actual.(*report.Report)
	if !isReport || rep == nil {
		return false, fmt.Errorf("want a non-nil *report.Report, got %T", actual)
	}
	return m.ok(rep), nil
}

func (m reportMatcher) FailureMessage(actual any) string {
	return "Expected the run to " + m.want + ", but it did not.\n" + describe(actual.(*report.Report))
}

func (m reportMatcher) NegatedFailureMessage(actual any) string {
	return "Expected the run not to " + m.want + ", but it did.\n" + describe(actual.(*report.Report))
}

// ReachLevel succeeds when level holds for the run (exactly-once implies
// effectively-once and at-least-once, and so on).
func ReachLevel(level verdict.Level) types.GomegaMatcher {
	return reportMatcher{"reach " + string(level), func(r *report.Report) bool {
		for _, l := range r.Holds {
			if l == level {
				return true
			}
		}
		return false
	}}
}

// BeExactlyOnce succeeds when every recipient got exactly one copy.
func BeExactlyOnce() types.GomegaMatcher { return ReachLevel(verdict.ExactlyOnce) }

// BeEffectivelyOnce succeeds when nothing is missing and every extra copy
// repeats its Message-ID, within the in-doubt events.
func BeEffectivelyOnce() types.GomegaMatcher { return ReachLevel(verdict.EffectivelyOnce) }

// HaveNoMissing succeeds when every deliverable recipient got a copy.
func HaveNoMissing() types.GomegaMatcher {
	return reportMatcher{"leave no recipient without a copy", func(r *report.Report) bool { return r.Missing == 0 }}
}

// describe renders a report for a failure message: verdict and reason,
// the histogram, the worst and missing addresses, the sender's last output
// and the replay command.
func describe(rep *report.Report) string {
	var b strings.Builder
	rep.Summary(&b)
	return b.String()
}
