package contain

// cgroup-v1: each attempt is a directory of the v1 freezer hierarchy.
//
// Placement without a race: v1 moves single threads (the tasks file), and a
// child starts in its forking thread's cgroup. The attempt's goroutine is
// locked to its thread anyway (Pdeathsig), so that thread moves into the
// attempt's cgroup, forks the leader, and moves back: the leader never runs
// an instruction outside. If moving back fails the thread is left to die
// with its goroutine, rather than fork later attempts into this one.
//
// v1 has no cgroup.kill: a kill freezes the cgroup (no process can fork or
// exit meanwhile, so the list read is complete and its pids are stable),
// SIGKILLs every pid listed, thaws, and repeats until the list is empty.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type cgroup1 struct {
	log    *slog.Logger
	h      hierarchy
	parent string
	rel    string
}

func openCgroup1(id string, log *slog.Logger) (*cgroup1, error) {
	h, err := findHierarchy("freezer")
	if err != nil {
		return nil, err
	}
	parent, rel, err := makeParent(h, id, log)
	if err != nil {
		return nil, err
	}
	c := &cgroup1{log: log, h: h, parent: parent, rel: rel}
	if err := probe(c); err != nil {
		os.Remove(parent)
		return nil, err
	}
	return c, nil
}

func (c *cgroup1) prepare(a *Attempt) error { return attemptDir(a, c.parent, c.rel) }

func (c *cgroup1) start(a *Attempt, cmd *exec.Cmd) (bool, error) {
	tid := strconv.Itoa(unix.Gettid())
	own, ok := ownCgroup("/proc/thread-self/cgroup", "freezer")
	if !ok {
		return true, fmt.Errorf("/proc/thread-self/cgroup has no freezer entry")
	}
	back, err := c.h.dir(own)
	if err != nil {
		return true, err
	}
	if err := writeFile(filepath.Join(a.dir, "tasks"), tid); err != nil {
		return true, fmt.Errorf("moving the forking thread into %s: %w", a.dir, err)
	}
	err = cmd.Start()
	if werr := writeFile(filepath.Join(back, "tasks"), tid); werr != nil {
		c.log.Error("moving the forking thread back; retiring it", "thread", tid, "to", back, "err", werr)
		if err == nil {
			// The leader runs and is placed: keep it, lose the thread.
			return false, nil
		}
		return false, err
	}
	return true, err
}

func (c *cgroup1) kill(a *Attempt, wait bool) error {
	killed := map[int]bool{}
	for {
		frozen := c.setState(a, "FROZEN", time.Second) == nil
		pids, err := c.pids(a)
		if err != nil {
			c.setState(a, "THAWED", 0)
			return err
		}
		for _, pid := range pids {
			// Frozen tasks cannot exit, so a listed pid is still theirs.
			if err := unix.Kill(pid, syscall.SIGKILL); err != nil && err != unix.ESRCH {
				c.log.Warn("SIGKILL", "pid", pid, "err", err)
			}
			killed[pid] = true
		}
		if err := c.setState(a, "THAWED", 0); err != nil {
			if errors.Is(err, ErrDone) {
				return nil
			}
			return err
		}
		if len(pids) == 0 || (!wait && frozen) {
			return nil
		}
		// Wait for the dying to go without freezing them again (a dying
		// task can hold a freeze in FREEZING); a pid not killed yet means a
		// fork raced an unfinished freeze: another round.
		var b backoff
		for again := false; !again; {
			b.wait(context.Background())
			if pids, err = c.pids(a); err != nil {
				return err
			}
			if len(pids) == 0 {
				return nil
			}
			for _, pid := range pids {
				again = again || !killed[pid]
			}
		}
	}
}

func (c *cgroup1) signal(a *Attempt, sig syscall.Signal) error {
	return signalEach(sig,
		func() ([]int, error) { return c.pids(a) },
		func(pid int) bool { return inCgroup(pid, "freezer", a.rel) })
}

func (c *cgroup1) freeze(ctx context.Context, a *Attempt) error {
	if err := writeFile(filepath.Join(a.dir, "freezer.state"), "FROZEN"); err != nil {
		return err
	}
	var b backoff
	for {
		st, err := os.ReadFile(filepath.Join(a.dir, "freezer.state"))
		if gone(err) {
			return ErrDone
		}
		if err != nil {
			return err
		}
		if strings.TrimSpace(string(st)) == "FROZEN" {
			return nil
		}
		if err := b.wait(ctx); err != nil {
			c.thaw(a)
			return err
		}
		// Reading the state retries the freeze of tasks it could not
		// freeze yet; so does writing it again.
		writeFile(filepath.Join(a.dir, "freezer.state"), "FROZEN")
	}
}

func (c *cgroup1) thaw(a *Attempt) error {
	if err := c.setState(a, "THAWED", 0); !errors.Is(err, ErrDone) {
		return err
	}
	return nil
}

// setState writes freezer.state and, for FROZEN, waits at most d for it.
func (c *cgroup1) setState(a *Attempt, state string, d time.Duration) error {
	if state != "FROZEN" {
		return writeFile(filepath.Join(a.dir, "freezer.state"), state)
	}
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return c.freeze(ctx, a)
}

func (c *cgroup1) pids(a *Attempt) ([]int, error) {
	return readPids(filepath.Join(a.dir, "cgroup.procs"))
}

func (c *cgroup1) release(a *Attempt) { removeDir(a.dir, c.log) }

func (c *cgroup1) watchdogArgs() (string, string) { return string(CgroupV1), c.parent }
func (c *cgroup1) setWatchdog(*watchdog)          {}

func (c *cgroup1) close() error {
	if err := os.Remove(c.parent); err != nil && !os.IsNotExist(err) {
		return err
	}
	return nil
}
