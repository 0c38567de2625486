// The optional journal: every counted copy appended and synced before its
// 250, and every reset of the counts, so the counts survive a restart of
// the server itself. One server holds a journal at a time (flock): two
// appending to one file would each replay only what it saw.

package fakesmtp

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"
	"time"
)

type journalLine struct {
	T     int64    `json:"t"`
	ID    string   `json:"id,omitempty"`
	Rcpt  []string `json:"rcpt,omitempty"`
	Reset bool     `json:"reset,omitempty"` // the counts were reset here
}

type journal struct {
	mu   sync.Mutex
	f    *os.File
	path string
}

// openJournal replays path into o and opens it for appending. A last line
// cut short by a crash was never acknowledged, so it is dropped.
func openJournal(path string, o *Oracle) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening journal: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("journal %s is held by another running fakesmtp server: two servers on one journal lose each other's copies at a restart; stop the other one, or give this one a journal of its own", path)
		}
		return nil, fmt.Errorf("locking journal %s: %w", path, err)
	}
	good, err := replay(f, path, o)
	if err != nil {
		f.Close()
		return nil, err
	}
	if err := f.Truncate(good); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal %s: dropping a torn last line: %w", path, err)
	}
	if _, err := f.Seek(good, io.SeekStart); err != nil {
		f.Close()
		return nil, fmt.Errorf("journal %s: %w", path, err)
	}
	return &journal{f: f, path: path}, nil
}

func replay(f *os.File, path string, o *Oracle) (int64, error) {
	r := bufio.NewReader(f)
	var off int64
	for n := 1; ; n++ {
		line, err := r.ReadBytes('\n')
		if errors.Is(err, io.EOF) {
			return off, nil // an unterminated last line was never synced whole
		}
		if err != nil {
			return 0, fmt.Errorf("reading journal %s: %w", path, err)
		}
		var jl journalLine
		if err := json.Unmarshal(line, &jl); err != nil || len(jl.Rcpt) == 0 && !jl.Reset {
			return 0, fmt.Errorf("journal %s:%d: want one JSON object {\"t\":..,\"rcpt\":[..]} or {\"t\":..,\"reset\":true} per line: %v (move the file away to start with empty counts)", path, n, err)
		}
		// Keyed as the server keys them now: a journal written by an
		// older key, or by hand, must count the same mailboxes.
		jl.Rcpt = normalizeAll(jl.Rcpt)
		apply(o, jl)
		off += int64(len(line))
	}
}

// normalizeAll keys addrs, dropping repeats.
func normalizeAll(addrs []string) []string {
	out := make([]string, 0, len(addrs))
	for _, a := range addrs {
		if k := Normalize(a); k != "" && !contains(out, k) {
			out = append(out, k)
		}
	}
	return out
}

// append writes l and syncs it, then applies it to o under the same lock:
// the journal's order is the oracle's, so a reset and the copies around it
// replay as they happened.
func (j *journal) append(l journalLine, o *Oracle) error {
	b, err := json.Marshal(l)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	j.mu.Lock()
	defer j.mu.Unlock()
	if _, err := j.f.Write(b); err != nil {
		return fmt.Errorf("appending to journal %s: %w", j.path, err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("syncing journal %s: %w", j.path, err)
	}
	apply(o, l)
	return nil
}

func apply(o *Oracle, l journalLine) {
	if l.Reset {
		o.Reset()
		return
	}
	o.Record(time.Unix(0, l.T), l.Rcpt, l.ID)
}

func (j *journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}
