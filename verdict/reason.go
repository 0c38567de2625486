// The reason: why a run got its verdict, in a sentence or two.

package verdict

import (
	"fmt"
	"strings"
)

// Reason explains why the run got its verdict and, when it fell short of
// expect, what stood in the way, naming a few of the repeats no in-doubt
// transaction explains.
func (a *Accounting) Reason(expect Level) string {
	t := a.Tally
	verdict := t.Verdict()
	var problems []string
	if t.Missing > 0 {
		p := fmt.Sprintf("%d of %d deliverable recipients got no copy", t.Missing, t.Recipients)
		if t.MissingExplained > 0 {
			p += fmt.Sprintf(" (%d of them in flight at an in-doubt transaction or a kill)", t.MissingExplained)
		}
		problems = append(problems, p)
	}
	if t.Duplicated > 0 {
		p := fmt.Sprintf("%d got more than one (%d extra copies: %d explained by in-doubt transactions, %d that no in-doubt transaction explains",
			t.Duplicated, t.Extra, t.Explained, t.Unexplained)
		if t.NewIDs > 0 {
			p += fmt.Sprintf("; %d addresses repeated under a new Message-ID or none", t.NewIDs)
		}
		p += ")"
		if names := a.unexplainedNames(3); names != "" {
			p += "; unexplained, e.g. " + names
		}
		problems = append(problems, p)
	}
	if t.Unexpected > 0 {
		problems = append(problems, fmt.Sprintf("%d addresses not on the list got copies", t.Unexpected))
	}
	if len(problems) == 0 {
		return fmt.Sprintf("every one of %d recipients got exactly one copy", t.Recipients)
	}
	reason := verdict.String() + ": " + strings.Join(problems, "; ")
	if expect == ExactlyOnce && verdict == EffectivelyOnce {
		reason += fmt.Sprintf(". Exactly-once was missed only because of in-doubt transactions: each extra copy repeats, with its Message-ID, a message whose transaction was in flight when its session ended (%d in-doubt transactions). No sender can rule those out over SMTP (RFC 1047); effectively-once is the best guarantee there", t.InDoubt)
	}
	return reason
}

// unexplainedNames names up to n addresses with unexplained repeats.
func (a *Accounting) unexplainedNames(n int) string {
	var names []string
	for _, w := range a.Worst {
		if w.Unexplained == 0 || len(names) == n {
			break
		}
		names = append(names, fmt.Sprintf("%s (%d copies, %d unexplained)", w.Address, w.Copies, w.Unexplained))
	}
	return strings.Join(names, ", ")
}
