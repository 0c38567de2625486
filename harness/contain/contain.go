// Package contain runs each attempt of a sender so that every process it
// starts, whatever process group or session it moves to, is signalled,
// paused and killed with it, and none outlives the attempt, its Supervisor,
// or the supervising process itself, even when that one is SIGKILLed.
//
// A Supervisor works in one of three modes, chosen when it is made, best
// first: CgroupV2 (an attempt is a cgroup v2 directory, killed with
// cgroup.kill and paused with cgroup.freeze), CgroupV1 (a directory of the
// v1 freezer hierarchy) and Subreaper (no privileges: onecopy becomes the
// child subreaper and tracks each attempt's process tree). Mode says which
// is in force; docs/containment.md says what each guarantees.
//
// Each Supervisor keeps a small /bin/sh watchdog in its own process group:
// if the supervising process dies without Close, the watchdog kills
// everything still contained and removes the cgroups.
package contain

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Mode is a way of containing attempts.
type Mode string

const (
	CgroupV2  Mode = "cgroup-v2" // a cgroup v2 directory per attempt
	CgroupV1  Mode = "cgroup-v1" // a v1 freezer cgroup per attempt
	Subreaper Mode = "subreaper" // process-tree tracking under PR_SET_CHILD_SUBREAPER
)

// Modes lists every mode, best first: the order New tries them in.
func Modes() []Mode { return []Mode{CgroupV2, CgroupV1, Subreaper} }

// EnvID is the variable set in every attempt's environment: the attempt's
// id, inherited by whatever it starts. Subreaper mode attributes orphans by
// it, and every watchdog sweeps /proc for it once the supervising process
// is gone.
const EnvID = "ONECOPY_CONTAIN_ID"

var (
	// ErrDone is returned by Signal and Freeze once the attempt has ended.
	ErrDone = errors.New("contain: the attempt has ended")
	// ErrClosed is returned by Start once Close has been called.
	ErrClosed = errors.New("contain: supervisor closed")
)

// Options configure New.
type Options struct {
	// Mode forces a mode; "" takes the best available here.
	Mode Mode
	// Logger gets the mode chosen, why better ones were unavailable, and
	// what went wrong in the background; nil discards.
	Logger *slog.Logger
}

// Spec is what to start.
type Spec struct {
	Argv []string
	Env  []string // nil: this process's environment; EnvID is added
	Dir  string
	// Stdout and Stderr get the output of the whole attempt; nil discards.
	// Any writer other than an *os.File is fed from a pipe that the
	// attempt's end closes, so a daemon that kept the pipe cannot delay the
	// end, nor turn an exit 0 into an error.
	Stdout, Stderr io.Writer
}

// Supervisor starts and contains attempts. Its methods are safe for
// concurrent use.
type Supervisor struct {
	mode Mode
	log  *slog.Logger
	be   backend
	wd   *watchdog
	id   string // <pid>-<random>: names the cgroup parent, prefixes EnvID values

	ctx    context.Context // cancelled by Close: kills whatever is left
	cancel context.CancelFunc
	pidfds bool // pidfd_open works: leaders get a pidfd of their own

	mu     sync.Mutex
	n      int
	closed bool
	live   sync.WaitGroup
}

// backend is one mode. Methods on an attempt are called after prepare and
// before release; start runs on the attempt's locked OS thread.
type backend interface {
	// prepare makes what the attempt lives in, before it starts.
	prepare(a *Attempt) error
	// start starts cmd inside the attempt. keepThread false means the
	// thread's state could not be restored: the caller must let it die.
	start(a *Attempt, cmd *exec.Cmd) (keepThread bool, err error)
	// kill sends SIGKILL to every process of the attempt until none is left
	// that did not get it; with wait, until none is left at all.
	kill(a *Attempt, wait bool) error
	// signal sends sig (not SIGKILL) to every process of the attempt.
	signal(a *Attempt, sig syscall.Signal) error
	freeze(ctx context.Context, a *Attempt) error
	thaw(a *Attempt) error
	// pids lists the live processes of the attempt.
	pids(a *Attempt) ([]int, error)
	// release removes what prepare made, once nothing is left.
	release(a *Attempt)
	// watchdogArgs are the watchdog script's mode and directory.
	watchdogArgs() (mode, dir string)
	// setWatchdog hands the backend the watchdog (subreaper tells it pids).
	setWatchdog(wd *watchdog)
	// close removes what the backend made, once every attempt is released.
	close() error
}

// New makes a Supervisor in opts.Mode, or in the best mode available.
func New(opts Options) (*Supervisor, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	modes := Modes()
	if opts.Mode != "" {
		if !valid(opts.Mode) {
			return nil, fmt.Errorf("contain: unknown mode %q (want %s)", opts.Mode, modeList())
		}
		modes = []Mode{opts.Mode}
	}
	id, err := newID()
	if err != nil {
		return nil, err
	}
	s := &Supervisor{log: log, id: id}
	var errs []error
	for _, m := range modes {
		be, err := openBackend(m, id, log)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", m, err))
			if opts.Mode == "" {
				log.Info("containment mode unavailable, trying the next", "mode", m, "err", err)
			}
			continue
		}
		s.mode, s.be = m, be
		break
	}
	if s.be == nil {
		return nil, fmt.Errorf("contain: no containment mode works here: %w", errors.Join(errs...))
	}
	mode, dir := s.be.watchdogArgs()
	if s.wd, err = startWatchdog(mode, dir, id); err != nil {
		s.be.close()
		return nil, err
	}
	s.be.setWatchdog(s.wd)
	if fd, err := unix.PidfdOpen(os.Getpid(), 0); err == nil {
		unix.Close(fd)
		s.pidfds = true
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	log.Info("containment", "mode", s.mode, "id", id)
	return s, nil
}

// Probe says whether mode m works here: nil, or why not. It leaves nothing
// behind.
func Probe(m Mode) error {
	if !valid(m) {
		return fmt.Errorf("contain: unknown mode %q (want %s)", m, modeList())
	}
	id, err := newID()
	if err != nil {
		return err
	}
	if m == Subreaper {
		// Only a read: setting the flag here could race a New in another
		// goroutine. A kernel that has the one has the other (Linux 3.4).
		if _, err := subreaperSet(); err != nil {
			return fmt.Errorf("prctl(PR_GET_CHILD_SUBREAPER): %w", err)
		}
		return nil
	}
	be, err := openBackend(m, id, slog.New(slog.DiscardHandler))
	if err != nil {
		return err
	}
	return be.close()
}

func openBackend(m Mode, id string, log *slog.Logger) (backend, error) {
	switch m {
	case CgroupV2:
		return openCgroup2(id, log)
	case CgroupV1:
		return openCgroup1(id, log)
	default:
		return openSubreaper(id, log)
	}
}

func valid(m Mode) bool {
	for _, x := range Modes() {
		if m == x {
			return true
		}
	}
	return false
}

func modeList() string {
	var s []string
	for _, m := range Modes() {
		s = append(s, string(m))
	}
	return strings.Join(s, ", ")
}

func newID() (string, error) {
	b := make([]byte, 4)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return strconv.Itoa(os.Getpid()) + "-" + hex.EncodeToString(b), nil
}

// Mode is the mode in force.
func (s *Supervisor) Mode() Mode { return s.mode }

// Close kills every attempt still running, waits until each has ended,
// removes the cgroups and dismisses the watchdog. Start fails after Close.
func (s *Supervisor) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.cancel() // every attempt watches s.ctx: SIGKILL
	s.live.Wait()
	err := s.be.close()
	s.wd.stop()
	return err
}

// Attempt is one start of a sender: its leader and everything it started.
type Attempt struct {
	s     *Supervisor
	n     int
	id    string // the EnvID value
	argv0 string

	pid   int // the leader; set before Start returns
	pidfd int // ours, -1 if none
	began time.Time

	// Backend state: the cgroup of the attempt (cgroup modes).
	dir   string // the attempt's cgroup directory
	rel   string // its path as /proc/PID/cgroup shows it
	dirfd int    // open on dir, for CLONE_INTO_CGROUP (cgroup-v2)

	done chan struct{}

	mu    sync.Mutex
	ended bool // the leader exited: the rest is being killed
	exit  Exit
}

// Exit is how an attempt's leader ended.
type Exit struct {
	Code     int            // the exit code; -1 when a signal killed it
	Signal   syscall.Signal // the signal that killed it, 0 if it exited
	Duration time.Duration  // from its start to its exit
	Err      error          // a problem waiting for it, never its exit status
}

func (e Exit) String() string {
	switch {
	case e.Err != nil:
		return e.Err.Error()
	case e.Signal != 0:
		return "killed by " + signalName(e.Signal)
	}
	return "exit " + strconv.Itoa(e.Code)
}

// Member is a live process of an attempt.
type Member struct {
	Pid  int
	Argv []string // its command line; [comm] when it has none
}

func (m Member) String() string { return strconv.Itoa(m.Pid) + " " + strings.Join(m.Argv, " ") }

// Start starts spec.Argv as a new attempt and returns once it runs. The
// leader gets its own process group and Pdeathsig SIGKILL. When ctx is done
// the whole attempt is killed. When the leader exits, whatever it left is
// killed, and the attempt is Done once no process of it is left.
func (s *Supervisor) Start(ctx context.Context, spec Spec) (*Attempt, error) {
	if len(spec.Argv) == 0 {
		return nil, errors.New("contain: empty command")
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil, ErrClosed
	}
	s.n++
	a := &Attempt{s: s, n: s.n, id: s.id + "." + strconv.Itoa(s.n), argv0: spec.Argv[0], pidfd: -1, dirfd: -1, done: make(chan struct{})}
	s.live.Add(1)
	s.mu.Unlock()

	if err := s.be.prepare(a); err != nil {
		s.live.Done()
		return nil, fmt.Errorf("contain: %w", err)
	}
	out, err := newOutputs(spec.Stdout, spec.Stderr)
	if err != nil {
		s.be.release(a)
		s.live.Done()
		return nil, fmt.Errorf("contain: %w", err)
	}
	cmd := exec.Command(spec.Argv[0], spec.Argv[1:]...)
	env := spec.Env
	if env == nil {
		env = os.Environ()
	}
	cmd.Env = append(env[:len(env):len(env)], EnvID+"="+a.id)
	cmd.Dir = spec.Dir
	cmd.Stdout, cmd.Stderr = out.stdout, out.stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if s.pidfds {
		cmd.SysProcAttr.PidFD = &a.pidfd
	}
	started := make(chan error, 1)
	go a.run(cmd, out, started)
	if err := <-started; err != nil {
		return nil, err
	}
	stop1 := context.AfterFunc(ctx, a.cancelled)
	stop2 := context.AfterFunc(s.ctx, a.cancelled)
	go func() {
		<-a.done
		stop1()
		stop2()
	}()
	return a, nil
}

func (a *Attempt) cancelled() {
	if err := a.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, ErrDone) {
		a.s.log.Warn("killing a cancelled attempt", "attempt", a.id, "err", err)
	}
}

// run starts the leader and follows the attempt to its end, on one locked
// OS thread: Pdeathsig is delivered when the thread that forked the leader
// ends, so the thread must outlive the leader.
func (a *Attempt) run(cmd *exec.Cmd, out *outputs, started chan<- error) {
	s := a.s
	defer s.live.Done()
	runtime.LockOSThread()
	keep, err := s.be.start(a, cmd)
	if keep {
		defer runtime.UnlockOSThread()
	} // else the thread ends with this goroutine
	out.closeChildEnds()
	if err != nil {
		out.abandon()
		s.be.release(a)
		close(a.done)
		started <- fmt.Errorf("contain: starting %q: %w", a.argv0, err)
		return
	}
	a.pid, a.began = cmd.Process.Pid, time.Now()
	started <- nil

	// Wait for the leader without reaping it: its pid, and so its process
	// group id, cannot be reused while we kill what it left behind.
	var info unix.Siginfo
	for {
		var err error
		if a.pidfd >= 0 {
			err = unix.Waitid(unix.P_PIDFD, a.pidfd, &info, unix.WEXITED|unix.WNOWAIT, nil)
		} else {
			err = unix.Waitid(unix.P_PID, a.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		}
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	dur := time.Since(a.began)
	a.mu.Lock()
	a.ended = true
	a.mu.Unlock()
	if err := s.be.kill(a, true); err != nil {
		s.log.Warn("killing what the leader left", "attempt", a.id, "err", err)
	}
	werr := cmd.Wait()
	out.wait(s.log, a.id)
	s.be.release(a)
	if a.pidfd >= 0 {
		unix.Close(a.pidfd)
	}
	a.mu.Lock()
	a.exit = exitOf(cmd, werr, dur)
	a.mu.Unlock()
	close(a.done)
}

func exitOf(cmd *exec.Cmd, err error, dur time.Duration) Exit {
	e := Exit{Code: -1, Duration: dur}
	if cmd.ProcessState == nil {
		e.Err = err
		return e
	}
	e.Code = cmd.ProcessState.ExitCode()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		e.Signal = ws.Signal()
	}
	// No I/O goroutine belongs to cmd (see outputs), so an error here is a
	// wait problem; an exit status is not one.
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		e.Err = err
	}
	return e
}

// Pid is the leader's pid.
func (a *Attempt) Pid() int { return a.pid }

// Done is closed once the leader has exited and no process of the attempt
// is left.
func (a *Attempt) Done() <-chan struct{} { return a.done }

// Exit is how the leader ended; the zero Exit until Done is closed.
func (a *Attempt) Exit() Exit {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.exit
}

func (a *Attempt) isDone() bool {
	select {
	case <-a.done:
		return true
	default:
		return false
	}
}

// Signal sends sig to every process of the attempt, whatever its process
// group or session. SIGKILL returns once every process that can still run
// has been sent it (cgroup-v2: one write to cgroup.kill); the attempt is
// Done a moment later.
func (a *Attempt) Signal(sig syscall.Signal) error {
	if a.isDone() {
		return ErrDone
	}
	if sig == syscall.SIGKILL {
		return a.s.be.kill(a, false)
	}
	return a.s.be.signal(a, sig)
}

// Freeze pauses every process of the attempt and returns once all are
// paused (cgroup modes: atomically, by the freezer; subreaper: SIGSTOP to
// each, not atomic), or ctx is done.
func (a *Attempt) Freeze(ctx context.Context) error {
	a.mu.Lock()
	ended := a.ended
	a.mu.Unlock()
	if ended || a.isDone() {
		return ErrDone
	}
	return a.s.be.freeze(ctx, a)
}

// Thaw resumes what Freeze paused.
func (a *Attempt) Thaw() error {
	if a.isDone() {
		return nil
	}
	return a.s.be.thaw(a)
}

// Members lists the live processes of the attempt, the leader included
// while it runs.
func (a *Attempt) Members() []Member {
	if a.isDone() {
		return nil
	}
	pids, err := a.s.be.pids(a)
	if err != nil {
		a.s.log.Warn("listing an attempt's processes", "attempt", a.id, "err", err)
	}
	var ms []Member
	for _, pid := range pids {
		if argv := cmdline(pid); argv != nil {
			ms = append(ms, Member{Pid: pid, Argv: argv})
		}
	}
	return ms
}

// signalEach sends sig once to every process list() returns, listing again
// until a listing shows none that did not get it (a fork between the list
// and the signal), for a few rounds: a fork bomb must not keep Signal busy.
func signalEach(sig syscall.Signal, list func() ([]int, error), ours func(int) bool) error {
	sent := map[procKey]bool{}
	for round := 0; round < 8; round++ {
		pids, err := list()
		if err != nil {
			return err
		}
		n := 0
		for _, pid := range pids {
			k := procKey{pid, startTime(pid)}
			if k.start == 0 || sent[k] {
				continue
			}
			sent[k] = true
			n++
			if err := signalIf(pid, sig, ours); err != nil {
				return err
			}
		}
		if n == 0 {
			return nil
		}
	}
	return nil
}

func signalName(s syscall.Signal) string {
	if name := unix.SignalName(s); name != "" {
		return name
	}
	return "signal " + strconv.Itoa(int(s))
}

// backoff sleeps a little longer each time, up to 10ms: waiting for the
// kernel to finish something no file can be polled for.
type backoff struct{ d time.Duration }

func (b *backoff) wait(ctx context.Context) error {
	if b.d == 0 {
		b.d = 250 * time.Microsecond
	} else if b.d < 10*time.Millisecond {
		b.d *= 2
	}
	t := time.NewTimer(b.d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
