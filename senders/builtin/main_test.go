// main_test.go: end-to-end tests of senders.Main in a real child process (this test
// binary re-executed), with a real SIGTERM.
package builtin

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/onecopy/onecopy/senders"
)

// TestHelperProcess is not a test: it is the sender process the tests below
// start, running a built-in under senders.Main.
func TestHelperProcess(t *testing.T) {
	name := os.Getenv("ONECOPY_TEST_SENDER")
	if name == "" {
		t.Skip("helper process for the senders.Main tests")
	}
	opts := Options{Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	opts.Batch, _ = strconv.Atoi(os.Getenv("ONECOPY_TEST_BATCH"))
	opts.Connections, _ = strconv.Atoi(os.Getenv("ONECOPY_TEST_CONNECTIONS"))
	s, err := New(name, opts)
	if err != nil {
		t.Fatal(err)
	}
	senders.Main(s)
}

// startSender starts a built-in sender process under the contract.
func startSender(t *testing.T, sp spec, env senders.Env) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), env.Environ()...)
	cmd.Env = append(cmd.Env, "ONECOPY_TEST_SENDER="+sp.name,
		"ONECOPY_TEST_BATCH="+strconv.Itoa(sp.batch), "ONECOPY_TEST_CONNECTIONS="+strconv.Itoa(sp.conns))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return cmd, &stderr
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// SIGTERM while the 3rd message is in the server's hands: the ledger process
// finishes what it holds, exits 1 saying how far it got, and a rerun
// completes the list with one copy each.
func TestMainLedgerGracefulSIGTERM(t *testing.T) {
	srv := newCountingServer(t)
	list := addrs(200)
	env := testEnv(t, srv.Addr, list...)
	srv.mu.Lock() // held until onCount is set: no delivery can race past it
	cmd, stderr := startSender(t, spec{name: "ledger"}, env)
	srv.onCount = func(n int, _ delivery) error {
		if n == 3 {
			return cmd.Process.Signal(syscall.SIGTERM)
		}
		return nil
	}
	srv.mu.Unlock()
	err := cmd.Wait()
	if code := exitCode(err); code != 1 || !strings.Contains(stderr.String(), "interrupted: ") || !strings.Contains(stderr.String(), "rerun to continue") {
		t.Fatalf("exit %d, stderr %q; want 1 and an interrupted message", code, stderr.String())
	}
	if n := len(srv.deliveries()); n < 3 || n == len(list) {
		t.Fatalf("%d copies after the SIGTERM, want at least 3 and fewer than %d", n, len(list))
	}

	env.Attempt = 2
	cmd, stderr = startSender(t, spec{name: "ledger"}, env)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("rerun: %v, stderr %q", err, stderr.String())
	}
	if c := counts(srv.deliveries()); !reflect.DeepEqual(c, once(list...)) {
		t.Fatalf("copies %v, want one each", c)
	}
}

func TestMainBadEnvironmentExits1(t *testing.T) {
	cmd, stderr := startSender(t, spec{name: "naive"}, senders.Env{})
	if code := exitCode(cmd.Wait()); code != 1 || !strings.Contains(stderr.String(), senders.VarSMTPAddr) {
		t.Fatalf("exit %d, stderr %q; want 1 naming %s", code, stderr.String(), senders.VarSMTPAddr)
	}
}
