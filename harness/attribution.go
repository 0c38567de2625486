// Attribution: which start of the sender opened each session. While the
// run goes on, each session is mapped to the sender attempt whose process
// holds its client socket, and the history's copy, fault and in-doubt
// events carry that attempt. The live map holds open sessions only.

package harness

import (
	"bufio"
	"context"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/onecopy/onecopy/fakesmtp"
)

// owner is the attempt that opened a session. The zero owner is unknown.
type owner struct{ instance, attempt int }

type sessionOwner struct {
	owner
	retried bool // resolution was tried again at the first delivery
}

// attribution is the run's live session -> attempt map.
type attribution struct {
	mu       sync.Mutex
	sessions map[uint64]sessionOwner
	pruneAt  int
}

// sessionHook resolves each session's owner when it opens: its client is
// still connected and waiting for the greeting, so its socket can be found.
func (r *run) sessionHook() fakesmtp.Hook {
	return fakesmtp.HookAt(fakesmtp.Moments(fakesmtp.MomentConnect),
		fakesmtp.HookFunc(func(_ context.Context, ev *fakesmtp.Event) fakesmtp.Action {
			r.setOwner(ev.Session, sessionOwner{owner: r.resolve(ev.Session)})
			return fakesmtp.Action{}
		}))
}

// ownerOf is the attempt that opened session id. A session not resolved
// when it opened (the new attempt was not registered yet) is tried once
// more, on its first delivery.
func (r *run) ownerOf(id uint64) owner {
	r.attr.mu.Lock()
	o, ok := r.attr.sessions[id]
	r.attr.mu.Unlock()
	if ok && (o.instance != 0 || o.retried) {
		return o.owner
	}
	o = sessionOwner{owner: r.resolve(id), retried: true}
	r.setOwner(id, o)
	return o.owner
}

func (r *run) setOwner(id uint64, o sessionOwner) {
	r.attr.mu.Lock()
	defer r.attr.mu.Unlock()
	if r.attr.sessions == nil {
		r.attr.sessions = map[uint64]sessionOwner{}
	}
	r.attr.sessions[id] = o
	if len(r.attr.sessions) <= r.attr.pruneAt {
		return
	}
	// The fake server has no close hook: forget closed sessions from time
	// to time, so the map follows open sessions, not every session ever.
	open := map[uint64]bool{}
	for _, s := range r.srv.Sessions() {
		open[s.ID] = true
	}
	for sid := range r.attr.sessions {
		if !open[sid] && sid != id {
			delete(r.attr.sessions, sid)
		}
	}
	r.attr.pruneAt = 2*len(r.attr.sessions) + 256
}

// resolve finds the attempt whose process holds the client end of session
// id. Where /proc cannot tell (not Linux), it falls back to the only live
// attempt when exactly one runs. Not where /proc shows the socket held by
// no live attempt: that is an attempt just started and not yet registered
// (or one that left its process group), and guessing would blame another.
func (r *run) resolve(id uint64) owner {
	// r.mu first: it also orders this read of r.srv after Run set it.
	r.mu.Lock()
	live := make([]*proc, 0, len(r.live))
	for _, p := range r.live {
		if p.running() {
			live = append(live, p)
		}
	}
	r.mu.Unlock()
	remote := ""
	for _, s := range r.srv.Sessions() {
		if s.ID == id {
			remote = s.Remote
			break
		}
	}
	p, seen := socketOwner(remote, r.srv.Addr(), live)
	if p != nil {
		return owner{p.instance, p.attempt}
	}
	if !seen && len(live) == 1 {
		return owner{live[0].instance, live[0].attempt}
	}
	return owner{}
}

// socketOwner finds which sender process group holds the client socket of
// a loopback connection from remote to server, through /proc (Linux): the
// socket's inode from /proc/net/tcp{,6}, then socket:[inode] among the fds
// of each group's leader, then of the rest of each group (a wrapper script
// whose child sends). seen reports whether /proc showed the socket at all:
// not elsewhere, nor once the client is gone.
func socketOwner(remote, server string, procs []*proc) (owner *proc, seen bool) {
	_, cport, err1 := net.SplitHostPort(remote)
	_, sport, err2 := net.SplitHostPort(server)
	if err1 != nil || err2 != nil {
		return nil, false
	}
	inode := socketInode(cport, sport)
	if inode == "" {
		return nil, false
	}
	if len(procs) == 0 {
		return nil, true
	}
	target := "socket:[" + inode + "]"
	for _, p := range procs {
		if holds(p.pid, target) {
			return p, true
		}
	}
	groups := make(map[int]*proc, len(procs))
	for _, p := range procs {
		groups[p.pid] = p
	}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p := groups[pgrp(pid)]; p != nil && pid != p.pid && holds(pid, target) {
			return p, true
		}
	}
	return nil, true
}

// socketInode is the inode of the TCP socket whose local port is local
// and remote port is remote, or "".
func socketInode(local, remote string) string {
	lp, err1 := strconv.ParseUint(local, 10, 16)
	rp, err2 := strconv.ParseUint(remote, 10, 16)
	if err1 != nil || err2 != nil {
		return ""
	}
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		f, err := os.Open(table)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			fs := strings.Fields(sc.Text())
			if len(fs) < 10 || hexPort(fs[1]) != lp || hexPort(fs[2]) != rp || fs[9] == "0" {
				continue
			}
			f.Close()
			return fs[9]
		}
		f.Close()
	}
	return ""
}

func hexPort(addr string) uint64 {
	_, port, ok := strings.Cut(addr, ":")
	if !ok {
		return 0
	}
	n, _ := strconv.ParseUint(port, 16, 16)
	return n
}

// holds reports whether process pid has an fd open on target.
func holds(pid int, target string) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/fd/"
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		if l, err := os.Readlink(dir + e.Name()); err == nil && l == target {
			return true
		}
	}
	return false
}

// pgrp is the process group of pid, or 0.
func pgrp(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	i := strings.LastIndexByte(string(b), ')')
	if i < 0 {
		return 0
	}
	fs := strings.Fields(string(b[i+1:]))
	if len(fs) < 3 {
		return 0
	}
	n, _ := strconv.Atoi(fs[2])
	return n
}
