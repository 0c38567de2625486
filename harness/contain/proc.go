package contain

// Reading /proc, and signalling a pid without hitting a stranger that
// inherited it.

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// procInfo is what a scan needs of one process, from /proc/PID/stat.
type procInfo struct {
	ppid  int
	state byte   // R, S, D, T, t, Z, X...
	start uint64 // clock ticks after boot: with the pid, names one process for ever
}

func (p procInfo) dead() bool { return p.state == 'Z' || p.state == 'X' }

// procKey names one process: a pid alone is reused once the process is
// reaped, a pid and a start time never are (within one clock tick).
type procKey struct {
	pid   int
	start uint64
}

// parseStat reads the fields after "pid (comm) ": comm may hold spaces and
// parentheses, so the split is at the last ')'. No allocation: a scan
// parses one per process.
func parseStat(b []byte) (procInfo, bool) {
	i := bytes.LastIndexByte(b, ')')
	if i < 0 || i+2 >= len(b) {
		return procInfo{}, false
	}
	var p procInfo
	// Field 3 is the state, 4 the ppid, 22 the start time.
	field := 3
	for rest := b[i+2:]; len(rest) > 0 && field <= 22; field++ {
		j := bytes.IndexByte(rest, ' ')
		if j < 0 {
			j = len(rest)
		}
		f := rest[:j]
		switch field {
		case 3:
			if len(f) != 1 {
				return procInfo{}, false
			}
			p.state = f[0]
		case 4:
			n, ok := atou(f)
			if !ok {
				return procInfo{}, false
			}
			p.ppid = int(n)
		case 22:
			n, ok := atou(f)
			if !ok {
				return procInfo{}, false
			}
			p.start = n
			return p, true
		}
		rest = rest[min(j+1, len(rest)):]
	}
	return procInfo{}, false
}

func atou(b []byte) (uint64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	var n uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + uint64(c-'0')
	}
	return n, true
}

// readFileInto reads a small /proc file into buf without the allocations of
// os.ReadFile: a scan reads one per process.
func readFileInto(path string, buf []byte) ([]byte, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	defer unix.Close(fd)
	n := 0
	for n < len(buf) {
		m, err := unix.Read(fd, buf[n:])
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if m == 0 {
			break
		}
		n += m
	}
	return buf[:n], nil
}

func readStat(pid int, buf []byte) (procInfo, bool) {
	var path [32]byte
	b, err := readFileInto(string(strconv.AppendInt(append(path[:0], "/proc/"...), int64(pid), 10))+"/stat", buf)
	if err != nil {
		return procInfo{}, false
	}
	return parseStat(b)
}

// startTime is the start time of pid, or 0 if it is gone.
func startTime(pid int) uint64 {
	p, ok := readStat(pid, make([]byte, 1024))
	if !ok {
		return 0
	}
	return p.start
}

// readProcs is every process (thread group) in /proc now.
func readProcs(buf []byte) (map[int]procInfo, error) {
	d, err := os.Open("/proc")
	if err != nil {
		return nil, err
	}
	names, err := d.Readdirnames(-1)
	d.Close()
	if err != nil {
		return nil, err
	}
	procs := make(map[int]procInfo, len(names))
	for _, name := range names {
		if name[0] < '0' || name[0] > '9' {
			continue
		}
		pid, err := strconv.Atoi(name)
		if err != nil {
			continue
		}
		if p, ok := readStat(pid, buf); ok { // gone since the listing: skip
			procs[pid] = p
		}
	}
	return procs, nil
}

// cmdline is pid's argv, or its [comm] when it has none (a zombie, a
// kernel thread), or nil if it is gone.
func cmdline(pid int) []string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	if err == nil && len(b) > 0 {
		return strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
	}
	comm, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return nil
	}
	return []string{"[" + strings.TrimSpace(string(comm)) + "]"}
}

// envValue is the value of the variable key in pid's initial environment,
// "" when it has none or /proc will not tell (another user's process).
func envValue(pid int, key string) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	if err != nil {
		return ""
	}
	prefix := key + "="
	for kv := range strings.SplitSeq(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, prefix); ok {
			return v
		}
	}
	return ""
}

// signalIf sends sig to pid if, once pinned by a pidfd, ours(pid) still
// holds: a pid read from a list may have been reaped and reused by a
// stranger before the kill. A process that is gone is not an error.
func signalIf(pid int, sig syscall.Signal, ours func(pid int) bool) error {
	fd, err := unix.PidfdOpen(pid, 0)
	switch {
	case errors.Is(err, unix.ESRCH):
		return nil
	case errors.Is(err, unix.ENOSYS), errors.Is(err, unix.EPERM):
		// No pidfds (Linux < 5.3, or a seccomp filter): check, then kill.
		if !ours(pid) {
			return nil
		}
		return ignoreGone(unix.Kill(pid, sig))
	case err != nil:
		return err
	}
	defer unix.Close(fd)
	if !ours(pid) {
		return nil
	}
	return ignoreGone(unix.PidfdSendSignal(fd, sig, nil, 0))
}

func ignoreGone(err error) error {
	if errors.Is(err, unix.ESRCH) {
		return nil
	}
	return err
}

// heldPidfds is the set of pids this process holds a pidfd for. os/exec
// (Go >= 1.23 on Linux >= 5.4) keeps one for every child until Wait has
// reaped it, so a child of ours without one is an orphan nobody waits for.
func heldPidfds() (map[int]bool, error) {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, err
	}
	held := map[int]bool{}
	for _, e := range ents {
		link, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil || link != "anon_inode:[pidfd]" {
			continue
		}
		info, err := os.ReadFile("/proc/self/fdinfo/" + e.Name())
		if err != nil {
			continue
		}
		for line := range strings.SplitSeq(string(info), "\n") {
			if v, ok := strings.CutPrefix(line, "Pid:"); ok {
				if pid, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && pid > 0 {
					held[pid] = true
				}
			}
		}
	}
	return held, nil
}

// ownCgroup is this process's cgroup path for the v2 hierarchy (id 0) or
// for the v1 hierarchy that carries controller, as /proc/self/cgroup says.
func ownCgroup(file, controller string) (string, bool) {
	b, err := os.ReadFile(file)
	if err != nil {
		return "", false
	}
	return cgroupLine(string(b), controller)
}

// cgroupLine finds, in the text of a /proc/PID/cgroup file, the path for
// controller ("" means the v2 hierarchy).
func cgroupLine(text, controller string) (string, bool) {
	for line := range strings.SplitSeq(text, "\n") {
		id, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		ctrls, path, ok := strings.Cut(rest, ":")
		if !ok {
			continue
		}
		if controller == "" {
			if id == "0" && ctrls == "" {
				return path, true
			}
			continue
		}
		for c := range strings.SplitSeq(ctrls, ",") {
			if c == controller {
				return path, true
			}
		}
	}
	return "", false
}
