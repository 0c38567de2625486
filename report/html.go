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
	"by":   func(c CopyDetail, multi bool) string { return c.by(multi) },
	"add":  func(a, b int) int { return a + b },
	"addf": func(a, b float64) float64 { return a + b },
	"neg":  func(a float64) float64 { return -a },
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
	kinds := make([]string, 0, len(rep.Faults))
	for k, n := range rep.Faults {
		kinds = append(kinds, k+"="+strconv.Itoa(n))
	}
	slices.Sort(kinds)
	page.Faults = strings.Join(kinds, " ")
	if rep.Timeline != nil {
		page.Chart = timelineChart(rep.Timeline)
	}
	return pageTemplate.Execute(w, page)
}

type htmlPage struct {
	R      *Report
	Status string
	Multi  bool // several instances ran: attributions name the instance
	Faults string
	Chart  *chart
	Hist   histChart
}

// chart is the timeline laid out in SVG coordinates.
type chart struct {
	W, H, Left, Top, PlotW, PlotH, Bottom float64
	Area, Line                            string // copies per bucket, coverage
	Bucket                                string
	YTicks, CTicks, XTicks                []tick
	Spans, Marks                          []chartMark
	Lanes                                 []tick
	Bands                                 []chartBand
}

type tick struct {
	Pos   float64
	Label string
}

type chartMark struct {
	X, X2   float64
	Kind    string
	Title   string
	InDoubt int
}

type chartBand struct {
	X, Y, W float64
	Class   string
	Label   string
	Title   string
}

const (
	chartW     = 1180.0
	chartLeft  = 84.0
	chartRight = 60.0
	chartTop   = 34.0
	chartPlotH = 220.0
	laneH      = 26.0
)

func timelineChart(t *Timeline) *chart {
	instances := 1
	for _, b := range t.Bands {
		instances = max(instances, b.Instance)
	}
	c := &chart{W: chartW, Left: chartLeft, Top: chartTop, PlotW: chartW - chartLeft - chartRight, PlotH: chartPlotH}
	c.Bottom = c.Top + c.PlotH
	c.H = c.Bottom + 40 + float64(instances)*laneH + 10
	x := func(s float64) float64 { return c.Left + s/t.Seconds*c.PlotW }
	maxCopies := 1
	for _, n := range t.Copies {
		maxCopies = max(maxCopies, n)
	}
	yCopies := func(n int) float64 { return c.Bottom - float64(n)/float64(maxCopies)*c.PlotH }
	yCover := func(n int) float64 { return c.Bottom - float64(n)/float64(max(t.Expected, 1))*c.PlotH }

	var area, line strings.Builder
	fmt.Fprintf(&area, "M%.1f,%.1f", c.Left, c.Bottom)
	for i, n := range t.Copies {
		x0, x1 := x(float64(i)*t.BucketSeconds), x(float64(i+1)*t.BucketSeconds)
		fmt.Fprintf(&area, " L%.1f,%.1f L%.1f,%.1f", x0, yCopies(n), x1, yCopies(n))
		fmt.Fprintf(&line, "%.1f,%.1f ", x1, yCover(t.Covered[i]))
	}
	fmt.Fprintf(&area, " L%.1f,%.1f Z", c.Left+c.PlotW, c.Bottom)
	c.Area, c.Line = area.String(), strings.TrimSpace(fmt.Sprintf("%.1f,%.1f ", c.Left, c.Bottom)+line.String())
	c.Bucket = durationWords(t.BucketSeconds)

	for _, f := range []float64{0, 0.5, 1} {
		c.YTicks = append(c.YTicks, tick{c.Bottom - f*c.PlotH, strconv.Itoa(int(math.Round(f * float64(maxCopies))))})
		c.CTicks = append(c.CTicks, tick{c.Bottom - f*c.PlotH, strconv.Itoa(int(f*100)) + "%"})
	}
	step := niceStep(t.Seconds / 8)
	decimals := max(0, int(-math.Floor(math.Log10(step))))
	for i := 0; float64(i)*step <= t.Seconds*1.0001; i++ {
		s := float64(i) * step // not a running sum: 0.1+0.05 prints as 0.15000000000000002
		c.XTicks = append(c.XTicks, tick{x(s), strconv.FormatFloat(s, 'f', decimals, 64) + "s"})
	}

	for _, m := range t.Marks {
		// On a whole pixel, a 2px line is drawn crisp, in its own colour.
		cm := chartMark{X: math.Round(x(m.At)), Kind: m.Kind, Title: fmt.Sprintf("%.3fs: %s", m.At, m.Label), InDoubt: m.InDoubt}
		if m.InDoubt > 0 {
			cm.Title += fmt.Sprintf(" · %d in-doubt", m.InDoubt)
		}
		if m.Until > m.At {
			cm.X2 = x(m.Until)
			c.Spans = append(c.Spans, cm)
		}
		c.Marks = append(c.Marks, cm)
	}
	for i := 1; i <= instances; i++ {
		c.Lanes = append(c.Lanes, tick{c.Bottom + 40 + float64(i-1)*laneH, "instance " + strconv.Itoa(i)})
	}
	for _, b := range t.Bands {
		cb := chartBand{X: x(b.Start), Y: c.Bottom + 40 + float64(b.Instance-1)*laneH, W: max(x(b.End)-x(b.Start), 1.5), Class: bandClass(b.Exit)}
		cb.Title = fmt.Sprintf("instance %d attempt %d: %.3fs to %.3fs, %s, %d copies; after %s", b.Instance, b.Attempt, b.Start, b.End, orElse(b.Exit, "still running"), b.Copies, b.After)
		if cb.W > 70 {
			cb.Label = fmt.Sprintf("#%d · %d copies", b.Attempt, b.Copies)
		} else if cb.W > 18 {
			cb.Label = "#" + strconv.Itoa(b.Attempt)
		}
		c.Bands = append(c.Bands, cb)
	}
	return c
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
