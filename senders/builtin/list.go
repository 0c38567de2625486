// list.go: the three senders that walk the list over one connection and
// abort the attempt on the first failure: naive (no memory), checkpoint
// (record after send) and early (record before send).
package builtin

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/onecopy/onecopy/senders"
)

// recordMode says when a listSender records its position in the list.
type recordMode int

const (
	recordNone   recordMode = iota // naive: every attempt starts at recipient 1
	recordAfter                    // checkpoint: after the 250 (at-least-once)
	recordBefore                   // early: before MAIL FROM (at-most-once)
)

// checkpointFile is the name of the position file in the state directory.
const checkpointFile = "checkpoint"

// listSender sends one message per line of the list, in order, with a fresh
// Message-ID each time, and returns the first error it meets.
type listSender struct {
	name   string
	record recordMode
	opts   Options
	// every > 1 (checkpoint-every's bug): recordAfter writes the position
	// only every that many sends, and after the last.
	every int
}

// newListSender returns a listSender recording as record says (every sends,
// when above 1), refusing the ledger's shapes: it sends one message per line
// over one connection.
func newListSender(name string, record recordMode, every int, opts Options) (senders.Sender, error) {
	if opts.Batch > 1 || opts.Connections > 1 {
		return nil, fmt.Errorf("sender %s sends one message per line over one connection: Batch and Connections (--batch, --connections) are for the ledger senders", name)
	}
	return &listSender{name: name, record: record, every: every, opts: opts}, nil
}

// Send implements senders.Sender.
func (l *listSender) Send(ctx context.Context, env senders.Env) error {
	list, err := senders.ReadList(env.RecipientsFile)
	if err != nil {
		return err
	}
	path := filepath.Join(env.StateDir, checkpointFile)
	next := 0
	if l.record != recordNone {
		if next, err = readCheckpoint(path, len(list)); err != nil {
			return err
		}
	}
	log := l.opts.Logger.With("sender", l.name, "campaign", env.Campaign, "attempt", env.Attempt, "instance", env.Instance)
	log.Info("starting", "recipients", len(list), "from", next+1)
	if next == len(list) {
		return nil
	}
	sess, err := dial(ctx, env.SMTPAddr, l.opts.Timeout)
	if err != nil {
		return fmt.Errorf("%s: %w; is %s right and the server up?", l.name, err, senders.VarSMTPAddr)
	}
	defer sess.close()
	for i := next; i < len(list); i++ {
		if l.record == recordBefore {
			if err := writeCheckpoint(path, i+1); err != nil {
				return err
			}
		}
		to := list[i]
		msg := buildMessage(l.opts.From, to, env.Campaign, randomMessageID(l.name), time.Now())
		if err := sess.send(ctx, l.opts.From, to, msg); err != nil {
			return fmt.Errorf("%s: recipient %d of %d (%s): %w", l.name, i+1, len(list), to, err)
		}
		log.Debug("sent", "to", to, "n", i+1)
		if l.record == recordAfter && (l.every <= 1 || (i+1)%l.every == 0 || i+1 == len(list)) {
			if err := writeCheckpoint(path, i+1); err != nil {
				return err
			}
		}
	}
	log.Info("campaign complete", "recipients", len(list))
	return nil
}

// readCheckpoint returns the index of the next recipient to send (0 when
// there is no checkpoint yet).
func readCheckpoint(path string, listLen int) (int, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read checkpoint: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || n < 0 || n > listLen {
		return 0, fmt.Errorf("checkpoint %s holds %q, not a position in the %d-address list: delete it to start over", path, b, listLen)
	}
	return n, nil
}

// writeCheckpoint durably replaces the checkpoint with next: write a temp
// file, fsync it, rename it over the old one, fsync the directory.
func writeCheckpoint(path string, next int) error {
	dir := filepath.Dir(path)
	tmp, err := os.CreateTemp(dir, checkpointFile+"-*.tmp")
	if err != nil {
		return fmt.Errorf("write checkpoint: %w; check %s is writable", err, senders.VarStateDir)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, err = tmp.WriteString(strconv.Itoa(next) + "\n")
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		return fmt.Errorf("write checkpoint %s (next=%d): %w", path, next, err)
	}
	return nil
}

// syncDir fsyncs a directory so a rename in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
