// ledger.go: the correct sender. A SQLite ledger with one row per
// (campaign, normalised address), a Message-ID fixed per row, retries for
// 4xx and lost connections, bounces for 5xx, a lock against overlapping
// instances and a graceful stop on SIGTERM.
package builtin

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" database/sql driver, pure Go

	"github.com/onecopy/onecopy/senders"
)

// Ledger row states.
const (
	statePending = "pending"
	stateSent    = "sent"
	stateBounced = "bounced"
)

// lockPoll is how often a ledger waiting for another instance's lock retries.
const lockPoll = 20 * time.Millisecond

const ledgerSchema = `
CREATE TABLE IF NOT EXISTS recipients (
	campaign TEXT NOT NULL,
	addr     TEXT NOT NULL,              -- senders.Normalize(rcpt): the mailbox identity
	rcpt     TEXT NOT NULL,              -- first spelling in the list, used in RCPT TO
	pos      INTEGER NOT NULL,           -- list position of that first spelling
	state    TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'bounced')),
	detail   TEXT NOT NULL DEFAULT '',   -- the 5xx reply for a bounce
	updated  TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (campaign, addr)
)`

// ledger is the effectively-once sender; see the package documentation.
type ledger struct{ opts Options }

// recipient is one pending ledger row.
type recipient struct{ addr, rcpt string }

// Send implements senders.Sender.
func (l ledger) Send(ctx context.Context, env senders.Env) error {
	list, err := senders.ReadList(env.RecipientsFile)
	if err != nil {
		return err
	}
	log := l.opts.Logger.With("sender", "ledger", "campaign", env.Campaign, "attempt", env.Attempt, "instance", env.Instance)
	lock, err := acquireLock(ctx, filepath.Join(env.StateDir, "ledger.lock"), log)
	if err != nil {
		return err
	}
	defer lock.release()

	db, err := openLedger(ctx, filepath.Join(env.StateDir, "ledger.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	pending, err := seedLedger(ctx, db, env.Campaign, list)
	if err != nil {
		return l.stopped(ctx, db, env.Campaign, err)
	}
	log.Info("starting", "recipients", len(list), "pending", len(pending))

	d := &courier{opts: l.opts, env: env, log: log}
	defer d.hangUp()
	for _, r := range pending {
		if ctx.Err() != nil {
			return l.stopped(ctx, db, env.Campaign, context.Cause(ctx))
		}
		state, detail, err := d.deliver(ctx, r)
		if err != nil {
			return l.stopped(ctx, db, env.Campaign, err)
		}
		// Recorded even when ctx is cancelled: the message was sent.
		if _, err := db.ExecContext(context.WithoutCancel(ctx),
			`UPDATE recipients SET state = ?, detail = ?, updated = ? WHERE campaign = ? AND addr = ?`,
			state, detail, time.Now().UTC().Format(time.RFC3339Nano), env.Campaign, r.addr); err != nil {
			return fmt.Errorf("ledger: %s was %s but recording it failed: %w; a rerun resends it with the same Message-ID", r.rcpt, state, err)
		}
	}
	log.Info("campaign complete")
	return nil
}

// courier is the ledger's SMTP side during one Send: the connection it
// reuses from one recipient to the next.
type courier struct {
	opts Options
	env  senders.Env
	log  *slog.Logger
	sess *session // nil before the first dial and after a connection broke
}

// deliver sends r's message until the server accepts it (stateSent) or
// rejects it for good (stateBounced, with the reply). A 4xx or a lost
// connection is retried with backoff, reconnecting as needed, for as long as
// ctx lives. The transaction in hand is never cut short by ctx: only waiting
// and dialling are.
func (d *courier) deliver(ctx context.Context, r recipient) (state, detail string, err error) {
	msg := buildMessage(d.opts.From, r.rcpt, d.env.Campaign, ledgerMessageID(d.env.Campaign, r.addr), time.Now())
	for failures := 0; ; failures++ {
		if failures > 0 {
			if err := sleep(ctx, backoff(d.opts.Backoff, d.opts.MaxBackoff, failures)); err != nil {
				return "", "", err
			}
		}
		if d.sess == nil {
			s, err := dial(ctx, d.env.SMTPAddr, d.opts.Timeout)
			switch {
			case ctx.Err() != nil:
				if s != nil {
					s.close()
				}
				return "", "", context.Cause(ctx)
			case err != nil && classify(err) == classPerm:
				return "", "", fmt.Errorf("ledger: the server refuses us for good: %w; check %s and the server", err, senders.VarSMTPAddr)
			case err != nil:
				d.log.Warn("cannot connect; retrying", "err", err, "failures", failures+1)
				continue
			}
			d.sess = s
		}
		err := d.sess.send(context.WithoutCancel(ctx), d.opts.From, r.rcpt, msg)
		if d.sess.broken {
			d.hangUp()
		}
		if err == nil {
			d.log.Debug("sent", "to", r.rcpt)
			return stateSent, "", nil
		}
		switch classify(err) {
		case classPerm:
			if !forRecipient(err) {
				return "", "", fmt.Errorf("ledger: the server rejected the sender, not %s: %w; check Options.From and the server", r.rcpt, err)
			}
			d.log.Warn("bounced", "to", r.rcpt, "err", err)
			return stateBounced, err.Error(), nil
		case classTemp:
			d.log.Warn("temporary failure; retrying the same address", "to", r.rcpt, "err", err, "failures", failures+1)
		default:
			// If DATA was under way the server may have counted it: the
			// resend carries the same Message-ID, so it is the same message.
			d.log.Warn("connection lost; reconnecting to resend", "to", r.rcpt, "err", err, "failures", failures+1)
		}
	}
}

// hangUp closes the connection, if any.
func (d *courier) hangUp() {
	if d.sess != nil {
		d.sess.close()
		d.sess = nil
	}
}

// stopped turns the error that ended a Send early into its final form,
// saying how far the campaign got when the stop was an interruption.
func (l ledger) stopped(ctx context.Context, db *sql.DB, campaign string, err error) error {
	if ctx.Err() == nil {
		return err
	}
	var sent, bounced, total int
	if qerr := db.QueryRowContext(context.WithoutCancel(ctx),
		`SELECT count(*), coalesce(sum(state = 'sent'), 0), coalesce(sum(state = 'bounced'), 0) FROM recipients WHERE campaign = ?`,
		campaign).Scan(&total, &sent, &bounced); qerr != nil {
		return fmt.Errorf("interrupted, rerun to continue (progress unknown: %v): %w", qerr, err)
	}
	return fmt.Errorf("interrupted: %d of %d sent (%d bounced), rerun to continue: %w", sent, total, bounced, err)
}

// openLedger opens (creating if needed) the ledger database in WAL mode.
// synchronous=NORMAL: a commit survives the death of the process (the
// failure this sender is built for) without an fsync per message; only a
// power loss could forget the last few, which the fixed Message-ID covers.
func openLedger(ctx context.Context, path string) (*sql.DB, error) {
	dsn := "file:" + path + "?_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)"
	db, err := sql.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open ledger %s: %w", path, err)
	}
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, ledgerSchema); err != nil {
		db.Close()
		return nil, fmt.Errorf("open ledger %s: %w; check %s is writable, or delete a corrupt ledger to start over", path, err, senders.VarStateDir)
	}
	return db, nil
}

// seedLedger inserts the list (INSERT OR IGNORE: existing rows and case
// variants of an address already listed are left alone) and returns the
// pending rows in list order.
func seedLedger(ctx context.Context, db *sql.DB, campaign string, list []string) ([]recipient, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return nil, fmt.Errorf("seed ledger: %w", err)
	}
	defer tx.Rollback()
	stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO recipients (campaign, addr, rcpt, pos) VALUES (?, ?, ?, ?)`)
	if err != nil {
		return nil, fmt.Errorf("seed ledger: %w", err)
	}
	defer stmt.Close()
	for i, rcpt := range list {
		if _, err := stmt.ExecContext(ctx, campaign, senders.Normalize(rcpt), rcpt, i); err != nil {
			return nil, fmt.Errorf("seed ledger with %s: %w", rcpt, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, fmt.Errorf("seed ledger: %w", err)
	}
	rows, err := db.QueryContext(ctx, `SELECT addr, rcpt FROM recipients WHERE campaign = ? AND state = ? ORDER BY pos, addr`, campaign, statePending)
	if err != nil {
		return nil, fmt.Errorf("read pending recipients: %w", err)
	}
	defer rows.Close()
	var pending []recipient
	for rows.Next() {
		var r recipient
		if err := rows.Scan(&r.addr, &r.rcpt); err != nil {
			return nil, fmt.Errorf("read pending recipients: %w", err)
		}
		pending = append(pending, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read pending recipients: %w", err)
	}
	return pending, nil
}
