// Package harness runs a sender under test as a child process, kills,
// terminates or pauses and restarts it on a schedule while a fake SMTP
// server counts every copy, plays the job runner that retries it, and turns
// the counts into a verdict.
package harness

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// run is the state of one Run. The supervisor loop owns starting and
// restarting; kills can come from the loop or, synchronously, from an SMTP
// session at a protocol moment, so process state sits under mu.
type run struct {
	cfg      Config
	srv      *fakesmtp.Server
	hist     *history
	wd       *watchdog
	workDir  string
	stateDir string
	listFile string
	env      []string
	start    time.Time

	index    *addrIndex // normalised expected address -> position
	expected []string
	bounced  int
	outage   *fakesmtp.FaultSpec

	sched *schedule

	mu       sync.Mutex
	covered  []bool
	coverage int
	procs    []*proc // every attempt, in start order
	live     map[int]*proc
	attempts map[int]int // instance -> attempts so far
	kills    int
	pauses   int
	inDoubt  int
	faults   map[string]int
	outageOn bool

	copies   atomic.Int64
	cm       *campaignMetrics // nil without Config.Metrics
	killReq  chan string
	exits    chan *proc
	restarts int

	attr attribution // which attempt opened each SMTP session
}

// Run runs one campaign and judges it. A verdict that falls short is data
// in the Report; an error means the run could not be carried out (bad
// input is a *UsageError).
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	r := &run{
		cfg:      cfg,
		live:     map[int]*proc{},
		attempts: map[int]int{},
		faults:   map[string]int{},
		killReq:  make(chan string, 64),
		exits:    make(chan *proc, 64),
	}
	specs, err := r.plan()
	if err != nil {
		return nil, err
	}
	if err := r.prepare(); err != nil {
		return nil, err
	}
	defer r.cleanup()
	r.cm = cfg.Metrics.campaign(len(r.expected))
	defer r.cm.end()
	r.sched = newSchedule(cfg.Kills, len(r.expected), rand.New(rand.NewPCG(cfg.Seed, 1)))

	opts := cfg.SMTP
	opts.Hooks = append(slices.Clip(opts.Hooks),
		r.sessionHook(),
		fakesmtp.HookAt(fakesmtp.Moments(fakesmtp.MomentCommitted, fakesmtp.MomentDataStreaming), fakesmtp.HookFunc(r.atMoment)),
		r.keepReplies(fakesmtp.NewFaults(specs, rand.New(rand.NewPCG(cfg.Seed, 2)))))
	opts.OnDelivery = r.delivered
	opts.OnFault = r.faulted
	if opts.Metrics == nil && cfg.Metrics != nil {
		opts.Metrics = cfg.Metrics.smtp
	}
	if opts.Registry == nil {
		opts.Registry = cfg.Registry
	}
	if r.srv, err = fakesmtp.Start(ctx, opts); err != nil {
		return nil, err
	}
	r.cm.attach(r.srv.Oracle())
	r.env = append(os.Environ(),
		"ONECOPY_SMTP_ADDR="+r.srv.Addr(),
		"ONECOPY_RECIPIENTS="+r.listFile,
		"ONECOPY_STATE_DIR="+r.stateDir,
		"ONECOPY_CAMPAIGN="+cfg.Campaign,
	)
	r.env = append(r.env, cfg.Env...)
	if r.wd, err = startWatchdog(); err != nil {
		r.srv.Close()
		return nil, err
	}
	r.start = time.Now()
	r.hist.add(Event{Type: "run", Reason: fmt.Sprintf("seed %d, %d recipients, sender %q", cfg.Seed, len(r.expected), strings.Join(cfg.Command, " ")), Addr: r.srv.Addr()})

	ended, err := r.supervise(ctx)
	r.wd.stop()
	r.srv.Close()
	if err != nil {
		return nil, err
	}
	rep := r.report(ended)
	r.cm.judge(rep)
	r.hist.add(Event{Type: "end", Reason: ended + ": " + string(rep.Verdict)})
	if err := r.hist.close(); err != nil {
		return rep, fmt.Errorf("writing history: %w", err)
	}
	// Before cleanup removes a temporary work dir with the history in it.
	if err := r.explain(rep); err != nil {
		return rep, fmt.Errorf("reading the history back for the report: %w", err)
	}
	return rep, nil
}

// plan resolves the list and the faults: the expected set, the bounced
// addresses, reject-nth against the list, the outage trigger.
func (r *run) plan() ([]fakesmtp.FaultSpec, error) {
	// distinct is the list itself (no second array of a million strings)
	// until an address needs normalising or repeats one.
	list := slices.Clip(r.cfg.Recipients)
	seen := make(map[string]struct{}, len(list))
	distinct, own := list, false
	for i, a := range list {
		k := fakesmtp.Normalize(a)
		_, dup := seen[k]
		if !own && (dup || k != a) {
			distinct, own = append(make([]string, 0, len(list)), list[:i]...), true
		}
		if !dup {
			seen[k] = struct{}{}
			if own {
				distinct = append(distinct, k)
			}
		}
	}
	seen = nil
	rejected := map[string]bool{}
	var specs []fakesmtp.FaultSpec
	for _, f := range r.cfg.Faults {
		switch f.Kind {
		case "reject-nth":
			if f.N > len(distinct) {
				return nil, usagef("--fault %s: the list has only %d distinct addresses", f, len(distinct))
			}
			f.Addr = distinct[f.N-1]
			rejected[f.Addr] = true
		case "reject":
			rejected[fakesmtp.Normalize(f.Addr)] = true
		case "outage":
			if r.outage != nil {
				return nil, usagef("--fault %s: only one outage per run", f)
			}
			f := f
			r.outage = &f
			continue
		}
		specs = append(specs, f)
	}
	r.expected = distinct
	if len(rejected) > 0 {
		r.expected = make([]string, 0, len(distinct))
		for _, a := range distinct {
			if rejected[a] {
				r.bounced++
				continue
			}
			r.expected = append(r.expected, a)
		}
	}
	r.index = newAddrIndex(r.expected)
	if len(r.expected) == 0 {
		return nil, usagef("every address on the list is rejected by a fault: nothing to deliver")
	}
	r.covered = make([]bool, len(r.expected))
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
	r.stateDir = filepath.Join(r.workDir, "state")
	os.RemoveAll(r.stateDir) // fresh per run
	if err := os.MkdirAll(filepath.Join(r.workDir, "logs"), 0o755); err != nil {
		return err
	}
	if err := os.MkdirAll(r.stateDir, 0o755); err != nil {
		return err
	}
	r.listFile = filepath.Join(r.workDir, "recipients.txt")
	if err := os.WriteFile(r.listFile, []byte(strings.Join(r.cfg.Recipients, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing the recipient list: %w", err)
	}
	var err error
	r.hist, err = openHistory(filepath.Join(r.workDir, "history.jsonl"), r.cfg.Logger)
	return err
}

func (r *run) cleanup() {
	if r.hist != nil {
		r.hist.close()
	}
	if r.cfg.WorkDir == "" && r.workDir != "" {
		os.RemoveAll(r.workDir)
	}
}

// delivered sees every counted message: it writes the history, tracks how
// much of the list has a copy, and fires count-based kills and the outage.
func (r *run) delivered(d fakesmtp.Delivery) {
	r.copies.Add(int64(len(d.Recipients)))
	o := r.ownerOf(d.Session)
	r.hist.add(Event{T: d.Time, Type: "copy", Session: d.Session, Recipients: d.Recipients, MessageID: d.MessageID, Instance: o.instance, Attempt: o.attempt})
	r.mu.Lock()
	for _, a := range d.Recipients {
		if i, ok := r.index.lookup(a); ok && !r.covered[i] {
			r.covered[i] = true
			r.coverage++
		}
	}
	cov := r.coverage
	outage := r.outage != nil && !r.outageOn && float64(cov) >= r.outage.Pct/100*float64(len(r.expected))
	if outage {
		r.outageOn = true
	}
	r.mu.Unlock()
	r.cm.delivered(d.Recipients, r.expects, cov)
	for _, why := range r.sched.due(cov) {
		select {
		case r.killReq <- why:
		default: // the loop is behind; kill points are spread, so dropping one is safe
		}
	}
	if outage {
		r.hist.add(Event{Type: "fault", Kind: "outage", Reason: "port down for " + r.outage.D.String()})
		r.countFault("outage")
		go r.srv.Outage(r.outage.D)
	}
}

func (r *run) faulted(f fakesmtp.FaultEvent) {
	o := r.ownerOf(f.Session)
	r.hist.add(Event{T: f.Time, Type: "fault", Kind: f.Kind, Session: f.Session, Moment: f.Moment.String(),
		Instance: o.instance, Attempt: o.attempt, Reason: r.takeReply(f.Session)})
	r.countFault(f.Kind)
}

// expects reports whether a normalised address is on the list (and not
// bounced).
func (r *run) expects(addr string) bool {
	_, ok := r.index.lookup(addr)
	return ok
}

func (r *run) countFault(kind string) {
	r.mu.Lock()
	r.faults[kind]++
	r.mu.Unlock()
	r.cm.fault(kind)
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// atMoment is the run's hook on every SMTP session: protocol-aware kills.
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
	if !r.sched.take(kind, cov) {
		return fakesmtp.Action{}
	}
	reason := fmt.Sprintf("%s kill at session %d (%s)", kind, ev.Session, ev.Moment)
	if !r.hit(reason, true) {
		return fakesmtp.Action{}
	}
	// The sender is dead: now lose the reply (in-doubt) or the rest of the
	// body (during-data), so nothing the dead sender wrote can count later.
	return fakesmtp.Action{Close: r.cfg.Signal == SigKill}
}

// hit applies the configured signal to every running instance. With wait
// set, a KILL returns only once the senders are reaped.
func (r *run) hit(reason string, wait bool) bool {
	r.mu.Lock()
	targets := make([]*proc, 0, len(r.live))
	for _, p := range r.live {
		if p.running() && !p.paused && !p.signalled { // a dying sender is not hit twice
			targets = append(targets, p)
		}
	}
	if len(targets) == 0 {
		r.mu.Unlock()
		r.hist.add(Event{Type: "signal", Reason: reason + ": skipped, no sender running"})
		return false
	}
	sig := r.cfg.Signal
	sessions := r.srv.Sessions()
	ev := Event{Type: "signal", Signal: "SIG" + string(sig), Reason: reason, Sessions: sessions}
	switch sig {
	case SigStop:
		r.pauses++
	default:
		r.kills++
	}
	if sig == SigKill {
		r.inDoubt += len(sessions)
		ev.InDoubt = len(sessions)
	}
	for _, p := range targets {
		ev.PIDs = append(ev.PIDs, p.pid)
		if sig != SigStop {
			p.signalled = true
		} else {
			p.paused = true
		}
	}
	r.mu.Unlock()
	r.cm.signal(sig)
	r.cm.doubt("kill", ev.InDoubt)
	r.hist.add(ev) // recorded before acting on it
	for _, p := range targets {
		p.signal(sig.sys())
		switch sig {
		case SigTerm:
			go r.escalate(p)
		case SigStop:
			go r.resume(p)
		}
	}
	if wait && sig == SigKill {
		for _, p := range targets {
			select {
			case <-p.done:
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
	sessions := r.srv.Sessions()
	r.inDoubt += len(sessions)
	r.mu.Unlock()
	r.cm.doubt("kill", len(sessions))
	r.hist.add(Event{Type: "signal", Signal: "SIGKILL", PIDs: []int{p.pid}, Reason: "grace of " + r.cfg.Grace.String() + " over after SIGTERM", Sessions: sessions, InDoubt: len(sessions)})
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
	r.hist.add(Event{Type: "signal", Signal: "SIGCONT", PIDs: []int{p.pid}, Reason: "pause of " + r.cfg.Pause.String() + " over"})
	p.signal(syscall.SIGCONT)
}

// supervise is the job runner: it starts the instances, restarts them after
// kills and failures, and ends the run. It returns how the run ended.
func (r *run) supervise(ctx context.Context) (string, error) {
	timeout := time.NewTimer(r.cfg.Timeout)
	defer timeout.Stop()
	stagger := make(chan int, r.cfg.Instances)
	pendingStarts := r.cfg.Instances
	for k := 1; k <= r.cfg.Instances; k++ {
		if k == 1 || r.cfg.Stagger == 0 {
			stagger <- k
			continue
		}
		time.AfterFunc(time.Duration(k-1)*r.cfg.Stagger, func() { stagger <- k })
	}
	stopProgress := r.progress()
	defer stopProgress()

	failures, completed := 0, false
	running := 0
	ended := ""
	// abort ends a run the harness cannot carry on: no sender may outlive it.
	abort := func(err error) (string, error) {
		r.stopAll()
		for running > 0 {
			r.reaped(<-r.exits)
			running--
		}
		return "", err
	}
	for ended == "" || running > 0 {
		select {
		case k := <-stagger:
			pendingStarts--
			if ended != "" {
				continue
			}
			if err := r.launch(ctx, k); err != nil {
				return abort(err)
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
				ended = "interrupted"
				r.stopAll()
			}
			switch {
			case ended != "":
			case signalled:
				r.mu.Lock()
				r.restarts++
				r.mu.Unlock()
				r.cm.restart(true)
				if err := r.launch(ctx, p.instance); err != nil {
					return abort(err)
				}
				running++
			case p.exit.Code == 0 && p.exit.Err == "":
				completed = true
			case failures < r.cfg.Retries:
				failures++
				r.mu.Lock()
				r.restarts++
				r.mu.Unlock()
				r.cm.restart(false)
				if err := r.launch(ctx, p.instance); err != nil {
					return abort(err)
				}
				running++
			}
			if ended == "" && running == 0 && pendingStarts == 0 {
				if completed {
					ended = "completed"
				} else {
					ended = fmt.Sprintf("retries exhausted (%d restarts after failures)", failures)
				}
			}
		case why := <-r.killReq:
			if ended == "" {
				r.hit(why, false)
			}
		case <-timeout.C:
			if ended == "" {
				ended = "timeout after " + r.cfg.Timeout.String()
				r.stopAll()
			}
		case <-ctx.Done():
			if ended == "" {
				ended = "interrupted"
				r.stopAll()
			}
		}
	}
	return ended, nil
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
	env := append(slices.Clip(r.env), "ONECOPY_ATTEMPT="+strconv.Itoa(attempt), "ONECOPY_INSTANCE="+strconv.Itoa(k))
	out := newTail(20, logf)
	p, err := startProc(ctx, r.cfg.Command, env, out, r.wd)
	if err != nil {
		logf.Close()
		r.hist.add(Event{Type: "start", Instance: k, Attempt: attempt, Reason: err.Error()})
		return fmt.Errorf("starting the sender %q: %w (check the command and that it is executable)", r.cfg.Command[0], err)
	}
	p.instance, p.attempt = k, attempt
	r.mu.Lock()
	r.live[k] = p
	r.procs = append(r.procs, p)
	r.mu.Unlock()
	r.hist.add(Event{Type: "start", Instance: k, Attempt: attempt, PIDs: []int{p.pid}})
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
	ev := Event{Type: "exit", Instance: p.instance, Attempt: p.attempt, PIDs: []int{p.pid}, Reason: p.exit.String()}
	code := p.exit.Code
	ev.Code = &code
	r.hist.add(ev)
}

// stopAll kills every sender group at the end of a run.
func (r *run) stopAll() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, p := range r.live {
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
	draw := func() {
		r.mu.Lock()
		cov, kills, pauses, restarts := r.coverage, r.kills, r.pauses, r.restarts
		r.mu.Unlock()
		fmt.Fprintf(r.cfg.Progress, "\r\x1b[K%d/%d recipients have a copy · %d copies · %d kills · %d pauses · %d restarts · %s",
			cov, len(r.expected), r.copies.Load(), kills, pauses, restarts, time.Since(r.start).Round(100*time.Millisecond))
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
