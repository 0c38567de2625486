package contain

// What the two cgroup modes share: finding the hierarchy, making the
// per-Supervisor parent and per-attempt children, probing that placement
// really works before a mode is chosen.

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/procfs"
	"golang.org/x/sys/unix"
)

// hierarchy is one mounted cgroup hierarchy, and where we are in it.
type hierarchy struct {
	mount string // where it is mounted
	root  string // the hierarchy path at the mount point ("/" but in some containers)
	own   string // our cgroup, as /proc/self/cgroup names it
}

// findHierarchy finds the cgroup2 mount (controller "") or the v1 mount
// carrying controller, and our cgroup in it.
func findHierarchy(controller string) (hierarchy, error) {
	mounts, err := procfs.GetMounts()
	if err != nil {
		return hierarchy{}, fmt.Errorf("reading /proc/self/mountinfo: %w", err)
	}
	var h hierarchy
	for _, m := range mounts {
		if controller == "" && m.FSType == "cgroup2" {
			h.mount, h.root = m.MountPoint, m.Root
			break
		}
		if _, ok := m.SuperOptions[controller]; ok && controller != "" && m.FSType == "cgroup" {
			h.mount, h.root = m.MountPoint, m.Root
			break
		}
	}
	what := "cgroup2"
	if controller != "" {
		what = "the cgroup v1 " + controller + " hierarchy"
	}
	if h.mount == "" {
		return h, fmt.Errorf("%s is not mounted", what)
	}
	own, ok := ownCgroup("/proc/self/cgroup", controller)
	if !ok {
		return h, fmt.Errorf("/proc/self/cgroup has no entry for %s", what)
	}
	h.own = own
	if _, err := h.dir(own); err != nil {
		return h, err
	}
	return h, nil
}

// dir is the directory of cgroup path (as /proc/PID/cgroup names it).
func (h hierarchy) dir(path string) (string, error) {
	rel := path
	if h.root != "/" {
		var ok bool
		if rel, ok = strings.CutPrefix(path, h.root); !ok || (rel != "" && rel[0] != '/') {
			return "", fmt.Errorf("cgroup %s is outside the hierarchy mounted at %s (root %s)", path, h.mount, h.root)
		}
	}
	return filepath.Join(h.mount, rel), nil
}

// makeParent creates <our cgroup>/onecopy-<id>, after removing the empty
// parents of dead supervisors (a watchdog killed along with its process).
func makeParent(h hierarchy, id string, log *slog.Logger) (dir, rel string, err error) {
	own, err := h.dir(h.own)
	if err != nil {
		return "", "", err
	}
	removeStale(own, log)
	dir = filepath.Join(own, "onecopy-"+id)
	if err := os.Mkdir(dir, 0o755); err != nil {
		return "", "", fmt.Errorf("creating a cgroup under our own: %w", err)
	}
	return dir, path2(h.own, "onecopy-"+id), nil
}

func path2(parent, child string) string {
	if parent == "/" {
		return "/" + child
	}
	return parent + "/" + child
}

// removeStale removes onecopy-<pid>-* directories whose supervisor is gone
// and which hold no process. One that still holds some is left, and logged:
// its processes belong to whoever can tell.
func removeStale(own string, log *slog.Logger) {
	ents, err := os.ReadDir(own)
	if err != nil {
		return
	}
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), "onecopy-")
		if !ok || !e.IsDir() {
			continue
		}
		pidStr, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat("/proc/" + pidStr); err == nil {
			continue // alive (or its pid reused: leave it)
		}
		dir := filepath.Join(own, e.Name())
		kids, _ := os.ReadDir(dir)
		for _, k := range kids {
			if k.IsDir() {
				os.Remove(filepath.Join(dir, k.Name()))
			}
		}
		if err := os.Remove(dir); err != nil {
			log.Warn("a dead supervisor's cgroup still holds processes", "dir", dir, "pid", pid, "err", err)
		}
	}
}

// attemptDir makes the attempt's cgroup under parent.
func attemptDir(a *Attempt, parent, rel string) error {
	name := "attempt-" + strconv.Itoa(a.n)
	a.dir, a.rel = filepath.Join(parent, name), rel+"/"+name
	return os.Mkdir(a.dir, 0o755)
}

// removeDir removes an empty cgroup; the kernel may take a moment to see
// the last process gone.
func removeDir(dir string, log *slog.Logger) {
	var b backoff
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	for {
		err := os.Remove(dir)
		if err == nil || errors.Is(err, os.ErrNotExist) {
			return
		}
		if !errors.Is(err, unix.EBUSY) || b.wait(ctx) != nil {
			log.Warn("removing a cgroup", "dir", dir, "err", err)
			return
		}
	}
}

// readPids reads a cgroup.procs file; none if the cgroup is gone (the
// attempt ended while we looked: its name is never used again).
func readPids(file string) ([]int, error) {
	b, err := os.ReadFile(file)
	if gone(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var pids []int
	for f := range strings.FieldsSeq(string(b)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// writeFile writes a cgroup file; ErrDone if the cgroup is gone.
func writeFile(file, value string) error {
	err := os.WriteFile(file, []byte(value), 0)
	if gone(err) {
		return ErrDone
	}
	return err
}

// gone says whether err means the cgroup was removed: ENOENT on open,
// ENODEV on a file opened before.
func gone(err error) bool {
	return errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENODEV)
}

// inCgroup says whether pid is in cgroup rel of the hierarchy controller
// names ("" for v2).
func inCgroup(pid int, controller, rel string) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cgroup")
	if err != nil {
		return false
	}
	path, ok := cgroupLine(string(b), controller)
	return ok && path == rel
}

// probe starts a shell in a throwaway attempt of be and checks the kernel
// put it where be says: a mode is chosen only if it really places.
func probe(be backend) error {
	a := &Attempt{id: "probe", pidfd: -1, dirfd: -1, done: make(chan struct{})}
	if err := be.prepare(a); err != nil {
		return err
	}
	defer be.release(a)
	cmd := exec.Command("/bin/sh", "-c", "read x")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	defer stdin.Close()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	started := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		keep, err := be.start(a, cmd)
		if keep {
			runtime.UnlockOSThread()
		}
		started <- err
	}()
	if err := <-started; err != nil {
		return fmt.Errorf("starting a probe process in %s: %w", a.dir, err)
	}
	a.pid = cmd.Process.Pid
	pids, err := be.pids(a)
	placed := slices.Contains(pids, a.pid)
	stdin.Close()
	cmd.Wait()
	if err != nil {
		return err
	}
	if !placed {
		return fmt.Errorf("a probe process started in %s is not listed there", a.dir)
	}
	return nil
}
