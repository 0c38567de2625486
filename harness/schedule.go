// Kill schedules: the points of a run, measured in how many expected
// addresses have a copy, where the sender gets its signal. Measuring
// coverage rather than time or raw copies spreads the kills so every
// restart must make progress before the next one. A point that finds no
// sender to hit is not dropped: it stays due, and the next copy (from the
// next attempt) fires it; what is left at the end is reported as not
// applied.

package harness

import (
	"math"
	"math/rand/v2"
	"slices"
	"sync"

	"github.com/onecopy/onecopy/history"
)

type schedule struct {
	mu     sync.Mutex
	points []history.KillPoint              // at, every, random: fired on copies, in coverage order
	armed  map[KillKind][]history.KillPoint // in-doubt, during-data: fired by a session
}

func newSchedule(specs []KillSpec, n int, rng *rand.Rand) *schedule {
	s := &schedule{armed: map[KillKind][]history.KillPoint{}}
	clamp := func(v int) int { return min(max(v, 1), n) }
	num := 0
	point := func(k KillSpec, due int) history.KillPoint {
		num++
		return history.KillPoint{Spec: k.String(), Kind: string(k.Kind), N: num, Due: due}
	}
	for _, k := range specs {
		switch k.Kind {
		case KillAt:
			for _, p := range k.Percents {
				s.points = append(s.points, point(k, clamp(int(math.Ceil(p/100*float64(n))))))
			}
		case KillEvery:
			for c := k.N; c < n; c += k.N {
				s.points = append(s.points, point(k, c))
			}
		case KillRandom:
			lo, hi := 0.05*float64(n), 0.95*float64(n)
			for range k.N {
				s.points = append(s.points, point(k, clamp(int(lo+rng.Float64()*(hi-lo)))))
			}
		case KillInDoubt, KillDuringData:
			for i := 1; i <= k.N; i++ {
				s.armed[k.Kind] = append(s.armed[k.Kind], point(k, i*n/(k.N+1)))
			}
		}
	}
	slices.SortStableFunc(s.points, func(a, b history.KillPoint) int { return a.Due - b.Due })
	return s
}

// due takes the next count-based point reached by coverage, at most one
// per call, so two points never hit one dying sender.
func (s *schedule) due(coverage int) (history.KillPoint, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.points) == 0 || s.points[0].Due > coverage {
		return history.KillPoint{}, false
	}
	p := s.points[0]
	s.points = s.points[1:]
	p.Coverage = coverage
	return p, true
}

// take takes the next protocol-moment point of kind once coverage has
// reached it.
func (s *schedule) take(kind KillKind, coverage int) (history.KillPoint, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.armed[kind]
	if len(ps) == 0 || ps[0].Due > coverage {
		return history.KillPoint{}, false
	}
	s.armed[kind] = ps[1:]
	p := ps[0]
	p.Coverage = coverage
	return p, true
}

// putBack returns a point that found nobody to hit: it fires at the next
// chance.
func (s *schedule) putBack(p history.KillPoint) {
	s.mu.Lock()
	defer s.mu.Unlock()
	p.Coverage, p.Session, p.Moment = 0, 0, ""
	if k := KillKind(p.Kind); k == KillInDoubt || k == KillDuringData {
		s.armed[k] = slices.Insert(s.armed[k], 0, p)
		return
	}
	s.points = slices.Insert(s.points, 0, p)
}

// left is every point not applied, in order.
func (s *schedule) left() []history.KillPoint {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.points)
	for _, k := range []KillKind{KillInDoubt, KillDuringData} {
		out = append(out, s.armed[k]...)
	}
	slices.SortStableFunc(out, func(a, b history.KillPoint) int { return a.N - b.N })
	return out
}
