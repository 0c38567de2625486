// lock_unix.go: the exclusive flock the ledger holds on its state directory
// so overlapping instances take turns instead of sending twice.

//go:build unix

package builtin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"

	"github.com/onecopy/onecopy/senders"
)

// fileLock is a held exclusive flock; release drops it.
type fileLock struct{ f *os.File }

// acquireLock takes an exclusive flock on path, waiting (polling with
// LOCK_NB, so ctx can interrupt the wait) while another process holds it.
func acquireLock(ctx context.Context, path string, log *slog.Logger) (*fileLock, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock file: %w; check %s is writable", err, senders.VarStateDir)
	}
	for waited := false; ; waited = true {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			if waited {
				log.Info("got the ledger lock", "lock", path)
			}
			return &fileLock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) && !errors.Is(err, syscall.EINTR) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !waited {
			log.Info("another instance holds the ledger lock; waiting", "lock", path)
		}
		if err := sleep(ctx, lockPoll); err != nil {
			f.Close()
			return nil, fmt.Errorf("interrupted while waiting for another instance to release %s, rerun to continue: %w", path, err)
		}
	}
}

// hold does nothing: the flock is held until release.
func (l *fileLock) hold() error { return nil }

// release drops the lock (closing the file releases the flock).
func (l *fileLock) release() error { return l.f.Close() }
