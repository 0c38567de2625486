// The explanation pass: one more read of the history, after the verdict,
// for what people read: each copy of the worst addresses traced to the
// attempt that sent it and to the in-doubt transaction that explains it,
// what each attempt followed, the chaos counts, the timeline and a
// one-sentence cause.
//
// Memory stays per attempt, per expected address (a fixed few bytes each)
// and per repeated address (its Message-IDs and the first steps of its
// course, as the verdict's own pass keeps them), never per copy: copy lists
// are kept only for the handful of worst addresses, which the verdict named
// before this pass.

package report

import (
	"fmt"
	"hash/maphash"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/onecopy/onecopy/history"
	"github.com/onecopy/onecopy/verdict"
)

type owner struct{ instance, attempt int }

// attemptTrack is what the pass learns about one attempt.
type attemptTrack struct {
	owner
	ordinal    int // index in the pass's attempts, in start order
	band       int // index in the timeline's bands
	pid        int
	trigger    string // the harness signal that ended it
	fault      string // the last fault its sessions got
	exit       string
	exitOK     bool
	copies     int
	resent     int
	firstIndex int // list position of its first copy; -1: none yet
	after      string
	lastMark   int // its last chaos mark on the timeline; -1 none
}

// pass is one read of the history after the verdict.
type pass struct {
	run *history.Run
	exp *verdict.Expected
	acc *verdict.Accounting
	rep *Report
	tl  *timelineBuilder

	start   time.Time
	last    time.Time
	worst   map[string]*worstTrack
	addrs   []addrState // per expected address
	covered int
	seed    maphash.Seed
	// delivered holds the delivered in-doubt transactions: a copy counted
	// in one of them is in doubt, and only such a copy can later explain
	// another (verdict.Mailbox).
	delivered map[uint64]bool
	// rules replays the verdict's rule for each address that got a copy in
	// a delivered in-doubt transaction: no other address can have an
	// explained copy, so this is the rule for every copy of the run.
	rules    map[int]*verdict.Mailbox
	repeated []*repeatTrack
	steps    []step
	stepIx   map[step]uint32
	attempts []*attemptTrack
	byOwner  map[owner]*attemptTrack
	byPID    map[int]*attemptTrack
	live     map[*attemptTrack]bool
	end      *history.End

	// Repeats (copies to an address that already had one), by who sent
	// its first: this same attempt, an earlier attempt of the same
	// instance, another instance, or a session no attempt was traced to.
	resentSame, resentRestart, resentOther, resentUnknown int
	doubtKill, doubtOther                                 int // delivered in-doubt transactions by cause
	// Repeats that carried a Message-ID the address had not had, and
	// repeats that carried none: the cause says them apart.
	repeatsNewID, repeatsNoID int
}

type worstTrack struct {
	w  *Worst
	mb *verdict.Mailbox
}

const unknownAttempt = int32(-1)

// maxCopiesDetail caps copies_detail for an address a runaway loop sent
// thousands of copies to.
const maxCopiesDetail = 100

func explain(src history.Source, run *history.Run, exp *verdict.Expected, acc *verdict.Accounting, rep *Report) error {
	p := &pass{
		run: run, exp: exp, acc: acc, rep: rep,
		worst: map[string]*worstTrack{}, addrs: make([]addrState, exp.Len()), seed: maphash.MakeSeed(),
		delivered: map[uint64]bool{}, rules: map[int]*verdict.Mailbox{}, stepIx: map[step]uint32{},
		byOwner: map[owner]*attemptTrack{}, byPID: map[int]*attemptTrack{}, live: map[*attemptTrack]bool{},
	}
	for _, d := range acc.Doubts {
		if d.Delivered {
			p.delivered[d.Txn] = true
		}
	}
	for i := range rep.Worst {
		p.worst[rep.Worst[i].Address] = &worstTrack{w: &rep.Worst[i], mb: acc.Mailbox()}
	}
	err := src.Scan(func(ev history.Event) error {
		p.add(ev)
		return nil
	})
	if err != nil {
		return err
	}
	p.finish()
	return nil
}

func (p *pass) add(ev history.Event) {
	p.last = ev.T
	switch ev.Kind {
	case history.KindRun:
		p.start = ev.T
		p.tl = newTimelineBuilder(ev.T, p.exp.Len())
	case history.KindStart:
		p.started(ev)
	case history.KindExit:
		p.exited(ev)
	case history.KindCopy:
		p.copied(ev)
	case history.KindSignal:
		p.signalled(ev)
	case history.KindMissed:
		if ev.Point != nil {
			p.rep.MissedKills = append(p.rep.MissedKills, *ev.Point)
			p.tl.mark(ev.T, "missed", "not applied: "+pointWords(*ev.Point, p.pct(ev.Point.Coverage))+": no sender was running", 0)
		}
	case history.KindFault:
		p.faulted(ev)
	case history.KindOutage:
		if ev.Outage != nil {
			p.rep.Faults["outage"]++
			p.tl.outage(ev.T, "outage: port down for "+ev.Outage.For.D().String(), ev.Outage.For.D())
		}
	case history.KindInDoubt:
		p.doubted(ev)
	case history.KindEscaped:
		if ev.Escaped != nil {
			what := fmt.Sprintf("instance %d attempt %d, session %d: %s", ev.Instance, ev.Attempt, ev.Session, ev.Escaped.Did)
			if len(ev.Escaped.Processes) > 0 {
				what += " (still running: " + strings.Join(ev.Escaped.Processes, "; ") + ")"
			}
			p.rep.Escaped = append(p.rep.Escaped, what)
		}
	case history.KindEnd:
		p.end = ev.End
	}
}

func (p *pass) pct(coverage int) int {
	if n := p.exp.Len(); n > 0 {
		return coverage * 100 / n
	}
	return 0
}

func (p *pass) started(ev history.Event) {
	if ev.Start == nil || ev.Start.PID == 0 {
		return // it failed to start
	}
	a := &attemptTrack{owner: owner{ev.Instance, ev.Attempt}, ordinal: len(p.attempts), firstIndex: -1, pid: ev.Start.PID, lastMark: -1}
	switch {
	case a.attempt > 1:
		if prev := p.byOwner[owner{a.instance, a.attempt - 1}]; prev != nil {
			a.after = prev.ending()
		}
		p.rep.Restarts++
	case len(p.live) > 0:
		others := make([]int, 0, len(p.live))
		for o := range p.live {
			others = append(others, o.instance)
		}
		slices.Sort(others)
		names := make([]string, len(others))
		for i, n := range others {
			names[i] = strconv.Itoa(n)
		}
		running := "instance " + names[0] + " was running"
		if len(names) > 1 {
			running = "instances " + strings.Join(names, ", ") + " were running"
		}
		a.after = fmt.Sprintf("first start of instance %d, while %s", a.instance, running)
	default:
		a.after = "first start"
	}
	p.attempts = append(p.attempts, a)
	p.byOwner[a.owner] = a
	p.byPID[a.pid] = a
	p.live[a] = true
	a.band = p.tl.started(ev.T, a.instance, a.attempt, a.after)
}

func (p *pass) exited(ev history.Event) {
	a := p.byOwner[owner{ev.Instance, ev.Attempt}]
	if a == nil || ev.Exit == nil {
		return
	}
	a.exit, a.exitOK = exitWords(ev.Exit), ev.Exit.OK()
	delete(p.live, a)
	p.tl.exited(a.band, ev.T, a.exit)
	p.rep.Senders = append(p.rep.Senders, Attempt{Instance: a.instance, Attempt: a.attempt, Exit: a.exit,
		DurationSeconds: ev.Exit.Duration.D().Seconds(), Output: ev.Exit.Output})
}

// exitWords says how an attempt ended: "exit 1", "killed by SIGKILL".
func exitWords(e *history.Exit) string {
	switch {
	case e.Error != "":
		return e.Error
	case e.Signal != "":
		return "killed by " + e.Signal
	}
	return "exit " + strconv.Itoa(e.Code)
}

// ending says how an attempt ended, for the after of the next one.
func (a *attemptTrack) ending() string {
	switch {
	case a.trigger != "":
		return a.trigger
	case a.fault != "" && a.exit != "":
		return a.exit + " after " + a.fault
	case a.exit != "":
		return a.exit
	}
	return "an earlier attempt"
}

func (p *pass) copied(ev history.Event) {
	a := p.byOwner[owner{ev.Instance, ev.Attempt}]
	ord := unknownAttempt
	if a != nil {
		ord = int32(a.ordinal)
		a.copies += len(ev.Recipients)
	}
	id, doubt := p.hash(ev.MessageID), p.delivered[ev.Txn]
	repeats, unexplained := 0, 0
	for _, addr := range ev.Recipients {
		i, expected := p.exp.Lookup(addr)
		if expected {
			if a != nil && a.firstIndex < 0 {
				a.firstIndex = i
			}
			explained := p.rule(i, ev, doubt)
			if s := &p.addrs[i]; !s.seen {
				*s = addrState{seen: true, doubt: doubt, first: ord, id: id}
				p.covered++
			} else {
				repeats++
				if !explained {
					unexplained++
				}
				p.resent(s.first, ord, a)
				p.repeatOf(i).add(p, ord, id, doubt, explained)
			}
		}
		if w := p.worst[addr]; w != nil {
			p.detail(w, ev, a)
		}
	}
	p.tl.copied(ev.T, len(ev.Recipients), repeats, unexplained, p.covered)
}

// rule applies the verdict's rule to this copy of expected address i and
// reports whether an in-doubt transaction explains it. Until the address
// gets a copy in a delivered in-doubt transaction nothing can explain any
// of its copies, so its mailbox starts there.
func (p *pass) rule(i int, ev history.Event, doubt bool) bool {
	if !doubt && len(p.rules) == 0 { // the common case: nothing in doubt yet
		return false
	}
	mb := p.rules[i]
	if mb == nil {
		if !doubt {
			return false
		}
		mb = p.acc.Mailbox()
		p.rules[i] = mb
	}
	return mb.Copy(ev.MessageID, ev.Txn).ExplainedBy != nil
}

func (p *pass) hash(messageID string) uint64 {
	if messageID == "" {
		return 0
	}
	return maphash.String(p.seed, messageID) | 1 // 0 is "none"
}

// resent classifies a copy to an address that already had one, by the
// attempts of its first copy (first) and of this one (now).
func (p *pass) resent(first, now int32, a *attemptTrack) {
	if a != nil {
		a.resent++
	}
	switch {
	case first == unknownAttempt || now == unknownAttempt:
		p.resentUnknown++
	case first == now:
		p.resentSame++
	case p.attempts[first].instance == p.attempts[now].instance:
		p.resentRestart++
	default:
		p.resentOther++
	}
}

// detail judges one copy of a worst address with the verdict's own rule
// and records it.
func (p *pass) detail(w *worstTrack, ev history.Event, a *attemptTrack) {
	o := w.mb.Copy(ev.MessageID, ev.Txn)
	if len(w.w.CopiesDetail) >= maxCopiesDetail {
		return
	}
	d := CopyDetail{Session: ev.Session, Txn: ev.Txn, MessageID: ev.MessageID, MessageIDRepeat: o.Repeat, InDoubt: o.InDoubt,
		Time: ev.T.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), AtSeconds: p.tl.at(ev.T)}
	if a != nil {
		d.Instance, d.Attempt, d.After = a.instance, a.attempt, a.after
	}
	if o.ExplainedBy != nil {
		d.Explained = true
		x := p.doubt(*o.ExplainedBy)
		d.ExplainedBy = &x
	}
	w.w.CopiesDetail = append(w.w.CopiesDetail, d)
}

func (p *pass) doubt(d verdict.Doubt) Doubt {
	return Doubt{Txn: d.Txn, Session: d.Session, Instance: d.Instance, Attempt: d.Attempt, AtSeconds: p.tl.at(d.T),
		Cause: d.Cause, Fault: d.Fault, Recipients: len(d.Recipients), MessageID: d.MessageID, Delivered: d.Delivered}
}

func (p *pass) signalled(ev history.Event) {
	s := ev.Signal
	if s == nil {
		return
	}
	what := s.Name
	if ev.Point != nil {
		what = fmt.Sprintf("%s at %d%% (%s)", s.Name, p.pct(ev.Point.Coverage), pointWords(*ev.Point, -1))
	} else if s.Why == history.WhyEscalate {
		what = fmt.Sprintf("%s (grace of %s over after SIGTERM)", s.Name, s.Grace.D())
	}
	instance := 0
	if len(s.Targets) == 1 {
		instance = s.Targets[0].Instance
	}
	var hit []int
	for _, t := range s.Targets {
		if !slices.Contains(hit, t.Instance) {
			hit = append(hit, t.Instance)
		}
	}
	slices.Sort(hit)
	mark := -1
	switch s.Name {
	case "SIGCONT":
		p.tl.resume(ev.T, pids(s.Targets))
	case "SIGSTOP":
		p.rep.Pauses++
		i := p.tl.pause(ev.T, what, instance, pids(s.Targets))
		p.tl.t.Marks[i].Instances = hit
	case "SIGTERM":
		p.rep.Kills++
		mark = p.tl.mark(ev.T, "term", what, instance)
	default:
		if s.Why == history.WhyKill {
			p.rep.Kills++
		}
		if s.Why != history.WhyStop {
			mark = p.tl.mark(ev.T, "kill", what, instance)
		}
	}
	if mark >= 0 {
		p.tl.t.Marks[mark].Instances = hit
	}
	for _, t := range s.Targets {
		a := p.byPID[t.PID]
		if a == nil {
			continue
		}
		if mark >= 0 {
			a.lastMark = mark
		}
		switch {
		case s.Name == "SIGSTOP" || s.Name == "SIGCONT" || s.Why == history.WhyStop:
		case a.trigger == "":
			a.trigger = what
		default: // a TERM that had to be escalated
			a.trigger += ", then " + what
		}
	}
}

func pids(ts []history.Target) []int {
	out := make([]int, len(ts))
	for i, t := range ts {
		out[i] = t.PID
	}
	return out
}

// pointWords names a kill point: "--kill at=50%", "--kill in-doubt=3,
// session 12"; with pct >= 0, also where it was due.
func pointWords(k history.KillPoint, pct int) string {
	s := "--kill " + k.Spec
	if k.Session != 0 {
		s += ", session " + strconv.FormatUint(k.Session, 10)
	}
	if pct >= 0 {
		s += fmt.Sprintf(" due at %d%%", pct)
	}
	return s
}

func (p *pass) faulted(ev history.Event) {
	f := ev.Fault
	if f == nil {
		return
	}
	p.rep.Faults[f.Kind]++
	label := f.Kind
	if f.Reply != "" {
		label += ": " + f.Reply
	}
	m := p.tl.fault(ev.T, label, ev.Instance)
	if a := p.byOwner[owner{ev.Instance, ev.Attempt}]; a != nil {
		a.fault = faultWords(f)
		if m >= 0 {
			a.lastMark = m
		}
	}
}

// faultWords says what a fault did: "550 for rcpt000501@onecopy.test".
func faultWords(f *history.Fault) string {
	code, _, _ := strings.Cut(f.Reply, " ")
	switch {
	case code == "" && f.Cut:
		return "a " + f.Kind + " cut"
	case code == "":
		return "a " + f.Kind + " fault"
	case f.Address != "":
		return code + " for " + f.Address
	}
	return code + " (" + f.Kind + ")"
}

func (p *pass) doubted(ev history.Event) {
	d := ev.InDoubt
	if d == nil {
		return
	}
	if d.Delivered {
		switch d.Cause {
		case history.CauseKill, history.CauseEscalate, history.CauseTerm:
			p.doubtKill++
		default:
			p.doubtOther++
		}
	}
	at := p.tl.at(ev.T)
	if len(p.rep.Doubts) < MaxDoubts {
		p.rep.Doubts = append(p.rep.Doubts, Doubt{Txn: ev.Txn, Session: ev.Session, Instance: ev.Instance, Attempt: ev.Attempt, AtSeconds: at,
			Cause: d.Cause, Fault: d.Fault, Recipients: len(d.Recipients), MessageID: d.MessageID, Delivered: d.Delivered})
	}
	if a := p.byOwner[owner{ev.Instance, ev.Attempt}]; a != nil && a.lastMark >= 0 {
		p.tl.t.Marks[a.lastMark].InDoubt++
		return
	}
	i := p.tl.mark(ev.T, "doubt", fmt.Sprintf("in doubt: transaction %d (%s)", ev.Txn, d.Cause), ev.Instance)
	p.tl.t.Marks[i].InDoubt = 1
}

func (p *pass) finish() {
	rep := p.rep
	end := p.last
	rep.DurationSeconds = end.Sub(p.start).Seconds()
	for i := range rep.Senders {
		s := &rep.Senders[i]
		if a := p.byOwner[owner{s.Instance, s.Attempt}]; a != nil {
			s.After, s.Copies, s.Resent = a.after, a.copies, a.resent
		}
	}
	for _, a := range p.attempts {
		if a.exit == "" { // no exit event: onecopy stopped before it ended
			rep.Senders = append(rep.Senders, Attempt{Instance: a.instance, Attempt: a.attempt, Exit: "still running", After: a.after, Copies: a.copies, Resent: a.resent})
		}
	}
	slices.SortStableFunc(rep.Senders, func(x, y Attempt) int {
		return p.byOwner[owner{x.Instance, x.Attempt}].ordinal - p.byOwner[owner{y.Instance, y.Attempt}].ordinal
	})
	rep.Attempts = len(p.attempts)
	tl := p.tl.finish(end)
	for _, a := range p.attempts {
		tl.Bands[a.band].Copies = a.copies
	}
	rep.Timeline = tl
	p.patterns()
	rep.Ended, rep.Outcome = p.ending()
	rep.Cause = p.cause()
}

// ending says how the run ended, and whether its verdict stands.
func (p *pass) ending() (string, Outcome) {
	e := p.end
	if e == nil {
		return "the history has no end: onecopy itself stopped before the run ended", OutcomeError
	}
	var words string
	switch e.How {
	case history.EndCompleted:
		words = "completed"
	case history.EndRetriesSpent:
		words = fmt.Sprintf("retries exhausted (%d restarts after failures)", e.Failures)
	case history.EndTimeout:
		return "timeout after " + p.run.Timeout.D().String() + " with the sender still running", OutcomeTimeout
	case history.EndInterrupted:
		return "interrupted", OutcomeInterrupted
	default:
		return "error: " + e.Error, OutcomeError
	}
	switch {
	case e.Short:
		return words + "; the history misses copies the server counted", OutcomeShort
	case len(p.rep.Escaped) > 0:
		return words + "; processes of killed attempts outlived the kill", OutcomeEscaped
	case e.Sessions == 0:
		return words + "; the sender never connected", OutcomeNeverConnected
	}
	return words, OutcomeJudged
}

// cause is the most likely cause of what went wrong, in one sentence.
func (p *pass) cause() string {
	rep := p.rep
	extra := rep.Extra
	if extra == 0 {
		switch {
		case rep.Missing > 0 && len(p.attempts) > 0:
			last := p.attempts[len(p.attempts)-1]
			if last.exitOK {
				return fmt.Sprintf("%s never got a copy, though the sender exited 0: it skipped them, or lost them across a restart", count(rep.Missing, "recipient", "recipients"))
			}
			return fmt.Sprintf("%s never got a copy: the last attempt ended with %s; %s", count(rep.Missing, "recipient", "recipients"), last.ending(), rep.Ended)
		case rep.Unexpected > 0:
			return fmt.Sprintf("%s not on the list got copies: the sender wrote to addresses it was not given", count(rep.Unexpected, "address", "addresses"))
		}
		return ""
	}
	ids := "same Message-IDs"
	if p.repeatsNewID > 0 {
		ids = "new Message-IDs"
	}
	switch {
	case p.repeatsNoID == 0:
	case p.repeatsNoID == p.resentOther+p.resentRestart+p.resentSame+p.resentUnknown:
		ids = "no Message-IDs" // a copy without one is not a "new Message-ID"
	default:
		ids += ", or none"
	}
	lead := count(extra, "extra copy", "extra copies")
	if p.resentOther+p.resentRestart+p.resentSame+p.resentUnknown == 0 {
		return lead // the history has no copy of them: nothing more to say
	}
	if rep.Unexplained == 0 {
		at := "at a kill"
		switch {
		case p.doubtKill == 0:
			at = "when its reply was lost"
		case p.doubtOther > 0:
			at = "at a kill or a lost reply"
		}
		if extra == 1 {
			return fmt.Sprintf("1 extra copy, the message in flight %s, same Message-ID: in doubt", at)
		}
		return fmt.Sprintf("%s, each a message in flight %s, same Message-ID: in doubt", lead, at)
	}
	if rep.Explained > 0 {
		lead += fmt.Sprintf(" (%d unexplained)", rep.Unexplained)
	}
	switch max(p.resentOther, p.resentRestart, p.resentSame, p.resentUnknown) {
	case p.resentOther:
		whole, instances := 0, map[int]int{}
		for _, a := range p.attempts {
			instances[a.instance] += a.copies
		}
		for _, c := range instances {
			if 10*c >= 9*p.exp.Len() {
				whole++
			}
		}
		if whole >= 2 {
			return fmt.Sprintf("%s: %d instances each sent the whole list", lead, whole)
		}
		return fmt.Sprintf("%s: %d instances ran at once and sent to the same addresses", lead, len(instances))
	case p.resentRestart:
		restarts, top := 0, 0
		for _, a := range p.attempts {
			if a.attempt > 1 && a.resent > 0 {
				restarts++
				if a.firstIndex == 0 {
					top++
				}
			}
		}
		switch {
		case top == restarts:
			return fmt.Sprintf("%s: each restart re-sent from the top of the list (%s, %s)", lead, count(restarts, "restart", "restarts"), ids)
		case top > 0:
			return fmt.Sprintf("%s: %d of %d restarts re-sent from the top of the list (%s)", lead, top, restarts, ids)
		}
		who := "restarts"
		if restarts == 1 {
			who = "the restart"
		}
		return fmt.Sprintf("%s: %s resumed behind the last copy sent and re-sent what an earlier attempt had delivered (%s, %s)", lead, who, count(restarts, "restart", "restarts"), ids)
	case p.resentSame:
		return fmt.Sprintf("%s sent by one attempt to mailboxes it had already sent to, with no restart in between (%s)", lead, ids)
	}
	return fmt.Sprintf("%s, from sessions that could not be traced to an attempt (%s)", lead, ids)
}

// count writes n with thousands separators and the noun that fits it.
func count(n int, one, many string) string {
	if n == 1 {
		return "1 " + one
	}
	return thousands(n) + " " + many
}

// thousands writes n with thousands separators: 1,500.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
