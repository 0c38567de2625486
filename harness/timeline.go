// The timeline: the run over time, rebuilt from its history for the HTML
// report's chart. Its size is fixed by the number of buckets, attempts and
// harness actions, never by the number of copies.

package harness

import (
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
)

// Timeline is the run over time: copies and coverage per time bucket, the
// harness's kills, pauses, restarts and the faults as marks, and each
// sender attempt as a band from its start to its exit. Times are seconds
// since the run started.
type Timeline struct {
	Seconds       float64 `json:"seconds"`
	BucketSeconds float64 `json:"bucket_seconds"`
	// Copies counted in each bucket.
	Copies []int `json:"copies"`
	// Covered is how many expected addresses had a copy at each bucket's end.
	Covered []int `json:"covered"`
	// Expected is the number of expected addresses (Covered's 100%).
	Expected int    `json:"expected"`
	Marks    []Mark `json:"marks"`
	// MarksOmitted counts fault marks left out past the first few hundred
	// (a tempfail=0.5 run fires thousands); in-doubt ones are always kept.
	MarksOmitted int    `json:"marks_omitted,omitempty"`
	Bands        []Band `json:"bands"`
}

// Mark is one thing that happened to the run at a moment.
type Mark struct {
	At float64 `json:"at"`
	// Until ends a pause or an outage.
	Until float64 `json:"until,omitempty"`
	// Kind is kill, term, pause, restart, fault, outage or skipped.
	Kind  string `json:"kind"`
	Label string `json:"label"`
	// InDoubt counts the in-doubt events it caused.
	InDoubt int `json:"in_doubt,omitempty"`
}

// Band is one attempt of one instance, from its start to its exit.
type Band struct {
	Instance int     `json:"instance"`
	Attempt  int     `json:"attempt"`
	Start    float64 `json:"start"`
	End      float64 `json:"end"`
	Exit     string  `json:"exit"`
	Copies   int     `json:"copies"`
	After    string  `json:"after"`
}

const (
	timelineBuckets = 120
	maxFaultMarks   = 300
)

type timelineBuilder struct {
	start  time.Time
	t      Timeline
	faults int
	paused map[int]int // pid -> its open pause mark
}

func newTimelineBuilder(seconds float64, start time.Time, expected int) *timelineBuilder {
	seconds = max(seconds, 0.001)
	return &timelineBuilder{start: start, paused: map[int]int{}, t: Timeline{
		Seconds: seconds, BucketSeconds: seconds / timelineBuckets, Expected: expected,
		Copies: make([]int, timelineBuckets), Covered: make([]int, timelineBuckets),
		Marks: []Mark{}, Bands: []Band{},
	}}
}

// at is t in seconds since the start, within the run.
func (b *timelineBuilder) at(t time.Time) float64 {
	return min(max(t.Sub(b.start).Seconds(), 0), b.t.Seconds)
}

func (b *timelineBuilder) bucket(t time.Time) int {
	return min(int(b.at(t)/b.t.BucketSeconds), timelineBuckets-1)
}

func (b *timelineBuilder) copied(t time.Time, n, covered int) {
	i := b.bucket(t)
	b.t.Copies[i] += n
	b.t.Covered[i] = max(b.t.Covered[i], covered)
}

func (b *timelineBuilder) mark(t time.Time, kind, label string, inDoubt int) int {
	b.t.Marks = append(b.t.Marks, Mark{At: b.at(t), Kind: kind, Label: label, InDoubt: inDoubt})
	return len(b.t.Marks) - 1
}

// started opens a band and returns its index; a restart is also a mark.
func (b *timelineBuilder) started(t time.Time, instance, attempt int, after string) int {
	if attempt > 1 {
		b.mark(t, "restart", "restart after "+after, 0)
	}
	b.t.Bands = append(b.t.Bands, Band{Instance: instance, Attempt: attempt, Start: b.at(t), End: b.t.Seconds, After: after})
	return len(b.t.Bands) - 1
}

func (b *timelineBuilder) exited(band int, t time.Time, exit string) {
	b.t.Bands[band].End, b.t.Bands[band].Exit = b.at(t), exit
}

// signal marks a harness signal; a SIGCONT closes the pause it ends.
func (b *timelineBuilder) signal(ev Event, what string) {
	switch ev.Signal {
	case "SIGCONT":
		for _, pid := range ev.PIDs {
			if i, ok := b.paused[pid]; ok {
				b.t.Marks[i].Until = b.at(ev.T)
				delete(b.paused, pid)
			}
		}
	case "SIGSTOP":
		i := b.mark(ev.T, "pause", what, 0)
		b.t.Marks[i].Until = b.t.Seconds
		for _, pid := range ev.PIDs {
			b.paused[pid] = i
		}
	case "SIGTERM":
		b.mark(ev.T, "term", what, 0)
	default:
		b.mark(ev.T, "kill", what, ev.InDoubt)
	}
}

func (b *timelineBuilder) fault(ev Event, label string, outage *fakesmtp.FaultSpec) {
	if ev.Kind == "outage" {
		i := b.mark(ev.T, "outage", label, 0)
		if outage != nil {
			b.t.Marks[i].Until = min(b.t.Marks[i].At+outage.D.Seconds(), b.t.Seconds)
		}
		return
	}
	if b.faults >= maxFaultMarks && ev.InDoubt == 0 {
		b.t.MarksOmitted++
		return
	}
	b.faults++
	b.mark(ev.T, "fault", label, ev.InDoubt)
}

func (b *timelineBuilder) finish() *Timeline {
	for i := 1; i < len(b.t.Covered); i++ {
		b.t.Covered[i] = max(b.t.Covered[i], b.t.Covered[i-1])
	}
	return &b.t
}
