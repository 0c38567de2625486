package contain

// When the supervising process dies without Close (SIGKILL, or a Ctrl-C it
// does not handle), the watchdog kills every process it contained. The
// supervising process is this test binary, run again as a helper.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// helperMain supervises testdata/daemon.sh in mode m, says where in
// $MARK, and waits to be killed.
func helperMain(m Mode) int {
	mark := os.Getenv("MARK")
	s, err := New(Options{Mode: m})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 3
	}
	a, err := s.Start(context.Background(), Spec{Argv: []string{"/bin/sh", os.Getenv("CONTAIN_TEST_SCRIPT")}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 3
	}
	if a.dir != "" {
		os.WriteFile(filepath.Join(mark, "cgroup"), []byte(filepath.Dir(a.dir)), 0o644)
	}
	os.WriteFile(filepath.Join(mark, "ready"), nil, 0o644)
	time.Sleep(time.Hour)
	return 0
}

func TestSupervisorDies(t *testing.T) {
	script, err := filepath.Abs("testdata/daemon.sh")
	if err != nil {
		t.Fatal(err)
	}
	eachMode(t, func(t *testing.T, m Mode) {
		for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGINT} {
			t.Run(signalName(sig), func(t *testing.T) {
				mark := markDir(t)
				cmd := exec.Command(os.Args[0], "-test.run=^$")
				cmd.Env = append(os.Environ(), helperEnv+"="+string(m), "MARK="+mark, "CONTAIN_TEST_SCRIPT="+script)
				cmd.Stdout, cmd.Stderr = &testWriter{t: t}, &testWriter{t: t}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
				pids := daemonPids(t, mark)
				waitFor(t, 10*time.Second, "the helper never got ready", func() bool {
					_, err := os.Stat(filepath.Join(mark, "ready"))
					return err == nil
				})
				cg, _ := os.ReadFile(filepath.Join(mark, "cgroup"))

				cmd.Process.Signal(sig)
				err := cmd.Wait()
				if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || ws.Signal() != sig {
					t.Fatalf("the helper did not die of %v: %v", sig, err)
				}
				waitFor(t, 15*time.Second, func() string { return "a daemon outlived its supervisor: " + deadList(pids) }, func() bool { return allDead(pids) })
				// Nothing else either, once the watchdog is done (it carries
				// MARK too, from the helper).
				waitFor(t, 15*time.Second, func() string { return fmt.Sprint("outlived their supervisor: ", leftovers(mark)) }, func() bool { return len(leftovers(mark)) == 0 })
				if dir := strings.TrimSpace(string(cg)); dir != "" {
					waitFor(t, 15*time.Second, "the watchdog left "+dir, func() bool {
						_, err := os.Stat(dir)
						return os.IsNotExist(err)
					})
				}
			})
		}
	})
}
