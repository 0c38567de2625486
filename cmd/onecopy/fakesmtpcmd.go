// onecopy fakesmtp: the counting server on its own, for test frameworks in
// any language.

package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"strings"

	"github.com/spf13/cobra"

	"github.com/onecopy/onecopy/fakesmtp"
)

func fakesmtpCommand(code *int) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "fakesmtp [flags]",
		Short: "the counting fake SMTP server (and providers' HTTP APIs) on its own",
		Long: `Serves the counting fake SMTP server, the providers' send APIs (SES, SendGrid, Mailgun,
Postmark, Resend; docs/providers.md), the counts API and /metrics, until Ctrl-C: for test
frameworks in any language (docs/fakesmtp.md).`,
		Example: `  onecopy fakesmtp --smtp 127.0.0.1:2525 --http 127.0.0.1:8025
  curl -s 127.0.0.1:8025/api/v1/recipients
  onecopy fakesmtp --journal counts.jsonl --fault greylist`,
		Args: cobra.NoArgs,
	}
	fs := cmd.Flags()
	smtpAddr := fs.String("smtp", "127.0.0.1:2525", "SMTP listen `ADDR`")
	httpAddr := fs.String("http", "127.0.0.1:8025", "counts API, providers' APIs and /metrics listen `ADDR` (empty: none)")
	journal := fs.String("journal", "", "append every counted copy to `FILE` (synced before the 250) and replay it at start")
	faults := fs.StringArray("fault", nil, "SMTP fault (repeatable): "+fakesmtp.FaultForms+" (outage: use the HTTP API)")
	seed := fs.Uint64("seed", 1, "seed for random faults")
	maxSize := fs.Int("max-size", 10<<20, "largest message accepted, in bytes")
	verbose := fs.BoolP("verbose", "v", false, "log protocol errors and faults to stderr")
	token := fs.String("token", "", "API `TOKEN` the HTTP API requires (as Authorization: Bearer) of requests that change state; default $ONECOPY_API_TOKEN; needed when --http is not a loopback address")
	var tf tlsFlags
	fs.StringVar(&tf.addr, "tls", "", "also serve implicit TLS (like port 465) on `ADDR`")
	fs.StringVar(&tf.cert, "tls-cert", "", "the TLS certificate `FILE` (PEM; default: one made at start)")
	fs.StringVar(&tf.key, "tls-key", "", "the TLS key `FILE` (PEM), with --tls-cert")
	fs.StringVar(&tf.ca, "tls-ca", "", "write the CA that signs the server's certificate to `FILE`, for clients to trust")
	fs.BoolVar(&tf.require, "require-tls", false, "refuse MAIL and AUTH before STARTTLS (530 5.7.0)")
	fs.StringArrayVar(&tf.auth, "auth", nil, "accept only these credentials, `USER:PASS` (repeatable; default: any), and refuse MAIL before AUTH")
	procs := fs.Int("procs", 1, "`N` threads run the server's Go code (GOMAXPROCS); 0 keeps Go's default of one per CPU")
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		*code = serveFake(cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr(), fakeFlags{*smtpAddr, *httpAddr, *journal, *faults, *seed, *maxSize, *verbose, *procs, *token, tf})
		return nil
	}
	return cmd
}

type fakeFlags struct {
	smtpAddr, httpAddr, journal string
	faults                      []string
	seed                        uint64
	maxSize                     int
	verbose                     bool
	procs                       int
	token                       string
	tls                         tlsFlags
}

// tlsFlags are the server's TLS and AUTH settings.
type tlsFlags struct {
	addr, cert, key, ca string
	require             bool
	auth                []string
}

func serveFake(ctx context.Context, stdout, stderr io.Writer, ff fakeFlags) int {
	smtpAddr, httpAddr, journal, faults, seed, maxSize, verbose, procs, token := &ff.smtpAddr, &ff.httpAddr, &ff.journal, ff.faults, &ff.seed, &ff.maxSize, &ff.verbose, &ff.procs, &ff.token
	// One thread by default, like smtp-sink's single event loop: SMTP is
	// ping-pong, each reply a few microseconds of work, and with more
	// threads Go's scheduler spends as much again waking and parking them,
	// on the cores the sender under test needs (docs/PERFORMANCE.md).
	if *procs < 0 {
		return failed(stderr, nil, usageErr("--procs %d: want 0 (one per CPU) or more", *procs))
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	var specs []fakesmtp.FaultSpec
	for _, s := range faults {
		spec, err := fakesmtp.ParseFault(s)
		if err != nil {
			return failed(stderr, nil, usageErr("%v", err))
		}
		if spec.Kind == "outage" {
			return failed(stderr, nil, usageErr("--fault %s: a standalone server has no list to measure PCT against; use POST /api/v1/outage?for=DUR", s))
		}
		specs = append(specs, spec)
	}
	// A FaultSet even with no --fault, so PUT /api/v1/faults can add some.
	if *token == "" {
		*token = os.Getenv("ONECOPY_API_TOKEN")
	}
	opts := fakesmtp.Options{Addr: *smtpAddr, HTTPAddr: *httpAddr, Journal: *journal, MaxSize: *maxSize,
		Hooks: []fakesmtp.Hook{fakesmtp.NewFaultSet(specs, *seed)}, APIToken: *token,
		TLSAddr: ff.tls.addr, TLSCertFile: ff.tls.cert, TLSKeyFile: ff.tls.key, TLSCAFile: ff.tls.ca, RequireTLS: ff.tls.require}
	if (ff.tls.cert == "") != (ff.tls.key == "") {
		return failed(stderr, nil, usageErr("--tls-cert and --tls-key go together"))
	}
	if len(ff.tls.auth) > 0 {
		opts.Users, opts.RequireAuth = map[string]string{}, true
		for _, a := range ff.tls.auth {
			user, pass, ok := strings.Cut(a, ":")
			if !ok || user == "" {
				return failed(stderr, nil, usageErr("--auth %q: want USER:PASS", a))
			}
			opts.Users[user] = pass
		}
	}
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(stderr, nil))
	}
	srv, err := fakesmtp.Start(ctx, opts)
	if err != nil {
		return failed(stderr, nil, err)
	}
	fmt.Fprintf(stdout, "onecopy fakesmtp: SMTP on %s (STARTTLS)\n", srv.Addr())
	if a := srv.TLSAddr(); a != "" {
		fmt.Fprintf(stdout, "  implicit TLS on %s\n", a)
	}
	if ff.tls.ca != "" {
		fmt.Fprintf(stdout, "  the CA that signs its certificate: %s\n", ff.tls.ca)
	}
	if a := srv.HTTPAddr(); a != "" {
		fmt.Fprintf(stdout, "  counts:  http://%s/api/v1/recipients\n  faults:  http://%s/api/v1/faults\n  metrics: http://%s/metrics\n", a, a, a)
		if *token != "" {
			fmt.Fprintln(stdout, "  control: PUT, DELETE and POST need Authorization: Bearer <the --token or ONECOPY_API_TOKEN value>")
		}
	}
	if *journal != "" {
		c := srv.Oracle().Copies()
		fmt.Fprintf(stdout, "  journal: %s (%d copies replayed)\n", *journal, c)
	}
	fmt.Fprintln(stdout, "Ctrl-C to stop.")
	<-ctx.Done()
	if err := srv.Close(); err != nil {
		fmt.Fprintf(stderr, "onecopy fakesmtp: %v\n", err)
		return exitHarness
	}
	snap := srv.Snapshot()
	fmt.Fprintf(stdout, "stopped: %d copies to %d recipients\n", snap.Copies, len(snap.Recipients))
	return exitPass
}
