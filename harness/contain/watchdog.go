package contain

// The watchdog: a /bin/sh process in its own process group, outside every
// attempt, that outlives the supervising process by design. It reads its
// stdin until "done"; when stdin closes without it (the supervising process
// died, even by SIGKILL), it kills everything still contained:
//
//   - cgroup-v2: cgroup.kill on the parent (one write kills every attempt),
//     until it is unpopulated, then removes the directories;
//   - cgroup-v1: freezes the parent (the v1 freezer freezes its subtree),
//     SIGKILLs every pid listed, thaws, until empty, then removes them;
//   - subreaper: it has been told every member as "+ PID START" (and "-"
//     when one is gone). It SIGSTOPs each that still has that start time,
//     and every process whose environment carries this Supervisor's EnvID
//     prefix (orphans are reparented to init once we are dead), then their
//     children, so that nothing forks while it kills; then SIGKILLs them
//     all, and repeats until a round finds nothing.
//
// Written for dash (Debian's /bin/sh) as much as bash or busybox: kill is
// spelled "kill -s SIG PID" (dash rejects "kill -KILL -- -PGID", see
// harness/process.go), ${20} needs its braces, and redirections that may
// fail sit inside { } so their error goes to /dev/null.

import (
	"bufio"
	"fmt"
	"io"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
)

const watchdogScript = `trap '' INT TERM HUP PIPE
mode=$1 dir=$2 id=$3 var=$4
known=""
while read -r op p s; do
  case $op in
    +) known="$known $p:$s" ;;
    -) n=""; for x in $known; do [ "$x" = "$p:$s" ] || n="$n $x"; done; known=$n ;;
    done) exit 0 ;;
  esac
done
nap() { sleep 0.02 2>/dev/null || sleep 1; }
# state and start time of process $1, from /proc/$1/stat (comm may hold
# spaces and parentheses: cut at the last ") ")
stat_of() {
  state=""; st=""; l=""
  { read -r l < "/proc/$1/stat"; } 2>/dev/null
  [ -n "$l" ] || return 1
  l=${l##*) }
  set -- $l
  state=$1; st=${20}
}
case $mode in
cgroup-v2)
  i=0
  while [ $i -lt 500 ]; do
    { echo 1 > "$dir/cgroup.kill"; } 2>/dev/null
    pop=""
    { while read -r k v; do [ "$k" = populated ] && pop=$v; done < "$dir/cgroup.events"; } 2>/dev/null
    [ "$pop" = 1 ] || break
    nap; i=$((i+1))
  done
  for d in "$dir"/*/; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
  rmdir "$dir" 2>/dev/null ;;
cgroup-v1)
  i=0
  while [ $i -lt 500 ]; do
    { echo FROZEN > "$dir/freezer.state"; } 2>/dev/null
    j=0
    while [ $j -lt 50 ]; do
      s=""; { read -r s < "$dir/freezer.state"; } 2>/dev/null
      [ "$s" = FROZEN ] && break
      { echo FROZEN > "$dir/freezer.state"; } 2>/dev/null
      nap; j=$((j+1))
    done
    any=""
    for f in "$dir"/*/cgroup.procs "$dir/cgroup.procs"; do
      [ -f "$f" ] || continue
      { while read -r p; do any=1; kill -s KILL "$p" 2>/dev/null; done < "$f"; } 2>/dev/null
    done
    for f in "$dir"/*/freezer.state "$dir/freezer.state"; do
      [ -f "$f" ] && { echo THAWED > "$f"; } 2>/dev/null
    done
    [ -n "$any" ] || break
    nap; i=$((i+1))
  done
  for d in "$dir"/*/; do [ -d "$d" ] && rmdir "$d" 2>/dev/null; done
  rmdir "$dir" 2>/dev/null ;;
subreaper)
  i=0
  while [ $i -lt 100 ]; do
    found=""
    for x in $known; do
      p=${x%%:*}
      stat_of "$p" && [ "$st" = "${x#*:}" ] && [ "$state" != Z ] && found="$found $p"
    done
    for f in $(grep -l -a -F -e "$var=$id." /proc/[0-9]*/environ 2>/dev/null); do
      p=${f#/proc/}; found="$found ${p%/environ}"
    done
    stopped=" "
    wave=$found
    while [ -n "$wave" ]; do
      next=""
      for p in $wave; do
        case $stopped in *" $p "*) continue ;; esac
        stat_of "$p" && [ "$state" != Z ] || continue
        kill -s STOP "$p" 2>/dev/null || continue
        stopped="$stopped$p "
        # SIGSTOP lands asynchronously: a process still running may fork
        # after its children are read. Wait a little for it to stop.
        j=0
        while [ $j -lt 200 ] && stat_of "$p" && [ "$state" != T ] && [ "$state" != Z ]; do j=$((j+1)); done
        for c in /proc/$p/task/*/children; do
          kids=""; { read -r kids < "$c"; } 2>/dev/null
          next="$next $kids"
        done
      done
      wave=$next
    done
    [ "$stopped" = " " ] && break
    for p in $stopped; do kill -s KILL "$p" 2>/dev/null; done
    nap; i=$((i+1))
  done ;;
esac
exit 0`

type watchdog struct {
	mu     sync.Mutex
	w      io.WriteCloser
	bw     *bufio.Writer
	cmd    *exec.Cmd
	broken bool
}

func startWatchdog(mode, dir, id string) (*watchdog, error) {
	cmd := exec.Command("/bin/sh", "-c", watchdogScript, "onecopy-watchdog", mode, dir, id, EnvID)
	// Its own group: a Ctrl-C to our group must not reach it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	w, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("contain: starting the watchdog (/bin/sh): %w", err)
	}
	return &watchdog{w: w, bw: bufio.NewWriter(w), cmd: cmd}, nil
}

func (wd *watchdog) send(line string) {
	if wd == nil {
		return
	}
	wd.mu.Lock()
	defer wd.mu.Unlock()
	if wd.broken {
		return
	}
	wd.bw.WriteString(line)
	if wd.bw.Flush() != nil {
		wd.broken = true // it died: nothing to tell any more
	}
}

func (wd *watchdog) add(pid int, start uint64) {
	wd.send("+ " + strconv.Itoa(pid) + " " + strconv.FormatUint(start, 10) + "\n")
}

func (wd *watchdog) remove(pid int, start uint64) {
	wd.send("- " + strconv.Itoa(pid) + " " + strconv.FormatUint(start, 10) + "\n")
}

// stop dismisses the watchdog, once nothing is left to kill.
func (wd *watchdog) stop() {
	if wd == nil {
		return
	}
	wd.send("done\n")
	wd.w.Close()
	wd.cmd.Wait()
}
