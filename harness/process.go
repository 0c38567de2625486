// Sender processes: each attempt is started by the containment supervisor
// (package contain, docs/containment.md), which holds every process the
// attempt starts, whatever group or session it moves to: a kill or a pause
// reaches all of them, an attempt ends only when none is left, and nothing
// outlives the run, even a SIGKILL of onecopy.

package harness

import (
	"bytes"
	"context"
	"io"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/procfs"

	"github.com/onecopy/onecopy/harness/contain"
	"github.com/onecopy/onecopy/history"
)

// proc is one attempt of one sender instance.
type proc struct {
	instance, attempt int
	pid               int
	a                 *contain.Attempt
	out               *tail
	done              <-chan struct{} // closed once no process of the attempt is left
	exit              exitStatus      // valid after done

	// Set by the run under its mutex.
	signalled bool   // a scheduled KILL or TERM hit it: restart, not a failure
	hitBy     Signal // the signal that did
	escalated bool   // its TERM's grace ran out: it was SIGKILLed
	paused    bool
	chaos     *history.Chaos // the last signal or fault it met
	escaped   []string       // what of it outlived a kill
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

// startProc starts argv as an attempt and returns once it runs (or failed
// to start). exit is filled in before done is closed.
func startProc(ctx context.Context, sup *contain.Supervisor, argv, env []string, out *tail) (*proc, error) {
	a, err := sup.Start(ctx, contain.Spec{Argv: argv, Env: env, Stdout: out, Stderr: out})
	if err != nil {
		return nil, err
	}
	done := make(chan struct{})
	p := &proc{pid: a.Pid(), a: a, out: out, done: done}
	go func() {
		<-a.Done()
		e := a.Exit()
		p.exit = exitStatus{Code: e.Code, Duration: e.Duration}
		if e.Signal != 0 {
			p.exit.Signal = "SIG" + signalName(e.Signal)
		}
		if e.Err != nil {
			p.exit.Err = e.Err.Error()
		}
		close(done)
	}()
	return p, nil
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

// signal sends sig to every process of the attempt, if it still runs: a
// STOP freezes the whole attempt, a CONT thaws it.
func (p *proc) signal(sig syscall.Signal) bool {
	var err error
	switch sig {
	case syscall.SIGSTOP:
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err = p.a.Freeze(ctx)
		cancel()
	case syscall.SIGCONT:
		err = p.a.Thaw()
	default:
		err = p.a.Signal(sig)
	}
	return err == nil
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

// members are the live processes of the attempt, its leader first.
func (p *proc) members() []int {
	pids := []int{p.pid}
	for _, m := range p.a.Members() {
		if m.Pid != p.pid {
			pids = append(pids, m.Pid)
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
