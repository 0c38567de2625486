// mutants_test.go: mutation testing in miniature. Each scenario reproduces
// one kind of chaos against the test servers; the correct ledger in every
// shape must come through it, and each mutant the scenario names must show
// its bug there, with the symptom that bug has.
package builtin

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/onecopy/onecopy/senders"
)

// spec is a built-in sender and its shape (0: the sender's default).
type spec struct {
	name         string
	batch, conns int
}

func (sp spec) String() string {
	s := sp.name
	if sp.batch > 0 {
		s += fmt.Sprintf(" --batch %d", sp.batch)
	}
	if sp.conns > 0 {
		s += fmt.Sprintf(" --connections %d", sp.conns)
	}
	return s
}

// sender returns the built-in, in process, with fast backoff.
func (sp spec) sender(t *testing.T) senders.Sender {
	t.Helper()
	s, err := New(sp.name, Options{Timeout: 5 * time.Second, Backoff: time.Millisecond, MaxBackoff: 5 * time.Millisecond,
		Batch: sp.batch, Connections: sp.conns})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// inFlight is how many recipients one Send can have in flight at once.
func (sp spec) inFlight() int { return max(sp.batch, 1) * max(sp.conns, 1) }

// correctShapes are the correct ledger in each shape.
func correctShapes() []spec {
	return []spec{{name: "ledger"}, {name: "ledger", batch: 10}, {name: "ledger", conns: 4}, {name: "ledger", batch: 5, conns: 3}}
}

// tally is what a run did to each address.
type tally struct {
	missing, unexpected []string
	extra               int      // copies beyond each address's first
	newID               []string // addresses with an extra copy under a Message-ID they had not had: never explained
}

func judge(want []string, got []delivery) tally {
	wanted := map[string]bool{}
	for _, a := range want {
		wanted[senders.Normalize(a)] = true
	}
	var v tally
	ids := map[string]map[string]bool{}
	for _, d := range got {
		k := senders.Normalize(d.To)
		switch {
		case !wanted[k]:
			v.unexpected = append(v.unexpected, k)
		case ids[k] == nil:
			ids[k] = map[string]bool{d.MessageID: true}
		default:
			v.extra++
			if d.MessageID == "" || !ids[k][d.MessageID] {
				v.newID = append(v.newID, k)
				ids[k][d.MessageID] = true
			}
		}
	}
	for k := range wanted {
		if ids[k] == nil {
			v.missing = append(v.missing, k)
		}
	}
	slices.Sort(v.missing)
	return v
}

// observed is the result of a scenario: the expected addresses, the copies,
// and how many extra copies in-doubt transactions can explain (0: the
// scenario leaves no doubt, so only exactly-once passes).
type observed struct {
	want  []string
	got   []delivery
	doubt int
}

// fault says what is wrong with o, "" when it reached its level.
func (o observed) fault() string {
	v := judge(o.want, o.got)
	switch {
	case len(v.missing) > 0:
		return fmt.Sprintf("%d missing %v", len(v.missing), v.missing)
	case len(v.unexpected) > 0:
		return fmt.Sprintf("copies to addresses off the list %v", v.unexpected)
	case len(v.newID) > 0:
		return fmt.Sprintf("extra copies under new Message-IDs for %v", v.newID)
	case v.extra > o.doubt:
		return fmt.Sprintf("%d extra copies, where in-doubt transactions explain at most %d", v.extra, o.doubt)
	}
	return ""
}

// catch is a mutant a scenario must catch, and the symptom of its bug there.
type catch struct {
	mutant  string
	symptom string
	shows   func(v tally) bool
}

type scenario struct {
	name    string
	run     func(t *testing.T, sp spec) observed
	catches []catch
}

func scenarios() []scenario {
	return []scenario{
		{"plain run", plainRun, []catch{
			{"exit-early", "the last tenth (3 of 30) never sent", func(v tally) bool { return len(v.missing) == 3 }},
			{"off-list", "a copy to " + offListAddr, func(v tally) bool { return slices.Equal(v.unexpected, []string{offListAddr}) }},
		}},
		{"case variants in the list", caseVariantsRun, []catch{
			{"case-sensitive", "a second copy, a new message, for each of the 3 case variants",
				func(v tally) bool { return v.extra == 3 && len(v.newID) == 3 }},
		}},
		{"SIGKILL just after the server counted", killAfterCount, []catch{
			{"checkpoint-every", "the 5 messages since its last record re-sent as new ones",
				func(v tally) bool { return len(v.newID) == 5 }},
			{"fresh-id", "the message in doubt re-sent as a new one", func(v tally) bool { return len(v.newID) == 1 }},
		}},
		{"a 451 for one recipient", tempfailOne, []catch{
			{"tempfail-final", "the refused recipient bounced, never sent", func(v tally) bool { return len(v.missing) == 1 }},
			{"batch-resend", "its 9 batch mates sent twice", func(v tally) bool { return v.extra == 9 }},
		}},
		{"a 550 for one recipient", rejectOne, []catch{
			{"batch-resend", "its 9 batch mates sent 5 times", func(v tally) bool { return v.extra == 9*4 }},
		}},
		{"connection cut after the final dot", dropAfterDot, []catch{
			{"fresh-id", "the message in doubt re-sent as a new one", func(v tally) bool { return len(v.newID) == 1 }},
		}},
		{"a slow 250", slowReply, []catch{
			{"short-timeout", "the slow message re-sent as a new one", func(v tally) bool { return len(v.newID) == 1 }},
		}},
		{"SIGTERM with slow 250s and a 1s grace", termWithGrace, []catch{
			{"term-exit", "the message in hand at the SIGTERM sent again", func(v tally) bool { return v.extra == 1 }},
			{"term-ignore", "the message in hand at the SIGKILL after the grace sent again", func(v tally) bool { return v.extra == 1 }},
		}},
		{"one instance paused past the lease while another starts", pausedPastLease, []catch{
			{"lease", "the paused instance re-sends what its successor sent", func(v tally) bool { return v.extra >= 20 }},
			{"no-lock", "both instances send the pending list", func(v tally) bool { return v.extra >= 20 }},
		}},
		{"stopped while one address is being retried", stopWhileRetrying, []catch{
			{"high-water", "the address under retry skipped for good", func(v tally) bool { return len(v.missing) == 1 }},
		}},
	}
}

func TestScenariosCatchMutants(t *testing.T) {
	for _, sc := range scenarios() {
		t.Run(sc.name, func(t *testing.T) {
			for _, sp := range correctShapes() {
				t.Run(sp.String(), func(t *testing.T) {
					if bad := sc.run(t, sp).fault(); bad != "" {
						t.Errorf("the correct %s: %s", sp, bad)
					}
				})
			}
			for _, c := range sc.catches {
				t.Run(c.mutant, func(t *testing.T) {
					o := sc.run(t, spec{name: c.mutant})
					if o.fault() == "" {
						t.Fatalf("mutant %s not caught: %d copies, all as a correct sender's", c.mutant, len(o.got))
					}
					if v := judge(o.want, o.got); !c.shows(v) {
						t.Errorf("mutant %s caught (%s), but not showing its bug: want %s", c.mutant, o.fault(), c.symptom)
					}
				})
			}
		})
	}
}

// Every mutant is caught by some scenario.
func TestEveryMutantHasAScenario(t *testing.T) {
	caught := map[string]bool{}
	for _, sc := range scenarios() {
		for _, c := range sc.catches {
			caught[c.mutant] = true
		}
	}
	for _, name := range mutantNames() {
		if !caught[name] {
			t.Errorf("no scenario catches mutant %s", name)
		}
	}
}

func plainRun(t *testing.T, sp spec) observed {
	srv := newCountingServer(t)
	list := addrs(30)
	mustSend(t, sp.sender(t), testEnv(t, srv.Addr, list...))
	return observed{want: list, got: srv.deliveries()}
}

func caseVariantsRun(t *testing.T, sp spec) observed {
	srv := newCountingServer(t)
	list := addrs(20)
	withVariants := append(slices.Clone(list), strings.ToUpper(list[3]), list[5], " "+list[8], strings.ToUpper(list[12]), "User020@Example.TEST")
	mustSend(t, sp.sender(t), testEnv(t, srv.Addr, withVariants...))
	return observed{want: list, got: srv.deliveries()}
}

// killAfterCount SIGKILLs a sender process the moment the server has counted
// the 15th copy, before its 250, and reruns it to the end. Whatever was in
// flight at the kill is in doubt.
func killAfterCount(t *testing.T, sp spec) observed {
	srv := newCountingServer(t)
	list := addrs(40)
	env := testEnv(t, srv.Addr, list...)
	srv.mu.Lock() // held until onCount is set: no copy can race past it
	cmd, stderr := startSender(t, sp, env)
	killed := false
	srv.onCount = func(n int, _ delivery) error {
		if n == 15 && !killed {
			killed = true
			return cmd.Process.Kill()
		}
		return nil
	}
	srv.mu.Unlock()
	if err := cmd.Wait(); exitCode(err) != -1 {
		t.Fatalf("%s exited with %v before the kill; stderr %q", sp, err, stderr)
	}
	srv.mu.Lock()
	srv.onCount = nil
	srv.mu.Unlock()
	env.Attempt = 2
	mustSend(t, sp.sender(t), env)
	return observed{want: list, got: srv.deliveries(), doubt: sp.inFlight()}
}

func tempfailOne(t *testing.T, sp spec) observed {
	list := addrs(20)
	srv := newScriptedServer(t, map[string][]string{"RCPT " + list[4]: {"451 4.7.1 greylisted, try again later"}})
	mustSend(t, sp.sender(t), testEnv(t, srv.Addr, list...))
	return observed{want: list, got: srv.deliveries()}
}

func rejectOne(t *testing.T, sp spec) observed {
	list := addrs(20)
	srv := newScriptedServer(t, map[string][]string{"RCPT " + list[4]: slices.Repeat([]string{"550 5.1.1 no such user"}, 10)})
	mustSend(t, sp.sender(t), testEnv(t, srv.Addr, list...))
	return observed{want: slices.Delete(slices.Clone(list), 4, 5), got: srv.deliveries()}
}

// dropAfterDot: the server counts the first message, then cuts the
// connection before its 250: that message is in doubt.
func dropAfterDot(t *testing.T, sp spec) observed {
	list := addrs(20)
	srv := newScriptedServer(t, map[string][]string{"END": {"DROP"}})
	mustSend(t, sp.sender(t), testEnv(t, srv.Addr, list...))
	return observed{want: list, got: srv.deliveries(), doubt: max(sp.batch, 1)}
}

// slowReply: the server counts the first message and holds its 250 for
// slowAck. A client that gives up first leaves it in doubt.
func slowReply(t *testing.T, sp spec) observed {
	list := addrs(20)
	srv := newScriptedServer(t, map[string][]string{"END": {"SLOW 250 OK"}})
	mustSend(t, sp.sender(t), testEnv(t, srv.Addr, list...))
	return observed{want: list, got: srv.deliveries(), doubt: max(sp.batch, 1)}
}

// termWithGrace plays a deploy: SIGTERM to a sender process while the server
// counts the 3rd copy, that message's 250 and every message after it held
// 100ms, a SIGKILL when a 1s grace runs out (landing as the server counts
// a message, before its 250), then a rerun. A sender that finishes the transactions in hand within the
// grace leaves nothing in doubt, so only exactly-once passes.
func termWithGrace(t *testing.T, sp spec) observed {
	srv := newCountingServer(t)
	list := addrs(40)
	env := testEnv(t, srv.Addr, list...)
	var termed atomic.Bool
	killNext := false
	srv.mu.Lock()
	cmd, stderr := startSender(t, sp, env)
	srv.onCount = func(n int, _ delivery) error {
		switch {
		case killNext:
			killNext = false
			return cmd.Process.Kill()
		case n == 3 && !termed.Load():
			termed.Store(true)
			err := cmd.Process.Signal(syscall.SIGTERM)
			time.Sleep(100 * time.Millisecond) // this message's 250 is slow too
			return err
		}
		return nil
	}
	srv.onData = func([]string) {
		if termed.Load() {
			time.Sleep(100 * time.Millisecond) // the server's slow post-DATA work, per message
		}
	}
	srv.mu.Unlock()
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case <-exited:
	case <-time.After(time.Second): // the grace
		srv.mu.Lock()
		killNext = true
		srv.mu.Unlock()
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still running 10s after the grace; stderr %q", sp, stderr)
		}
	}
	srv.mu.Lock()
	srv.onCount, srv.onData = nil, nil
	srv.mu.Unlock()
	env.Attempt = 2
	mustSend(t, sp.sender(t), env)
	return observed{want: list, got: srv.deliveries()}
}

// pausedPastLease holds instance 1 in the middle of its message to the 3rd
// address (as a SIGSTOP would), starts instance 2 on the same state
// directory, lets instance 2 run to its end or for twice the lease's TTL,
// then lets instance 1 go on.
func pausedPastLease(t *testing.T, sp spec) observed {
	srv := newCountingServer(t)
	list := addrs(30)
	env := testEnv(t, srv.Addr, list...)
	paused, release := make(chan struct{}), make(chan struct{})
	resume := sync.OnceFunc(func() { close(release) })
	defer resume()
	var once sync.Once
	srv.mu.Lock()
	srv.onData = func(to []string) {
		if !slices.Contains(to, list[2]) {
			return
		}
		first := false
		once.Do(func() { first = true; close(paused) })
		if first {
			<-release
		}
	}
	srv.mu.Unlock()
	ctx := context.Background()
	one, two := make(chan error, 1), make(chan error, 1)
	go func() { one <- sp.sender(t).Send(ctx, env) }()
	select {
	case <-paused:
	case err := <-one:
		t.Fatalf("instance 1 ended (%v) before reaching the 3rd address", err)
	case <-time.After(5 * time.Second):
		t.Fatal("instance 1 never reached the 3rd address")
	}
	env2 := env
	env2.Instance = 2
	go func() { two <- sp.sender(t).Send(ctx, env2) }()
	var errs []error
	select {
	case err := <-two:
		errs = append(errs, err)
		two = nil
	case <-time.After(2 * leaseTTL):
	}
	resume()
	for _, ch := range []chan error{one, two} {
		if ch == nil {
			continue
		}
		select {
		case err := <-ch:
			errs = append(errs, err)
		case <-time.After(10 * time.Second):
			t.Fatal("an instance never finished")
		}
	}
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	return observed{want: list, got: srv.deliveries()}
}

// stopWhileRetrying refuses the 2nd address with a 451 after DATA until
// the last address of the list is delivered (or 20 refusals, for a sender
// with one connection that can only wait), stops the sender as SIGTERM
// would, and reruns it with the server healed.
func stopWhileRetrying(t *testing.T, sp spec) observed {
	srv := newCountingServer(t)
	list := addrs(24)
	env := testEnv(t, srv.Addr, list...)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	refusals := 0
	srv.mu.Lock()
	srv.onCount = func(_ int, d delivery) error {
		if d.To == list[len(list)-1] {
			cancel()
		}
		if d.To != list[1] {
			return nil
		}
		if refusals++; refusals >= 20 {
			cancel()
		}
		return errors.New("try later")
	}
	srv.mu.Unlock()
	if err := sp.sender(t).Send(ctx, env); err == nil {
		t.Fatalf("%s completed with its 2nd address refused", sp)
	}
	srv.mu.Lock()
	srv.onCount = nil
	srv.mu.Unlock()
	env.Attempt = 2
	mustSend(t, sp.sender(t), env)
	return observed{want: list, got: srv.deliveries()}
}
