// Package harness runs a sender under test as a child process, kills,
// terminates or pauses and restarts it on a schedule while a fake SMTP
// server counts every copy, plays the job runner that retries it, and
// records everything in the run's history. The verdict and the report are
// built from that history alone (packages verdict and report).
package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/harness/contain"
	"github.com/onecopy/onecopy/history"
	"github.com/onecopy/onecopy/mailbox"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/senders"
	"github.com/onecopy/onecopy/verdict"
)

// run is the state of one Run. The supervisor loop owns starting and
// restarting; kills can come from the loop or, synchronously, from a
// session at a protocol moment, so process state sits under mu.
type run struct {
	cfg      Config
	srv      *fakesmtp.Server
	hist     *history.Writer
	sup      *contain.Supervisor
	workDir  string
	stateDir string
	listFile string
	env      senders.Env // the contract, less attempt and instance
	start    time.Time

	exp     *verdict.Expected
	bounced []string
	outage  *fakesmtp.FaultSpec
	sched   *schedule
	rng     *rand.Rand // --target one; under mu

	mu       sync.Mutex
	covered  []bool
	coverage int
	procs    []*proc // every attempt, in start order
	live     map[int]*proc
	attempts map[int]int // instance -> attempts so far
	kills    int
	pauses   int
	restarts int
	outageOn bool

	copies  atomic.Int64
	repeats atomic.Int64 // copies to an address that already had one, for the live line
	cm      *campaignMetrics
	killReq chan killRequest
	exits   chan *proc
	starts  chan int // instances due to start
	late    int      // with StaggerAt: the next instance to start on coverage (under mu)

	attr attribution
}

// killRequest is a count-based kill point that came due, and the attempt
// that delivered the copy that made it due (for --target sending).
type killRequest struct {
	point history.KillPoint
	by    owner
}

// Run runs one campaign and judges it. A verdict that falls short is data
// in the Report; an error means the run could not be carried out (bad
// input is a *UsageError).
func Run(ctx context.Context, cfg Config) (*report.Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &run{
		cfg:      cfg,
		live:     map[int]*proc{},
		attempts: map[int]int{},
		killReq:  make(chan killRequest, 64),
		exits:    make(chan *proc, 64),
		starts:   make(chan int, cfg.Instances),
		late:     2,
		rng:      rand.New(rand.NewPCG(cfg.Seed, 3)),
	}
	specs, err := r.plan()
	if err != nil {
		return nil, err
	}
	if err := r.prepare(); err != nil {
		return nil, err
	}
	defer r.cleanup()
	r.cm = cfg.Metrics.campaign(r.exp.Len())
	defer r.cm.end()
	r.sched = newSchedule(cfg.Kills, r.exp.Len(), rand.New(rand.NewPCG(cfg.Seed, 1)))

	opts := r.serverOptions(specs)
	if r.srv, err = fakesmtp.Start(ctx, opts); err != nil {
		return nil, err
	}
	r.env = senders.Env{SMTPAddr: r.srv.Addr(), APIURL: "http://" + r.srv.HTTPAddr(), RecipientsFile: r.listFile, StateDir: r.stateDir,
		Campaign: cfg.Campaign, SMTPTLSCA: opts.TLSCAFile}
	if r.sup, err = contain.New(contain.Options{Mode: contain.Mode(cfg.Containment), Logger: cfg.Logger}); err != nil {
		r.srv.Close()
		return nil, fmt.Errorf("containing the sender: %w", err)
	}
	r.start = time.Now()
	if err := r.hist.Add(history.Event{T: r.start, Kind: history.KindRun, Run: r.header()}); err != nil {
		r.sup.Close()
		r.srv.Close()
		return nil, err
	}

	how, failures, err := r.supervise(ctx)
	if cerr := r.sup.Close(); cerr != nil && err == nil {
		err = fmt.Errorf("ending the sender's processes: %w", cerr)
	}
	r.srv.Close()
	end := &history.End{How: how, Failures: failures, Copies: r.srv.Oracle().Copies(), Sessions: r.srv.SessionsAccepted()}
	if err != nil {
		end.How, end.Error = history.EndError, err.Error()
	}
	for _, p := range r.sched.left() {
		r.hist.Add(history.Event{Kind: history.KindMissed, Point: &p})
	}
	end.Short = end.Copies != r.copies.Load()
	r.hist.Add(history.Event{Kind: history.KindEnd, End: end})
	if herr := r.hist.Close(); herr != nil {
		return nil, fmt.Errorf("the history of the run is incomplete (%w): no verdict can be built from it", herr)
	}
	if err != nil {
		return nil, err
	}
	// What the run kept is not needed to judge it: at a million recipients
	// the server's counts and the run's index are as big as the judging.
	r.srv, r.exp, r.covered = nil, nil, nil
	// The report is built from the history alone, before cleanup removes a
	// temporary work dir with the history in it.
	rep, acc, err := report.Build(history.File(r.hist.Path()), r.cfg.Recipients)
	if err != nil {
		return nil, fmt.Errorf("judging the run from its history: %w", err)
	}
	if r.cfg.WorkDir != "" {
		if rep.History, err = filepath.Abs(r.hist.Path()); err != nil {
			return nil, err
		}
	}
	r.cm.judge(rep, acc)
	return rep, nil
}

// serverOptions are the fake server's options for this run: the caller's,
// with the run's hooks added and its callbacks chained after the caller's.
func (r *run) serverOptions(specs []fakesmtp.FaultSpec) fakesmtp.Options {
	opts := r.cfg.SMTP
	if opts.HTTPAddr == "" {
		opts.HTTPAddr = "127.0.0.1:0" // the providers' send APIs (docs/providers.md)
	}
	if opts.TLSCAFile == "" && !opts.DisableSTARTTLS {
		opts.TLSCAFile = filepath.Join(r.workDir, "tls-ca.pem") // handed to the sender: ONECOPY_SMTP_TLS_CA
	}
	opts.Hooks = append(slices.Clip(opts.Hooks),
		r.sessionHook(),
		fakesmtp.HookAt(fakesmtp.Moments(fakesmtp.MomentCommitted, fakesmtp.MomentDataStreaming), fakesmtp.HookFunc(r.atMoment)),
		fakesmtp.NewFaults(specs, rand.New(rand.NewPCG(r.cfg.Seed, 2))))
	opts.OnDelivery = chain(opts.OnDelivery, r.delivered)
	opts.OnFault = chain(opts.OnFault, r.faulted)
	opts.OnInDoubt = chain(opts.OnInDoubt, r.inDoubt)
	if opts.Metrics == nil && r.cfg.Metrics != nil {
		opts.Metrics = r.cfg.Metrics.smtp
	}
	if opts.Registry == nil {
		opts.Registry = r.cfg.Registry
	}
	return opts
}

// chain calls the caller's callback, then the run's: like httptest's
// wrapping of ConnState, the run never takes a hook away from its caller.
func chain[T any](theirs, ours func(T)) func(T) {
	if theirs == nil {
		return ours
	}
	return func(v T) { theirs(v); ours(v) }
}

// header is the run's set-up, the history's first line.
func (r *run) header() *history.Run {
	c := r.cfg
	h := &history.Run{
		Version: history.Version, Seed: c.Seed, Campaign: c.Campaign, Command: c.Command, Replay: c.Replay,
		Expect: string(c.Expect), List: filepath.Base(r.listFile), Recipients: len(c.Recipients), Bounced: r.bounced,
		Signal: string(c.Signal), Target: c.Target.String(), Instances: c.Instances, Stagger: history.Duration(c.Stagger),
		Retries: c.Retries, Timeout: history.Duration(c.Timeout), SMTPAddr: r.srv.Addr(), APIURL: r.env.APIURL, Containment: string(r.sup.Mode()),
	}
	switch c.Signal {
	case SigTerm:
		h.Grace = history.Duration(c.Grace)
	case SigStop:
		h.Pause = history.Duration(c.Pause)
	}
	for _, k := range c.Kills {
		h.Kills = append(h.Kills, k.String())
	}
	for _, f := range c.Faults {
		h.Faults = append(h.Faults, f.String())
	}
	return h
}

// plan resolves the list and the faults: the expected set, the bounced
// addresses, reject-nth against the list, the outage trigger.
func (r *run) plan() ([]fakesmtp.FaultSpec, error) {
	var listed *verdict.Expected // the distinct addresses, for reject-nth
	rejected := map[string]bool{}
	var specs []fakesmtp.FaultSpec
	for _, f := range r.cfg.Faults {
		switch f.Kind {
		case "reject-nth":
			if listed == nil {
				listed = verdict.NewExpected(r.cfg.Recipients, nil)
			}
			if f.N > listed.Len() {
				return nil, usagef("--fault %s: the list has only %d distinct addresses", f, listed.Len())
			}
			f.Addr = listed.Address(f.N - 1)
			rejected[f.Addr] = true
		case "reject":
			rejected[mailbox.Key(f.Addr)] = true
		case "outage":
			if r.outage != nil {
				return nil, usagef("--fault %s: only one outage per run", f)
			}
			r.outage = &f
			continue
		}
		specs = append(specs, f)
	}
	for a := range rejected {
		r.bounced = append(r.bounced, a)
	}
	slices.Sort(r.bounced)
	if listed != nil && len(r.bounced) == 0 {
		r.exp = listed
	} else {
		r.exp = verdict.NewExpected(r.cfg.Recipients, r.bounced)
	}
	if r.exp.Len() == 0 {
		return nil, usagef("every address on the list is rejected by a fault: nothing to deliver")
	}
	r.covered = make([]bool, r.exp.Len())
	return specs, nil
}

func (r *run) prepare() error {
	r.workDir = r.cfg.WorkDir
	if r.workDir == "" {
		d, err := os.MkdirTemp("", "onecopy-run-")
		if err != nil {
			return fmt.Errorf("creating a work directory: %w", err)
		}
		r.workDir = d
	} else if err := os.MkdirAll(r.workDir, 0o755); err != nil {
		return fmt.Errorf("creating work directory: %w", err)
	}
	// A sender that drops privileges (an MTA's daemons run as their own
	// user) must still reach its list and its state dir.
	if err := os.Chmod(r.workDir, 0o755); err != nil {
		return fmt.Errorf("opening the work directory to the sender: %w", err)
	}
	r.stateDir = filepath.Join(r.workDir, "state")
	os.RemoveAll(r.stateDir) // fresh per run
	if err := os.MkdirAll(filepath.Join(r.workDir, "logs"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(r.stateDir, 0o777); err != nil {
		return err
	}
	if err := os.Chmod(r.stateDir, 0o777|os.ModeSticky); err != nil {
		return err
	}
	r.listFile = filepath.Join(r.workDir, "recipients.txt")
	if err := os.WriteFile(r.listFile, []byte(strings.Join(r.cfg.Recipients, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing the recipient list: %w", err)
	}
	var err error
	r.hist, err = history.Create(filepath.Join(r.workDir, "history.jsonl"))
	return err
}

func (r *run) cleanup() {
	if r.hist != nil {
		r.hist.Close()
	}
	if r.cfg.WorkDir == "" && r.workDir != "" {
		os.RemoveAll(r.workDir)
	}
}

// record appends ev to the history and logs it; a history that cannot be
// written ends the run (supervise sees hist.Err).
func (r *run) record(ev history.Event) {
	if err := r.hist.Add(ev); err != nil {
		return
	}
	if ev.Kind != history.KindCopy {
		r.cfg.Logger.Info(string(ev.Kind), "instance", ev.Instance, "attempt", ev.Attempt, "session", ev.Session)
	}
}

// delivered sees every counted message before its 250 is written: it
// writes the history, tracks how much of the list has a copy, and fires
// count-based kills and the outage.
func (r *run) delivered(d fakesmtp.Delivery) {
	r.copies.Add(int64(len(d.Recipients)))
	o := r.ownerOf(d.Session)
	r.record(history.Event{T: d.Time, Kind: history.KindCopy, Session: d.Session, Txn: d.Txn, Recipients: d.Recipients,
		MessageID: d.MessageID, Transport: d.Transport, Instance: o.instance, Attempt: o.attempt})
	if p := r.procOf(o); p != nil && !p.running() {
		// Its attempt ended, every process of it killed and reaped, yet its
		// session delivers. What its client sent before it died may still
		// be read and counted; a process still holding the connection
		// means the containment missed it.
		if held := socketHolders(r.remoteOf(d.Session), r.serverPorts()); len(held) > 0 {
			r.record(history.Event{Kind: history.KindEscaped, Session: d.Session, Instance: o.instance, Attempt: o.attempt,
				Escaped: &history.Escaped{Did: "delivered a message after its attempt had ended", Processes: held}})
		}
	}
	r.mu.Lock()
	repeats := 0
	for _, a := range d.Recipients {
		if i, ok := r.exp.Lookup(a); ok {
			if r.covered[i] {
				repeats++
			} else {
				r.covered[i] = true
				r.coverage++
			}
		}
	}
	cov := r.coverage
	var start []int
	for r.cfg.StaggerAt > 0 && r.late <= r.cfg.Instances && float64(cov) >= float64(r.late-1)*r.cfg.StaggerAt/100*float64(r.exp.Len()) {
		start = append(start, r.late)
		r.late++
	}
	outage := r.outage != nil && !r.outageOn && float64(cov) >= r.outage.Pct/100*float64(r.exp.Len())
	if outage {
		r.outageOn = true
	}
	r.mu.Unlock()
	for _, k := range start {
		r.starts <- k // buffered for every instance: never blocks
	}
	r.repeats.Add(int64(repeats))
	r.cm.delivered(len(d.Recipients), cov)
	if p, ok := r.sched.due(cov); ok {
		select {
		case r.killReq <- killRequest{p, o}:
		default: // the loop is behind: the point fires at the next copy
			r.sched.putBack(p)
		}
	}
	if outage {
		r.record(history.Event{Kind: history.KindOutage, Outage: &history.Outage{For: history.Duration(r.outage.D), Coverage: cov}})
		r.cm.fault("outage")
		go r.srv.Outage(r.outage.D)
	}
}

func (r *run) faulted(f fakesmtp.FaultEvent) {
	o := r.ownerOf(f.Session)
	r.record(history.Event{T: f.Time, Kind: history.KindFault, Session: f.Session, Instance: o.instance, Attempt: o.attempt,
		Fault: &history.Fault{Kind: f.Kind, Moment: f.Moment.String(), Reply: f.Reply, Address: f.Address, Delay: history.Duration(f.Delay), Cut: f.Cut}})
	if p := r.procOf(o); p != nil {
		r.mu.Lock()
		p.chaos = &history.Chaos{T: f.Time, Fault: f.Kind}
		r.mu.Unlock()
	}
	r.cm.fault(f.Kind)
}

// inDoubt records a transaction its session left in flight, with the
// cause: what the run knows of how that session's attempt ended.
func (r *run) inDoubt(d fakesmtp.InDoubt) {
	o := r.ownerOf(d.Session)
	p := r.procOf(o)
	var chaos *history.Chaos
	signalled, escalated, sig := false, false, Signal("")
	if p != nil {
		r.mu.Lock()
		chaos, signalled, escalated, sig = p.chaos, p.signalled, p.escalated, p.hitBy
		r.mu.Unlock()
	}
	cause := history.CauseClient
	switch {
	case d.Ended == fakesmtp.EndCut && d.Fault != "":
		cause = history.CauseFault
	case d.Ended == fakesmtp.EndShutdown || d.Ended == fakesmtp.EndTimeout || d.Ended == fakesmtp.EndProtocol:
		cause = history.CauseServer
	case escalated:
		cause = history.CauseEscalate
	case signalled && sig == SigTerm:
		cause = history.CauseTerm
	case signalled:
		cause = history.CauseKill
	}
	// Over HTTP a client that read its response in full and then closed
	// the connection looks like one that closes after every request: such
	// a transaction is in doubt only when its attempt was killed or died.
	if d.Transport != fakesmtp.TransportSMTP && d.Acked && !signalled && (p == nil || !p.gone()) {
		return
	}
	r.record(history.Event{Kind: history.KindInDoubt, Session: d.Session, Txn: d.Txn, Instance: o.instance, Attempt: o.attempt,
		InDoubt: &history.InDoubt{Recipients: d.Recipients, MessageID: d.MessageID, Delivered: d.Delivered, Acked: d.Acked,
			Cause: cause, Fault: d.Fault, Chaos: chaos}})
	r.cm.doubt(cause)
}

// procOf is the attempt o, or nil.
func (r *run) procOf(o owner) *proc {
	if o.instance == 0 {
		return nil
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.procs {
		if p.instance == o.instance && p.attempt == o.attempt {
			return p
		}
	}
	return nil
}

// atMoment is the run's hook on every session: protocol-aware kills.
func (r *run) atMoment(ctx context.Context, ev *fakesmtp.Event) fakesmtp.Action {
	var kind KillKind
	switch ev.Moment {
	case fakesmtp.MomentCommitted:
		kind = KillInDoubt
	case fakesmtp.MomentDataStreaming:
		kind = KillDuringData
	default:
		return fakesmtp.Action{}
	}
	r.mu.Lock()
	cov := r.coverage
	r.mu.Unlock()
	p, ok := r.sched.take(kind, cov)
	if !ok {
		return fakesmtp.Action{}
	}
	p.Session, p.Moment = ev.Session, ev.Moment.String()
	if !r.hit(p, r.ownerOf(ev.Session), true) {
		r.sched.putBack(p)
		return fakesmtp.Action{}
	}
	// The sender is dead: now lose the reply (in-doubt) or the rest of the
	// body (during-data), so nothing the dead sender wrote can count later.
	return fakesmtp.Action{Close: r.cfg.Signal == SigKill}
}

// targets picks the running attempts a kill point hits, under r.mu. by is
// the attempt whose session reached the point.
func (r *run) targets(by owner) []*proc {
	var running []*proc
	for k := 1; k <= r.cfg.Instances; k++ {
		if p := r.live[k]; p != nil && p.running() && !p.paused && !p.signalled { // a dying sender is not hit twice
			running = append(running, p)
		}
	}
	if len(running) == 0 {
		return nil
	}
	switch r.cfg.Target.Kind {
	case TargetOne:
		return []*proc{running[r.rng.IntN(len(running))]}
	case TargetSending:
		for _, p := range running {
			if p.instance == by.instance && p.attempt == by.attempt {
				return []*proc{p}
			}
		}
		return nil // the sending attempt is gone: the point waits
	case TargetInstance:
		for _, p := range running {
			if p.instance == r.cfg.Target.Instance {
				return []*proc{p}
			}
		}
		return nil
	}
	return running
}

// hit applies the configured signal to the targets of point p. With wait
// set, a KILL returns only once the senders are reaped. It reports
// whether anything was hit; a point that hit nothing is the caller's to
// put back.
func (r *run) hit(p history.KillPoint, by owner, wait bool) bool {
	p.Target = r.cfg.Target.String()
	sig := r.cfg.Signal
	r.mu.Lock()
	targets := r.targets(by)
	if len(targets) == 0 {
		r.mu.Unlock()
		return false
	}
	ev := history.Event{Kind: history.KindSignal, Point: &p, Signal: &history.Signal{Name: "SIG" + string(sig), Why: history.WhyKill}}
	switch sig {
	case SigStop:
		r.pauses++
		ev.Signal.Pause = history.Duration(r.cfg.Pause)
	case SigTerm:
		r.kills++
		ev.Signal.Grace = history.Duration(r.cfg.Grace)
	default:
		r.kills++
	}
	now := time.Now()
	for _, t := range targets {
		ev.Signal.Targets = append(ev.Signal.Targets, history.Target{Instance: t.instance, Attempt: t.attempt, PID: t.pid})
		t.chaos = &history.Chaos{T: now, Signal: ev.Signal.Name, Point: &p}
		if sig == SigStop {
			t.paused = true
		} else {
			t.signalled, t.hitBy = true, sig
		}
	}
	r.mu.Unlock()
	for _, s := range r.srv.Sessions() {
		ev.Signal.Sessions = append(ev.Signal.Sessions, history.Session{ID: s.ID, Moment: s.Moment.String(), Messages: s.Messages})
	}
	ev.T = now
	r.record(ev) // recorded before acting on it
	r.cm.signal(sig)
	for _, t := range targets {
		t.signal(sig.sys())
		switch sig {
		case SigTerm:
			go r.escalate(t)
		case SigStop:
			go r.resume(t)
		}
	}
	if wait && sig == SigKill {
		for _, t := range targets {
			select {
			case <-t.done:
			case <-time.After(5 * time.Second):
			}
		}
	}
	return true
}

// escalate kills a TERMed sender that outlives its grace.
func (r *run) escalate(p *proc) {
	if !p.outlives(r.cfg.Grace) {
		return
	}
	r.mu.Lock()
	p.escalated = true
	p.chaos = &history.Chaos{T: time.Now(), Signal: "SIGKILL"}
	r.mu.Unlock()
	r.record(history.Event{Kind: history.KindSignal, Signal: &history.Signal{Name: "SIGKILL", Why: history.WhyEscalate, Grace: history.Duration(r.cfg.Grace),
		Targets: []history.Target{{Instance: p.instance, Attempt: p.attempt, PID: p.pid}}}})
	p.signal(syscall.SIGKILL)
}

// resume continues a paused sender after the pause.
func (r *run) resume(p *proc) {
	if !p.outlives(r.cfg.Pause) {
		return
	}
	r.mu.Lock()
	p.paused = false
	r.mu.Unlock()
	r.record(history.Event{Kind: history.KindSignal, Signal: &history.Signal{Name: "SIGCONT", Why: history.WhyResume, Pause: history.Duration(r.cfg.Pause),
		Targets: []history.Target{{Instance: p.instance, Attempt: p.attempt, PID: p.pid}}}})
	p.signal(syscall.SIGCONT)
}

// supervise is the job runner: it starts the instances, restarts them after
// kills and failures, and ends the run. It returns how the run ended and
// how many attempts failed on their own.
func (r *run) supervise(ctx context.Context) (history.EndHow, int, error) {
	timeout := time.NewTimer(r.cfg.Timeout)
	defer timeout.Stop()
	stagger := r.starts
	pendingStarts := r.cfg.Instances
	for k := 1; k <= r.cfg.Instances; k++ {
		switch {
		case k == 1 || r.cfg.Stagger == 0 && r.cfg.StaggerAt == 0:
			stagger <- k
		case r.cfg.Stagger > 0:
			t := time.AfterFunc(time.Duration(k-1)*r.cfg.Stagger, func() { stagger <- k })
			defer t.Stop()
		} // StaggerAt: delivered sends them
	}
	stopProgress := r.progress()
	defer stopProgress()

	failures, completed := 0, false
	running := 0
	var ended history.EndHow
	var failed error
	// stop ends the run with every attempt still running killed and reaped:
	// no sender may outlive it.
	stop := func(how history.EndHow) {
		if ended == "" {
			ended = how
			r.stopAll()
		}
	}
	for ended == "" || running > 0 {
		if err := r.hist.Err(); err != nil && failed == nil {
			failed = fmt.Errorf("the history can no longer be written: %w", err)
			stop(history.EndError)
		}
		select {
		case k := <-stagger:
			pendingStarts--
			if ended != "" {
				continue
			}
			if err := r.launch(ctx, k); err != nil {
				failed = err
				stop(history.EndError)
				continue
			}
			running++
		case p := <-r.exits:
			running--
			r.reaped(p)
			r.mu.Lock()
			signalled := p.signalled
			r.mu.Unlock()
			if ended == "" && ctx.Err() != nil {
				// The context killed this sender (exec.CommandContext) before
				// the loop saw ctx.Done: an interruption, not a failed attempt
				// to restart.
				stop(history.EndInterrupted)
			}
			relaunch := false
			switch {
			case ended != "":
			case signalled:
				relaunch = true
				r.cm.restart(true)
			case p.exit.ok():
				completed = true
			case failures < r.cfg.Retries:
				failures++
				relaunch = true
				r.cm.restart(false)
			}
			if relaunch {
				r.mu.Lock()
				r.restarts++
				r.mu.Unlock()
				if err := r.launch(ctx, p.instance); err != nil {
					failed = err
					stop(history.EndError)
					continue
				}
				running++
			}
			// With StaggerAt an instance starts on coverage: once nothing
			// runs and none is due, none will ever start.
			if ended == "" && running == 0 && len(stagger) == 0 && (pendingStarts == 0 || r.cfg.StaggerAt > 0) {
				if completed {
					ended = history.EndCompleted
				} else {
					ended = history.EndRetriesSpent
				}
			}
		case req := <-r.killReq:
			if ended == "" && !r.hit(req.point, req.by, false) {
				r.sched.putBack(req.point)
			}
		case <-timeout.C:
			stop(history.EndTimeout)
		case <-ctx.Done():
			stop(history.EndInterrupted)
		}
	}
	return ended, failures, failed
}

// launch starts the next attempt of instance k.
func (r *run) launch(ctx context.Context, k int) error {
	r.mu.Lock()
	r.attempts[k]++
	attempt := r.attempts[k]
	r.mu.Unlock()
	logf, err := os.Create(filepath.Join(r.workDir, "logs", fmt.Sprintf("instance%d-attempt%d.log", k, attempt)))
	if err != nil {
		return fmt.Errorf("creating the sender log: %w", err)
	}
	e := r.env
	e.Attempt, e.Instance = attempt, k
	env := append(append(os.Environ(), e.Environ()...), r.cfg.Env...)
	if e.SMTPTLSCA != "" && os.Getenv("NODE_EXTRA_CA_CERTS") == "" {
		// Node.js adds these to its trusted CAs (it does not replace them):
		// nodemailer then trusts the fake's STARTTLS as is.
		env = append(env, "NODE_EXTRA_CA_CERTS="+e.SMTPTLSCA)
	}
	out := newTail(20, logf)
	p, err := startProc(ctx, r.sup, r.cfg.Command, env, out)
	if err != nil {
		logf.Close()
		r.record(history.Event{Kind: history.KindStart, Instance: k, Attempt: attempt, Start: &history.Start{Error: err.Error()}})
		return fmt.Errorf("starting the sender %q: %w (check the command and that it is executable)", r.cfg.Command[0], err)
	}
	p.instance, p.attempt = k, attempt
	r.mu.Lock()
	r.live[k] = p
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	r.record(history.Event{Kind: history.KindStart, Instance: k, Attempt: attempt, Start: &history.Start{PID: p.pid}})
	go func() {
		<-p.done
		logf.Close()
		r.exits <- p
	}()
	return nil
}

func (r *run) reaped(p *proc) {
	r.mu.Lock()
	if r.live[p.instance] == p {
		delete(r.live, p.instance)
	}
	signalled := p.signalled
	r.mu.Unlock()
	r.cm.attempt(p.exit, signalled)
	r.record(history.Event{Kind: history.KindExit, Instance: p.instance, Attempt: p.attempt,
		Exit: &history.Exit{Code: p.exit.Code, Signal: p.exit.Signal, Error: p.exit.Err, Duration: history.Duration(p.exit.Duration), Output: p.out.Lines()}})
}

// stopAll kills every attempt still running at the end of a run.
func (r *run) stopAll() {
	r.mu.Lock()
	var targets []history.Target
	var procs []*proc
	for k := 1; k <= r.cfg.Instances; k++ {
		if p := r.live[k]; p != nil && p.running() {
			targets = append(targets, history.Target{Instance: p.instance, Attempt: p.attempt, PID: p.pid})
			procs = append(procs, p)
		}
	}
	r.mu.Unlock()
	if len(procs) == 0 {
		return
	}
	r.record(history.Event{Kind: history.KindSignal, Signal: &history.Signal{Name: "SIGKILL", Why: history.WhyStop, Targets: targets}})
	for _, p := range procs {
		p.signal(syscall.SIGKILL)
	}
}

// progress draws a live line on a terminal until the returned func is called.
func (r *run) progress() func() {
	if r.cfg.Progress == nil {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	last, lastAt := int64(0), time.Now()
	draw := func() {
		r.mu.Lock()
		cov, kills, pauses, restarts := r.coverage, r.kills, r.pauses, r.restarts
		r.mu.Unlock()
		copies, now := r.copies.Load(), time.Now()
		rate := float64(copies-last) / now.Sub(lastAt).Seconds()
		last, lastAt = copies, now
		fmt.Fprintf(r.cfg.Progress, "\r\x1b[K%d/%d recipients (%d%%) · %d copies · %d duplicates so far · %.0f copies/s · %d kills · %d pauses · %d restarts · %s",
			cov, r.exp.Len(), cov*100/max(r.exp.Len(), 1), copies, r.repeats.Load(), rate, kills, pauses, restarts, time.Since(r.start).Round(100*time.Millisecond))
	}
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				draw()
			case <-stop:
				fmt.Fprint(r.cfg.Progress, "\r\x1b[K")
				return
			}
		}
	}()
	return func() { close(stop); <-done }
}
