package contain

// cgroup-v2: each attempt is a cgroup v2 directory. The leader is cloned
// into it (CLONE_INTO_CGROUP), so it runs nothing outside; whatever it
// starts stays inside, whatever its session. cgroup.kill kills the lot in
// one write, forks racing it included; cgroup.freeze pauses the lot.
//
// The parent, <our cgroup>/onecopy-<id>, gets no controllers, and only its
// children hold processes: cgroup v2's "no internal processes" rule (a
// cgroup that hands controllers to its children holds no process itself)
// never applies to it. Our own cgroup holds us, so it has no controllers
// enabled below it either, unless it is the root, which is exempt.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

type cgroup2 struct {
	log    *slog.Logger
	parent string // onecopy-<id>
	rel    string // the same, as /proc/PID/cgroup names it
}

func openCgroup2(id string, log *slog.Logger) (*cgroup2, error) {
	h, err := findHierarchy("")
	if err != nil {
		return nil, err
	}
	parent, rel, err := makeParent(h, id, log)
	if err != nil {
		return nil, err
	}
	c := &cgroup2{log: log, parent: parent, rel: rel}
	for _, f := range []string{"cgroup.kill", "cgroup.freeze"} {
		if _, err := os.Stat(filepath.Join(parent, f)); err != nil {
			os.Remove(parent)
			return nil, fmt.Errorf("no %s in %s (Linux 5.14 or later has it)", f, parent)
		}
	}
	if err := probe(c); err != nil {
		os.Remove(parent)
		return nil, err
	}
	return c, nil
}

func (c *cgroup2) prepare(a *Attempt) error {
	if err := attemptDir(a, c.parent, c.rel); err != nil {
		return err
	}
	fd, err := unix.Open(a.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		os.Remove(a.dir)
		return err
	}
	a.dirfd = fd
	return nil
}

func (c *cgroup2) start(a *Attempt, cmd *exec.Cmd) (bool, error) {
	cmd.SysProcAttr.UseCgroupFD = true
	cmd.SysProcAttr.CgroupFD = a.dirfd
	return true, cmd.Start()
}

func (c *cgroup2) kill(a *Attempt, wait bool) error {
	if err := writeFile(filepath.Join(a.dir, "cgroup.kill"), "1"); err != nil {
		if errors.Is(err, ErrDone) {
			return nil
		}
		return err
	}
	if !wait {
		return nil
	}
	return waitEvent(context.Background(), a.dir, "populated", "0", c.log)
}

func (c *cgroup2) signal(a *Attempt, sig syscall.Signal) error {
	return signalEach(sig,
		func() ([]int, error) { return c.pids(a) },
		func(pid int) bool { return inCgroup(pid, "", a.rel) })
}

func (c *cgroup2) freeze(ctx context.Context, a *Attempt) error {
	if err := writeFile(filepath.Join(a.dir, "cgroup.freeze"), "1"); err != nil {
		return err
	}
	if err := waitEvent(ctx, a.dir, "frozen", "1", c.log); err != nil {
		c.thaw(a)
		return err
	}
	return nil
}

func (c *cgroup2) thaw(a *Attempt) error {
	if err := writeFile(filepath.Join(a.dir, "cgroup.freeze"), "0"); !errors.Is(err, ErrDone) {
		return err
	}
	return nil
}

func (c *cgroup2) pids(a *Attempt) ([]int, error) {
	return readPids(filepath.Join(a.dir, "cgroup.procs"))
}

func (c *cgroup2) release(a *Attempt) {
	if a.dirfd >= 0 {
		unix.Close(a.dirfd)
		a.dirfd = -1
	}
	removeDir(a.dir, c.log)
}

func (c *cgroup2) watchdogArgs() (string, string) { return string(CgroupV2), c.parent }
func (c *cgroup2) setWatchdog(*watchdog)          {}

func (c *cgroup2) close() error {
	if err := os.Remove(c.parent); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// waitEvent waits until the key of dir's cgroup.events reads want. The
// kernel wakes poll(2) with POLLPRI on every change of that file; the
// timeout only rechecks ctx and, once in a while, says what it waits for.
func waitEvent(ctx context.Context, dir, key, want string, log *slog.Logger) error {
	file := filepath.Join(dir, "cgroup.events")
	fd, err := unix.Open(file, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if gone(err) {
		return ErrDone
	}
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	buf := make([]byte, 256)
	since := time.Now()
	for {
		n, err := unix.Pread(fd, buf, 0)
		if gone(err) {
			return ErrDone
		}
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
		if eventValue(string(buf[:max(n, 0)]), key) == want {
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if time.Since(since) > 10*time.Second {
			log.Warn("still waiting for a cgroup", "dir", dir, "for", key+" "+want)
			since = time.Now()
		}
		_, err = unix.Poll([]unix.PollFd{{Fd: int32(fd), Events: unix.POLLPRI}}, 50)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func eventValue(text, key string) string {
	for line := range strings.SplitSeq(text, "\n") {
		if k, v, ok := strings.Cut(line, " "); ok && k == key {
			return v
		}
	}
	return ""
}
