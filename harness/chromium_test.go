// The HTML report in a real browser: headless Chromium (Debian's chromium
// package, installed by .ci/run) renders the report of `onecopy repro` and
// of a ledger sender killed at in-doubt moments; each page's script runs to
// its end without a console error, and each screenshot's chart has drawn
// its copies, its repeats in their own colour and its marks. Skipped where
// chromium is not on PATH. Set ONECOPY_SCREENSHOTS=DIR to keep the PNGs.

package harness_test

import (
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
)

// The chart's colours, as the page's stylesheet sets them.
var (
	firstBlue       = rgb{0x9e, 0xca, 0xe1}
	unexplainedPink = rgb{0xc5, 0x1b, 0x7d}
	explainedAmber  = rgb{0xf7, 0xd3, 0x6b}
	restartBlue     = rgb{0x1f, 0x77, 0xb4}
	killRed         = rgb{0xd6, 0x27, 0x28}
)

var _ = Describe("The HTML report in Chromium", func() {
	var bin string
	BeforeEach(func() {
		var err error
		if bin, err = exec.LookPath("chromium"); err != nil {
			Skip("chromium is not on PATH: install Debian's chromium package (.ci/run does) to render the HTML report in a browser")
		}
	})

	It("renders the repro's report: script runs clean, the chart has its copies, its unexplained repeats and its marks", func(ctx SpecContext) {
		page := filepath.Join(GinkgoT().TempDir(), "repro.html")
		Expect(onecopy(ctx, "repro", "--html", page)).To(gexec.Exit(0))
		img, chart := render(ctx, bin, page, 3+4+4) // 3 restarts, 4 faults and 4 attempt bands

		first, unexplained := count(img, chart, firstBlue), count(img, chart, unexplainedPink)
		GinkgoWriter.Printf("first copies %d px, unexplained repeats %d px\n", first, unexplained)
		Expect(first).To(BeNumerically(">", 5_000), "attempt 1's first copies are drawn")
		Expect(unexplained).To(BeNumerically(">", 3*first/2), "attempts 2 to 4 re-sent 1,500 copies: they fill the chart in the repeats' colour")
		Expect(count(img, chart, restartBlue)).To(BeNumerically(">", 3*30), "3 restart marks' lines drawn across the chart")
		Expect(ink(img, chart)).To(BeNumerically(">", 0.1), "the chart area is not blank")
	}, NodeTimeout(2*time.Minute))

	It("renders a ledger report with in-doubt kills: its explained repeats show, and each kill beside its restart", func(ctx SpecContext) {
		page := filepath.Join(GinkgoT().TempDir(), "ledger.html")
		Expect(onecopy(ctx, "run", "--recipients", "300", "--kill", "in-doubt=2", "--seed", "3", "--expect", "effectively-once",
			"--sender", "builtin:ledger", "--html", page)).To(gexec.Exit(0))
		img, chart := render(ctx, bin, page, 2+2+3) // 2 kills, 2 restarts and 3 attempt bands

		explained := count(img, chart, explainedAmber)
		kills, restarts := count(img, chart, killRed), count(img, chart, restartBlue)
		GinkgoWriter.Printf("explained repeats %d px, kill lines %d px, restart lines %d px\n", explained, kills, restarts)
		Expect(explained).To(BeNumerically(">=", 2*8), "2 explained repeats, each at least a few pixels tall among hundreds of copies")
		Expect(count(img, chart, unexplainedPink)).To(BeZero(), "nothing unexplained")
		Expect(kills).To(BeNumerically(">", 2*30), "both kills' lines are drawn")
		Expect(restarts).To(BeNumerically(">", 2*30), "both restarts' lines are drawn beside them")
	}, NodeTimeout(2*time.Minute))
})

// render loads page in Chromium with console logging on, checks that its
// script ran to its end without a console message and drew at least marks
// marks and bands, takes a screenshot (kept in ONECOPY_SCREENSHOTS when
// set), and returns it with the rows of its timeline's plot.
func render(ctx context.Context, bin, page string, marks int) (image.Image, image.Rectangle) {
	GinkgoHelper()
	url := "file://" + page
	By("loading " + filepath.Base(page) + " with console logging on, and dumping its DOM")
	dom, logs := chromium(ctx, bin, "--enable-logging=stderr", "--v=0", "--dump-dom", url)
	Expect(regexp.MustCompile(`(?m)^.*:CONSOLE.*$`).FindAllString(logs, -1)).To(BeEmpty(), "console messages (errors end up here)")
	m := regexp.MustCompile(`<html[^>]* data-drawn="(\d+)"`).FindStringSubmatch(dom)
	Expect(m).NotTo(BeNil(), "the page's script did not run to its end")
	Expect(strconv.Atoi(m[1])).To(BeNumerically(">=", marks))

	By("taking a screenshot")
	shot := strings.TrimSuffix(page, ".html") + ".png"
	chromium(ctx, bin, "--screenshot="+shot, "--window-size=1300,2000", url)
	GinkgoWriter.Printf("screenshot: %s\n", shot)
	if keep := os.Getenv("ONECOPY_SCREENSHOTS"); keep != "" {
		b, err := os.ReadFile(shot)
		Expect(err).NotTo(HaveOccurred())
		Expect(os.MkdirAll(keep, 0o755)).To(Succeed())
		Expect(os.WriteFile(filepath.Join(keep, filepath.Base(shot)), b, 0o644)).To(Succeed())
	}
	f, err := os.Open(shot)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	img, err := png.Decode(f)
	Expect(err).NotTo(HaveOccurred())

	By("finding the chart by its copies' colours")
	// The copies areas are the page's only large patches of these colours
	// (a legend swatch has 12 pixels a row): their rows bound the plot, and
	// the legend, with its own swatches and glyphs, stays above it.
	b := img.Bounds()
	top, bottom := -1, -1
	for y := b.Min.Y; y < b.Max.Y; y++ {
		n := 0
		for x := b.Min.X; x < b.Max.X; x++ {
			if near(img, x, y, firstBlue) || near(img, x, y, unexplainedPink) {
				n++
			}
		}
		if n >= 30 {
			if top < 0 {
				top = y
			}
			bottom = y
		}
	}
	Expect(top).To(BeNumerically(">=", 0), "no chart area in the screenshot")
	return img, image.Rect(b.Min.X, top, b.Max.X, bottom+1)
}

// count is how many pixels of r are near colour c.
func count(img image.Image, r image.Rectangle, c rgb) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if near(img, x, y, c) {
				n++
			}
		}
	}
	return n
}

// ink is the share of r's pixels that are not near white.
func ink(img image.Image, r image.Rectangle) float64 {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if cr, cg, cb, _ := img.At(x, y).RGBA(); cr>>8 < 240 || cg>>8 < 240 || cb>>8 < 240 {
				n++
			}
		}
	}
	return float64(n) / float64(r.Dx()*r.Dy())
}

type rgb struct{ r, g, b uint32 }

// near reports whether the pixel at x, y is within a small distance of c.
func near(img image.Image, x, y int, c rgb) bool {
	r, g, b, _ := img.At(x, y).RGBA()
	d := func(a, b uint32) uint32 {
		a >>= 8
		if a > b {
			return a - b
		}
		return b - a
	}
	return d(r, c.r)+d(g, c.g)+d(b, c.b) <= 24
}

// chromium runs headless Chromium on its own profile and returns its
// stdout and stderr. It runs in its own process group, killed whole if
// the spec times out.
func chromium(ctx context.Context, bin string, args ...string) (stdout, stderr string) {
	GinkgoHelper()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + GinkgoT().TempDir()}
	cmd := exec.CommandContext(ctx, bin, append(base, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var out, errOut strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	Expect(err).NotTo(HaveOccurred(), errOut.String())
	return out.String(), errOut.String()
}
