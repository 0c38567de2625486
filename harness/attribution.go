// Attribution: which start of the sender opened each session. While the
// run goes on, each session is mapped to the sender attempt whose process
// holds its client socket, and the history's copy, fault and in-doubt
// events carry that attempt. The live map holds open sessions only.

package harness

import (
	"context"
	"net"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/prometheus/procfs"

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
// (or one that escaped it), and guessing would blame another.
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
	p, seen := socketOwner(remote, r.serverPorts(), live)
	if p != nil {
		return owner{p.instance, p.attempt}
	}
	if !seen && len(live) == 1 {
		return owner{live[0].instance, live[0].attempt}
	}
	return owner{}
}

// serverPorts are the fake server's listening ports (SMTP, and HTTP when
// it serves the provider APIs).
func (r *run) serverPorts() []uint64 {
	var ports []uint64
	for _, a := range []string{r.srv.Addr(), r.srv.HTTPAddr()} {
		if _, p, err := net.SplitHostPort(a); err == nil {
			if n, err := strconv.ParseUint(p, 10, 16); err == nil {
				ports = append(ports, n)
			}
		}
	}
	return ports
}

// socketOwner finds which attempt holds the client socket of a loopback
// connection from remote to one of the server's ports, through /proc
// (Linux, read with prometheus/procfs): the socket's inode from
// /proc/net/tcp{,6}, then socket:[inode] among the fds of each attempt's
// processes. seen reports whether /proc showed the socket at all: not
// elsewhere, nor once the client is gone.
func socketOwner(remote string, server []uint64, procs []*proc) (owner *proc, seen bool) {
	_, cport, err := net.SplitHostPort(remote)
	if err != nil {
		return nil, false
	}
	client, err := strconv.ParseUint(cport, 10, 16)
	if err != nil {
		return nil, false
	}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return nil, false
	}
	inode := socketInode(fs, client, server)
	if inode == 0 {
		return nil, false
	}
	target := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	// Leaders first: a sender mostly holds its own sockets, and reading
	// every process's state is the slow part.
	for _, p := range procs {
		if holds(fs, p.pid, target) {
			return p, true
		}
	}
	for _, p := range procs {
		for _, pid := range p.members()[1:] {
			if holds(fs, pid, target) {
				return p, true
			}
		}
	}
	return nil, true
}

// socketInode is the inode of the TCP socket from local port client to one
// of the server ports, or 0.
func socketInode(fs procfs.FS, client uint64, server []uint64) uint64 {
	for _, table := range []func() (procfs.NetTCP, error){fs.NetTCP, fs.NetTCP6} {
		lines, err := table()
		if err != nil {
			continue
		}
		for _, l := range lines {
			if l.LocalPort == client && slices.Contains(server, l.RemPort) && l.Inode != 0 {
				return l.Inode
			}
		}
	}
	return 0
}

// holds reports whether process pid has an fd open on target.
func holds(fs procfs.FS, pid int, target string) bool {
	p, err := fs.Proc(pid)
	if err != nil {
		return false
	}
	fds, err := p.FileDescriptorTargets()
	return err == nil && slices.Contains(fds, target)
}

// socketHolders lists the processes (pid and command line) that hold the
// client end of a session from remote: none once its client is gone, even
// while the server still reads what it sent before it went.
func socketHolders(remote string, server []uint64) []string {
	_, cport, err := net.SplitHostPort(remote)
	if err != nil {
		return nil
	}
	client, err := strconv.ParseUint(cport, 10, 16)
	if err != nil {
		return nil
	}
	fs, err := procfs.NewDefaultFS()
	if err != nil {
		return nil
	}
	inode := socketInode(fs, client, server)
	if inode == 0 {
		return nil
	}
	target := "socket:[" + strconv.FormatUint(inode, 10) + "]"
	all, err := fs.AllProcs()
	if err != nil {
		return nil
	}
	var out []string
	for _, p := range all {
		if holds(fs, p.PID, target) {
			cmd, _ := p.CmdLine()
			out = append(out, strconv.Itoa(p.PID)+" "+strings.Join(cmd, " "))
		}
	}
	return out
}

// remoteOf is the client address of session id, or "".
func (r *run) remoteOf(id uint64) string {
	for _, s := range r.srv.Sessions() {
		if s.ID == id {
			return s.Remote
		}
	}
	return ""
}
