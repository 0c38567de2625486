// ledger.go: the correct sender, in every shape. A SQLite ledger with one
// row per (campaign, mailbox); the distinct list cut into chunks of
// Options.Batch recipients by list position, each chunk one message whose
// Message-ID is fixed by (campaign, chunk); Options.Connections workers
// taking pending chunks from a queue; each transaction's outcome recorded
// after its reply; 4xx and lost connections retried with the same
// Message-ID, 5xx bounced; a lock against overlapping instances; and a
// graceful stop on SIGTERM. The mutants (mutants.go) are this code with one
// of its bugs switched on.
package builtin

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
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
	batch     INTEGER NOT NULL,          -- the chunk size the campaign started with
	highwater INTEGER NOT NULL DEFAULT -1 -- highest list position recorded (only the high-water mutant resumes from it)
)`

// bugs are the ways a mutant departs from the correct ledger. The zero value
// is the correct ledger; each mutant sets exactly one field.
type bugs struct {
	// lock: how instances keep out of each other's way (flock when zero).
	lock lockMode
	// freshID: every try of a message gets a new Message-ID, so a resend
	// after a doubt is a new message.
	freshID bool
	// dotTimeout: waits only this long for the reply to the final dot, then
	// hangs up and retries as a new message (a new Message-ID), as a job
	// retried after a client timeout builds its message anew.
	dotTimeout time.Duration
	// tempFinal: a 4xx bounces the recipient instead of being retried.
	tempFinal bool
	// resendBatch: any refused RCPT fails the whole chunk, which is sent
	// again, accepted recipients included, up to this many tries in all.
	resendBatch int
	// asTyped: the mailbox key is the address as typed, so case variants
	// are different recipients.
	asTyped bool
	// stopShort: the last tenth of the list is never sent.
	stopShort bool
	// offList: an address not on the list that is mailed too.
	offList string
	// highWater: a restart resumes after the highest list position
	// recorded, skipping pending rows below it.
	highWater bool
	// term: what SIGTERM does (finish the transactions in hand when zero).
	term termMode
}

// lockMode says how a ledger keeps a second instance from sending.
type lockMode int

const (
	lockFlock lockMode = iota // an flock held for the whole run
	lockLease                 // a lease file with an expiry (the lease mutant)
	lockNone                  // nothing (the no-lock mutant)
)

// termMode says what a ledger does when ctx is cancelled (SIGTERM).
type termMode int

const (
	termFinish termMode = iota // finish and record the transactions in hand, then stop
	termIgnore                 // carry on as if nothing happened
	termExit                   // exit the process at once, mid-transaction
)

// ledger is the effectively-once sender; see the package documentation.
type ledger struct {
	name string
	opts Options
	bugs bugs
	// exit ends the process when bugs.term is termExit (os.Exit).
	exit func(code int)
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

// guard keeps other instances out while held.
type guard interface {
	hold() error // called before each message
	release() error
}

// Send implements senders.Sender.
func (l *ledger) Send(ctx context.Context, env senders.Env) error {
	switch l.bugs.term {
	case termIgnore:
		ctx = context.WithoutCancel(ctx)
	case termExit:
		stop := context.AfterFunc(ctx, func() { l.exit(1) })
		defer stop()
	}
	list, err := senders.ReadList(env.RecipientsFile)
	if err != nil {
		return err
	}
	if l.bugs.offList != "" {
		list = append(list, l.bugs.offList)
	}
	log := l.opts.Logger.With("sender", l.name, "campaign", env.Campaign, "attempt", env.Attempt, "instance", env.Instance)
	g, err := l.exclude(ctx, env, log)
	if err != nil {
		return err
	}
	defer g.release()

	db, err := openLedger(ctx, filepath.Join(env.StateDir, "ledger.db"))
	if err != nil {
		return err
	}
	defer db.Close()
	b := &book{db: db, campaign: env.Campaign, highWater: l.bugs.highWater}
	key := senders.Normalize
	if l.bugs.asTyped {
		key = strings.TrimSpace
	}
	chunks, distinct, err := b.seed(ctx, list, l.opts.Batch, key)
	if err != nil {
		return b.stopped(ctx, err)
	}
	if l.bugs.stopShort {
		chunks = below(chunks, distinct-distinct/10)
	}
	log.Info("starting", "recipients", len(list), "distinct", distinct, "pending chunks", len(chunks),
		"batch", l.opts.Batch, "connections", l.opts.Connections)
	if err := l.run(ctx, env, log, b, g, chunks); err != nil {
		return b.stopped(ctx, err)
	}
	log.Info("campaign complete")
	return nil
}

// exclude takes the ledger's lock (or what a mutant has instead).
func (l *ledger) exclude(ctx context.Context, env senders.Env, log *slog.Logger) (guard, error) {
	switch l.bugs.lock {
	case lockLease:
		owner := fmt.Sprintf("instance-%d-attempt-%d-pid-%d", env.Instance, env.Attempt, os.Getpid())
		lease, err := takeLease(ctx, filepath.Join(env.StateDir, "ledger.lease"), owner, leaseTTL, log)
		if err != nil {
			return nil, err
		}
		return lease, nil
	case lockNone:
		return noGuard{}, nil
	}
	lock, err := acquireLock(ctx, filepath.Join(env.StateDir, "ledger.lock"), log)
	if err != nil {
		return nil, err
	}
	return lock, nil
}

// run sends chunks over up to Options.Connections workers and returns the
// first error that stopped one. A worker's error (or ctx ending) stops the
// others once their transactions in hand are done.
func (l *ledger) run(ctx context.Context, env senders.Env, log *slog.Logger, b *book, g guard, chunks []chunk) error {
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
			w := &worker{l: l, env: env, log: log.With("worker", i+1), book: b, guard: g}
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
	l     *ledger
	env   senders.Env
	log   *slog.Logger
	book  *book
	guard guard
	sess  *session // nil before the first dial and after a connection broke
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
	opts, bugs := w.l.opts, w.l.bugs
	msg := w.message(c, bugs.freshID)
	left := c.rcpts
	for try, failures := 0, 0; len(left) > 0; {
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
			s.dotTimeout = bugs.dotTimeout
			w.sess = s
		}
		if err := w.guard.hold(); err != nil {
			return err
		}
		if try++; try > 1 && bugs.freshID {
			msg = w.message(c, true)
		}
		to := make([]string, len(left))
		for i, r := range left {
			to[i] = r.rcpt
		}
		refused, err := w.sess.sendBatch(context.WithoutCancel(ctx), opts.From, to, msg)
		if w.sess.broken {
			w.hangUp()
		}
		if bugs.dotTimeout > 0 && timedOutAtDot(err) {
			msg = w.message(c, true)
		}
		out, err := w.sort(left, refused, err, try)
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
// so every try is recognisably the same message; fresh (a mutant's bug)
// makes it a new one.
func (w *worker) message(c chunk, fresh bool) []byte {
	id := ledgerMessageID(w.env.Campaign, c.key)
	if fresh {
		id = randomMessageID(w.l.name)
	}
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
func (w *worker) sort(left []recipient, refused []error, err error, try int) (outcome, error) {
	if err != nil && classify(err) == classPerm && !forRecipient(err) {
		return outcome{}, fmt.Errorf("%s: the server rejected the sender, not the recipients: %w; check Options.From and the server", w.l.name, err)
	}
	bugs := w.l.bugs
	anyRefused := false
	for _, e := range refused {
		anyRefused = anyRefused || e != nil
	}
	if bugs.resendBatch > 0 && anyRefused && try < bugs.resendBatch {
		// The batch-resend bug: one refusal fails the whole chunk, whose
		// accepted recipients already got the message, and all of it goes
		// again.
		w.log.Warn("a recipient was refused; resending the whole batch", "try", try)
		return outcome{retry: left}, nil
	}
	// batch-resend gives up on the refused after its last try.
	giveUp := bugs.resendBatch > 0
	var o outcome
	for i, r := range left {
		why, rcptRefused := refused[i], refused[i] != nil
		if !rcptRefused {
			why = err // accepted (or not reached): the transaction's fate
		}
		switch {
		case why == nil:
			o.sent = append(o.sent, r)
		case classify(why) == classPerm:
			w.log.Warn("bounced", "to", r.rcpt, "err", why)
			o.bounced = append(o.bounced, bounce{r, why.Error()})
		case classify(why) == classTemp && (bugs.tempFinal || giveUp && rcptRefused):
			w.log.Warn("temporary failure; giving up on the address", "to", r.rcpt, "err", why)
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

// timedOutAtDot reports whether err is a timeout waiting for the reply to
// the final dot.
func timedOutAtDot(err error) bool {
	var se *stepError
	var ne net.Error
	return errors.As(err, &se) && se.step == stepDot && errors.As(err, &ne) && ne.Timeout()
}

// hangUp closes the connection, if any.
func (w *worker) hangUp() {
	if w.sess != nil {
		w.sess.close()
		w.sess = nil
	}
}

// below keeps the chunks' recipients whose distinct rank is below n.
func below(chunks []chunk, n int) []chunk {
	var out []chunk
	for _, c := range chunks {
		var keep []recipient
		for _, r := range c.rcpts {
			if r.seq < n {
				keep = append(keep, r)
			}
		}
		if len(keep) > 0 {
			c.rcpts = keep
			out = append(out, c)
		}
	}
	return out
}

// noGuard keeps nobody out.
type noGuard struct{}

func (noGuard) hold() error    { return nil }
func (noGuard) release() error { return nil }

// book is the ledger database of one campaign. Its single connection
// (openLedger) serialises the workers' writes.
type book struct {
	db       *sql.DB
	campaign string
	// highWater: also keep the highest list position recorded, and resume
	// after it (the high-water mutant).
	highWater bool
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
// addresses by key (INSERT OR IGNORE: rows of an earlier start are left
// alone) and returns the pending chunks in list order and the number of
// distinct addresses.
func (b *book) seed(ctx context.Context, list []string, batch int, key func(string) string) ([]chunk, int, error) {
	tx, err := b.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, 0, fmt.Errorf("seed ledger: %w", err)
	}
	defer tx.Rollback()
	var was, mark int
	if _, err := tx.ExecContext(ctx, `INSERT OR IGNORE INTO campaigns (campaign, batch) VALUES (?, ?)`, b.campaign, batch); err != nil {
		return nil, 0, fmt.Errorf("seed ledger: %w", err)
	}
	if err := tx.QueryRowContext(ctx, `SELECT batch, highwater FROM campaigns WHERE campaign = ?`, b.campaign).Scan(&was, &mark); err != nil {
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
		k := key(rcpt)
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
	if !b.highWater {
		mark = -1
	}
	rows, err := b.db.QueryContext(ctx, `SELECT addr, rcpt, pos, seq FROM recipients WHERE campaign = ? AND state = ? AND pos > ? ORDER BY seq`,
		b.campaign, statePending, mark)
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
		mark := -1
		set := func(r recipient, state, detail string) error {
			mark = max(mark, r.pos)
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
		if b.highWater {
			if _, err := tx.ExecContext(ctx, `UPDATE campaigns SET highwater = max(highwater, ?) WHERE campaign = ?`, mark, b.campaign); err != nil {
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
