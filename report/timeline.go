// The timeline: the run over time, rebuilt from its history for the HTML
// report's chart. Its size is fixed by the number of buckets, attempts and
// harness actions, never by the number of copies.

package report

import (
	"math"
	"time"
)

// Timeline is the run over time: copies and coverage per time bucket, the
// harness's kills, pauses, restarts and the faults as marks, and each
// sender attempt as a band from its start to its exit. Times are seconds
// since the run started.
type Timeline struct {
	Seconds       float64 `json:"seconds"`
	BucketSeconds float64 `json:"bucket_seconds"`
	// Copies counted in each bucket; Repeats among them, copies to an
	// expected address that already had one; and Unexplained among those,
	// the repeats no in-doubt transaction explains (the verdict's rule, for
	// every copy: they add up to the report's unexplained).
	Copies      []int `json:"copies"`
	Repeats     []int `json:"repeats"`
	Unexplained []int `json:"unexplained"`
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
	// Kind is kill, term, pause, restart, fault, outage, missed or doubt.
	Kind  string `json:"kind"`
	Label string `json:"label"`
	// Instance is the instance it hit, when it hit one (0: all, or none);
	// Instances lists every instance a signal hit.
	Instance  int   `json:"instance,omitempty"`
	Instances []int `json:"instances,omitempty"`
	// InDoubt counts the in-doubt transactions that followed it.
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
	firstBucket     = 0.001 // seconds
)

// timelineBuilder lays the run out as it is read. The run's length is
// known only at its end, so buckets start a millisecond wide and double
// (merging pairs) whenever a copy falls past the last one: the chart ends
// up with 60 to 120 buckets over the whole run.
type timelineBuilder struct {
	start  time.Time
	t      Timeline
	faults int
	paused map[int]int
}

func newTimelineBuilder(start time.Time, expected int) *timelineBuilder {
	return &timelineBuilder{start: start, paused: map[int]int{}, t: Timeline{
		BucketSeconds: firstBucket, Expected: expected,
		Copies: make([]int, timelineBuckets), Repeats: make([]int, timelineBuckets), Unexplained: make([]int, timelineBuckets),
		Covered: make([]int, timelineBuckets),
		Marks:   []Mark{}, Bands: []Band{},
	}}
}

// at is t in seconds since the start.
func (b *timelineBuilder) at(t time.Time) float64 { return max(t.Sub(b.start).Seconds(), 0) }

func (b *timelineBuilder) bucket(t time.Time) int {
	s := b.at(t)
	for s >= float64(timelineBuckets)*b.t.BucketSeconds {
		b.widen()
	}
	return int(s / b.t.BucketSeconds)
}

// widen doubles the bucket width, merging each pair of buckets.
func (b *timelineBuilder) widen() {
	for _, v := range [][]int{b.t.Copies, b.t.Repeats, b.t.Unexplained} {
		for i := 0; i < timelineBuckets/2; i++ {
			v[i] = v[2*i] + v[2*i+1]
		}
		clear(v[timelineBuckets/2:])
	}
	c := b.t.Covered
	for i := 0; i < timelineBuckets/2; i++ {
		c[i] = max(c[2*i], c[2*i+1])
	}
	clear(c[timelineBuckets/2:])
	b.t.BucketSeconds *= 2
}

func (b *timelineBuilder) copied(t time.Time, n, repeats, unexplained, covered int) {
	i := b.bucket(t)
	b.t.Copies[i] += n
	b.t.Repeats[i] += repeats
	b.t.Unexplained[i] += unexplained
	b.t.Covered[i] = max(b.t.Covered[i], covered)
}

func (b *timelineBuilder) mark(t time.Time, kind, label string, instance int) int {
	b.t.Marks = append(b.t.Marks, Mark{At: b.at(t), Kind: kind, Label: label, Instance: instance})
	return len(b.t.Marks) - 1
}

// started opens a band and returns its index; a restart is also a mark.
func (b *timelineBuilder) started(t time.Time, instance, attempt int, after string) int {
	if attempt > 1 {
		b.mark(t, "restart", "restart after "+after, instance)
	}
	b.t.Bands = append(b.t.Bands, Band{Instance: instance, Attempt: attempt, Start: b.at(t), End: -1, After: after})
	return len(b.t.Bands) - 1
}

func (b *timelineBuilder) exited(band int, t time.Time, exit string) {
	b.t.Bands[band].End, b.t.Bands[band].Exit = b.at(t), exit
}

// paused opens a pause on a pid's attempt; resumed closes it.
func (b *timelineBuilder) pause(t time.Time, label string, instance int, pids []int) int {
	i := b.mark(t, "pause", label, instance)
	b.t.Marks[i].Until = -1
	for _, pid := range pids {
		b.paused[pid] = i
	}
	return i
}

func (b *timelineBuilder) resume(t time.Time, pids []int) {
	for _, pid := range pids {
		if i, ok := b.paused[pid]; ok {
			b.t.Marks[i].Until = b.at(t)
			delete(b.paused, pid)
		}
	}
}

func (b *timelineBuilder) outage(t time.Time, label string, d time.Duration) {
	i := b.mark(t, "outage", label, 0)
	b.t.Marks[i].Until = b.t.Marks[i].At + d.Seconds()
}

// fault marks a fault, up to maxFaultMarks of them; it returns the mark,
// or -1 when it was left out.
func (b *timelineBuilder) fault(t time.Time, label string, instance int) int {
	if b.faults >= maxFaultMarks {
		b.t.MarksOmitted++
		return -1
	}
	b.faults++
	return b.mark(t, "fault", label, instance)
}

// finish closes the run at end: what still ran, ran to it.
func (b *timelineBuilder) finish(end time.Time) *Timeline {
	b.t.Seconds = max(b.at(end), firstBucket)
	n := max(1, min(timelineBuckets, int(math.Ceil(b.t.Seconds/b.t.BucketSeconds))))
	b.t.Copies, b.t.Repeats, b.t.Unexplained, b.t.Covered = b.t.Copies[:n], b.t.Repeats[:n], b.t.Unexplained[:n], b.t.Covered[:n]
	for i := 1; i < len(b.t.Covered); i++ {
		b.t.Covered[i] = max(b.t.Covered[i], b.t.Covered[i-1])
	}
	for i := range b.t.Bands {
		if b.t.Bands[i].End < 0 {
			b.t.Bands[i].End = b.t.Seconds
		}
	}
	for i := range b.t.Marks {
		m := &b.t.Marks[i]
		if m.Until < 0 {
			m.Until = b.t.Seconds
		}
		m.Until = min(m.Until, b.t.Seconds)
	}
	return &b.t
}
