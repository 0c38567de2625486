package contain

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The test binary doubles as a supervising process to SIGKILL: see
// TestSupervisorDies.
const helperEnv = "CONTAIN_TEST_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		os.Exit(helperMain(Mode(mode)))
	}
	os.Exit(m.Run())
}

func TestNewPicksTheBestModeAvailable(t *testing.T) {
	var want Mode
	for _, m := range Modes() {
		if Probe(m) == nil {
			want = m
			break
		}
	}
	if want == "" {
		t.Skip("no mode works here")
	}
	s, err := New(Options{Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Mode() != want {
		t.Errorf("Mode() = %s, want %s, the first that probes", s.Mode(), want)
	}
	if _, err := New(Options{Mode: "cgroup-v3"}); err == nil || !strings.Contains(err.Error(), "unknown mode") {
		t.Errorf("New with an unknown mode: %v", err)
	}
}

func TestSignalKillReachesEveryProcess(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		s := newSupervisor(t, m)
		mark := markDir(t)
		a := start(t, s, daemonSpec(t, mark))
		pids := daemonPids(t, mark)

		// Every daemon is a member, whatever its session.
		waitFor(t, 5*time.Second, "Members() lacks a daemon", func() bool {
			var got []int
			for _, mb := range a.Members() {
				got = append(got, mb.Pid)
			}
			for _, pid := range pids {
				if !slices.Contains(got, pid) {
					return false
				}
			}
			return true
		})
		for _, mb := range a.Members() {
			if mb.Pid == pids["sess"] && !strings.Contains(strings.Join(mb.Argv, " "), "looper.sh sess") {
				t.Errorf("member %v: want the looper's command line", mb)
			}
		}
		leaderSid, _ := unix.Getsid(pids["leader"])
		for _, name := range []string{"sess", "setsidf"} {
			if sid, _ := unix.Getsid(pids[name]); sid == leaderSid {
				t.Fatalf("%s is in the leader's session (%d): the test proves nothing", name, sid)
			}
		}
		if err := a.Signal(syscall.SIGKILL); err != nil {
			t.Fatalf("Signal(SIGKILL): %v", err)
		}
		waitDone(t, a, 10*time.Second)
		if !allDead(pids) {
			t.Fatalf("alive after the attempt ended: %s", deadList(pids))
		}
		noneLeft(t, mark)
		if e := a.Exit(); e.Signal != syscall.SIGKILL || e.Code != -1 || e.Err != nil {
			t.Errorf("Exit() = %+v, want killed by SIGKILL", e)
		}
		// No writer is left, so the logs stay as they are.
		sizes := logSizes(mark)
		holdsFor(t, 200*time.Millisecond, "no log grows after the kill", func() bool { return sameSizes(sizes, logSizes(mark)) })
		if err := a.Signal(syscall.SIGKILL); !errors.Is(err, ErrDone) {
			t.Errorf("Signal after Done: %v, want ErrDone", err)
		}
	})
}

func TestSignalTermReachesEveryProcess(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		s := newSupervisor(t, m)
		mark := markDir(t)
		a := start(t, s, daemonSpec(t, mark))
		pids := daemonPids(t, mark)
		if err := a.Signal(syscall.SIGTERM); err != nil {
			t.Fatalf("Signal(SIGTERM): %v", err)
		}
		waitDone(t, a, 10*time.Second)
		if !allDead(pids) {
			t.Fatalf("alive after SIGTERM: %s", deadList(pids))
		}
		noneLeft(t, mark)
		if e := a.Exit(); e.Signal != syscall.SIGTERM {
			t.Errorf("Exit() = %v, want killed by SIGTERM", e)
		}
	})
}

func TestFreezeStopsEveryProcessAndThawResumes(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		s := newSupervisor(t, m)
		mark := markDir(t)
		a := start(t, s, daemonSpec(t, mark))
		pids := daemonPids(t, mark)
		waitFor(t, 5*time.Second, "every looper logs", func() bool { return len(logSizes(mark)) == len(loopers) })

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := a.Freeze(ctx); err != nil {
			t.Fatalf("Freeze: %v", err)
		}
		switch m {
		case CgroupV2:
			if v := readEvent(t, a.dir, "frozen"); v != "1" {
				t.Errorf("cgroup.events frozen = %q after Freeze", v)
			}
		case CgroupV1:
			if b, _ := os.ReadFile(filepath.Join(a.dir, "freezer.state")); strings.TrimSpace(string(b)) != "FROZEN" {
				t.Errorf("freezer.state = %q after Freeze", b)
			}
		case Subreaper:
			for name, pid := range pids {
				if st := state(pid); st != 'T' {
					t.Errorf("%s (pid %d) in state %q after Freeze, want T", name, pid, st)
				}
			}
		}
		sizes := logSizes(mark)
		holdsFor(t, 300*time.Millisecond, "no log grows while frozen", func() bool { return sameSizes(sizes, logSizes(mark)) })

		if err := a.Thaw(); err != nil {
			t.Fatalf("Thaw: %v", err)
		}
		waitFor(t, 5*time.Second, "every log grows after Thaw", func() bool {
			now := logSizes(mark)
			for name, n := range sizes {
				if now[name] <= n {
					return false
				}
			}
			return true
		})

		// A kill reaches a frozen attempt too.
		if err := a.Freeze(ctx); err != nil {
			t.Fatalf("Freeze again: %v", err)
		}
		a.Signal(syscall.SIGKILL)
		waitDone(t, a, 10*time.Second)
		if !allDead(pids) {
			t.Fatalf("alive after killing the frozen attempt: %s", deadList(pids))
		}
		noneLeft(t, mark)
	})
}

func readEvent(t *testing.T, dir, key string) string {
	b, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
	if err != nil {
		t.Fatal(err)
	}
	return eventValue(string(b), key)
}

// A leader that exits 0 while its daemons still hold its stdout pipe: exit
// 0, no error, and the attempt ends at once, its daemons killed.
func TestLeaderExitEndsTheAttempt(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		for _, code := range []int{0, 3} {
			t.Run("exit "+strconv.Itoa(code), func(t *testing.T) {
				s := newSupervisor(t, m)
				mark := markDir(t)
				out := &syncBuffer{}
				spec := daemonSpec(t, mark, "LEADER=exit", "CODE="+strconv.Itoa(code))
				spec.Stdout, spec.Stderr = out, out
				a := start(t, s, spec)
				waitDone(t, a, 20*time.Second) // a liveness bound: no WaitDelay in the way
				pids := daemonPids(t, mark)
				if !allDead(pids) {
					t.Fatalf("alive after the leader exited: %s", deadList(pids))
				}
				noneLeft(t, mark)
				if e := a.Exit(); e.Code != code || e.Signal != 0 || e.Err != nil {
					t.Errorf("Exit() = %+v, want exit %d and no error", e, code)
				}
				for _, name := range loopers {
					if !strings.Contains(out.String(), "looper "+name+" running") {
						t.Errorf("output lacks %s's line: %q", name, out.String())
					}
				}
			})
		}
	})
}

func TestContextCancelKillsEverything(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		s := newSupervisor(t, m)
		mark := markDir(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		a, err := s.Start(ctx, daemonSpec(t, mark))
		if err != nil {
			t.Fatal(err)
		}
		killAtEnd(t, a)
		pids := daemonPids(t, mark)
		cancel()
		waitDone(t, a, 10*time.Second)
		if !allDead(pids) {
			t.Fatalf("alive after cancel: %s", deadList(pids))
		}
		noneLeft(t, mark)
		if e := a.Exit(); e.Signal != syscall.SIGKILL {
			t.Errorf("Exit() = %v, want killed by SIGKILL", e)
		}
	})
}

func TestCloseKillsEverything(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		s, err := New(Options{Mode: m, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		mark := markDir(t)
		a := start(t, s, daemonSpec(t, mark))
		pids := daemonPids(t, mark)
		if err := s.Close(); err != nil {
			t.Fatalf("Close: %v", err)
		}
		select {
		case <-a.Done():
		default:
			t.Fatal("Close returned before the attempt ended")
		}
		if !allDead(pids) {
			t.Fatalf("alive after Close: %s", deadList(pids))
		}
		noneLeft(t, mark)
		if m != Subreaper {
			if _, err := os.Stat(filepath.Dir(a.dir)); !os.IsNotExist(err) {
				t.Errorf("the cgroup parent %s is still there: %v", filepath.Dir(a.dir), err)
			}
		}
		if _, err := s.Start(context.Background(), daemonSpec(t, mark)); !errors.Is(err, ErrClosed) {
			t.Errorf("Start after Close: %v, want ErrClosed", err)
		}
	})
}

func TestExitStatus(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		s := newSupervisor(t, m)
		for _, tc := range []struct {
			name   string
			script string
			signal syscall.Signal // sent by the test once it runs
			code   int
			killed syscall.Signal
		}{
			{"exit 0", "exit 0", 0, 0, 0},
			{"exit 42", "exit 42", 0, 42, 0},
			{"killed by itself", "kill -s USR1 $$", 0, -1, syscall.SIGUSR1},
			{"SIGTERM", "exec sleep 1000", syscall.SIGTERM, -1, syscall.SIGTERM},
			{"SIGKILL", "exec sleep 1000", syscall.SIGKILL, -1, syscall.SIGKILL},
			{"SIGINT", "exec sleep 1000", syscall.SIGINT, -1, syscall.SIGINT},
		} {
			t.Run(tc.name, func(t *testing.T) {
				mark := markDir(t)
				a := start(t, s, Spec{Argv: []string{"/bin/sh", "-c", tc.script}, Env: []string{"MARK=" + mark}})
				if tc.signal != 0 {
					waitFor(t, 5*time.Second, "the shell never became sleep", func() bool {
						argv := cmdline(a.Pid())
						return len(argv) > 0 && argv[0] == "sleep"
					})
					if err := a.Signal(tc.signal); err != nil {
						t.Fatal(err)
					}
				}
				waitDone(t, a, 10*time.Second)
				e := a.Exit()
				if e.Code != tc.code || e.Signal != tc.killed || e.Err != nil || e.Duration <= 0 {
					t.Errorf("Exit() = %+v (%v), want code %d signal %v", e, e, tc.code, tc.killed)
				}
			})
		}
		if _, err := s.Start(context.Background(), Spec{Argv: []string{"/nonexistent/sender"}}); err == nil {
			t.Error("Start of a missing program succeeded")
		}
	})
}

// Two attempts at once: killing one leaves the other running.
func TestTwoAttemptsAreContainedApart(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		s := newSupervisor(t, m)
		mark1, mark2 := markDir(t), markDir(t)
		a1 := start(t, s, daemonSpec(t, mark1))
		a2 := start(t, s, daemonSpec(t, mark2))
		pids1, pids2 := daemonPids(t, mark1), daemonPids(t, mark2)
		for _, pid := range pids2 {
			for _, mb := range a1.Members() {
				if mb.Pid == pid {
					t.Fatalf("attempt 1 lists attempt 2's pid %d", pid)
				}
			}
		}
		if err := a1.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitDone(t, a1, 10*time.Second)
		if !allDead(pids1) {
			t.Fatalf("attempt 1 alive after its kill: %s", deadList(pids1))
		}
		noneLeft(t, mark1)
		for name, pid := range pids2 {
			if !alive(pid) {
				t.Errorf("attempt 2's %s (pid %d) died with attempt 1", name, pid)
			}
		}
		sizes := logSizes(mark2)
		waitFor(t, 5*time.Second, "attempt 2 goes on logging", func() bool {
			now := logSizes(mark2)
			for name, n := range sizes {
				if now[name] <= n {
					return false
				}
			}
			return true
		})
		// A freeze of one leaves the other running, too.
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		mark3 := markDir(t)
		a3 := start(t, s, daemonSpec(t, mark3))
		daemonPids(t, mark3)
		if err := a3.Freeze(ctx); err != nil {
			t.Fatal(err)
		}
		for name, pid := range pids2 {
			if st := state(pid); st == 'T' {
				t.Errorf("attempt 2's %s stopped by attempt 3's freeze", name)
			}
		}
		if len(a2.Members()) < len(pids2) {
			t.Errorf("attempt 2 lost members: %v", a2.Members())
		}
	})
}

// A pid that a dead member had, now another process's, is not a member.
func TestReusedPidIsNotAMember(t *testing.T) {
	eachMode(t, func(t *testing.T, m Mode) {
		s := newSupervisor(t, m)
		mark := markDir(t)
		a := start(t, s, daemonSpec(t, mark))
		pids := daemonPids(t, mark)
		victim := pids["setsidf"]
		waitFor(t, 5*time.Second, "the victim is a member", func() bool { return isMember(a, victim) })
		syscall.Kill(victim, syscall.SIGKILL)
		waitFor(t, 10*time.Second, "the victim is reaped", func() bool {
			_, err := os.Stat("/proc/" + strconv.Itoa(victim))
			return os.IsNotExist(err)
		})
		impostor := reusePid(t, victim, mark+"-impostor")
		if isMember(a, impostor.Process.Pid) {
			t.Errorf("pid %d, reused by an outsider, is listed as a member", victim)
		}
		if err := a.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		waitDone(t, a, 10*time.Second)
		if !alive(impostor.Process.Pid) {
			t.Errorf("killing the attempt killed pid %d, reused by an outsider", victim)
		}
	})
}

func isMember(a *Attempt, pid int) bool {
	for _, mb := range a.Members() {
		if mb.Pid == pid {
			return true
		}
	}
	return false
}

// reusePid starts an outsider (sleep) with pid, through
// /proc/sys/kernel/ns_last_pid, or skips the test if it cannot.
func reusePid(t *testing.T, pid int, mark string) *exec.Cmd {
	t.Helper()
	t.Cleanup(func() { killMarked(t, mark) })
	for try := 0; try < 50; try++ {
		if err := os.WriteFile("/proc/sys/kernel/ns_last_pid", []byte(strconv.Itoa(pid-1)), 0); err != nil {
			t.Skipf("cannot choose the next pid (%v): pid reuse not tested", err)
		}
		cmd := exec.Command("sleep", "1000")
		cmd.Env = []string{"MARK=" + mark}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if cmd.Process.Pid == pid {
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			return cmd
		}
		cmd.Process.Kill()
		cmd.Wait()
	}
	t.Skipf("another process kept taking pid %d: pid reuse not tested", pid)
	return nil
}
