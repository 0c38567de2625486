// Writing and reading history.jsonl.

package history

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// Writer appends events to a history file. Each Add is one write(2) of one
// whole line, made before Add returns: the harness adds a copy from the
// server's delivery callback, which runs before the 250 is written, so a
// copy is in the file before its client can learn of it, and a SIGKILL of
// onecopy loses nothing the kernel was given. (An fsync per line would also
// survive a power cut, at a hundred times the cost; a run does not outlive
// its machine.) It is safe for concurrent use.
type Writer struct {
	mu   sync.Mutex
	f    *os.File
	path string
	buf  bytes.Buffer
	enc  *json.Encoder
	err  error
}

// Create makes a new history file at path; an existing one is replaced.
func Create(path string) (*Writer, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("creating the history %s: %w", path, err)
	}
	w := &Writer{f: f, path: path}
	w.enc = json.NewEncoder(&w.buf)
	return w, nil
}

// Path is the file's path.
func (w *Writer) Path() string { return w.path }

// Add appends ev, stamping it with the time now if it has none. After a
// failed write every Add fails: a history with a hole in it is not one.
func (w *Writer) Add(ev Event) error {
	if ev.T.IsZero() {
		ev.T = time.Now()
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.err != nil {
		return w.err
	}
	if w.f == nil {
		return errors.New("history: write after Close")
	}
	w.buf.Reset()
	if err := w.enc.Encode(ev); err != nil { // Encode ends the line
		w.err = fmt.Errorf("encoding a %s event for the history: %w", ev.Kind, err)
		return w.err
	}
	if _, err := w.f.Write(w.buf.Bytes()); err != nil {
		w.err = fmt.Errorf("writing the history %s: %w", w.path, err)
	}
	return w.err
}

// Err is the first error Add met.
func (w *Writer) Err() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.err
}

// Close closes the file; it returns the first error met writing it.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		return w.err
	}
	if err := w.f.Close(); err != nil && w.err == nil {
		w.err = fmt.Errorf("closing the history %s: %w", w.path, err)
	}
	w.f = nil
	return w.err
}

// Source is a history that can be read, as often as needed.
type Source interface {
	// Scan calls fn for every event in order, stopping at fn's first
	// error, which it returns.
	Scan(fn func(Event) error) error
}

// Events is a history held in memory.
type Events []Event

// Scan implements Source.
func (es Events) Scan(fn func(Event) error) error {
	for _, ev := range es {
		if err := fn(ev); err != nil {
			return err
		}
	}
	return nil
}

// File is a history file on disk, by path.
type File string

// maxLine bounds one line of the history: a copy event lists at most a
// transaction's recipients, a few kB.
const maxLine = 16 << 20

// Scan implements Source. A last line without its newline was being
// written when onecopy died: it is dropped, as the server drops a torn
// journal line. Anything else that does not decode is an error naming
// file:line.
func (f File) Scan(fn func(Event) error) error {
	file, err := os.Open(string(f))
	if err != nil {
		return fmt.Errorf("reading the history: %w", err)
	}
	defer file.Close()
	r := bufio.NewReaderSize(file, 256<<10)
	for n := 1; ; n++ {
		line, err := r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) && len(long) < maxLine {
				line, err = r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		switch {
		case errors.Is(err, io.EOF):
			return nil // a torn last line, or none
		case errors.Is(err, bufio.ErrBufferFull):
			return fmt.Errorf("%s:%d: a line longer than %d bytes: is this a history.jsonl?", f, n, maxLine)
		case err != nil:
			return fmt.Errorf("reading the history %s: %w", f, err)
		}
		var ev Event
		if err := json.Unmarshal(line, &ev); err != nil {
			return fmt.Errorf("%s:%d: want one JSON event per line: %v", f, n, err)
		}
		if ev.Kind == "" {
			return fmt.Errorf("%s:%d: an event without a type", f, n)
		}
		if err := fn(ev); err != nil {
			return err
		}
	}
}

// ReadRun returns the run's set-up from its first event.
func ReadRun(src Source) (*Run, error) {
	var run *Run
	stop := errors.New("stop")
	err := src.Scan(func(ev Event) error {
		if ev.Kind != KindRun || ev.Run == nil {
			return fmt.Errorf("the history does not start with a %q event (found %q): is it a history.jsonl written by onecopy?", KindRun, ev.Kind)
		}
		run = ev.Run
		return stop
	})
	switch {
	case errors.Is(err, stop):
	case err != nil:
		return nil, err
	case run == nil:
		return nil, errors.New("the history is empty")
	}
	if run.Version != Version {
		return nil, fmt.Errorf("the history is in format %d; this onecopy reads format %d", run.Version, Version)
	}
	return run, nil
}
