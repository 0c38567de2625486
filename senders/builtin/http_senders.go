// http_senders.go: the built-ins that send through a provider's HTTP API
// (Resend's, at ONECOPY_API_URL) instead of SMTP: naive-http, the buggy
// job, and ledger-http and ledger-http-key, the ledger with and without
// Resend's Idempotency-Key.
package builtin

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/onecopy/onecopy/senders"
)

// naiveHTTP is naive over the API: one pass, a new Message-ID per send,
// the first failure ends the attempt, nothing remembered.
type naiveHTTP struct{ opts Options }

// Send implements senders.Sender.
func (n naiveHTTP) Send(ctx context.Context, env senders.Env) error {
	list, err := senders.ReadList(env.RecipientsFile)
	if err != nil {
		return err
	}
	c, err := newResendClient("naive-http", env, n.opts.Timeout)
	if err != nil {
		return err
	}
	defer c.close()
	log := n.opts.Logger.With("sender", "naive-http", "campaign", env.Campaign, "attempt", env.Attempt, "instance", env.Instance)
	log.Info("starting", "recipients", len(list))
	for i, to := range list {
		if _, err := c.send(ctx, n.opts.From, to, env.Campaign, randomMessageID("naive-http"), ""); err != nil {
			return fmt.Errorf("naive-http: recipient %d of %d (%s): %w", i+1, len(list), to, err)
		}
		log.Debug("sent", "to", to, "n", i+1)
	}
	log.Info("campaign complete", "recipients", len(list))
	return nil
}

// ledgerHTTP is the ledger over the API: the same SQLite ledger, lock and
// Message-ID fixed per (campaign, address), sent as the message's
// Message-ID header; with key, also as its Idempotency-Key, so Resend
// answers a retry of a message it already took with the first answer.
type ledgerHTTP struct {
	opts Options
	key  bool
}

func (l ledgerHTTP) name() string {
	if l.key {
		return "ledger-http-key"
	}
	return "ledger-http"
}

// Send implements senders.Sender.
func (l ledgerHTTP) Send(ctx context.Context, env senders.Env) error {
	list, err := senders.ReadList(env.RecipientsFile)
	if err != nil {
		return err
	}
	cl, err := newResendClient(l.name(), env, l.opts.Timeout)
	if err != nil {
		return err
	}
	defer cl.close()
	log := l.opts.Logger.With("sender", l.name(), "campaign", env.Campaign, "attempt", env.Attempt, "instance", env.Instance)
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
	chunks, _, err := b.seed(ctx, list, 1, senders.Normalize)
	if err != nil {
		return b.stopped(ctx, err)
	}
	log.Info("starting", "recipients", len(list), "pending", len(chunks))
	for _, c := range chunks {
		for _, r := range c.rcpts {
			if ctx.Err() != nil {
				return b.stopped(ctx, context.Cause(ctx))
			}
			state, detail, err := l.deliver(ctx, cl, env, r)
			if err != nil {
				return b.stopped(ctx, err)
			}
			// Recorded even when ctx is cancelled: the message was sent.
			var sent []recipient
			var bounced []bounce
			if state == stateSent {
				sent = []recipient{r}
			} else {
				bounced = []bounce{{recipient: r, reply: detail}}
			}
			if err := b.record(ctx, sent, bounced); err != nil {
				return fmt.Errorf("%s: %w", l.name(), err)
			}
		}
	}
	log.Info("campaign complete")
	return nil
}

// deliver sends r's message until the API accepts it (stateSent) or
// refuses it for good (stateBounced). Throttling, 5xx and no answer are
// retried with backoff for as long as ctx lives; the request in hand is
// never cut short by ctx, only waiting is.
func (l ledgerHTTP) deliver(ctx context.Context, c *resendClient, env senders.Env, r recipient) (state, detail string, err error) {
	id := ledgerMessageID(env.Campaign, r.addr)
	key := ""
	if l.key {
		key = id
	}
	log := l.opts.Logger.With("sender", l.name(), "to", r.rcpt)
	for failures := 0; ; failures++ {
		if failures > 0 {
			if err := sleep(ctx, backoff(l.opts.Backoff, l.opts.MaxBackoff, failures)); err != nil {
				return "", "", err
			}
		}
		_, err := c.send(context.WithoutCancel(ctx), l.opts.From, r.rcpt, env.Campaign, id, key)
		if err == nil {
			log.Debug("sent")
			return stateSent, "", nil
		}
		e := apiErrorOf(err)
		if e == nil {
			return "", "", fmt.Errorf("%s: %w", l.name(), err)
		}
		switch e.classify() {
		case classPerm:
			if !e.forRecipient() {
				return "", "", fmt.Errorf("%s: the API refused the campaign, not %s: %w; check %s and the server", l.name(), r.rcpt, err, senders.VarAPIURL)
			}
			log.Warn("bounced", "err", err)
			return stateBounced, err.Error(), nil
		case classTemp:
			log.Warn("temporary failure; retrying", "err", err, "failures", failures+1)
		default:
			// The API may have taken it: the retry carries the same
			// Message-ID (and key), so it is the same message.
			log.Warn("no answer; resending", "err", err, "failures", failures+1)
		}
	}
}
