// Package history is the record of a run: typed events appended as they
// happen (history.jsonl, one JSON object per line), and read back. It is the
// seam between running and judging: the harness writes it, and the verdict
// and the report read it and nothing else, so a kept run can be re-judged
// and a checker tested from a file without starting a process
// (docs/history.md).
package history

import (
	"time"
)

// Version is the history format written by this package.
const Version = 2

// Kind is the kind of an event.
type Kind string

// The kinds of event, in the order a run usually meets them.
const (
	KindRun     Kind = "run"      // the first line: how the run was set up
	KindStart   Kind = "start"    // an attempt of the sender started (or failed to)
	KindCopy    Kind = "copy"     // the server counted a message: one copy per recipient
	KindFault   Kind = "fault"    // the server injected a fault into a session
	KindOutage  Kind = "outage"   // the SMTP port went down for a while
	KindSignal  Kind = "signal"   // the harness signalled attempts
	KindMissed  Kind = "missed"   // a kill point that found no attempt to hit
	KindInDoubt Kind = "in-doubt" // a transaction was in flight when its session ended
	KindExit    Kind = "exit"     // an attempt ended, every process of it gone
	KindEscaped Kind = "escaped"  // something of an ended attempt still acted: the chaos missed it
	KindEnd     Kind = "end"      // the last line: how the run ended
)

// Event is one line of the history. Which of the optional parts is set
// depends on Kind; the fields that every kind may use sit at the top.
type Event struct {
	T    time.Time `json:"t"`
	Kind Kind      `json:"type"`
	// Instance and Attempt name the attempt the event concerns; 0 when
	// none or unknown (a session no attempt could be traced to).
	Instance int `json:"instance,omitempty"`
	Attempt  int `json:"attempt,omitempty"`
	// Session is the server's session (SMTP or HTTP connection) and Txn
	// the transaction on it, where the event concerns one.
	Session uint64 `json:"session,omitempty"`
	Txn     uint64 `json:"txn,omitempty"`

	// KindCopy: the recipients (normalised, distinct) and the message.
	Recipients []string `json:"rcpt,omitempty"`
	MessageID  string   `json:"message_id,omitempty"`
	Transport  string   `json:"transport,omitempty"` // "smtp" or "http"
	Provider   string   `json:"provider,omitempty"`  // over HTTP: ses, sendgrid, ...

	Run     *Run       `json:"run,omitempty"`
	Start   *Start     `json:"start,omitempty"`
	Fault   *Fault     `json:"fault,omitempty"`
	Outage  *Outage    `json:"outage,omitempty"`
	Signal  *Signal    `json:"signal,omitempty"`
	Point   *KillPoint `json:"point,omitempty"` // KindSignal (a kill) and KindMissed
	InDoubt *InDoubt   `json:"in_doubt,omitempty"`
	Exit    *Exit      `json:"exit,omitempty"`
	Escaped *Escaped   `json:"escaped,omitempty"`
	End     *End       `json:"end,omitempty"`
}

// Escaped is a process of an attempt that outlived it: a session of the
// attempt delivered after the attempt had ended, killed and reaped.
type Escaped struct {
	// What it did, and the attempt's processes still found, if any.
	Did       string   `json:"did"`
	Processes []string `json:"processes,omitempty"`
}

// Run is how a run was set up: everything the verdict and the report need
// besides the list itself.
type Run struct {
	Version  int      `json:"version"`
	Seed     uint64   `json:"seed"`
	Campaign string   `json:"campaign"`
	Command  []string `json:"command"`
	// Replay is the command line that reproduces the run.
	Replay string `json:"replay,omitempty"`
	// Expect is the level the run must reach (a verdict level's name).
	Expect string `json:"expect"`
	// List is the recipient list's file, relative to the history's
	// directory; Recipients the number of addresses in it.
	List       string `json:"list"`
	Recipients int    `json:"recipients"`
	// Bounced are the normalised addresses the fault layer rejects for
	// good: never expected, never missing.
	Bounced []string `json:"bounced,omitempty"`

	Kills     []string `json:"kills,omitempty"`
	Faults    []string `json:"faults,omitempty"`
	Signal    string   `json:"signal"`
	Grace     Duration `json:"grace,omitempty"`
	Pause     Duration `json:"pause,omitempty"`
	Target    string   `json:"target,omitempty"`
	Instances int      `json:"instances"`
	Stagger   Duration `json:"stagger,omitempty"`
	Retries   int      `json:"retries"`
	Timeout   Duration `json:"timeout"`

	SMTPAddr string `json:"smtp_addr,omitempty"`
	APIURL   string `json:"api_url,omitempty"`
	// Containment says how attempts were contained (cgroup-v2,
	// cgroup-v1, subreaper or process-group).
	Containment string `json:"containment,omitempty"`
}

// Start is an attempt starting.
type Start struct {
	PID int `json:"pid,omitempty"`
	// Error is why it could not start; then nothing ran.
	Error string `json:"error,omitempty"`
}

// Fault is a fault the server injected.
type Fault struct {
	Kind   string `json:"kind"`
	Moment string `json:"moment"`
	// Reply is what it answered instead ("550 5.1.1 ..."), Address the
	// recipient or sender it hit, Delay how long it held the session, Cut
	// whether it closed the connection.
	Reply   string   `json:"reply,omitempty"`
	Address string   `json:"address,omitempty"`
	Delay   Duration `json:"delay,omitempty"`
	Cut     bool     `json:"cut,omitempty"`
}

// Outage is the SMTP port going down.
type Outage struct {
	For Duration `json:"for"`
	// Coverage is how many expected addresses had a copy when it began.
	Coverage int `json:"coverage"`
}

// Signal is the harness signalling attempts.
type Signal struct {
	Name string `json:"name"` // SIGKILL, SIGTERM, SIGSTOP, SIGCONT
	// Why it was sent.
	Why SignalWhy `json:"why"`
	// Targets are the attempts it hit: every process of each.
	Targets []Target `json:"targets"`
	// Grace (TERM) and Pause (STOP) say what follows it.
	Grace Duration `json:"grace,omitempty"`
	Pause Duration `json:"pause,omitempty"`
	// Sessions are the server's open sessions and their moments when it
	// was sent.
	Sessions []Session `json:"sessions,omitempty"`
}

// SignalWhy says why the harness sent a signal.
type SignalWhy string

// The reasons for a signal.
const (
	WhyKill     SignalWhy = "kill"     // a kill point of the schedule (Event.Point)
	WhyEscalate SignalWhy = "escalate" // the grace after a SIGTERM was over
	WhyResume   SignalWhy = "resume"   // the pause after a SIGSTOP was over
	WhyStop     SignalWhy = "stop"     // the run ended (timeout, interruption) with attempts running
)

// Target is one attempt a signal hit.
type Target struct {
	Instance int `json:"instance"`
	Attempt  int `json:"attempt"`
	PID      int `json:"pid"`
}

// Session is one of the server's open sessions at a moment.
type Session struct {
	ID     uint64 `json:"id"`
	Moment string `json:"moment"`
	// Messages the server had accepted on it so far.
	Messages int `json:"messages"`
}

// KillPoint is a point of the kill schedule.
type KillPoint struct {
	// Spec is the --kill value it comes from ("at=50%", "in-doubt=3"),
	// and Kind its schedule (at, every, random, in-doubt, during-data).
	Spec string `json:"spec"`
	Kind string `json:"kind"`
	// N numbers the points of the schedule, from 1.
	N int `json:"n"`
	// Due is the coverage (expected addresses with a copy) it was due at,
	// and Coverage the coverage when it fired.
	Due      int `json:"due"`
	Coverage int `json:"coverage"`
	// Session and Moment: the session whose protocol moment fired a
	// protocol kill (in-doubt, during-data).
	Session uint64 `json:"session,omitempty"`
	Moment  string `json:"moment,omitempty"`
	// Target is the --target it aimed at (all, one, sending, instance=K).
	Target string `json:"target,omitempty"`
}

// InDoubt is a transaction that was in flight when its session ended:
// neither side can know whether its client learnt the outcome.
type InDoubt struct {
	Recipients []string `json:"rcpt"`
	MessageID  string   `json:"message_id,omitempty"`
	// Delivered: the server counted it. Acked: its final reply was
	// written out in full.
	Delivered bool `json:"delivered"`
	Acked     bool `json:"acked"`
	// Cause is what ended its session (see the Cause constants).
	Cause Cause `json:"cause"`
	// Fault names the fault that cut it, for CauseFault.
	Fault string `json:"fault,omitempty"`
	// Chaos is the chaos that preceded it on its attempt, if any.
	Chaos *Chaos `json:"chaos,omitempty"`
}

// Cause is what ended a session that had a transaction in flight.
type Cause string

// The causes of an in-doubt transaction.
const (
	CauseKill     Cause = "kill"      // a scheduled SIGKILL of its attempt
	CauseTerm     Cause = "term"      // its attempt ended after a SIGTERM
	CauseEscalate Cause = "escalated" // SIGTERM, then SIGKILL when the grace was over
	CauseFault    Cause = "fault"     // a fault cut the session (drop-after-data, ...)
	CauseClient   Cause = "client"    // the client went away on its own: a crash, an exit, a timeout
	CauseServer   Cause = "server"    // the server closed it: an outage, a shutdown, an idle timeout
)

// Chaos is the signal or fault that preceded an in-doubt transaction.
type Chaos struct {
	T      time.Time `json:"t"`
	Signal string    `json:"signal,omitempty"`
	Fault  string    `json:"fault,omitempty"`
	// Point is the kill point of a scheduled kill.
	Point *KillPoint `json:"point,omitempty"`
}

// Exit is an attempt that ended.
type Exit struct {
	Code   int    `json:"code"`             // -1 when killed by a signal
	Signal string `json:"signal,omitempty"` // the signal that killed it
	// Error is a problem waiting for it, if any.
	Error    string   `json:"error,omitempty"`
	Duration Duration `json:"duration"`
	// Output is its last output lines (stdout and stderr).
	Output []string `json:"output,omitempty"`
}

// OK reports whether the attempt completed: exit 0, no error.
func (e *Exit) OK() bool { return e != nil && e.Code == 0 && e.Signal == "" && e.Error == "" }

// End is how the run ended.
type End struct {
	How EndHow `json:"how"`
	// Failures is how many attempts failed on their own (restarts after
	// failures).
	Failures int `json:"failures"`
	// Copies is how many copies the server counted in all: the history
	// holds every one of them unless it says otherwise (Short).
	Copies int64 `json:"copies"`
	// Short says the history missed copies the server counted.
	Short bool `json:"short,omitempty"`
	// Sessions is how many sessions (SMTP or HTTP connections) the server
	// accepted: 0 means the sender never connected.
	Sessions uint64 `json:"sessions"`
	// Error is what broke the harness, for EndError.
	Error string `json:"error,omitempty"`
}

// EndHow is how a run ended.
type EndHow string

// The ways a run ends.
const (
	EndCompleted    EndHow = "completed"         // an attempt exited 0 and none was left running
	EndRetriesSpent EndHow = "retries-exhausted" // the last attempt failed with no retry left
	EndTimeout      EndHow = "timeout"           // --timeout was over
	EndInterrupted  EndHow = "interrupted"       // Ctrl-C, or the caller's context
	EndError        EndHow = "error"             // the harness itself failed
)

// Duration is a time.Duration written as text ("1.5s").
type Duration time.Duration

// MarshalText writes d like time.Duration.String.
func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

// UnmarshalText reads what MarshalText wrote.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	*d = Duration(v)
	return err
}

// D is d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
