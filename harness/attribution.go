// Attribution: which start of the sender sent each copy, and why the run
// got its duplicates. While the run goes on, each SMTP session is mapped to
// the sender attempt that opened it, and the history's copy and fault
// events carry that attempt. After the run, one pass over the history
// explains the report: per-copy detail for the worst addresses, what each
// attempt followed, the timeline, and a one-sentence cause.
//
// Memory stays per session and per attempt, never per copy: the live map
// holds open sessions only, the pass keeps one small number per expected
// address (like the run's own coverage), and copy lists only for the
// handful of worst addresses, which are known before the pass starts.

package harness

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/onecopy/onecopy/fakesmtp"
)

// owner is the attempt that opened a session. The zero owner is unknown.
type owner struct{ instance, attempt int }

type sessionOwner struct {
	owner
	retried bool // resolution was tried again at the first delivery
}

// attribution is the run's live session -> attempt map, and the reply each
// fault chose, held between the fault hook and OnFault.
type attribution struct {
	mu       sync.Mutex
	sessions map[uint64]sessionOwner
	replies  map[uint64]string
	pruneAt  int
}

// sessionHook resolves each session's owner when it opens: its client is
// still connected and waiting for the greeting, so its socket can be found.
func (r *run) sessionHook() fakesmtp.Hook {
	return fakesmtp.HookAt(fakesmtp.Moments(fakesmtp.MomentConnect),
		fakesmtp.HookFunc(func(_ context.Context, ev *fakesmtp.Event) fakesmtp.Action {
			r.setOwner(ev.Session, sessionOwner{owner: r.resolve(ev.Session)})
			return fakesmtp.Action{}
		}))
}

// ownerOf is the attempt that opened session id. A session not resolved
// when it opened (the new attempt was not registered yet) is tried once
// more, on its first delivery.
func (r *run) ownerOf(id uint64) owner {
	r.attr.mu.Lock()
	o, ok := r.attr.sessions[id]
	r.attr.mu.Unlock()
	if ok && (o.instance != 0 || o.retried) {
		return o.owner
	}
	o = sessionOwner{owner: r.resolve(id), retried: true}
	r.setOwner(id, o)
	return o.owner
}

func (r *run) setOwner(id uint64, o sessionOwner) {
	r.attr.mu.Lock()
	defer r.attr.mu.Unlock()
	if r.attr.sessions == nil {
		r.attr.sessions = map[uint64]sessionOwner{}
	}
	r.attr.sessions[id] = o
	if len(r.attr.sessions) <= r.attr.pruneAt {
		return
	}
	// The fake server has no close hook: forget closed sessions from time
	// to time, so the map follows open sessions, not every session ever.
	open := map[uint64]bool{}
	for _, s := range r.srv.Sessions() {
		open[s.ID] = true
	}
	for sid := range r.attr.sessions {
		if !open[sid] && sid != id {
			delete(r.attr.sessions, sid)
		}
	}
	r.attr.pruneAt = 2*len(r.attr.sessions) + 256
}

// keepReplies wraps the fault hook to remember the reply a fault chose, so
// the history can say "550 for rcpt000501@..." and not only "reject".
func (r *run) keepReplies(h fakesmtp.Hook) fakesmtp.Hook { return replyKeeper{r, h} }

type replyKeeper struct {
	r *run
	h fakesmtp.Hook
}

func (k replyKeeper) At(ctx context.Context, ev *fakesmtp.Event) fakesmtp.Action {
	a := k.h.At(ctx, ev)
	if a.Reply != "" && a.Fault != "" {
		k.r.attr.mu.Lock()
		if k.r.attr.replies == nil {
			k.r.attr.replies = map[uint64]string{}
		}
		k.r.attr.replies[ev.Session] = a.Reply
		k.r.attr.mu.Unlock()
	}
	return a
}

// Moments passes on the wrapped hook's moments, so sessions still skip
// the moments no fault acts at.
func (k replyKeeper) Moments() fakesmtp.MomentSet {
	if mh, ok := k.h.(fakesmtp.MomentHook); ok {
		return mh.Moments()
	}
	return fakesmtp.AllMoments
}

// takeReply returns and forgets the reply a fault chose on a session.
func (r *run) takeReply(id uint64) string {
	r.attr.mu.Lock()
	defer r.attr.mu.Unlock()
	reply := r.attr.replies[id]
	delete(r.attr.replies, id)
	return reply
}

// resolve finds the attempt whose process holds the client end of session
// id. Where /proc cannot tell (not Linux), it falls back to the only live
// attempt when exactly one runs. Not where /proc shows the socket held by
// no live attempt: that is an attempt just started and not yet registered
// (or one that left its process group), and guessing would blame another.
func (r *run) resolve(id uint64) owner {
	// r.mu first: it also orders this read of r.srv after Run set it.
	r.mu.Lock()
	live := make([]*proc, 0, len(r.live))
	for _, p := range r.live {
		if p.running() {
			live = append(live, p)
		}
	}
	r.mu.Unlock()
	remote := ""
	for _, s := range r.srv.Sessions() {
		if s.ID == id {
			remote = s.Remote
			break
		}
	}
	p, seen := socketOwner(remote, r.srv.Addr(), live)
	if p != nil {
		return owner{p.instance, p.attempt}
	}
	if !seen && len(live) == 1 {
		return owner{live[0].instance, live[0].attempt}
	}
	return owner{}
}

// socketOwner finds which sender process group holds the client socket of
// a loopback connection from remote to server, through /proc (Linux): the
// socket's inode from /proc/net/tcp{,6}, then socket:[inode] among the fds
// of each group's leader, then of the rest of each group (a wrapper script
// whose child sends). seen reports whether /proc showed the socket at all:
// not elsewhere, nor once the client is gone.
func socketOwner(remote, server string, procs []*proc) (owner *proc, seen bool) {
	_, cport, err1 := net.SplitHostPort(remote)
	_, sport, err2 := net.SplitHostPort(server)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	inode := socketInode(cport, sport)
	if inode == "" {
		return nil, false
	}
	if len(procs) == 0 {
		return nil, true
	}
	target := "socket:[" + inode + "]"
	for _, p := range procs {
		if holds(p.pid, target) {
			return p, true
		}
	}
	groups := make(map[int]*proc, len(procs))
	for _, p := range procs {
		groups[p.pid] = p
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p := groups[pgrp(pid)]; p != nil && pid != p.pid && holds(pid, target) {
			return p, true
		}
	}
	return nil, true
}

// socketInode is the inode of the TCP socket whose local port is local
// and remote port is remote, or "".
func socketInode(local, remote string) string {
	lp, err1 := strconv.ParseUint(local, 10, 16)
	rp, err2 := strconv.ParseUint(remote, 10, 16)
	if err1 != nil || err2 != nil {
		return ""
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || hexPort(fs[1]) != lp || hexPort(fs[2]) != rp || fs[9] == "0" {
				continue
			}
			f.Close()
			return fs[9]
		}
		f.Close()
	}
	return ""
}

func hexPort(addr string) uint64 {
	_, port, ok := strings.Cut(addr, ":")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseUint(port, 16, 16)
	return n
}

// holds reports whether process pid has an fd open on target.
func holds(pid int, target string) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if l, err := os.Readlink(dir + e.Name()); err == nil && l == target {
			return true
		}
	}
	return false
}

// pgrp is the process group of pid, or 0.
func pgrp(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(fs[2])
	return n
}

// CopyDetail is one copy of a duplicated address: who sent it, when, and
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
	MessageID string  `json:"message_id,omitempty"`
	// MessageIDRepeat compares its Message-ID with the address's first
	// copy: "first" (it is the first), "same" or "new".
	MessageIDRepeat string `json:"message_id_repeat"`
	// InDoubt: an in-doubt event explains it. It was the message in flight
	// at one (its session was open at a SIGKILL, or an in-doubt fault fired
	// on it, after it was counted), or it repeats a copy that was.
	InDoubt bool `json:"in_doubt"`
	// After is what preceded the attempt that sent it: the kill, fault or
	// exit that ended the attempt before ("SIGKILL at 50% (--kill at=50%)",
	// "exit 1 after 550 for rcpt000501@onecopy.test"), or "first start".
	After string `json:"after"`

	seq int // the copy event's number in the history, to mark in-doubt ones
}

// attemptTrack is what the pass learns about one attempt.
type attemptTrack struct {
	owner
	ordinal    int    // index in the pass's attempts, in start order
	band       int    // index in the timeline's bands
	trigger    string // the harness signal that ended it
	fault      string // the last fault reply its sessions got
	exit       string
	copies     int
	resent     int
	firstIndex int // list position of its first copy; -1: none yet
	after      string
}

// flight is the last copy counted on a session.
type flight struct {
	seq   int
	rcpts []string
}

// pass is one read of the history after the run.
type pass struct {
	r   *run
	rep *Report
	tl  *timelineBuilder

	worst    map[string]*Worst
	firstID  map[string]string
	first    []int32 // per expected address: 1 + ordinal of the attempt of its first copy
	covered  int
	attempts []*attemptTrack
	byOwner  map[owner]*attemptTrack
	byPID    map[int]*attemptTrack
	live     map[*attemptTrack]bool
	sessions map[uint64]flight
	inFlight map[int]bool   // copy seq numbers in flight at an in-doubt event
	doubtful map[string]int // address -> in-flight copies not yet repeated
	seq      int

	explained   int // extra copies that repeat an in-flight copy
	doubtKills  int // copies in flight at a SIGKILL
	doubtFaults int // copies in flight at an in-doubt fault
	// Copies to an address that already had one, by who sent its first:
	// this same attempt, an earlier attempt of the same instance, another
	// instance, or a session no attempt could be traced to.
	resentSame, resentRestart, resentOther, resentUnknown int
}

const unknownAttempt = int32(-1)

// explain reads the closed history back and adds to rep what people read:
// copies_detail for the worst addresses, each attempt's copies and what it
// followed, the timeline and the cause.
func (r *run) explain(rep *Report) error {
	f, err := os.Open(r.hist.path)
	if err != nil {
		return err
	}
	defer f.Close()
	p := &pass{
		r: r, rep: rep, tl: newTimelineBuilder(rep.DurationSeconds, r.start, len(r.expected)),
		worst: map[string]*Worst{}, firstID: map[string]string{},
		first: make([]int32, len(r.expected)), byOwner: map[owner]*attemptTrack{},
		byPID: map[int]*attemptTrack{}, live: map[*attemptTrack]bool{},
		sessions: map[uint64]flight{}, inFlight: map[int]bool{}, doubtful: map[string]int{},
	}
	for i := range rep.Worst {
		p.worst[rep.Worst[i].Address] = &rep.Worst[i]
	}
	dec := json.NewDecoder(bufio.NewReaderSize(f, 64<<10))
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				break
			}
			return err
		}
		p.add(ev)
	}
	p.finish()
	return nil
}

func (p *pass) add(ev Event) {
	switch ev.Type {
	case "start":
		p.started(ev)
	case "exit":
		if a := p.byOwner[owner{ev.Instance, ev.Attempt}]; a != nil {
			a.exit = ev.Reason
			delete(p.live, a)
			p.tl.exited(a.band, ev.T, ev.Reason)
		}
	case "copy":
		p.copied(ev)
	case "signal":
		p.signalled(ev)
	case "fault":
		p.faulted(ev)
	}
}

func (p *pass) started(ev Event) {
	if len(ev.PIDs) == 0 {
		return // it failed to start
	}
	a := &attemptTrack{owner: owner{ev.Instance, ev.Attempt}, ordinal: len(p.attempts), firstIndex: -1}
	switch {
	case a.attempt > 1:
		if prev := p.byOwner[owner{a.instance, a.attempt - 1}]; prev != nil {
			a.after = prev.ending()
		}
	case len(p.live) > 0:
		others := make([]string, 0, len(p.live))
		for o := range p.live {
			others = append(others, strconv.Itoa(o.instance))
		}
		slices.Sort(others)
		running := "instance " + others[0] + " was running"
		if len(others) > 1 {
			running = "instances " + strings.Join(others, ", ") + " were running"
		}
		a.after = fmt.Sprintf("first start of instance %d, while %s", a.instance, running)
	default:
		a.after = "first start"
	}
	p.attempts = append(p.attempts, a)
	p.byOwner[a.owner] = a
	p.byPID[ev.PIDs[0]] = a
	p.live[a] = true
	a.band = p.tl.started(ev.T, a.instance, a.attempt, a.after)
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

func (p *pass) copied(ev Event) {
	p.seq++
	a := p.byOwner[owner{ev.Instance, ev.Attempt}]
	ord := unknownAttempt
	if a != nil {
		ord = int32(a.ordinal)
		a.copies += len(ev.Recipients)
	}
	for _, addr := range ev.Recipients {
		i, expected := p.r.index.lookup(addr)
		if expected {
			if a != nil && a.firstIndex < 0 {
				a.firstIndex = i
			}
			if f := p.first[i]; f == 0 {
				p.first[i] = ord + 1
				p.covered++
			} else {
				p.resent(f-1, ord, a)
				if p.doubtful[addr] > 0 {
					p.explained++
					if p.doubtful[addr]--; p.doubtful[addr] == 0 {
						delete(p.doubtful, addr)
					}
				}
			}
		}
		if w := p.worst[addr]; w != nil && len(w.CopiesDetail) < maxCopiesDetail {
			p.detail(w, ev, a)
		}
	}
	p.tl.copied(ev.T, len(ev.Recipients), p.covered)
	p.sessions[ev.Session] = flight{p.seq, ev.Recipients}
}

// maxCopiesDetail caps copies_detail for an address a runaway loop sent
// thousands of copies to.
const maxCopiesDetail = 100

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

func (p *pass) detail(w *Worst, ev Event, a *attemptTrack) {
	d := CopyDetail{Session: ev.Session, MessageID: ev.MessageID, seq: p.seq,
		Time: ev.T.UTC().Format("2006-01-02T15:04:05.000000Z07:00"), AtSeconds: p.tl.at(ev.T)}
	if a != nil {
		d.Instance, d.Attempt, d.After = a.instance, a.attempt, a.after
	}
	first, seen := p.firstID[w.Address]
	switch {
	case !seen:
		d.MessageIDRepeat = "first"
		p.firstID[w.Address] = ev.MessageID
	case ev.MessageID != "" && ev.MessageID == first:
		d.MessageIDRepeat = "same"
	default:
		d.MessageIDRepeat = "new" // no Message-ID counts as a new one
	}
	w.CopiesDetail = append(w.CopiesDetail, d)
}

func (p *pass) signalled(ev Event) {
	if ev.Signal == "" {
		p.tl.mark(ev.T, "skipped", ev.Reason, 0)
		return
	}
	pct := 0
	if n := len(p.r.expected); n > 0 {
		pct = p.covered * 100 / n
	}
	what := fmt.Sprintf("%s at %d%% (%s)", ev.Signal, pct, shortReason(ev.Reason))
	p.tl.signal(ev, what)
	for _, pid := range ev.PIDs {
		a := p.byPID[pid]
		if a == nil {
			continue
		}
		switch {
		case ev.Signal == "SIGSTOP" || ev.Signal == "SIGCONT":
		case a.trigger == "":
			a.trigger = what
		default: // a TERM that had to be escalated
			a.trigger += ", then " + ev.Signal + " (" + ev.Reason + ")"
		}
	}
	if ev.Signal != "SIGKILL" {
		return
	}
	for _, s := range ev.Sessions {
		// A copy is in flight when its 250 may not have reached the sender:
		// the session stands between the commit and the next command.
		if s.Moment == fakesmtp.MomentCommitted || s.Moment == fakesmtp.MomentAcked {
			if p.doubt(s.ID) {
				p.doubtKills++
			}
		}
	}
}

func (p *pass) faulted(ev Event) {
	label := ev.Kind
	if ev.Reason != "" {
		label += ": " + ev.Reason
	}
	p.tl.fault(ev, label, p.r.outage)
	if a := p.byOwner[owner{ev.Instance, ev.Attempt}]; a != nil && ev.Kind != "outage" {
		a.fault = faultWords(ev.Kind, ev.Reason)
	}
	if ev.InDoubt > 0 && p.doubt(ev.Session) {
		p.doubtFaults++
	}
}

// doubt marks the last copy of a session as in flight at an in-doubt event.
func (p *pass) doubt(session uint64) bool {
	fl, ok := p.sessions[session]
	if !ok || p.inFlight[fl.seq] {
		return false
	}
	p.inFlight[fl.seq] = true
	for _, a := range fl.rcpts {
		p.doubtful[a]++
	}
	return true
}

// faultWords says what a fault did: "550 for rcpt000501@onecopy.test".
func faultWords(kind, reply string) string {
	code, rest, _ := strings.Cut(reply, " ")
	if code == "" {
		return "a " + kind + " fault"
	}
	if i := strings.IndexByte(rest, '<'); i >= 0 {
		if j := strings.IndexByte(rest[i:], '>'); j > 1 {
			return code + " for " + rest[i+1:i+j]
		}
	}
	return code + " (" + kind + ")"
}

// shortReason keeps what a person needs from a signal's reason: the kill
// schedule ("--kill at=50%"), or the protocol kill and its session.
func shortReason(reason string) string {
	if strings.HasPrefix(reason, "--kill ") {
		s, _, _ := strings.Cut(reason, ":")
		return s
	}
	if kind, rest, ok := strings.Cut(reason, " kill at session "); ok {
		id, _, _ := strings.Cut(rest, " ")
		return "--kill " + kind + ", session " + id
	}
	return reason
}

func (p *pass) finish() {
	for _, w := range p.worst {
		for i := range w.CopiesDetail {
			d := &w.CopiesDetail[i]
			d.InDoubt = p.inFlight[d.seq] || i > 0 && p.inFlight[w.CopiesDetail[i-1].seq]
		}
	}
	for i := range p.rep.Senders {
		s := &p.rep.Senders[i]
		if a := p.byOwner[owner{s.Instance, s.Attempt}]; a != nil {
			s.After, s.Copies, s.Resent = a.after, a.copies, a.resent
		}
	}
	for _, a := range p.attempts {
		p.tl.t.Bands[a.band].Copies = a.copies
	}
	p.rep.Timeline = p.tl.finish()
	p.rep.Cause = p.cause()
}

// cause is the most likely cause of what went wrong, in one sentence.
func (p *pass) cause() string {
	rep := p.rep
	extra := rep.Extra
	if extra == 0 {
		switch {
		case rep.Missing > 0 && len(p.attempts) > 0:
			last := p.attempts[len(p.attempts)-1]
			if last.exit == "exit 0" {
				return fmt.Sprintf("%s never got a copy, though the sender exited 0: it skipped them, or lost them across a restart", count(rep.Missing, "recipient", "recipients"))
			}
			return fmt.Sprintf("%s never got a copy: the last attempt ended with %s; %s", count(rep.Missing, "recipient", "recipients"), last.ending(), rep.Ended)
		case rep.Unexpected > 0:
			return fmt.Sprintf("%s not on the list got copies: the sender wrote to addresses it was not given", count(rep.Unexpected, "address", "addresses"))
		}
		return ""
	}
	newIDs := 0
	p.r.srv.Oracle().Each(func(rc fakesmtp.Recipient) { // no snapshot: a million recipients would double the run's memory
		if _, ok := p.r.index.lookup(rc.Address); ok && rc.MessageIDs > 1 {
			newIDs++
		}
	})
	ids := "same Message-IDs"
	if newIDs > 0 {
		ids = "new Message-IDs"
	}
	lead := count(extra, "extra copy", "extra copies")
	if p.resentOther+p.resentRestart+p.resentSame+p.resentUnknown == 0 {
		return lead // the history lost its copy events: nothing to say more
	}
	if p.explained >= extra && newIDs == 0 {
		at := "at a kill"
		switch {
		case p.doubtKills == 0:
			at = "when its 250 was lost"
		case p.doubtFaults > 0:
			at = "at a kill or a lost 250"
		}
		if extra == 1 {
			return fmt.Sprintf("1 extra copy, the message in flight %s, same Message-ID: in-doubt", at)
		}
		return fmt.Sprintf("%s, each the message in flight %s, same Message-ID: in-doubt", lead, at)
	}
	switch max(p.resentOther, p.resentRestart, p.resentSame, p.resentUnknown) {
	case p.resentOther:
		whole, instances := 0, map[int]int{}
		for _, a := range p.attempts {
			instances[a.instance] += a.copies
		}
		for _, c := range instances {
			if 10*c >= 9*len(p.r.expected) {
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
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0 && s[i-1] != '-'; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s + " " + many
}
