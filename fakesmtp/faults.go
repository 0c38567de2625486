// The SMTP fault catalog: every way a real mail server makes senders
// stumble, as small declarative specs turned into one Hook. Random faults
// draw from one seeded source, so the same seed and the same sender
// behaviour give the same faults.

package fakesmtp

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FaultSpec is one parsed --fault.
type FaultSpec struct {
	Kind string        // reject, reject-nth, tempfail, greylist, drop-after-data, ...
	Addr string        // reject; reject-nth once resolved against a list (it then rejects Addr)
	N    int           // reject-nth, conn-limit
	P    float64       // probabilities; slow-ack: the share of 250s held back (0 means every one)
	D    time.Duration // slow-ack, latency, outage
	Pct  float64       // outage: share of the list delivered when it starts
}

// FaultForms lists the accepted --fault forms, for error messages.
const FaultForms = "reject=ADDR | reject-nth=N | reject-mail=P | tempfail=P | greylist | drop-after-data=P | drop-during-data=P | slow-ack=DUR[@P] | latency=DUR | refuse=P | conn-limit=N | outage=DUR@PCT"

func (f FaultSpec) String() string {
	switch f.Kind {
	case "greylist":
		return f.Kind
	case "reject":
		return f.Kind + "=" + f.Addr
	case "reject-nth", "conn-limit":
		return f.Kind + "=" + strconv.Itoa(f.N)
	case "slow-ack", "latency":
		if f.Kind == "slow-ack" && f.P > 0 && f.P < 1 {
			return f.Kind + "=" + f.D.String() + "@" + strconv.FormatFloat(f.P, 'f', -1, 64)
		}
		return f.Kind + "=" + f.D.String()
	case "outage":
		return f.Kind + "=" + f.D.String() + "@" + strconv.FormatFloat(f.Pct, 'f', -1, 64) + "%"
	}
	return f.Kind + "=" + strconv.FormatFloat(f.P, 'f', -1, 64)
}

// InDoubt reports whether the fault can leave a message whose fate the
// sender cannot know (accepted, but the 250 never read).
func (f FaultSpec) InDoubt() bool { return f.Kind == "drop-after-data" || f.Kind == "slow-ack" }

// ParseFault parses one --fault value.
func ParseFault(spec string) (FaultSpec, error) {
	kind, val, hasVal := strings.Cut(strings.TrimSpace(spec), "=")
	f := FaultSpec{Kind: kind}
	bad := func(want string) (FaultSpec, error) {
		return FaultSpec{}, fmt.Errorf("--fault %q: %s (forms: %s)", spec, want, FaultForms)
	}
	if kind == "greylist" {
		if hasVal {
			return bad("greylist takes no value")
		}
		return f, nil
	}
	if !hasVal || val == "" {
		return bad("missing value after " + kind + "=")
	}
	switch kind {
	case "reject":
		if !strings.Contains(val, "@") || strings.ContainsAny(val, " <>") {
			return bad("want an address, like reject=bob@example.com")
		}
		f.Addr = val
	case "reject-nth", "conn-limit":
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return bad("want a positive whole number")
		}
		f.N = n
	case "tempfail", "drop-after-data", "drop-during-data", "refuse", "reject-mail":
		p, err := strconv.ParseFloat(val, 64)
		if err != nil || p < 0 || p > 1 {
			return bad("want a probability between 0 and 1, like " + kind + "=0.1")
		}
		f.P = p
	case "slow-ack", "latency":
		// slow-ack=DUR holds every 250; slow-ack=DUR@P only a share P of them.
		ds, ps, hasP := strings.Cut(val, "@")
		d, err := time.ParseDuration(ds)
		if err != nil || d <= 0 {
			return bad("want a duration, like " + kind + "=2s")
		}
		f.D, f.P = d, 1
		if hasP {
			p, err := strconv.ParseFloat(ps, 64)
			if kind != "slow-ack" || err != nil || p <= 0 || p > 1 {
				return bad("want slow-ack=DUR, or slow-ack=DUR@P with P above 0 and at most 1")
			}
			f.P = p
		}
	case "outage":
		ds, ps, ok := strings.Cut(val, "@")
		d, err := time.ParseDuration(ds)
		p, perr := strconv.ParseFloat(strings.TrimSuffix(ps, "%"), 64)
		if !ok || err != nil || d <= 0 || perr != nil || p < 0 || p >= 100 || !strings.HasSuffix(ps, "%") {
			return bad("want a duration and a share of the list, like outage=2s@50%")
		}
		f.D, f.Pct = d, p
	default:
		return bad("unknown fault " + strconv.Quote(kind))
	}
	return f, nil
}

// Faults is the hook that injects a set of faults. Outage is not a session
// fault: whoever knows the list calls Server.Outage for it.
type Faults struct {
	specs   []FaultSpec
	moments MomentSet

	mu   sync.Mutex
	rng  *rand.Rand
	nth  map[string]int // reject-nth: first-seen order of distinct recipients
	grey map[string]bool
}

// NewFaults returns the hook for specs, drawing from rng.
func NewFaults(specs []FaultSpec, rng *rand.Rand) *Faults {
	f := &Faults{specs: specs, rng: rng, nth: map[string]int{}, grey: map[string]bool{}}
	for _, s := range specs {
		f.moments |= faultMoments[s.Kind]
	}
	return f
}

// faultMoments says where each kind of fault acts (see one).
var faultMoments = map[string]MomentSet{
	"reject":           Moments(MomentRcpt),
	"reject-mail":      Moments(MomentMail),
	"reject-nth":       Moments(MomentRcpt),
	"greylist":         Moments(MomentRcpt),
	"tempfail":         Moments(MomentRcpt, MomentDataEnd),
	"drop-during-data": Moments(MomentDataStreaming),
	"drop-after-data":  Moments(MomentCommitted),
	"slow-ack":         Moments(MomentCommitted),
	"latency":          Moments(MomentReply),
	"refuse":           Moments(MomentConnect),
	"conn-limit":       Moments(MomentMail),
}

// Moments implements MomentHook: sessions skip the faults (and their lock)
// at the moments none of them acts at.
func (f *Faults) Moments() MomentSet { return f.moments }

func (f *Faults) draw(p float64) bool { return p > 0 && f.rng.Float64() < p }

var tempfailReplies = [...]string{
	"451 4.3.0 Temporary local problem, try again later",
	"450 4.2.1 Mailbox temporarily unavailable, try again later",
	"452 4.3.1 Insufficient system storage, try again later",
}

// At implements Hook.
func (f *Faults) At(_ context.Context, ev *Event) Action {
	f.mu.Lock()
	defer f.mu.Unlock()
	var act Action
	for _, s := range f.specs {
		a := f.one(s, ev)
		if a.zero() {
			continue
		}
		act.Delay += a.Delay
		if act.Fault == "" || a.Reply != "" || a.Close {
			act.Fault = a.Fault
		}
		if a.Reply != "" || a.Close {
			act.Reply, act.Close = a.Reply, a.Close
			break
		}
	}
	return act
}

func (f *Faults) one(s FaultSpec, ev *Event) Action {
	switch {
	case ev.Moment == MomentRcpt && s.Kind == "reject" && ev.Address == Normalize(s.Addr),
		ev.Moment == MomentRcpt && s.Kind == "reject-nth" && f.isNth(ev.Address, s):
		return Action{Reply: "550 5.1.1 <" + ev.Address + ">: Recipient address rejected: User unknown", Fault: s.Kind}
	case ev.Moment == MomentMail && s.Kind == "reject-mail" && f.draw(s.P):
		// A sender refused for good; a pipelining client's RCPTs and DATA
		// behind it get 503 (RFC 2920), and nothing is counted.
		return Action{Reply: "550 5.7.1 <" + ev.Address + ">: Sender address rejected: Access denied", Fault: s.Kind}
	case ev.Moment == MomentRcpt && s.Kind == "greylist" && !f.grey[ev.Address]:
		f.grey[ev.Address] = true
		return Action{Reply: "451 4.7.1 <" + ev.Address + ">: Recipient address rejected: Greylisted, try again later", Fault: s.Kind}
	case (ev.Moment == MomentRcpt || ev.Moment == MomentDataEnd) && s.Kind == "tempfail" && f.draw(s.P):
		return Action{Reply: tempfailReplies[f.rng.IntN(len(tempfailReplies))], Fault: s.Kind}
	case ev.Moment == MomentDataStreaming && s.Kind == "drop-during-data" && f.draw(s.P):
		return Action{Close: true, Fault: s.Kind}
	case ev.Moment == MomentCommitted && s.Kind == "drop-after-data" && f.draw(s.P):
		return Action{Close: true, Fault: s.Kind}
	case ev.Moment == MomentCommitted && s.Kind == "slow-ack" && (s.P <= 0 || s.P >= 1 || f.draw(s.P)):
		return Action{Delay: s.D, Fault: s.Kind}
	case ev.Moment == MomentReply && s.Kind == "latency":
		return Action{Delay: s.D, Fault: s.Kind}
	case ev.Moment == MomentConnect && s.Kind == "refuse" && f.draw(s.P):
		return Action{Reply: "421 4.3.2 Service not available, closing transmission channel", Close: true, Fault: s.Kind}
	case ev.Moment == MomentMail && s.Kind == "conn-limit" && ev.Messages >= s.N:
		return Action{Reply: "421 4.7.0 Too many messages on this connection, closing transmission channel", Close: true, Fault: s.Kind}
	}
	return Action{}
}

// isNth reports whether addr is the one a reject-nth spec rejects: its
// resolved Addr when a harness set one from the list (so senders that skip
// around or run in parallel still bounce the address the harness expects),
// otherwise the N-th distinct recipient seen.
func (f *Faults) isNth(addr string, s FaultSpec) bool {
	if s.Addr != "" {
		return addr == Normalize(s.Addr)
	}
	if _, ok := f.nth[addr]; !ok {
		f.nth[addr] = len(f.nth) + 1
	}
	return f.nth[addr] == s.N
}

// FaultSet is a Hook whose faults can be replaced while the server runs,
// as PUT /api/v1/faults does. It is safe for concurrent use; the zero value
// injects nothing.
type FaultSet struct {
	cur atomic.Pointer[faultState]
}

type faultState struct {
	specs []FaultSpec
	seed  uint64
	hook  *Faults
}

// NewFaultSet returns a FaultSet injecting specs, its random faults seeded
// by seed.
func NewFaultSet(specs []FaultSpec, seed uint64) *FaultSet {
	fs := &FaultSet{}
	fs.Set(specs, seed)
	return fs
}

// Set replaces the faults. Their state starts over: greylisting forgets the
// addresses it has seen, reject-nth counts afresh, and random faults draw
// from a new source seeded by seed, exactly as a server started with them.
func (fs *FaultSet) Set(specs []FaultSpec, seed uint64) {
	specs = slices.Clone(specs)
	fs.cur.Store(&faultState{specs: specs, seed: seed, hook: NewFaults(specs, rand.New(rand.NewPCG(seed, 2)))})
}

// Specs returns the faults in force and their seed.
func (fs *FaultSet) Specs() (specs []FaultSpec, seed uint64) {
	st := fs.cur.Load()
	if st == nil {
		return nil, 0
	}
	return slices.Clone(st.specs), st.seed
}

// Moments implements MomentHook for the faults in force now.
func (fs *FaultSet) Moments() MomentSet {
	if st := fs.cur.Load(); st != nil {
		return st.hook.moments
	}
	return 0
}

// At implements Hook.
func (fs *FaultSet) At(ctx context.Context, ev *Event) Action {
	st := fs.cur.Load()
	if st == nil {
		return Action{}
	}
	return st.hook.At(ctx, ev)
}
