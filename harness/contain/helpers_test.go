package contain

// Test helpers: a daemonising test sender (testdata/daemon.sh), polling
// of /proc instead of sleeps, and a cleanup that kills, by the MARK each
// test gives its processes, whatever a failing test leaves behind.

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// loopers are the names daemon.sh gives its four daemons.
var loopers = []string{"sess", "setsidf", "dfork", "plain"}

// eachMode runs fn once per mode, forced, skipping (and saying why) the
// modes this machine lacks.
func eachMode(t *testing.T, fn func(t *testing.T, m Mode)) {
	t.Helper()
	for _, m := range Modes() {
		t.Run(string(m), func(t *testing.T) {
			if err := Probe(m); err != nil {
				t.Skipf("%s is unavailable here: %v", m, err)
			}
			fn(t, m)
		})
	}
}

// newSupervisor makes a Supervisor in mode m, closed at the test's end.
func newSupervisor(t testing.TB, m Mode) *Supervisor {
	t.Helper()
	s, err := New(Options{Mode: m, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New(%s): %v", m, err)
	}
	if s.Mode() != m {
		t.Fatalf("Mode() = %s, want %s", s.Mode(), m)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// testLogger logs to t until the test ends (a late line must not panic).
func testLogger(t testing.TB) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.over = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	over bool
}

func (w *testWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.over {
		w.t.Log(strings.TrimSuffix(string(b), "\n"))
	}
	return len(b), nil
}

// markDir is a fresh directory whose path every process of the test
// carries as $MARK; at the end, whatever still carries it is killed.
func markDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	t.Cleanup(func() { killMarked(t, dir) })
	return dir
}

// killMarked SIGKILLs every live process whose environment says MARK=dir.
func killMarked(t testing.TB, dir string) {
	procs, err := readProcs(make([]byte, 1024))
	if err != nil {
		return
	}
	for pid, p := range procs {
		if !p.dead() && envValue(pid, "MARK") == dir {
			t.Logf("cleanup: killing pid %d %v, left behind", pid, cmdline(pid))
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// leftovers lists the live processes whose environment says MARK=dir.
func leftovers(dir string) []string {
	procs, _ := readProcs(make([]byte, 1024))
	var left []string
	for pid, p := range procs {
		if !p.dead() && envValue(pid, "MARK") == dir {
			left = append(left, fmt.Sprintf("%d %v", pid, cmdline(pid)))
		}
	}
	return left
}

// noneLeft fails unless no process of the test's MARK is left.
func noneLeft(t testing.TB, mark string) {
	t.Helper()
	if left := leftovers(mark); len(left) > 0 {
		t.Fatalf("left behind: %v", left)
	}
}

// daemonSpec runs testdata/daemon.sh with MARK=mark and extra variables.
func daemonSpec(t testing.TB, mark string, env ...string) Spec {
	t.Helper()
	script, err := filepath.Abs("testdata/daemon.sh")
	if err != nil {
		t.Fatal(err)
	}
	return Spec{
		Argv: []string{"/bin/sh", script},
		Env:  append(append(os.Environ(), "MARK="+mark), env...),
	}
}

// waitFor polls cond every few milliseconds until it holds or d passes.
// what says what failed: a string, or a func() string called then.
func waitFor(t testing.TB, d time.Duration, what any, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			if f, ok := what.(func() string); ok {
				what = f()
			}
			t.Fatalf("after %v: %v", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// holdsFor checks cond at every poll for d: an observation window, not a
// synchronisation.
func holdsFor(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if !cond() {
			t.Fatalf("%s stopped holding", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// readPidFile reads MARK/name.pid, 0 while it is not there.
func readPidFile(mark, name string) int {
	b, err := os.ReadFile(filepath.Join(mark, name+".pid"))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// daemonPids waits until daemon.sh has recorded the pids of its loopers and
// of itself, and returns them by name.
func daemonPids(t testing.TB, mark string) map[string]int {
	t.Helper()
	pids := map[string]int{}
	for _, name := range append(loopers[:len(loopers):len(loopers)], "leader") {
		waitFor(t, 15*time.Second, "daemon.sh never recorded "+name+".pid", func() bool {
			pids[name] = readPidFile(mark, name)
			return pids[name] > 0
		})
	}
	return pids
}

// alive says whether pid runs (a zombie does not).
func alive(pid int) bool {
	p, ok := readStat(pid, make([]byte, 1024))
	return ok && !p.dead()
}

func state(pid int) byte {
	p, _ := readStat(pid, make([]byte, 1024))
	return p.state
}

func allDead(pids map[string]int) bool {
	for _, pid := range pids {
		if alive(pid) {
			return false
		}
	}
	return true
}

func deadList(pids map[string]int) string {
	var s []string
	for name, pid := range pids {
		s = append(s, fmt.Sprintf("%s=%d alive=%v", name, pid, alive(pid)))
	}
	return strings.Join(s, " ")
}

// logSizes is the size of each looper's log.
func logSizes(mark string) map[string]int64 {
	sizes := map[string]int64{}
	for _, name := range loopers {
		if fi, err := os.Stat(filepath.Join(mark, name+".log")); err == nil {
			sizes[name] = fi.Size()
		}
	}
	return sizes
}

func sameSizes(a, b map[string]int64) bool {
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return len(a) == len(b)
}

// waitDone waits for the attempt's end.
func waitDone(t testing.TB, a *Attempt, d time.Duration) {
	t.Helper()
	select {
	case <-a.Done():
	case <-time.After(d):
		t.Fatalf("attempt %d not done after %v; members: %v", a.Pid(), d, a.Members())
	}
}

// killAtEnd kills the attempt when the test ends, and waits for it.
func killAtEnd(t testing.TB, a *Attempt) {
	t.Cleanup(func() {
		a.Signal(syscall.SIGKILL)
		select {
		case <-a.Done():
		case <-time.After(15 * time.Second):
			t.Errorf("attempt %d never ended", a.Pid())
		}
	})
}

func start(t testing.TB, s *Supervisor, spec Spec) *Attempt {
	t.Helper()
	a, err := s.Start(context.Background(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	killAtEnd(t, a)
	return a
}

// syncBuffer is a bytes.Buffer safe for the copy goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var _ io.Writer = (*syncBuffer)(nil)
