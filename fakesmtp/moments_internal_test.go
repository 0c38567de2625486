// Sessions skip a MomentHook at the moments it does not name: every fault
// must name every moment it can act at, or it would silently never fire.

package fakesmtp

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"
)

func TestFaultMomentsCoverWhereFaultsAct(t *testing.T) {
	specs := []FaultSpec{
		{Kind: "reject", Addr: "a@x.test"}, {Kind: "reject-nth", N: 1}, {Kind: "greylist"},
		{Kind: "tempfail", P: 1}, {Kind: "drop-during-data", P: 1}, {Kind: "drop-after-data", P: 1},
		{Kind: "slow-ack", D: time.Nanosecond, P: 1}, {Kind: "latency", D: time.Nanosecond},
		{Kind: "refuse", P: 1}, {Kind: "conn-limit", N: 1}, {Kind: "reject-mail", P: 1},
	}
	for _, spec := range specs {
		f := NewFaults([]FaultSpec{spec}, rand.New(rand.NewPCG(1, 2)))
		if f.Moments() == 0 {
			t.Errorf("%s: names no moment", spec)
		}
		for m := MomentConnect; m <= MomentClosed; m++ {
			ev := &Event{Moment: m, Address: "a@x.test", Recipients: []string{"a@x.test"}, Messages: 5, Reply: "250 ok"}
			if a := f.At(context.Background(), ev); !a.zero() && !f.Moments().Has(m) {
				t.Errorf("%s acts at %s, which its Moments leave out", spec, m)
			}
		}
	}
	fs := NewFaultSet(nil, 1)
	if fs.Moments() != 0 {
		t.Errorf("an empty FaultSet wants moments %b", fs.Moments())
	}
	fs.Set([]FaultSpec{{Kind: "latency", D: time.Millisecond}}, 1)
	if !fs.Moments().Has(MomentReply) {
		t.Error("a FaultSet with latency does not want MomentReply")
	}
}
