// The optional journal: every counted copy appended and synced before its
// 250, so the counts survive a restart of the server itself.

package fakesmtp

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

type journalLine struct {
	T    int64    `json:"t"`
	ID   string   `json:"id,omitempty"`
	Rcpt []string `json:"rcpt"`
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
		if err := json.Unmarshal(line, &jl); err != nil || len(jl.Rcpt) == 0 {
			return 0, fmt.Errorf("journal %s:%d: want one JSON object {\"t\":..,\"rcpt\":[..]} per line: %v (move the file away to start with empty counts)", path, n, err)
		}
		o.Record(time.Unix(0, jl.T), jl.Rcpt, jl.ID)
		off += int64(len(line))
	}
}

func (j *journal) append(at time.Time, rcpts []string, id string) error {
	b, err := json.Marshal(journalLine{T: at.UnixNano(), ID: id, Rcpt: rcpts})
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
	return nil
}

func (j *journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.f.Close()
}
