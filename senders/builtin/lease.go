// lease.go: what the lease mutant holds instead of the ledger's flock: a
// file in the state directory naming its owner and an expiry, taken when
// absent or expired and refreshed before each message. It has no fencing:
// refreshing never checks that the lease is still ours, so a holder paused
// past the expiry wakes up and goes on sending beside the instance that took
// the lease over.
package builtin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/onecopy/onecopy/senders"
)

// leaseTTL is how long a lease lasts without a refresh: far longer than
// one message takes, far shorter than a paused worker sleeps.
const leaseTTL = 300 * time.Millisecond

// lease is a held lease file.
type lease struct {
	path, owner string
	ttl         time.Duration
}

// takeLease waits until the lease at path is absent or expired, then takes
// it for owner.
func takeLease(ctx context.Context, path, owner string, ttl time.Duration, log *slog.Logger) (*lease, error) {
	l := &lease{path: path, owner: owner, ttl: ttl}
	for waited := false; ; waited = true {
		holder, expiry, err := readLease(path)
		if err != nil {
			return nil, err
		}
		if holder == "" || !time.Now().Before(expiry) {
			if err := l.hold(); err != nil {
				return nil, err
			}
			if holder != "" {
				log.Info("took over an expired lease", "lease", path, "from", holder)
			}
			return l, nil
		}
		if !waited {
			log.Info("another instance holds the lease; waiting", "lease", path, "holder", holder)
		}
		if err := sleep(ctx, lockPoll); err != nil {
			return nil, fmt.Errorf("interrupted while waiting for the lease %s held by %s, rerun to continue: %w", path, holder, err)
		}
	}
}

// hold extends the lease by ttl from now. The lease mutant's bug is here: it
// writes without reading who holds the lease now.
func (l *lease) hold() error {
	body := l.owner + " " + strconv.FormatInt(time.Now().Add(l.ttl).UnixNano(), 10) + "\n"
	// Written aside and renamed, so a reader never sees half a lease.
	tmp, err := os.CreateTemp(filepath.Dir(l.path), filepath.Base(l.path)+"-*.tmp")
	if err != nil {
		return fmt.Errorf("refresh lease: %w; check %s is writable", err, senders.VarStateDir)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, err = tmp.WriteString(body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), l.path)
	}
	if err != nil {
		return fmt.Errorf("refresh lease %s: %w", l.path, err)
	}
	return nil
}

// release removes the lease if it is still ours.
func (l *lease) release() error {
	holder, _, err := readLease(l.path)
	if err != nil || holder != l.owner {
		return err
	}
	return os.Remove(l.path)
}

// readLease returns the holder and expiry of the lease at path: "" when
// there is none. An unreadable lease is taken as expired.
func readLease(path string) (holder string, expiry time.Time, err error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return "", time.Time{}, nil
	}
	if err != nil {
		return "", time.Time{}, fmt.Errorf("read lease: %w; check %s is readable", err, senders.VarStateDir)
	}
	owner, at, ok := strings.Cut(strings.TrimSpace(string(b)), " ")
	nanos, perr := strconv.ParseInt(at, 10, 64)
	if !ok || owner == "" || perr != nil {
		return "unreadable lease", time.Time{}, nil
	}
	return owner, time.Unix(0, nanos), nil
}
