// Package report explains a judged run: the JSON report whose field names
// are a public contract (docs/report.md), the summary people read, the
// HTML page, JUnit and the timeline. It reads the history, the list and the
// verdict's accounting, and nothing of the running side, so `onecopy
// check` rebuilds from a kept work dir exactly the report the run wrote.
package report

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"github.com/onecopy/onecopy/history"
	"github.com/onecopy/onecopy/senders"
	"github.com/onecopy/onecopy/verdict"
)

// Report is the outcome of a run. Its JSON field names are a public
// contract.
type Report struct {
	Verdict    verdict.Level   `json:"verdict"`
	Expect     verdict.Level   `json:"expect"`
	Pass       bool            `json:"pass"`
	Seed       uint64          `json:"seed"`
	Holds      []verdict.Level `json:"holds"`
	Recipients int             `json:"recipients"`
	Delivered  int             `json:"delivered"`
	Missing    int             `json:"missing"`
	Duplicated int             `json:"duplicated"`
	Unexpected int             `json:"unexpected"`
	Bounced    int             `json:"bounced"`
	Copies     int64           `json:"copies"`
	Extra      int             `json:"extra_copies"`
	// Explained and Unexplained split Extra: extra copies an in-doubt
	// transaction explains, and those none does.
	Explained   int `json:"explained"`
	Unexplained int `json:"unexplained"`
	// InDoubt counts in-doubt transactions.
	InDoubt         int            `json:"in_doubt"`
	Histogram       map[string]int `json:"histogram"`
	Kills           int            `json:"kills"`
	Pauses          int            `json:"pauses"`
	Restarts        int            `json:"restarts"`
	Attempts        int            `json:"attempts"`
	Faults          map[string]int `json:"faults"`
	DurationSeconds float64        `json:"duration_seconds"`
	Reason          string         `json:"reason"`
	Worst           []Worst        `json:"worst"`
	// Patterns groups every repeated address by the course its copies
	// took (the first MaxPatterns groups, those with the most unexplained
	// copies first); PatternsOmitted counts the groups left out.
	Patterns        []Pattern `json:"patterns"`
	PatternsOmitted int       `json:"patterns_omitted,omitempty"`
	MissingSample   []string  `json:"missing_sample,omitempty"`
	// MissingExplained counts the missing addresses an in-doubt
	// transaction or a kill explains (what at-most-once allows).
	MissingExplained int      `json:"missing_explained"`
	Ended            string   `json:"ended"`
	Outcome          Outcome  `json:"outcome"`
	Campaign         string   `json:"campaign"`
	Command          []string `json:"command"`
	Replay           string   `json:"replay,omitempty"`
	History          string   `json:"history,omitempty"`
	Containment      string   `json:"containment,omitempty"`
	// Doubts lists the in-doubt transactions (the first MaxDoubts).
	Doubts []Doubt `json:"in_doubt_transactions,omitempty"`
	// MissedKills are kill points that found no attempt to hit: the chaos
	// asked for did not all happen, so the run does not pass.
	MissedKills []history.KillPoint `json:"missed_kills,omitempty"`
	// Escaped are processes of killed attempts that outlived the kill.
	Escaped []string  `json:"escaped,omitempty"`
	Senders []Attempt `json:"senders,omitempty"`
	// Cause is the most likely cause of what went wrong, in one sentence
	// ("1,500 extra copies: each restart re-sent from the top of the
	// list (3 restarts, new Message-IDs)"); empty when nothing did.
	Cause string `json:"cause"`
	// Timeline is the run over time, for the HTML report.
	Timeline *Timeline `json:"timeline,omitempty"`
}

// Outcome says whether a run was judged, or why not.
type Outcome string

// The outcomes of a run.
const (
	// OutcomeJudged: the run ended on its own (completed, or out of
	// retries) and its verdict stands.
	OutcomeJudged Outcome = "judged"
	// OutcomeTimeout: --timeout ended it with the sender still running;
	// it never passes.
	OutcomeTimeout Outcome = "timeout"
	// OutcomeInterrupted: Ctrl-C or the caller stopped it; not judged.
	OutcomeInterrupted Outcome = "interrupted"
	// OutcomeNeverConnected: no attempt ever opened a session: the
	// sender never ran as a sender (a bad command, a crash at start).
	OutcomeNeverConnected Outcome = "never-connected"
	// OutcomeEscaped: a process of a killed attempt outlived the kill:
	// the chaos did not reach the sender, so the verdict is not earned.
	OutcomeEscaped Outcome = "escaped"
	// OutcomeShort: the history misses copies the server counted.
	OutcomeShort Outcome = "history-short"
	// OutcomeError: the harness itself failed during the run.
	OutcomeError Outcome = "error"
)

// MaxDoubts is how many in-doubt transactions a report lists.
const MaxDoubts = 50

// Doubt is one in-doubt transaction, as the report lists it.
type Doubt struct {
	Txn        uint64        `json:"txn"`
	Session    uint64        `json:"session"`
	Instance   int           `json:"instance"`
	Attempt    int           `json:"attempt"`
	AtSeconds  float64       `json:"at_seconds"`
	Cause      history.Cause `json:"cause"`
	Fault      string        `json:"fault,omitempty"`
	Recipients int           `json:"recipients"`
	MessageID  string        `json:"message_id,omitempty"`
	Delivered  bool          `json:"delivered"`
}

// Worst is one of the most-copied addresses.
type Worst struct {
	Address    string `json:"address"`
	Copies     int    `json:"copies"`
	MessageIDs int    `json:"message_ids"`
	// Unexplained counts its extra copies no in-doubt transaction explains.
	Unexplained int `json:"unexplained"`
	// CopiesDetail is each copy in the order the server counted it, with
	// the attempt that sent it and what explains it.
	CopiesDetail []CopyDetail `json:"copies_detail,omitempty"`

	withoutID int // its copies without a Message-ID, which MessageIDs counts as distinct
}

// CopyDetail is one copy of a repeated address: who sent it, when, and
// what explains it.
type CopyDetail struct {
	// Instance and Attempt sent it; 0 when the session could not be traced
	// to an attempt.
	Instance int `json:"instance"`
	Attempt  int `json:"attempt"`
	// Time is when the server counted it; AtSeconds is that time since the
	// run started.
	Time      string  `json:"time"`
	AtSeconds float64 `json:"at_seconds"`
	Session   uint64  `json:"session"`
	Txn       uint64  `json:"txn"`
	MessageID string  `json:"message_id,omitempty"`
	// MessageIDRepeat compares its Message-ID with the address's earlier
	// copies: "first" (it is the first), "same" or "new".
	MessageIDRepeat verdict.Repeat `json:"message_id_repeat"`
	// InDoubt: its own transaction was in flight when its session ended.
	InDoubt bool `json:"in_doubt"`
	// Explained: an in-doubt transaction explains this extra copy, the
	// one ExplainedBy names. A first copy is not extra.
	Explained   bool   `json:"explained"`
	ExplainedBy *Doubt `json:"explained_by,omitempty"`
	// After is what preceded the attempt that sent it: the kill, fault or
	// exit that ended the attempt before ("SIGKILL at 50% (--kill at=50%)",
	// "exit 1 after 550 for rcpt000501@onecopy.test"), or "first start".
	After string `json:"after"`
}

// Attempt is one start of the sender, with its last output lines.
type Attempt struct {
	Instance        int      `json:"instance"`
	Attempt         int      `json:"attempt"`
	Exit            string   `json:"exit"`
	DurationSeconds float64  `json:"duration_seconds"`
	Output          []string `json:"output,omitempty"`
	// After is what preceded this attempt: "first start", or how the
	// attempt before it ended ("SIGKILL at 50% (--kill at=50%)").
	After string `json:"after,omitempty"`
	// Copies it sent, and how many of them went to an address that
	// already had one.
	Copies int `json:"copies"`
	Resent int `json:"resent"`
}

// Load rebuilds the report of a run from its history file and the list
// next to it, as the run itself did: `onecopy check`.
func Load(historyPath string) (*Report, error) {
	abs, err := filepath.Abs(historyPath)
	if err != nil {
		return nil, err
	}
	src := history.File(abs)
	run, err := history.ReadRun(src)
	if err != nil {
		return nil, err
	}
	list, err := senders.ReadList(filepath.Join(filepath.Dir(abs), run.List))
	if err != nil {
		return nil, fmt.Errorf("the run's recipient list: %w", err)
	}
	rep, _, err := Build(src, list)
	if err != nil {
		return nil, err
	}
	rep.History = abs
	return rep, nil
}

// Build judges the history src of a run over list (the addresses as the
// sender got them) and explains it.
func Build(src history.Source, list []string) (*Report, *verdict.Accounting, error) {
	run, err := history.ReadRun(src)
	if err != nil {
		return nil, nil, err
	}
	expect, err := verdict.ParseLevel(run.Expect)
	if err != nil {
		return nil, nil, fmt.Errorf("the history's expected level: %w", err)
	}
	if len(list) != run.Recipients {
		return nil, nil, fmt.Errorf("the list has %d addresses, the history's run had %d: is it the run's own list?", len(list), run.Recipients)
	}
	exp := verdict.NewExpected(list, run.Bounced)
	acc, err := verdict.Judge(src, exp)
	if err != nil {
		return nil, nil, err
	}
	rep := &Report{
		Expect: expect, Seed: run.Seed, Campaign: run.Campaign, Command: run.Command, Replay: run.Replay,
		Containment: run.Containment, Faults: map[string]int{},
	}
	t := acc.Tally
	rep.Holds = t.Holds()
	rep.Verdict = t.Verdict()
	rep.Recipients, rep.Delivered, rep.Missing = t.Recipients+t.Bounced, t.Delivered, t.Missing
	rep.Duplicated, rep.Unexpected, rep.Bounced = t.Duplicated, t.Unexpected, t.Bounced
	rep.Copies, rep.Extra, rep.InDoubt = t.Copies, t.Extra, t.InDoubt
	rep.Explained, rep.Unexplained, rep.MissingExplained = t.Explained, t.Unexplained, t.MissingExplained
	rep.Histogram = make(map[string]int, len(t.Histogram))
	for c, n := range t.Histogram {
		rep.Histogram[strconv.Itoa(c)] = n
	}
	rep.Reason = acc.Reason(expect)
	rep.MissingSample = acc.MissingSample
	rep.Worst = make([]Worst, 0, len(acc.Worst))
	for _, w := range acc.Worst {
		rep.Worst = append(rep.Worst, Worst{Address: w.Address, Copies: w.Copies, MessageIDs: w.MessageIDs, Unexplained: w.Unexplained})
	}
	if err := explain(src, run, exp, acc, rep); err != nil {
		return nil, nil, err
	}
	rep.Pass = rep.Outcome == OutcomeJudged && len(rep.MissedKills) == 0 && verdict.Reaches(rep.Holds, expect)
	if rep.Outcome == OutcomeJudged && len(rep.MissedKills) > 0 {
		rep.Reason += fmt.Sprintf(". %s of the schedule found no sender to hit: the chaos asked for did not all happen, so the run does not pass", count(len(rep.MissedKills), "kill point", "kill points"))
	}
	return rep, acc, nil
}

// WriteJSON writes the report to path, atomically.
func (rep *Report) WriteJSON(path string) error {
	b, err := rep.JSON()
	if err != nil {
		return err
	}
	return writeFile(path, b)
}

// writeFile replaces path with b through a temporary file beside it.
func writeFile(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
