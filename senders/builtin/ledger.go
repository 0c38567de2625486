// ledger.go: the correct sender, in every shape. A SQLite ledger with one
// row per (campaign, mailbox); the distinct list cut into chunks of
// Options.Batch recipients by list position, each chunk one message whose
// Message-ID is fixed by (campaign, chunk); Options.Connections workers
// taking pending chunks from a queue; each transaction's outcome recorded
// after its reply; 4xx and lost connections retried with the same
// Message-ID, 5xx bounced; a lock against overlapping instances; and a
// graceful stop on SIGTERM.
package builtin

import (
	"context"
	"database/sql"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
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
	addr     TEXT NOT NULL,              -- the mailbox key, senders.Normalize(rcpt)
	rcpt     TEXT NOT NULL,              -- first spelling in the list, used in RCPT TO
	pos      INTEGER NOT NULL,           -- list position of that first spelling
	seq      INTEGER NOT NULL,           -- rank among the distinct addresses: the chunk is seq / batch
	state    TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'sent', 'bounced')),
	detail   TEXT NOT NULL DEFAULT '',   -- the 5xx reply for a bounce
	updated  TEXT NOT NULL DEFAULT '',
	PRIMARY KEY (campaign, addr)
);
CREATE TABLE IF NOT EXISTS campaigns (
	campaign  TEXT PRIMARY KEY,
	batch     INTEGER NOT NULL           -- the chunk size the campaign started with
)`

// ledger is the effectively-once sender; see the package documentation.
type ledger struct {
	name string
	opts Options
}

// recipient is one ledger row.
type recipient struct {
	addr, rcpt string // mailbox key and spelling
	pos, seq   int    // list position and distinct rank
}

// chunk is the pending part of one chunk of the distinct list.
type chunk struct {
	n     int         // chunk number: seq / batch
	key   string      // what its Message-ID is derived from
	rcpts []recipient // pending recipients, in list order
}

// Send implements senders.Sender.
func (l *ledger) Send(ctx context.Context, env senders.Env) error {
	list, err := senders.ReadList(env.RecipientsFile)
	if err != nil {
		return err
	}
	log := l.opts.Logger.With("sender", l.name, "campaign", env.Campaign, "attempt", env.Attempt, "instance", env.Instance)
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
	b := &book{db: db, campaign: env.Campaign}
	chunks, distinct, err := b.seed(ctx, list, l.opts.Batch)
	if err != nil {
		return b.stopped(ctx, err)
	}
	log.Info("starting", "recipients", len(list), "distinct", distinct, "pending chunks", len(chunks),
		"batch", l.opts.Batch, "connections", l.opts.Connections)
	if err := l.run(ctx, env, log, b, chunks); err != nil {
		return b.stopped(ctx, err)
	}
	log.Info("campaign complete")
	return nil
}

// run sends chunks over up to Options.Connections workers and returns the
// first error that stopped one. A worker's error (or ctx ending) stops the
// others once their transactions in hand are done.
func (l *ledger) run(ctx context.Context, env senders.Env, log *slog.Logger, b *book, chunks []chunk) error {
	queue := make(chan chunk, len(chunks))
	for _, c := range chunks {
		queue <- c
	}
	close(queue)
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var (
		once  sync.Once
		first error
		wg    sync.WaitGroup
	)
	for i := range min(l.opts.Connections, len(chunks)) {
		wg.Go(func() {
			w := &worker{l: l, env: env, log: log.With("worker", i+1), book: b}
			defer w.hangUp()
			if err := w.work(ctx, queue); err != nil {
				once.Do(func() { first = err })
				cancel(err)
			}
		})
	}
	wg.Wait()
	return first
}

// worker is one SMTP connection of a Send and the chunks it takes.
type worker struct {
	l    *ledger
	env  senders.Env
	log  *slog.Logger
	book *book
	sess *session // nil before the first dial and after a connection broke
}

// work delivers chunks from queue until it is empty or ctx ends.
func (w *worker) work(ctx context.Context, queue <-chan chunk) error {
	for c := range queue {
		if ctx.Err() != nil {
			return context.Cause(ctx)
		}
		if err := w.deliver(ctx, c); err != nil {
			return err
		}
	}
	return nil
}

// deliver sends c's message until each of its recipients is recorded sent
// or bounced. Each transaction's outcome is recorded after its reply; the
// recipients a 4xx refused, or that a lost connection left in doubt, are
// sent again with backoff, reconnecting as needed, in the same message (the
// same Message-ID), for as long as ctx lives. The transaction in hand is
// never cut short by ctx: only waiting and dialling are.
func (w *worker) deliver(ctx context.Context, c chunk) error {
	opts := w.l.opts
	msg := w.message(c)
	left := c.rcpts
	for failures := 0; len(left) > 0; {
		if failures > 0 {
			if err := sleep(ctx, backoff(opts.Backoff, opts.MaxBackoff, failures)); err != nil {
				return err
			}
		}
		if w.sess == nil {
			s, err := dial(ctx, w.env.SMTPAddr, opts.Timeout)
			switch {
			case ctx.Err() != nil:
				if s != nil {
					s.close()
				}
				return context.Cause(ctx)
			case err != nil && classify(err) == classPerm:
				return fmt.Errorf("%s: the server refuses us for good: %w; check %s and the server", w.l.name, err, senders.VarSMTPAddr)
			case err != nil:
				failures++
				w.log.Warn("cannot connect; retrying", "err", err, "failures", failures)
				continue
			}
			w.sess = s
		}
		to := make([]string, len(left))
		for i, r := range left {
			to[i] = r.rcpt
		}
		refused, err := w.sess.sendBatch(context.WithoutCancel(ctx), opts.From, to, msg)
		if w.sess.broken {
			w.hangUp()
		}
		out, err := w.sort(left, refused, err)
		if err != nil {
			return err
		}
		if err := w.book.record(ctx, out.sent, out.bounced); err != nil {
			return err
		}
		if len(out.sent)+len(out.bounced) > 0 {
			failures = 1 // progress: the rest is retried after the shortest wait
		} else {
			failures++
		}
		left = out.retry
	}
	return nil
}

// message builds c's message. Its Message-ID is fixed by (campaign, chunk),
// so every try is recognisably the same message.
func (w *worker) message(c chunk) []byte {
	id := ledgerMessageID(w.env.Campaign, c.key)
	to := ""
	if w.l.opts.Batch == 1 {
		to = c.rcpts[0].rcpt
	}
	return buildMessage(w.l.opts.From, to, w.env.Campaign, id, time.Now())
}

// outcome is what one transaction did to each recipient it was for.
type outcome struct {
	sent    []recipient
	bounced []bounce
	retry   []recipient
}

// bounce is a recipient refused for good, with the reply.
type bounce struct {
	recipient
	reply string
}

// sort turns the result of one transaction for left (the per-RCPT replies
// and the transaction's error; see session.sendBatch) into an outcome. The
// error it returns fails the attempt: the server refused the sender itself.
func (w *worker) sort(left []recipient, refused []error, err error) (outcome, error) {
	if err != nil && classify(err) == classPerm && !forRecipient(err) {
		return outcome{}, fmt.Errorf("%s: the server rejected the sender, not the recipients: %w; check Options.From and the server", w.l.name, err)
	}
	var o outcome
	for i, r := range left {
		why := refused[i]
		if why == nil {
			why = err // accepted (or not reached): the transaction's fate
		}
		switch {
		case why == nil:
			o.sent = append(o.sent, r)
		case classify(why) == classPerm:
			w.log.Warn("bounced", "to", r.rcpt, "err", why)
			o.bounced = append(o.bounced, bounce{r, why.Error()})
		case classify(why) == classTemp:
			w.log.Warn("temporary failure; retrying the address", "to", r.rcpt, "err", why)
			o.retry = append(o.retry, r)
		default:
			// If DATA was under way the server may have counted it: the
			// resend carries the same Message-ID, so it is the same message.
			w.log.Warn("connection lost; reconnecting to resend", "to", r.rcpt, "err", why)
			o.retry = append(o.retry, r)
		}
	}
	return o, nil
}

// hangUp closes the connection, if any.
func (w *worker) hangUp() {
	if w.sess != nil {
		w.sess.close()
		w.sess = nil
	}
}

// book is the ledger database of one campaign. Its single connection
// (openLedger) serialises the workers' writes.
type book struct {
	db       *sql.DB
	campaign string
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

// seed records the campaign's chunk size, inserts the list's distinct
// mailboxes (INSERT OR IGNORE: rows of an earlier start are left
// alone) and returns the pending chunks in list order and the number of
// distinct addresses.
func (b *book) seed(ctx context.Context, list []string, batch int) ([]chunk, int, error) {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("seed ledger: %w", err)
	}
	defer tx.Rollback()
	var was int
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO campaigns (campaign, batch) VALUES (?, ?)`, b.campaign, batch); err != nil {
		return nil, 0, fmt.Errorf("seed ledger: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT batch FROM campaigns WHERE campaign = ?`, b.campaign).Scan(&was); err != nil {
		return nil, 0, fmt.Errorf("seed ledger: %w", err)
	}
	if was != batch {
		// Another chunk size would give the same recipients other
		// Message-IDs: resends would be new messages.
		return nil, 0, fmt.Errorf("the ledger of campaign %s cuts the list into chunks of %d, not %d: rerun with --batch %d (Options.Batch), or start over with an empty %s", b.campaign, was, batch, was, senders.VarStateDir)
	}
	stmt, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO recipients (campaign, addr, rcpt, pos, seq) VALUES (?, ?, ?, ?, ?)`)
	if err != nil {
		return nil, 0, fmt.Errorf("seed ledger: %w", err)
	}
	defer stmt.Close()
	seen := map[string]bool{}
	for i, rcpt := range list {
		k := senders.Normalize(rcpt)
		if seen[k] {
			continue
		}
		seen[k] = true
		if _, err := stmt.ExecContext(ctx, b.campaign, k, rcpt, i, len(seen)-1); err != nil {
			return nil, 0, fmt.Errorf("seed ledger with %s: %w", rcpt, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return nil, 0, fmt.Errorf("seed ledger: %w", err)
	}
	rows, err := b.db.QueryContext(ctx, `SELECT addr, rcpt, pos, seq FROM recipients WHERE campaign = ? AND state = ? ORDER BY seq`,
		b.campaign, statePending)
	if err != nil {
		return nil, 0, fmt.Errorf("read pending recipients: %w", err)
	}
	defer rows.Close()
	var chunks []chunk
	for rows.Next() {
		var r recipient
		if err := rows.Scan(&r.addr, &r.rcpt, &r.pos, &r.seq); err != nil {
			return nil, 0, fmt.Errorf("read pending recipients: %w", err)
		}
		n := r.seq / batch
		if len(chunks) == 0 || chunks[len(chunks)-1].n != n {
			key := r.addr
			if batch > 1 {
				key = fmt.Sprintf("chunk %d of %d", n, batch)
			}
			chunks = append(chunks, chunk{n: n, key: key})
		}
		last := &chunks[len(chunks)-1]
		last.rcpts = append(last.rcpts, r)
	}
	if err := rows.Err(); err != nil {
		return nil, 0, fmt.Errorf("read pending recipients: %w", err)
	}
	return chunks, len(seen), nil
}

// record marks sent and bounced in one transaction. It runs even when ctx
// is cancelled: the messages went out.
func (b *book) record(ctx context.Context, sent []recipient, bounced []bounce) error {
	if len(sent)+len(bounced) == 0 {
		return nil
	}
	ctx = context.WithoutCancel(ctx)
	err := func() error {
		tx, err := b.db.BeginTx(ctx, nil)
		if err != nil {
			return err
		}
		defer tx.Rollback()
		now := time.Now().UTC().Format(time.RFC3339Nano)
		set := func(r recipient, state, detail string) error {
			_, err := tx.ExecContext(ctx, `UPDATE recipients SET state = ?, detail = ?, updated = ? WHERE campaign = ? AND addr = ?`,
				state, detail, now, b.campaign, r.addr)
			return err
		}
		for _, r := range sent {
			if err := set(r, stateSent, ""); err != nil {
				return err
			}
		}
		for _, r := range bounced {
			if err := set(r.recipient, stateBounced, r.reply); err != nil {
				return err
			}
		}
		return tx.Commit()
	}()
	if err != nil {
		return fmt.Errorf("ledger: %d sent and %d bounced but recording it failed: %w; a rerun resends them with the same Message-ID", len(sent), len(bounced), err)
	}
	return nil
}

// stopped turns the error that ended a Send early into its final form,
// saying how far the campaign got when the stop was an interruption.
func (b *book) stopped(ctx context.Context, err error) error {
	if ctx.Err() == nil {
		return err
	}
	var sent, bounced, total int
	if qerr := b.db.QueryRowContext(context.WithoutCancel(ctx),
		`SELECT count(*), coalesce(sum(state = 'sent'), 0), coalesce(sum(state = 'bounced'), 0) FROM recipients WHERE campaign = ?`,
		b.campaign).Scan(&total, &sent, &bounced); qerr != nil {
		return fmt.Errorf("interrupted, rerun to continue (progress unknown: %v): %w", qerr, err)
	}
	return fmt.Errorf("interrupted: %d of %d sent (%d bounced), rerun to continue: %w", sent, total, bounced, err)
}
