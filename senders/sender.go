// sender.go: the Sender interface, the Main/Run entry points that turn a
// Sender into a contract-abiding program, and the built-in sender factory.
package senders

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
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
