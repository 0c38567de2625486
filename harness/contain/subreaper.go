package contain

// subreaper: no privileges, any Linux. This process sets
// PR_SET_CHILD_SUBREAPER, so whatever an attempt orphans (a double fork, a
// daemon's exiting parent) is reparented to us instead of to init, and each
// attempt is tracked as a set of processes, each named by pid and start
// time so that a reused pid is never taken for a member:
//
//   - the leader, and every descendant of a member (parent links in /proc);
//   - a process reparented to us that carries the attempt's EnvID value;
//   - a process reparented to us without it (a daemon that cleared its
//     environment), attributed to every attempt running when it started.
//
// A subreaper must reap the orphans it inherits, but must not reap a child
// that os/exec will Wait for: that would steal its exit status. os/exec
// (Go >= 1.23, Linux >= 5.4) holds a pidfd for each child until Wait has
// reaped it, so a zombie child of ours that no pidfd of ours names is an
// orphan nobody waits for, and only those are reaped. Where Go holds no
// pidfds, only orphans already attributed to an attempt are reaped.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// scanEvery is how often a Supervisor with a running attempt rescans /proc
// on its own: to tell the watchdog of new members and to reap orphans that
// died. Signal, Freeze, Members and every SIGCHLD scan at once.
const scanEvery = 100 * time.Millisecond

// suspectFor is how long a child of ours with neither EnvID nor a pidfd
// must stay so before it is taken for an orphan: a child os/exec starts is
// listed in /proc a few microseconds before its pidfd is installed.
const suspectFor = time.Millisecond

type subreaper struct {
	log    *slog.Logger
	id     string // the Supervisor's id: our attempts' EnvID values start with id + "."
	self   int
	pidfds bool // os/exec holds a pidfd for each child it will wait for

	// The outside world, replaced in tests.
	envOf func(pid int) string
	held  func() (map[int]bool, error)
	reap  func(pid int)

	mu      sync.Mutex
	wd      *watchdog
	trees   map[string]*tree // by attempt id
	foreign map[procKey]bool // children of ours that are not ours to track
	suspect map[procKey]time.Time
	buf     []byte

	sigs chan os.Signal
	stop chan struct{}
	wg   sync.WaitGroup
}

// tree is one attempt's processes.
type tree struct {
	leader  procKey
	members map[int]*member
}

type member struct {
	start  uint64
	killed bool // SIGKILL sent
}

func openSubreaper(id string, log *slog.Logger) (*subreaper, error) {
	if err := subreaperFlag.hold(); err != nil {
		return nil, err
	}
	r := newSubreaper(id, log)
	r.pidfds = goHoldsPidfds()
	if !r.pidfds {
		log.Info("os/exec holds no pidfds here: only orphans attributed to an attempt are reaped")
	}
	r.sigs = make(chan os.Signal, 1)
	signal.Notify(r.sigs, syscall.SIGCHLD)
	r.wg.Add(1)
	go r.loop()
	return r, nil
}

func newSubreaper(id string, log *slog.Logger) *subreaper {
	return &subreaper{
		log: log, id: id, self: os.Getpid(),
		envOf: func(pid int) string { return envValue(pid, EnvID) },
		held:  heldPidfds,
		reap: func(pid int) {
			var ws unix.WaitStatus
			unix.Wait4(pid, &ws, unix.WNOHANG, nil)
		},
		trees:   map[string]*tree{},
		foreign: map[procKey]bool{},
		suspect: map[procKey]time.Time{},
		buf:     make([]byte, 1024),
		stop:    make(chan struct{}),
	}
}

// subreaperSet says whether this process is a child subreaper now.
func subreaperSet() (bool, error) {
	var v int32
	err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(&v)), 0, 0, 0)
	return v != 0, err
}

// goHoldsPidfds checks, on a child of its own, that os/exec keeps a pidfd
// for each child it has not waited for yet.
func goHoldsPidfds() bool {
	cmd := exec.Command("/bin/sh", "-c", "read x")
	stdin, err := cmd.StdinPipe()
	if err != nil || cmd.Start() != nil {
		return false
	}
	held, err := heldPidfds()
	stdin.Close()
	cmd.Wait()
	return err == nil && held[cmd.Process.Pid]
}

func (r *subreaper) loop() {
	defer r.wg.Done()
	tick := time.NewTicker(scanEvery)
	defer tick.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-r.sigs:
		case <-tick.C:
			r.mu.Lock()
			idle := len(r.trees) == 0 && len(r.suspect) == 0
			r.mu.Unlock()
			if idle {
				continue
			}
		}
		r.mu.Lock()
		_, err := r.scan()
		r.mu.Unlock()
		if err != nil {
			r.log.Warn("scanning /proc", "err", err)
		}
	}
}

// scan reads /proc and updates every tree; r.mu is held.
func (r *subreaper) scan() (map[int]procInfo, error) {
	procs, err := readProcs(r.buf)
	if err != nil {
		return nil, err
	}
	r.update(procs, time.Now())
	return procs, nil
}

// update brings every tree up to date with procs, a snapshot of /proc
// taken at now, and reaps the orphans that died; r.mu is held.
func (r *subreaper) update(procs map[int]procInfo, now time.Time) {
	var held map[int]bool
	heldRead, heldOK := false, false
	isHeld := func(pid int) bool {
		if !heldRead {
			heldRead = true
			h, err := r.held()
			held, heldOK = h, err == nil
			if err != nil {
				r.log.Warn("listing our pidfds", "err", err)
			}
		}
		return !heldOK || held[pid] // when in doubt, someone waits for it
	}
	children := map[int][]int{}
	for pid, p := range procs {
		children[p.ppid] = append(children[p.ppid], pid)
	}
	owned := map[int]bool{}
	leaders := map[int]bool{}
	for _, t := range r.trees {
		if t.leader.pid != 0 {
			leaders[t.leader.pid] = true
		}
		for pid, m := range t.members {
			if p, ok := procs[pid]; ok && p.start == m.start {
				owned[pid] = true
			}
		}
	}

	// Our children that no tree knows of yet: orphans to attribute or to
	// reap, or children of someone else in this process.
	for _, pid := range children[r.self] {
		p := procs[pid]
		k := procKey{pid, p.start}
		switch {
		case leaders[pid]: // ours: its goroutine waits for it
		case p.dead():
			// Reap it unless someone in this process will Wait for it. A
			// member that is our child is an orphan: we fork only leaders.
			if owned[pid] || r.pidfds && !isHeld(pid) {
				r.reap(pid)
			}
		case owned[pid] || r.foreign[k]:
		default:
			r.classify(k, p, isHeld, now)
		}
	}

	// Walk each tree down from what it knows.
	for _, t := range r.trees {
		var queue []int
		for pid, m := range t.members {
			if p, ok := procs[pid]; !ok || p.start != m.start || p.dead() {
				delete(t.members, pid)
				r.wd.remove(pid, m.start)
				continue
			}
			queue = append(queue, pid)
		}
		for len(queue) > 0 {
			pid := queue[0]
			queue = queue[1:]
			for _, c := range children[pid] {
				cp := procs[c]
				if cp.dead() {
					continue
				}
				if m, ok := t.members[c]; ok && m.start == cp.start {
					continue
				}
				r.add(t, procKey{c, cp.start})
				queue = append(queue, c)
			}
		}
	}

	for k := range r.foreign {
		if p, ok := procs[k.pid]; !ok || p.start != k.start {
			delete(r.foreign, k)
		}
	}
	for k := range r.suspect {
		if p, ok := procs[k.pid]; !ok || p.start != k.start {
			delete(r.suspect, k)
		}
	}
}

// classify decides about a live child of ours that no tree knows of.
func (r *subreaper) classify(k procKey, p procInfo, isHeld func(int) bool, now time.Time) {
	tok := r.envOf(k.pid)
	switch {
	case strings.HasPrefix(tok, r.id+"."):
		if t := r.trees[tok]; t != nil {
			r.add(t, k)
			return
		}
		// Its attempt has ended: it escaped, for a while.
		r.log.Warn("a process of an ended attempt was still running; killing it", "pid", k.pid, "attempt", tok)
		signalIf(k.pid, syscall.SIGKILL, func(pid int) bool { return startTime(pid) == k.start })
	case tok != "":
		r.foreign[k] = true // another Supervisor's
	case !r.pidfds || isHeld(k.pid):
		r.foreign[k] = true // a child someone in this process will Wait for
	default:
		first, seen := r.suspect[k]
		if !seen {
			r.suspect[k] = now
			return
		}
		if now.Sub(first) < suspectFor {
			return
		}
		delete(r.suspect, k)
		// An orphan without our variable: it belongs to whichever attempt
		// ran when it started.
		adopted := false
		for _, t := range r.trees {
			if t.leader.pid != 0 && t.leader.start <= p.start {
				r.add(t, k)
				adopted = true
			}
		}
		if !adopted {
			r.foreign[k] = true
		}
	}
}

func (r *subreaper) add(t *tree, k procKey) {
	t.members[k.pid] = &member{start: k.start}
	r.wd.add(k.pid, k.start)
}

// live is the attempt's live members after a fresh scan, and whether some
// child of ours is still being classified (it may be one more); r.mu is
// held.
func (r *subreaper) live(a *Attempt) ([]procKey, map[int]procInfo, bool, error) {
	procs, err := r.scan()
	if err != nil {
		return nil, nil, false, err
	}
	t := r.trees[a.id]
	if t == nil {
		return nil, procs, false, nil
	}
	ks := make([]procKey, 0, len(t.members))
	for pid, m := range t.members {
		ks = append(ks, procKey{pid, m.start})
	}
	return ks, procs, len(r.suspect) > 0, nil
}

func (r *subreaper) prepare(a *Attempt) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.trees[a.id] = &tree{members: map[int]*member{}}
	return nil
}

// start holds r.mu across the fork: no scan may see the leader before its
// tree names it, or reap it as an orphan.
func (r *subreaper) start(a *Attempt, cmd *exec.Cmd) (bool, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := cmd.Start(); err != nil {
		return true, err
	}
	k := procKey{cmd.Process.Pid, startTime(cmd.Process.Pid)}
	t := r.trees[a.id]
	t.leader = k
	r.add(t, k)
	return true, nil
}

func (r *subreaper) kill(a *Attempt, wait bool) error {
	var b backoff
	for {
		r.mu.Lock()
		ks, _, pending, err := r.live(a)
		if err != nil {
			r.mu.Unlock()
			return err
		}
		sent := 0
		if t := r.trees[a.id]; t != nil {
			for _, k := range ks {
				m := t.members[k.pid]
				if m.killed {
					continue
				}
				m.killed = true
				sent++
				if err := signalIf(k.pid, syscall.SIGKILL, isStill(k)); err != nil {
					r.log.Warn("SIGKILL", "pid", k.pid, "err", err)
				}
			}
		}
		r.mu.Unlock()
		// SIGKILL is absorbing: a process that got it forks no more. Done
		// when a scan finds no member that did not get it (or, waiting,
		// none at all) and no child of ours is left unclassified.
		if !pending && (len(ks) == 0 || !wait && sent == 0) {
			return nil
		}
		b.wait(context.Background())
	}
}

func isStill(k procKey) func(int) bool {
	return func(pid int) bool { return startTime(pid) == k.start }
}

func (r *subreaper) signal(a *Attempt, sig syscall.Signal) error {
	return signalEach(sig, func() ([]int, error) { return r.pids(a) }, func(pid int) bool { return r.owns(a, pid) })
}

// owns says whether pid, as it is now, is a member of a.
func (r *subreaper) owns(a *Attempt, pid int) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t := r.trees[a.id]
	if t == nil {
		return false
	}
	m, ok := t.members[pid]
	return ok && startTime(pid) == m.start
}

// freeze sends SIGSTOP to every member until a scan shows all of them
// stopped: not atomic, a member may fork between a scan and its stop, and
// the next scan stops the child.
func (r *subreaper) freeze(ctx context.Context, a *Attempt) error {
	var b backoff
	for {
		r.mu.Lock()
		ks, procs, pending, err := r.live(a)
		r.mu.Unlock()
		if err != nil {
			return err
		}
		running := 0
		for _, k := range ks {
			if st := procs[k.pid].state; st != 'T' && st != 't' {
				running++
				if err := signalIf(k.pid, syscall.SIGSTOP, isStill(k)); err != nil {
					return err
				}
			}
		}
		if running == 0 && !pending {
			return nil
		}
		if err := b.wait(ctx); err != nil {
			r.thaw(a)
			return err
		}
	}
}

func (r *subreaper) thaw(a *Attempt) error { return r.signal(a, syscall.SIGCONT) }

func (r *subreaper) pids(a *Attempt) ([]int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	ks, _, _, err := r.live(a)
	pids := make([]int, len(ks))
	for i, k := range ks {
		pids[i] = k.pid
	}
	return pids, err
}

func (r *subreaper) release(a *Attempt) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if t := r.trees[a.id]; t != nil {
		for pid, m := range t.members {
			r.wd.remove(pid, m.start)
		}
	}
	delete(r.trees, a.id)
}

func (r *subreaper) watchdogArgs() (string, string) { return string(Subreaper), "" }

func (r *subreaper) setWatchdog(wd *watchdog) {
	r.mu.Lock()
	r.wd = wd
	r.mu.Unlock()
}

// close stops the scans, and puts the subreaper flag back once no other
// subreaper Supervisor of this process needs it.
func (r *subreaper) close() error {
	close(r.stop)
	r.wg.Wait()
	signal.Stop(r.sigs)
	return subreaperFlag.release()
}

// subreaperFlag counts the open subreaper Supervisors. The flag belongs to
// the process, not to a Supervisor, and several may be open at once (a
// gate runs scenarios in parallel): it is set while any is open, and put
// back as the first one found it when the last one closes. This is the
// package's one piece of shared state, because the kernel's is shared.
var subreaperFlag flagCount

type flagCount struct {
	mu    sync.Mutex
	users int
	was   bool
}

func (f *flagCount) hold() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.users == 0 {
		was, err := subreaperSet()
		if err != nil {
			return fmt.Errorf("prctl(PR_GET_CHILD_SUBREAPER): %w", err)
		}
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("prctl(PR_SET_CHILD_SUBREAPER): %w", err)
		}
		f.was = was
	}
	f.users++
	return nil
}

func (f *flagCount) release() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.users--; f.users > 0 || f.was {
		return nil
	}
	return unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
}
