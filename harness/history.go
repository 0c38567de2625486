// The history: an append-only record of every event of a run (start,
// signal, exit, fault, copy), written as it happens so a crash of the
// harness still leaves the evidence.

package harness

import (
	"bufio"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// Event is one line of the history.
type Event struct {
	T          time.Time              `json:"t"`
	Type       string                 `json:"type"` // run, start, signal, exit, fault, copy, end
	Instance   int                    `json:"instance,omitempty"`
	Attempt    int                    `json:"attempt,omitempty"`
	PIDs       []int                  `json:"pids,omitempty"`
	Signal     string                 `json:"signal,omitempty"`
	Code       *int                   `json:"code,omitempty"`
	Kind       string                 `json:"kind,omitempty"`
	Moment     string                 `json:"moment,omitempty"`
	Session    uint64                 `json:"session,omitempty"`
	Recipients []string               `json:"rcpt,omitempty"`
	MessageID  string                 `json:"message_id,omitempty"`
	Sessions   []fakesmtp.SessionInfo `json:"sessions,omitempty"`
	InDoubt    int                    `json:"in_doubt,omitempty"`
	Addr       string                 `json:"addr,omitempty"`
	Reason     string                 `json:"reason,omitempty"`
}

type history struct {
	mu     sync.Mutex
	f      *os.File
	w      *bufio.Writer
	path   string
	log    *slog.Logger
	err    error
	ticker *time.Ticker
	done   chan struct{}
	closed bool
}

func openHistory(path string, log *slog.Logger) (*history, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("opening the history file: %w", err)
	}
	h := &history{f: f, w: bufio.NewWriterSize(f, 64<<10), path: path, log: log, ticker: time.NewTicker(100 * time.Millisecond), done: make(chan struct{})}
	go h.flusher()
	return h, nil
}

// flusher writes buffered copy events out at least every 100ms.
func (h *history) flusher() {
	for {
		select {
		case <-h.ticker.C:
			h.mu.Lock()
			if !h.closed {
				h.flushLocked()
			}
			h.mu.Unlock()
		case <-h.done:
			return
		}
	}
}

func (h *history) flushLocked() {
	if err := h.w.Flush(); err != nil && h.err == nil {
		h.err = err
	}
}

// add appends ev. Every event but a copy is flushed at once, before the
// caller acts on it.
func (h *history) add(ev Event) {
	if ev.T.IsZero() {
		ev.T = time.Now()
	}
	b, err := json.Marshal(ev)
	if err != nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return
	}
	h.w.Write(b)
	h.w.WriteByte('\n')
	if ev.Type != "copy" {
		h.flushLocked()
		h.log.Info(ev.Type, "reason", ev.Reason, "signal", ev.Signal, "instance", ev.Instance, "attempt", ev.Attempt, "kind", ev.Kind)
	}
}

func (h *history) close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return h.err
	}
	h.closed = true
	h.ticker.Stop()
	close(h.done)
	h.flushLocked()
	if err := h.f.Close(); err != nil && h.err == nil {
		h.err = err
	}
	return h.err
}
