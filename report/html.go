// The HTML report: one self-contained page for people, with the verdict,
// the timeline drawn as inline SVG on the server (so the picture exists
// without JavaScript), the histogram, the worst addresses with each copy
// traced to the attempt that sent it, and the senders' last output. It
// loads nothing from the network: CSS, SVG and a little JavaScript for
// hovering are all inline.

package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

//go:embed html_template.html
var htmlTemplate string

// pageTemplate is parsed once; it is never changed after.
var pageTemplate = template.Must(template.New("report").Funcs(template.FuncMap{
	"f1": func(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) },
	"secs": func(v float64) string {
		return strconv.FormatFloat(v, 'f', 3, 64) + "s"
	},
	"by": func(c CopyDetail, multi bool) string { return c.by(multi) },
	"step": func(c PatternCopy, multi bool) string {
		return CopyDetail{Instance: c.Instance, Attempt: c.Attempt}.by(multi)
	},
	"add":   func(a, b int) int { return a + b },
	"count": count,
	"addf":  func(a, b float64) float64 { return a + b },
	"neg":   func(a float64) float64 { return -a },
}).Parse(htmlTemplate))

// WriteHTML writes the report as one self-contained HTML page to path,
// atomically.
func (rep *Report) WriteHTML(path string) error {
	tmp := path + ".tmp"
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("writing the HTML report: %w", err)
	}
	if err := rep.HTML(f); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("writing the HTML report: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing the HTML report: %w", err)
	}
	return os.Rename(tmp, path)
}

// HTML writes the report as one self-contained HTML page.
func (rep *Report) HTML(w io.Writer) error {
	page := htmlPage{R: rep, Status: rep.Status(), Hist: histogramChart(rep)}
	for _, s := range rep.Senders {
		page.Multi = page.Multi || s.Instance > 1
	}
	if rep.Outcome != OutcomeJudged {
		page.NotJudged = notJudged(rep)
	}
	kinds := make([]string, 0, len(rep.Faults))
	for k, n := range rep.Faults {
		kinds = append(kinds, k+"="+strconv.Itoa(n))
	}
	slices.Sort(kinds)
	page.Faults = strings.Join(kinds, " ")
	if rep.Timeline != nil {
		page.Chart = timelineChart(rep.Timeline)
	}
	page.Blocks = repeatBlocks(rep, page.Multi)
	return pageTemplate.Execute(w, page)
}

// notJudged says why a run's verdict does not stand, or "" when it does.
func notJudged(rep *Report) string {
	switch rep.Outcome {
	case OutcomeJudged:
		return ""
	case OutcomeTimeout:
		return "Timed out: " + rep.Ended + ". A run that did not end on its own never passes."
	case OutcomeInterrupted:
		return "Interrupted before the run ended: not judged. The counts are of what happened until then."
	}
	return "Not judged (" + string(rep.Outcome) + "): " + rep.Ended + "."
}

type htmlPage struct {
	R         *Report
	Status    string
	NotJudged string
	Multi     bool // several instances ran: attributions name the instance
	Faults    string
	Chart     *chart
	Hist      histChart
	Blocks    []repeatBlock
}

// chart is the timeline laid out in SVG coordinates.
type chart struct {
	W, H, Left, Top, PlotW, PlotH, Bottom float64
	// Area is every copy per bucket; Repeats and Unexplained are drawn over
	// it from the axis up, so the stack reads unexplained repeats, then
	// explained ones, then first copies. Either is "" when the run had none.
	Area, Repeats, Unexplained string
	Line                       string // coverage
	Bucket                     string
	YTicks, CTicks, XTicks     []tick
	Spans, Marks               []chartMark
	Lanes                      []tick
	Bands                      []chartBand
	Legend                     []legendItem
}

type tick struct {
	Pos   float64
	Label string
}

type chartMark struct {
	X, X2 float64
	// GX is where its glyph is drawn, relative to X: glyphs of marks a few
	// pixels apart (a kill and the restart 3 ms after it) are set side by
	// side, each tied to its line by a leader.
	GX       float64
	Y2       float64 // the line ends at the lanes of the instances it hit
	Kind     string
	Glyph    string
	Title    string
	InDoubt  int
	Instance int
	Hits     []laneHit
}

// laneHit is a signal's glyph on the band of an instance it hit.
type laneHit struct {
	Instance int
	Y        float64
}

type chartBand struct {
	X, Y, W float64
	LabelX  float64
	Class   string
	Label   string
	Title   string
}

// legendItem is one key of the chart's legend: a swatch for areas and
// bands, a glyph for marks.
type legendItem struct {
	Class, Label string
	Glyph        string
}

const (
	chartW     = 1180.0
	chartLeft  = 84.0
	chartRight = 60.0
	chartTop   = 44.0
	chartPlotH = 220.0
	laneH      = 26.0
	glyphW     = 13.0 // the room a mark's glyph takes across
	maxNudge   = 40.0 // how far a glyph may move off its line
	// maxLaidFaults is how many fault marks the glyph layout makes room for.
	maxLaidFaults = 30
)

// markOrder is the drawing order of mark kinds: later ones are drawn over
// earlier ones, so a kill stays visible over the restart that follows it
// and over the hundreds of faults a tempfail run fires.
var markOrder = map[string]int{"fault": 0, "outage": 1, "missed": 2, "doubt": 3, "restart": 4, "pause": 5, "term": 6, "kill": 7}

// markWords names mark kinds in the legend, in legend order.
var markWords = []struct{ kind, label string }{
	{"kill", "kill signal"}, {"term", "SIGTERM"}, {"pause", "pause (SIGSTOP)"}, {"restart", "restart"},
	{"fault", "fault"}, {"outage", "outage"}, {"missed", "kill point not applied"},
}

// glyph is the shape of a mark kind, 11 pixels tall from top: a shape per
// kind, so kinds differ without their colours.
func glyph(kind string, top float64) string {
	b := top + 11
	switch kind {
	case "restart": // ▶: an attempt starts
		return fmt.Sprintf("M-5,%.1f L6,%.1f L-5,%.1f Z", top, top+5.5, b)
	case "pause": // ❚❚
		return fmt.Sprintf("M-5,%.1f h3.5 v11 h-3.5 Z M1.5,%.1f h3.5 v11 h-3.5 Z", top, top)
	case "fault": // a small square
		return fmt.Sprintf("M-3.5,%.1f h7 v7 h-7 Z", top+2)
	case "outage": // a bar
		return fmt.Sprintf("M-6,%.1f h12 v4 h-12 Z", top+4)
	case "doubt": // ◆
		return fmt.Sprintf("M0,%.1f L6,%.1f L0,%.1f L-6,%.1f Z", top-1, top+5.5, b+1, top+5.5)
	}
	return fmt.Sprintf("M-6,%.1f L6,%.1f L0,%.1f Z", top, top, b) // ▼: kill, term, missed
}

func timelineChart(t *Timeline) *chart {
	instances := 1
	for _, b := range t.Bands {
		instances = max(instances, b.Instance)
	}
	c := &chart{W: chartW, Left: chartLeft, Top: chartTop, PlotW: chartW - chartLeft - chartRight, PlotH: chartPlotH}
	c.Bottom = c.Top + c.PlotH
	c.H = c.Bottom + 40 + float64(instances)*laneH + 10
	laneY := func(i int) float64 { return c.Bottom + 40 + float64(i-1)*laneH }
	x := func(s float64) float64 { return c.Left + s/t.Seconds*c.PlotW }
	maxCopies := 1
	for _, n := range t.Copies {
		maxCopies = max(maxCopies, n)
	}
	yCover := func(n int) float64 { return c.Bottom - float64(n)/float64(max(t.Expected, 1))*c.PlotH }
	// Repeats are what the reader came for: a bucket with any is drawn at
	// least minRepeatPx tall, and explained ones show above unexplained ones
	// however few, so one repeat among thousands of copies is still seen.
	const minRepeatPx = 3.0
	scale := func(n int) float64 { return float64(n) / float64(maxCopies) * c.PlotH }
	hU, hR, hC := make([]float64, len(t.Copies)), make([]float64, len(t.Copies)), make([]float64, len(t.Copies))
	for i, n := range t.Copies {
		rep, unx := at(t.Repeats, i), at(t.Unexplained, i)
		if unx > 0 {
			hU[i] = max(scale(unx), minRepeatPx)
		}
		if rep > 0 {
			hR[i] = max(scale(rep), hU[i])
			if rep > unx {
				hR[i] = max(hR[i], hU[i]+minRepeatPx)
			}
		}
		hC[i] = max(scale(n), hR[i])
	}
	// area is a step path of per-bucket heights, "" when all are 0.
	area := func(h []float64) string {
		if !slices.ContainsFunc(h, func(v float64) bool { return v > 0 }) {
			return ""
		}
		var sb strings.Builder
		fmt.Fprintf(&sb, "M%.1f,%.1f", c.Left, c.Bottom)
		for i, v := range h {
			x0, x1 := x(float64(i)*t.BucketSeconds), x(float64(i+1)*t.BucketSeconds)
			fmt.Fprintf(&sb, " L%.1f,%.1f L%.1f,%.1f", x0, c.Bottom-v, x1, c.Bottom-v)
		}
		fmt.Fprintf(&sb, " L%.1f,%.1f Z", x(float64(len(h))*t.BucketSeconds), c.Bottom)
		return sb.String()
	}
	c.Area, c.Unexplained = area(hC), area(hU)
	for i := range t.Copies {
		if at(t.Repeats, i) > at(t.Unexplained, i) { // some repeats are explained
			c.Repeats = area(hR)
			break
		}
	}
	if c.Area == "" { // an empty run still has its baseline
		c.Area = fmt.Sprintf("M%.1f,%.1f L%.1f,%.1f Z", c.Left, c.Bottom, c.Left+c.PlotW, c.Bottom)
	}
	var line strings.Builder
	fmt.Fprintf(&line, "%.1f,%.1f", c.Left, c.Bottom)
	for i := range t.Covered {
		fmt.Fprintf(&line, " %.1f,%.1f", x(float64(i+1)*t.BucketSeconds), yCover(t.Covered[i]))
	}
	c.Line = line.String()
	c.Bucket = durationWords(t.BucketSeconds)

	for _, f := range []float64{0, 0.5, 1} {
		if f == 0.5 && maxCopies < 2 {
			continue // half of 1 copy is no count
		}
		c.YTicks = append(c.YTicks, tick{c.Bottom - f*c.PlotH, strconv.Itoa(int(math.Round(f * float64(maxCopies))))})
		c.CTicks = append(c.CTicks, tick{c.Bottom - f*c.PlotH, strconv.Itoa(int(f*100)) + "%"})
	}
	step := niceStep(t.Seconds / 8)
	decimals := max(0, int(-math.Floor(math.Log10(step))))
	for i := 0; float64(i)*step <= t.Seconds*1.0001; i++ {
		s := float64(i) * step // not a running sum: 0.1+0.05 prints as 0.15000000000000002
		c.XTicks = append(c.XTicks, tick{x(s), strconv.FormatFloat(s, 'f', decimals, 64) + "s"})
	}

	present := map[string]bool{}
	for _, m := range t.Marks {
		present[m.Kind] = true
		// On a whole pixel, a 2px line is drawn crisp, in its own colour.
		cm := chartMark{X: math.Round(x(m.At)), Kind: m.Kind, Glyph: glyph(m.Kind, c.Top-14), Title: fmt.Sprintf("%.3fs: %s", m.At, m.Label),
			InDoubt: m.InDoubt, Instance: m.Instance, Y2: c.H}
		if m.InDoubt > 0 {
			cm.Title += fmt.Sprintf(" · %d in-doubt", m.InDoubt)
			present["in-doubt"] = true
		}
		hit := m.Instances
		if len(hit) == 0 && m.Instance > 0 {
			hit = []int{m.Instance}
		}
		if len(hit) > 0 {
			cm.Y2 = laneY(slices.Max(hit)) + 18
		}
		if m.Kind == "kill" || m.Kind == "term" || m.Kind == "pause" {
			for _, i := range hit {
				cm.Hits = append(cm.Hits, laneHit{Instance: i, Y: laneY(i) + 9})
			}
		}
		if m.Until > m.At {
			cm.X2 = x(m.Until)
			c.Spans = append(c.Spans, cm)
		}
		c.Marks = append(c.Marks, cm)
	}
	// Glyphs left to right: a mark too close to the one before moves right
	// by a glyph's width, up to maxNudge. Past a few dozen faults, faults
	// keep their place and take none: a tempfail run fires hundreds.
	faults := 0
	for _, m := range c.Marks {
		if m.Kind == "fault" {
			faults++
		}
	}
	last := math.Inf(-1)
	for i := range c.Marks {
		m := &c.Marks[i]
		if m.Kind == "fault" && faults > maxLaidFaults {
			continue
		}
		if gx := last + glyphW; gx > m.X && gx-m.X <= maxNudge {
			m.GX = gx - m.X
		}
		last = m.X + m.GX
	}
	slices.SortStableFunc(c.Marks, func(a, b chartMark) int { return markOrder[a.Kind] - markOrder[b.Kind] })

	for i := 1; i <= instances; i++ {
		c.Lanes = append(c.Lanes, tick{laneY(i), "instance " + strconv.Itoa(i)})
	}
	for _, b := range t.Bands {
		cb := chartBand{X: x(b.Start), Y: laneY(b.Instance), W: max(x(b.End)-x(b.Start), 1.5), Class: bandClass(b.Exit)}
		present["band-"+cb.Class] = true
		cb.Title = fmt.Sprintf("instance %d attempt %d: %.3fs to %.3fs, %s, %d copies; after %s", b.Instance, b.Attempt, b.Start, b.End, orElse(b.Exit, "still running"), b.Copies, b.After)
		// The label starts past a signal's glyph near the band's start (a
		// restart right after a kill), and is shortened to what fits.
		cb.LabelX = cb.X + 4
		for _, m := range c.Marks {
			for _, h := range m.Hits {
				if h.Instance == b.Instance && m.X >= cb.LabelX-8 && m.X <= cb.LabelX+30 {
					cb.LabelX = max(cb.LabelX, m.X+9)
				}
			}
		}
		room := cb.X + cb.W - cb.LabelX
		long := fmt.Sprintf("#%d · %d copies", b.Attempt, b.Copies)
		if room > textWidth(long)+4 {
			cb.Label = long
		} else if short := "#" + strconv.Itoa(b.Attempt); room > textWidth(short)+4 {
			cb.Label = short
		}
		c.Bands = append(c.Bands, cb)
	}
	c.Legend = legend(t, c, present)
	return c
}

// textWidth estimates the width of a band label in 11px bold.
func textWidth(s string) float64 { return 6.6 * float64(len([]rune(s))) }

// hitGlyph is the legend's picture of a signal's glyph on a band: a ring
// with a cross.
const hitGlyph = "M0,-5.5 A5.5,5.5 0 1 1 0,5.5 A5.5,5.5 0 1 1 0,-5.5 Z M-2.5,-2.5 L2.5,2.5 M2.5,-2.5 L-2.5,2.5"

// legend keys what this chart drew, and nothing it did not.
func legend(t *Timeline, c *chart, present map[string]bool) []legendItem {
	var l []legendItem
	repeats, unexplained := 0, 0
	for i := range t.Repeats {
		repeats += t.Repeats[i]
	}
	for _, n := range t.Unexplained {
		unexplained += n
	}
	first := "copies per " + c.Bucket
	if repeats > 0 {
		first = "first copies per " + c.Bucket
	}
	l = append(l, legendItem{Class: "first", Label: first})
	if repeats > unexplained {
		l = append(l, legendItem{Class: "repeat", Label: "repeats an in-doubt transaction explains"})
	}
	if unexplained > 0 {
		l = append(l, legendItem{Class: "unexplained", Label: "unexplained repeats"})
	}
	if t.Expected > 0 {
		l = append(l, legendItem{Class: "cover", Label: "recipients with a copy (right axis)"})
	}
	for _, k := range markWords {
		if present[k.kind] {
			l = append(l, legendItem{Class: k.kind, Label: k.label, Glyph: glyph(k.kind, -5.5)})
		}
	}
	if present["in-doubt"] || present["doubt"] {
		l = append(l, legendItem{Class: "doubt", Label: "in-doubt transaction", Glyph: glyph("doubt", -5.5)})
	}
	if present["kill"] || present["term"] || present["pause"] {
		l = append(l, legendItem{Class: "hit", Label: "the instance a signal hit", Glyph: hitGlyph})
	}
	for _, b := range []struct{ class, label string }{
		{"ok", "attempt that exited 0"}, {"killed", "attempt killed by a signal"},
		{"failed", "attempt that exited with an error"}, {"running", "attempt still running at the end"},
	} {
		if present["band-"+b.class] {
			l = append(l, legendItem{Class: "band-" + b.class, Label: b.label})
		}
	}
	return l
}

// at is v[i], or 0 past its end (a timeline read from an older JSON).
func at(v []int, i int) int {
	if i < len(v) {
		return v[i]
	}
	return 0
}

func orElse(s, fallback string) string {
	if s == "" {
		return fallback
	}
	return s
}

func bandClass(exit string) string {
	switch {
	case exit == "exit 0":
		return "ok"
	case strings.HasPrefix(exit, "killed by"):
		return "killed"
	case exit == "":
		return "running"
	}
	return "failed"
}

// niceStep rounds a tick step up to 1, 2 or 5 times a power of ten.
func niceStep(raw float64) float64 {
	if raw <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw {
			return m * p
		}
	}
	return 10 * p
}

func durationWords(s float64) string {
	if s < 1 {
		return strconv.FormatFloat(s*1000, 'g', 3, 64) + " ms"
	}
	return strconv.FormatFloat(s, 'g', 3, 64) + " s"
}

// histChart is the copies-per-recipient histogram laid out in SVG.
type histChart struct {
	W, H, Base float64
	Bars       []histBar
}

type histBar struct {
	X, Y, W, H float64
	Label      string
	Count      int
	Class      string
}

func histogramChart(rep *Report) histChart {
	counts := [5]int{}
	for k, n := range rep.Histogram {
		c, err := strconv.Atoi(k)
		if err == nil && c >= 0 {
			counts[min(c, 4)] += n
		}
	}
	h := histChart{W: 560, H: 210, Base: 180}
	top := rep.Bounced
	for _, n := range counts {
		top = max(top, n)
	}
	top = max(top, 1)
	bar := func(x float64, label string, n int, class string) {
		bh := float64(n) / float64(top) * 150
		if n > 0 {
			bh = max(bh, 2)
		}
		h.Bars = append(h.Bars, histBar{X: x, Y: h.Base - bh, W: 64, H: bh, Label: label, Count: n, Class: class})
	}
	for i, n := range counts {
		label, class := strconv.Itoa(i), "dup"
		switch i {
		case 0:
			class = "missing"
		case 1:
			class = "one"
		case 4:
			label = "4+"
		}
		bar(20+float64(i)*84, label, n, class)
	}
	bar(20+5*84+30, "bounced", rep.Bounced, "bounced")
	return h
}

// repeatBlock is one way addresses were repeated, for the page: a pattern
// and, when one of the worst addresses took it, that address in full.
type repeatBlock struct {
	Words     string
	Addresses int
	Copies    int
	// Unexplained is each address's unexplained repeats.
	Unexplained int
	Examples    []string
	More        int // addresses beyond the examples
	// Detail is the first of the worst addresses that took it, each copy
	// with its time, session and what explains it; Also are the others.
	Detail *Worst
	Also   []string
	// Seq is the pattern's copies, when no worst address took it.
	Seq []PatternCopy
}

// repeatBlocks lays out the repeated addresses: one block per pattern, then
// the worst addresses no listed pattern covers (a report read from JSON
// without patterns), grouped alike by their copies.
func repeatBlocks(rep *Report, multi bool) []repeatBlock {
	var blocks []repeatBlock
	covered := make([]bool, len(rep.Worst))
	for _, pt := range rep.Patterns {
		b := repeatBlock{Words: pt.Words, Addresses: pt.Addresses, Copies: pt.Copies, Unexplained: pt.Unexplained,
			Examples: pt.Examples, More: pt.Addresses - len(pt.Examples), Seq: pt.Sequence}
		for _, i := range pt.worst {
			if i >= len(rep.Worst) {
				continue
			}
			covered[i] = true
			if b.Detail == nil {
				b.Detail = &rep.Worst[i]
			} else {
				b.Also = append(b.Also, rep.Worst[i].Address)
			}
		}
		blocks = append(blocks, b)
	}
	type key struct {
		copies int
		steps  string
	}
	index := map[key]int{}
	for i := range rep.Worst {
		if covered[i] {
			continue
		}
		w := &rep.Worst[i]
		pt := worstPattern(w)
		k := key{w.Copies, fmt.Sprint(pt.Sequence)}
		if j, ok := index[k]; ok {
			blocks[j].Addresses++
			blocks[j].Also = append(blocks[j].Also, w.Address)
			blocks[j].Words = worstPatternWords(blocks[j], multi)
			continue
		}
		index[k] = len(blocks)
		blocks = append(blocks, repeatBlock{Addresses: 1, Copies: w.Copies, Unexplained: w.Unexplained, Detail: w, Seq: pt.Sequence})
		blocks[len(blocks)-1].Words = worstPatternWords(blocks[len(blocks)-1], multi)
	}
	return blocks
}

// worstPattern is the pattern of one worst address, from its copies.
func worstPattern(w *Worst) Pattern {
	pt := Pattern{Addresses: 1, Copies: w.Copies, Unexplained: w.Unexplained, Examples: []string{w.Address}}
	for _, c := range w.CopiesDetail {
		pt.Sequence = append(pt.Sequence, PatternCopy{Instance: c.Instance, Attempt: c.Attempt, MessageIDRepeat: c.MessageIDRepeat,
			NoMessageID: c.MessageID == "", InDoubt: c.InDoubt, Explained: c.Explained, After: c.After})
	}
	pt.WithoutMessageID = max(w.withoutID, w.detailWithoutID())
	pt.MessageIDs = w.MessageIDs - pt.WithoutMessageID
	return pt
}

func worstPatternWords(b repeatBlock, multi bool) string {
	pt := worstPattern(b.Detail)
	pt.Addresses = b.Addresses
	return pt.words(multi)
}
