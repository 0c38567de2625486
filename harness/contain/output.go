package contain

// An attempt's output. os/exec copies a non-*os.File Stdout from a pipe and
// Wait waits for that copy: a daemon that keeps the pipe open would hold
// Wait until WaitDelay and turn an exit 0 into exec.ErrWaitDelay. Here the
// pipes are ours: cmd gets *os.File ends (no os/exec goroutine), and the
// copy ends when the attempt's last process is gone, or shortly after.

import (
	"io"
	"log/slog"
	"os"
	"time"
)

// drainGrace bounds the wait for a pipe's EOF once no process of the
// attempt is left: only a process outside the attempt (one the pipe was
// passed to) can still hold it.
const drainGrace = time.Second

type outputs struct {
	stdout, stderr io.Writer // what cmd gets: nil (/dev/null) or an *os.File
	childEnds      []*os.File
	pipes          []*pipe
}

type pipe struct {
	r    *os.File
	done chan struct{}
}

func newOutputs(stdout, stderr io.Writer) (*outputs, error) {
	o := &outputs{}
	var err error
	if o.stdout, err = o.add(stdout); err != nil {
		o.closeChildEnds()
		o.abandon()
		return nil, err
	}
	if sameWriter(stdout, stderr) { // one pipe keeps the two in order
		o.stderr = o.stdout
		return o, nil
	}
	if o.stderr, err = o.add(stderr); err != nil {
		o.closeChildEnds()
		o.abandon()
		return nil, err
	}
	return o, nil
}

func (o *outputs) add(w io.Writer) (io.Writer, error) {
	if w == nil {
		return nil, nil
	}
	if f, ok := w.(*os.File); ok {
		return f, nil
	}
	r, pw, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	p := &pipe{r: r, done: make(chan struct{})}
	go p.copy(w)
	o.childEnds = append(o.childEnds, pw)
	o.pipes = append(o.pipes, p)
	return pw, nil
}

// copy feeds w until EOF. After a write error it keeps reading, and drops
// what it reads: a full pipe would block the sender.
func (p *pipe) copy(w io.Writer) {
	defer close(p.done)
	buf := make([]byte, 32*1024)
	var werr error
	for {
		n, err := p.r.Read(buf)
		if n > 0 && werr == nil {
			_, werr = w.Write(buf[:n])
		}
		if err != nil {
			return
		}
	}
}

// closeChildEnds closes our copy of the ends the attempt writes to: from
// then on, EOF means no process holds them.
func (o *outputs) closeChildEnds() {
	for _, f := range o.childEnds {
		f.Close()
	}
	o.childEnds = nil
}

// wait waits for every copy to reach EOF, for at most drainGrace each.
func (o *outputs) wait(log *slog.Logger, id string) {
	for _, p := range o.pipes {
		t := time.NewTimer(drainGrace)
		select {
		case <-p.done:
		case <-t.C:
			log.Warn("a process outside the attempt still holds its output pipe; no longer reading it", "attempt", id)
		}
		t.Stop()
		p.r.Close() // unblocks the copy if it still reads
		<-p.done
	}
}

// abandon stops every copy at once: the attempt never started.
func (o *outputs) abandon() {
	for _, p := range o.pipes {
		p.r.Close()
		<-p.done
	}
}

// sameWriter is a == b without the panic of comparing uncomparable values,
// as os/exec does for Stdout and Stderr.
func sameWriter(a, b io.Writer) (same bool) {
	defer func() {
		if recover() != nil {
			same = false
		}
	}()
	return a != nil && a == b
}
