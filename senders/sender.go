// sender.go: the Sender interface, the Main/Run entry points that turn a
// Sender into a contract-abiding program, and the built-in sender factory.
package senders

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"
)

// Sender sends one campaign. Send returns nil only when the campaign is
// complete; any error means this attempt failed and the harness may start the
// sender again. Send should stop soon after ctx is cancelled (SIGTERM).
type Sender interface {
	Send(ctx context.Context, env Env) error
}

// SenderFunc adapts a plain function to Sender.
type SenderFunc func(context.Context, Env) error

// Send calls f(ctx, env).
func (f SenderFunc) Send(ctx context.Context, env Env) error { return f(ctx, env) }

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
	return o, nil
}

// Names returns the names of the built-in senders, for New.
func Names() []string {
	return []string{"naive", "checkpoint", "early", "ledger"}
}

// New returns the built-in sender called name (one of Names()).
func New(name string, opts Options) (Sender, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	switch name {
	case "naive":
		return listSender{name: name, record: recordNone, opts: opts}, nil
	case "checkpoint":
		return listSender{name: name, record: recordAfter, opts: opts}, nil
	case "early":
		return listSender{name: name, record: recordBefore, opts: opts}, nil
	case "ledger":
		return ledger{opts: opts}, nil
	}
	return nil, fmt.Errorf("unknown sender %q: choose one of %s", name, strings.Join(Names(), ", "))
}

// Run is the testable core of Main: it reads the environment through getenv,
// runs s and returns the process exit code: 0 when the campaign is complete,
// 1 otherwise, with the reason written to stderr.
func Run(ctx context.Context, s Sender, getenv func(string) string, stderr io.Writer) int {
	env, err := EnvFrom(getenv)
	if err != nil {
		fmt.Fprintf(stderr, "onecopy sender: %v\n", err)
		return 1
	}
	if err := s.Send(ctx, env); err != nil {
		if ctx.Err() != nil && !strings.HasPrefix(err.Error(), "interrupted") {
			err = fmt.Errorf("interrupted before the campaign was complete: %w", err)
		}
		fmt.Fprintf(stderr, "onecopy sender: %v\n", err)
		return 1
	}
	return 0
}

// Main runs s as a sender process under the environment contract and exits:
// 0 when Send returns nil, 1 on a bad environment, an error, or a SIGTERM or
// SIGINT that interrupted the campaign (Send sees ctx cancelled).
func Main(s Sender) {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	code := Run(ctx, s, os.Getenv, os.Stderr)
	stop()
	os.Exit(code)
}
