// Package builtin holds onecopy's built-in senders, correct and buggy, each
// a [senders.Sender] (see [New]). They live apart from package senders so a
// user's own sender built on senders.Main links none of them (nor SQLite).
//
// The built-ins, by name:
//
//   - naive: the buggy job. One pass over the list, no memory between
//     attempts: every retry resends the head of the list.
//   - checkpoint: records the position after each 250 (at-least-once: a kill
//     right after a 250 resends that message with a new Message-ID).
//   - early: records the position before each send (at-most-once: a kill or
//     error mid-send loses that recipient).
//   - ledger: a SQLite ledger with one row per normalised address, the
//     distinct list cut into chunks of Options.Batch recipients (one
//     transaction each, with a Message-ID fixed per (campaign, chunk)) sent
//     over Options.Connections connections, each transaction recorded after
//     its reply, retries of 4xx, bounces on 5xx, a file lock against
//     overlapping instances and a graceful SIGTERM (effectively-once).
//   - naive-http, ledger-http, ledger-http-key: naive and ledger sending
//     through Resend's API at ONECOPY_API_URL instead of SMTP, the last
//     with the Message-ID also as Resend's Idempotency-Key (http_senders.go).
//
// The others are mutants: the ledger (or the checkpoint sender) with one
// real bug each, so the scenario catalog can prove it catches every one.
// [Describe] says what each built-in is; docs/mutants.md has the table.
package builtin

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/onecopy/onecopy/senders"
)

// Options tune the built-in senders. The zero value is ready to use.
type Options struct {
	// Timeout bounds each SMTP command and its reply; 0 means 10s.
	Timeout time.Duration
	// From is the envelope and header sender; "" means campaign@onecopy.test.
	From string
	// Logger receives progress and retry logs; nil discards them.
	Logger *slog.Logger
	// Backoff is the first wait before the ledger retries an address after a
	// 4xx or a lost connection; it doubles per failure. 0 means 20ms.
	Backoff time.Duration
	// MaxBackoff caps that wait; 0 means 1s.
	MaxBackoff time.Duration
	// Batch is how many recipients the ledger puts in one SMTP transaction:
	// the distinct list is cut into chunks of Batch by list position, and
	// each chunk is one message with its own fixed Message-ID. 0 means 1.
	// Keep it the same across restarts of one campaign.
	Batch int
	// Connections is how many SMTP connections the ledger sends over at
	// once, each worker taking the next pending chunk. 0 means 1.
	Connections int
}

// Default option values.
const (
	DefaultTimeout    = 10 * time.Second
	DefaultFrom       = "campaign@onecopy.test"
	DefaultBackoff    = 20 * time.Millisecond
	DefaultMaxBackoff = time.Second
)

// withDefaults fills in zero fields and rejects values that cannot work.
func (o Options) withDefaults() (Options, error) {
	if o.Timeout < 0 || o.Backoff < 0 || o.MaxBackoff < 0 {
		return o, errors.New("negative duration in sender options: use 0 for the default")
	}
	if o.Batch < 0 || o.Connections < 0 {
		return o, fmt.Errorf("sender options Batch=%d, Connections=%d: want 1 or more (0 means 1)", o.Batch, o.Connections)
	}
	if strings.ContainsAny(o.From, "<>\r\n\t ") {
		return o, fmt.Errorf("sender option From=%q must be a bare address such as %s", o.From, DefaultFrom)
	}
	if o.Timeout == 0 {
		o.Timeout = DefaultTimeout
	}
	if o.From == "" {
		o.From = DefaultFrom
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Backoff == 0 {
		o.Backoff = DefaultBackoff
	}
	if o.MaxBackoff == 0 {
		o.MaxBackoff = DefaultMaxBackoff
	}
	o.Batch = max(o.Batch, 1)
	o.Connections = max(o.Connections, 1)
	return o, nil
}

// Names returns the names of the built-in senders, for New.
func Names() []string {
	names := []string{"naive", "checkpoint", "early", "ledger", "naive-http", "ledger-http", "ledger-http-key"}
	return append(names, mutantNames()...)
}

// New returns the built-in sender called name (one of Names()).
func New(name string, opts Options) (senders.Sender, error) {
	if m, ok := findMutant(name); ok {
		return m.build(opts)
	}
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	switch name {
	case "naive":
		return newListSender(name, recordNone, 0, opts)
	case "checkpoint":
		return newListSender(name, recordAfter, 0, opts)
	case "early":
		return newListSender(name, recordBefore, 0, opts)
	case "ledger":
		return &ledger{name: name, opts: opts}, nil
	case "naive-http":
		return naiveHTTP{opts: opts}, nil
	case "ledger-http", "ledger-http-key":
		return ledgerHTTP{opts: opts, key: name == "ledger-http-key"}, nil
	}
	return nil, fmt.Errorf("unknown sender %q: choose one of %s", name, strings.Join(Names(), ", "))
}
