// Sender processes: each in its own process group, started from a goroutine
// locked to its OS thread (Pdeathsig follows the thread, not the process),
// reaped exactly once, with the whole group killed when the leader exits
// and a watchdog that kills every group if the harness itself dies.

package harness

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"

	"github.com/onecopy/onecopy/history"
)

// proc is one attempt of one sender instance.
type proc struct {
	instance, attempt int
	pid               int
	started           time.Time
	out               *tail
	done              chan struct{} // closed once the process is reaped
	exit              exitStatus    // valid after done

	// Set by the run under its mutex.
	signalled bool   // a scheduled KILL or TERM hit it: restart, not a failure
	hitBy     Signal // the signal that did
	escalated bool   // its TERM's grace ran out: it was SIGKILLed
	paused    bool
	chaos     *history.Chaos // the last signal or fault it met
}

type exitStatus struct {
	Code     int    // -1 when killed by a signal
	Signal   string // the signal that killed it, if any
	Err      string // start or wait problems
	Duration time.Duration
}

// ok reports whether the attempt completed: exit 0, no problem waiting.
func (e exitStatus) ok() bool { return e.Code == 0 && e.Signal == "" && e.Err == "" }

func (e exitStatus) String() string {
	switch {
	case e.Err != "":
		return e.Err
	case e.Signal != "":
		return "killed by " + e.Signal
	}
	return "exit " + strconv.Itoa(e.Code)
}

// startProc starts argv and returns once it runs (or failed to start). The
// process is reaped in the background; done is closed after that.
func startProc(ctx context.Context, argv, env []string, out *tail, wd *watchdog) (*proc, error) {
	p := &proc{out: out, done: make(chan struct{})}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig is delivered when the thread that forked the child ends:
		// keep this goroutine on its thread until the child is reaped.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		defer close(p.done)
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Env = env
		cmd.Stdout, cmd.Stderr = out, out
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
		cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
		cmd.WaitDelay = 2 * time.Second // a grandchild holding our pipes cannot hang Wait
		if err := cmd.Start(); err != nil {
			p.exit = exitStatus{Code: -1, Err: fmt.Sprintf("starting %q: %v", argv[0], err)}
			started <- err
			return
		}
		p.pid, p.started = cmd.Process.Pid, time.Now()
		wd.add(p.pid)
		started <- nil
		// Wait without reaping, so the group id cannot be reused while we
		// kill what the leader left behind; then reap.
		for {
			var info unix.Siginfo
			err := unix.Waitid(unix.P_PID, p.pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
			if !errors.Is(err, syscall.EINTR) {
				break
			}
		}
		syscall.Kill(-p.pid, syscall.SIGKILL)
		err := cmd.Wait()
		wd.remove(p.pid)
		p.exit = status(cmd, err)
		p.exit.Duration = time.Since(p.started)
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return p, nil
}

func status(cmd *exec.Cmd, err error) exitStatus {
	st := exitStatus{Code: cmd.ProcessState.ExitCode()}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		st.Signal = "SIG" + signalName(ws.Signal())
	}
	if err != nil && !errors.As(err, new(*exec.ExitError)) {
		st.Err = err.Error() // e.g. exec.ErrWaitDelay: a grandchild kept the pipes open
	}
	return st
}

func signalName(s syscall.Signal) string {
	switch s {
	case syscall.SIGKILL:
		return "KILL"
	case syscall.SIGTERM:
		return "TERM"
	case syscall.SIGINT:
		return "INT"
	case syscall.SIGSEGV:
		return "SEGV"
	case syscall.SIGABRT:
		return "ABRT"
	case syscall.SIGPIPE:
		return "PIPE"
	}
	return strconv.Itoa(int(s))
}

// signal sends sig to the process group, if it still runs.
func (p *proc) signal(sig syscall.Signal) bool {
	select {
	case <-p.done:
		return false
	default:
	}
	return syscall.Kill(-p.pid, sig) == nil
}

// outlives waits d and reports whether the process is still there then.
func (p *proc) outlives(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-p.done:
		return false
	case <-t.C:
		return true
	}
}

// gone reports whether the attempt's leader has exited, reaped or not
// (a zombie is gone too).
func (p *proc) gone() bool {
	if !p.running() {
		return true
	}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return false
	}
	proc, err := fs.Proc(p.pid)
	if err != nil {
		return true
	}
	st, err := proc.Stat()
	return err != nil || st.State == "Z"
}

// members are the processes of the attempt: its leader, then the rest of
// its process group.
func (p *proc) members(fs procfs.FS) []int {
	pids := []int{p.pid}
	all, err := fs.AllProcs()
	if err != nil {
		return pids
	}
	for _, q := range all {
		if q.PID == p.pid {
			continue
		}
		if st, err := q.Stat(); err == nil && st.PGRP == p.pid {
			pids = append(pids, q.PID)
		}
	}
	return pids
}

func (p *proc) running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// tail keeps the last lines a process wrote, and copies everything to an
// optional log file, without ever blocking the writer for long.
type tail struct {
	mu    sync.Mutex
	lines []string
	part  []byte
	max   int
	log   io.Writer
}

func newTail(max int, log io.Writer) *tail { return &tail{max: max, log: log} }

func (t *tail) Write(b []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.log != nil {
		t.log.Write(b)
	}
	data := append(t.part, b...)
	for {
		i := bytes.IndexByte(data, '\n')
		if i < 0 {
			break
		}
		t.push(string(data[:i]))
		data = data[i+1:]
	}
	if len(data) > 4096 { // a line without end: keep its start
		t.push(string(data[:4096]) + "…")
		data = nil
	}
	t.part = append([]byte(nil), data...)
	return len(b), nil
}

func (t *tail) push(line string) {
	if len(t.lines) == t.max {
		copy(t.lines, t.lines[1:])
		t.lines = t.lines[:t.max-1]
	}
	t.lines = append(t.lines, line)
}

// Lines returns the last lines written.
func (t *tail) Lines() []string {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := append([]string(nil), t.lines...)
	if len(t.part) > 0 {
		out = append(out, string(t.part))
	}
	return out
}

// watchdog is a tiny shell process that outlives the harness by design: it
// learns every sender's process group on its stdin and, when stdin closes
// without a "done" (the harness was killed, even by SIGKILL), kills them all.
// The kill is spelled "kill -s KILL -- -PGID": dash (Debian's /bin/sh)
// rejects "kill -KILL -- -PGID" with "Illegal number", which left every
// group alive; the -s form works in dash, bash and busybox alike.
type watchdog struct {
	mu  sync.Mutex
	w   io.WriteCloser
	bw  *bufio.Writer
	cmd *exec.Cmd
}

const watchdogScript = `trap '' INT TERM HUP
g=""
while read -r op p; do
  case "$op" in
    +) g="$g $p" ;;
    -) n=""; for x in $g; do [ "$x" = "$p" ] || n="$n $x"; done; g="$n" ;;
    done) exit 0 ;;
  esac
done
for x in $g; do kill -s KILL -- "-$x" 2>/dev/null; done`

func startWatchdog() (*watchdog, error) {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting the process watchdog (/bin/sh): %w", err)
	}
	return &watchdog{w: w, bw: bufio.NewWriter(w), cmd: cmd}, nil
}

func (wd *watchdog) send(line string) {
	if wd == nil {
		return
	}
	wd.mu.Lock()
	defer wd.mu.Unlock()
	wd.bw.WriteString(line)
	wd.bw.Flush()
}

func (wd *watchdog) add(pgid int)    { wd.send("+ " + strconv.Itoa(pgid) + "\n") }
func (wd *watchdog) remove(pgid int) { wd.send("- " + strconv.Itoa(pgid) + "\n") }

// stop dismisses the watchdog after every group has been reaped.
func (wd *watchdog) stop() {
	if wd == nil {
		return
	}
	wd.send("done\n")
	wd.w.Close()
	wd.cmd.Wait()
}
