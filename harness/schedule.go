// Kill schedules: the points of a run, measured in how many expected
// addresses have a copy, where the sender gets its signal. Measuring
// coverage rather than time or raw copies spreads the kills so every
// restart must make progress before the next one.

package harness

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
)

type point struct {
	at     int // coverage that fires it
	reason string
}

type schedule struct {
	mu     sync.Mutex
	points []point              // at, every, random: fired by the run loop
	armed  map[KillKind][]point // in-doubt, during-data: fired by a session
}

func newSchedule(specs []KillSpec, n int, rng *rand.Rand) *schedule {
	s := &schedule{armed: map[KillKind][]point{}}
	clamp := func(v int) int { return min(max(v, 1), n) }
	// The reason names the point, so the history shows where each kill was
	// due and two runs with one seed can be compared.
	at := func(c int, k KillSpec) point {
		return point{c, fmt.Sprintf("--kill %s: point %d of %d recipients with a copy", k, c, n)}
	}
	for _, k := range specs {
		switch k.Kind {
		case KillAt:
			for _, p := range k.Percents {
				s.points = append(s.points, at(clamp(int(math.Ceil(p/100*float64(n)))), k))
			}
		case KillEvery:
			for c := k.N; c < n; c += k.N {
				s.points = append(s.points, at(c, k))
			}
		case KillRandom:
			lo, hi := 0.05*float64(n), 0.95*float64(n)
			for range k.N {
				s.points = append(s.points, at(clamp(int(lo+rng.Float64()*(hi-lo))), k))
			}
		case KillInDoubt, KillDuringData:
			for i := 1; i <= k.N; i++ {
				s.armed[k.Kind] = append(s.armed[k.Kind], point{i * n / (k.N + 1), "--kill " + k.String()})
			}
		}
	}
	slices.SortStableFunc(s.points, func(a, b point) int { return a.at - b.at })
	return s
}

// due returns the reason of the next count-based point reached by coverage,
// at most one per call, so two points never hit one dying sender.
func (s *schedule) due(coverage int) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.points) == 0 || s.points[0].at > coverage {
		return nil
	}
	p := s.points[0]
	s.points = s.points[1:]
	return []string{p.reason}
}

// take consumes the next protocol-moment kill of kind once coverage has
// reached it.
func (s *schedule) take(kind KillKind, coverage int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	ps := s.armed[kind]
	if len(ps) == 0 || ps[0].at > coverage {
		return false
	}
	s.armed[kind] = ps[1:]
	return true
}
