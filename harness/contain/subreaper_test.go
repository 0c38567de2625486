package contain

import (
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// In subreaper mode the orphans an attempt leaves are reparented to us and
// must be reaped, but a child that os/exec waits for must keep its exit
// status, whoever started it.
func TestSubreaperReapsOrphansButNotOthersChildren(t *testing.T) {
	if err := Probe(Subreaper); err != nil {
		t.Skipf("subreaper is unavailable here: %v", err)
	}
	s := newSupervisor(t, Subreaper)
	mark := markDir(t)

	// A child of this process that is none of the Supervisor's business,
	// started before and after the attempt; both exit 7 at once and stay
	// zombies until we Wait.
	outsider := func() *exec.Cmd {
		cmd := exec.Command("/bin/sh", "-c", "exit 7")
		cmd.Env = []string{"MARK=" + mark}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	before := outsider()

	// An attempt that orphans five short-lived daemons, then lives on.
	a := start(t, s, Spec{
		Argv: []string{"/bin/sh", "-c", `for i in 1 2 3 4 5; do setsid -f sh -c 'echo $$ > "$MARK/o$1.tmp"; mv "$MARK/o$1.tmp" "$MARK/o$1.pid"' sh $i; done; exec sleep 1000`},
		Env:  []string{"MARK=" + mark, "PATH=" + os.Getenv("PATH")},
	})
	after := outsider()
	var orphans []int
	for i := 1; i <= 5; i++ {
		name := "o" + strconv.Itoa(i)
		waitFor(t, 10*time.Second, name+" never ran", func() bool { return readPidFile(mark, name) > 0 })
		orphans = append(orphans, readPidFile(mark, name))
	}
	for _, cmd := range []*exec.Cmd{before, after} {
		waitFor(t, 5*time.Second, "the outsider never exited", func() bool {
			_, err := os.Stat("/proc/" + strconv.Itoa(cmd.Process.Pid))
			return state(cmd.Process.Pid) == 'Z' || os.IsNotExist(err)
		})
	}
	// Every orphan is reaped, by us: none is left, not even as a zombie.
	waitFor(t, 10*time.Second, "an orphan was never reaped", func() bool {
		a.Members() // a scan, which reaps
		for _, pid := range orphans {
			if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
				return false
			}
		}
		return true
	})
	// Scans went by with the outsiders dead: their status is still theirs.
	for i := 0; i < 3; i++ {
		a.Members()
	}
	for _, cmd := range []*exec.Cmd{before, after} {
		if _, err := os.Stat("/proc/" + strconv.Itoa(cmd.Process.Pid)); err != nil {
			t.Errorf("outsider %d was reaped before its Wait: its exit status was stolen", cmd.Process.Pid)
		}
		err := cmd.Wait()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 7 {
			t.Errorf("an outsider's Wait: %v, want exit status 7", err)
		}
	}
	// And the leader's is the attempt's.
	a.Signal(syscall.SIGTERM)
	waitDone(t, a, 10*time.Second)
	if e := a.Exit(); e.Signal != syscall.SIGTERM || e.Err != nil {
		t.Errorf("Exit() = %+v, want killed by SIGTERM", e)
	}
}

// update, on made-up snapshots: membership by pid and start time, and
// which dead children of ours it reaps.
func TestSubreaperUpdate(t *testing.T) {
	const self = 100
	newR := func() (*subreaper, *[]int) {
		r := newSubreaper("9-abc", slog.New(slog.DiscardHandler))
		r.self = self
		r.pidfds = true
		var reaped []int
		r.reap = func(pid int) { reaped = append(reaped, pid) }
		r.envOf = func(int) string { return "" }
		r.held = func() (map[int]bool, error) { return map[int]bool{200: true, 300: true}, nil }
		return r, &reaped
	}
	now := time.Unix(1000, 0)
	attempt := func(r *subreaper, id string, leader procKey) *tree {
		t := &tree{leader: leader, members: map[int]*member{leader.pid: {start: leader.start}}}
		r.trees[id] = t
		return t
	}
	members := func(tr *tree) []int {
		var pids []int
		for pid := range tr.members {
			pids = append(pids, pid)
		}
		slices.Sort(pids)
		return pids
	}

	t.Run("a reused pid is not a member", func(t *testing.T) {
		r, _ := newR()
		tr := attempt(r, "9-abc.1", procKey{200, 10})
		r.update(map[int]procInfo{
			200: {ppid: self, state: 'S', start: 10},
			201: {ppid: 200, state: 'S', start: 11}, // a child: member
		}, now)
		if got := members(tr); !slices.Equal(got, []int{200, 201}) {
			t.Fatalf("members %v, want [200 201]", got)
		}
		// 201 died and its pid went to a process of someone else's.
		r.update(map[int]procInfo{
			200: {ppid: self, state: 'S', start: 10},
			201: {ppid: 1, state: 'S', start: 99},
		}, now)
		if got := members(tr); !slices.Equal(got, []int{200}) {
			t.Errorf("members %v after pid 201 was reused, want [200]", got)
		}
	})

	t.Run("orphans are attributed by EnvID, then by time", func(t *testing.T) {
		r, _ := newR()
		t1 := attempt(r, "9-abc.1", procKey{200, 10})
		t2 := attempt(r, "9-abc.2", procKey{300, 50})
		r.envOf = func(pid int) string {
			return map[int]string{400: "9-abc.2", 401: "7-other.1"}[pid]
		}
		procs := map[int]procInfo{
			200: {ppid: self, state: 'S', start: 10},
			300: {ppid: self, state: 'S', start: 50},
			400: {ppid: self, state: 'S', start: 20}, // attempt 2's, by EnvID
			401: {ppid: self, state: 'S', start: 60}, // another Supervisor's
			402: {ppid: self, state: 'S', start: 30}, // no EnvID, started in attempt 1's time only
			403: {ppid: 402, state: 'S', start: 31},
		}
		r.update(procs, now)
		if got := members(t2); !slices.Equal(got, []int{300, 400}) {
			t.Errorf("attempt 2: %v, want [300 400]", got)
		}
		if got := members(t1); !slices.Equal(got, []int{200}) {
			t.Errorf("attempt 1 took the suspect at first sight: %v", got)
		}
		r.update(procs, now.Add(2*suspectFor))
		if got := members(t1); !slices.Equal(got, []int{200, 402, 403}) {
			t.Errorf("attempt 1: %v, want [200 402 403]", got)
		}
		if got := members(t2); !slices.Equal(got, []int{300, 400}) {
			t.Errorf("attempt 2 took another's orphan: %v", got)
		}
	})

	t.Run("only orphans are reaped", func(t *testing.T) {
		r, reaped := newR()
		tr := attempt(r, "9-abc.1", procKey{200, 10})
		tr.members[250] = &member{start: 12}
		r.update(map[int]procInfo{
			200: {ppid: self, state: 'Z', start: 10}, // our leader: its goroutine waits
			250: {ppid: self, state: 'Z', start: 12}, // a member orphan
			300: {ppid: self, state: 'Z', start: 13}, // os/exec holds a pidfd: someone waits
			301: {ppid: self, state: 'Z', start: 14}, // an unknown orphan
			302: {ppid: 7, state: 'Z', start: 15},    // not our child
		}, now)
		slices.Sort(*reaped)
		if !slices.Equal(*reaped, []int{250, 301}) {
			t.Errorf("reaped %v, want [250 301]", *reaped)
		}
	})

	t.Run("without pidfds, only attributed orphans are reaped", func(t *testing.T) {
		r, reaped := newR()
		r.pidfds = false
		tr := attempt(r, "9-abc.1", procKey{200, 10})
		tr.members[250] = &member{start: 12}
		r.update(map[int]procInfo{
			200: {ppid: self, state: 'Z', start: 10},
			250: {ppid: self, state: 'Z', start: 12},
			301: {ppid: self, state: 'Z', start: 14},
			302: {ppid: self, state: 'S', start: 15}, // can't tell whose: not ours
		}, now)
		if !slices.Equal(*reaped, []int{250}) {
			t.Errorf("reaped %v, want [250]", *reaped)
		}
		r.update(map[int]procInfo{302: {ppid: self, state: 'S', start: 15}}, now.Add(time.Second))
		if _, ok := tr.members[302]; ok {
			t.Error("a child of unknown origin was attributed without pidfds to tell")
		}
	})
}

// The watchdog script, under every shell here: on EOF it kills exactly the
// processes it was told of (if their start time still matches), their
// children, and whatever carries the Supervisor's EnvID; "done" kills
// nothing.
func TestWatchdogScriptSubreaper(t *testing.T) {
	shells := []string{"/bin/sh"}
	for _, sh := range []string{"dash", "bash", "busybox"} {
		if p, err := exec.LookPath(sh); err == nil {
			shells = append(shells, p)
		}
	}
	for _, sh := range shells {
		t.Run(filepath.Base(sh), func(t *testing.T) {
			mark := markDir(t)
			spawn := func(script string, env ...string) *exec.Cmd {
				cmd := exec.Command("/bin/sh", "-c", script)
				cmd.Env = append([]string{"MARK=" + mark, "PATH=" + os.Getenv("PATH")}, env...)
				cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
				if err := cmd.Start(); err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
				return cmd
			}
			known := spawn(`sleep 1000 & echo $! > "$MARK/kid.tmp"; mv "$MARK/kid.tmp" "$MARK/kid.pid"; wait`)
			stale := spawn("exec sleep 1000") // told with a wrong start time
			tagged := spawn("exec sleep 1000", EnvID+"=1-feed.3")
			bystander := spawn("exec sleep 1000", EnvID+"=2-beef.3")
			waitFor(t, 5*time.Second, "the known shell never started its child", func() bool { return readPidFile(mark, "kid") > 0 })
			kid := readPidFile(mark, "kid")

			run := func(input string) {
				args := []string{"-c", watchdogScript, "onecopy-watchdog", string(Subreaper), "", "1-feed", EnvID}
				if filepath.Base(sh) == "busybox" {
					args = append([]string{"sh"}, args...)
				}
				cmd := exec.Command(sh, args...)
				cmd.Stdin = strings.NewReader(input)
				cmd.Stderr = &testWriter{t: t}
				if err := cmd.Run(); err != nil {
					t.Fatalf("the watchdog under %s: %v", sh, err)
				}
			}
			lines := "+ " + strconv.Itoa(known.Process.Pid) + " " + strconv.FormatUint(startTime(known.Process.Pid), 10) + "\n" +
				"+ " + strconv.Itoa(stale.Process.Pid) + " 1\n"
			run(lines + "done\n")
			for _, cmd := range []*exec.Cmd{known, stale, tagged, bystander} {
				if !alive(cmd.Process.Pid) {
					t.Fatalf("the watchdog killed pid %d after done", cmd.Process.Pid)
				}
			}
			run(lines) // EOF without done
			for name, pid := range map[string]int{"the known pid": known.Process.Pid, "its child": kid, "the tagged one": tagged.Process.Pid} {
				waitFor(t, 5*time.Second, name+" survived", func() bool { return !alive(pid) })
			}
			if !alive(stale.Process.Pid) || !alive(bystander.Process.Pid) {
				t.Error("the watchdog killed a process whose start time or EnvID is not ours")
			}
		})
	}
}
