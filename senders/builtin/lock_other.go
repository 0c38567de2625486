// lock_other.go: the ledger's lock on systems without flock: it refuses to
// run rather than risk two instances sending at once.

//go:build !unix

package builtin

import (
	"context"
	"errors"
	"log/slog"
)

// fileLock is never held on this system.
type fileLock struct{}

// acquireLock always fails: there is no flock here.
func acquireLock(context.Context, string, *slog.Logger) (*fileLock, error) {
	return nil, errors.New("the ledger sender needs flock, which this OS lacks: run it on Linux, macOS or a BSD")
}

// hold does nothing.
func (l *fileLock) hold() error { return nil }

// release does nothing.
func (l *fileLock) release() error { return nil }
