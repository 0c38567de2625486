// The HTML report in a real browser: headless Chromium (Debian's chromium
// package, installed by .ci/run) renders the report of `onecopy repro`,
// the page's script runs to its end without a console error, and the
// screenshot's chart has drawn its area and its marks. Skipped where
// chromium is not on PATH. Set ONECOPY_SCREENSHOT=FILE to keep the PNG.

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

var _ = Describe("The HTML report in Chromium", func() {
	It("renders the repro's report: script runs clean, the chart has its area and marks", func(ctx SpecContext) {
		bin, err := exec.LookPath("chromium")
		if err != nil {
			Skip("chromium is not on PATH: install Debian's chromium package (.ci/run does) to render the HTML report in a browser")
		}
		dir := GinkgoT().TempDir()
		page := filepath.Join(dir, "repro.html")
		Expect(onecopy(ctx, "repro", "--html", page)).To(gexec.Exit(0))
		url := "file://" + page

		By("loading the page with console logging on, and dumping its DOM")
		dom, logs := chromium(ctx, bin, "--enable-logging=stderr", "--v=0", "--dump-dom", url)
		Expect(regexp.MustCompile(`(?m)^.*:CONSOLE.*$`).FindAllString(logs, -1)).To(BeEmpty(), "console messages (errors end up here)")
		m := regexp.MustCompile(`<html[^>]* data-drawn="(\d+)"`).FindStringSubmatch(dom)
		Expect(m).NotTo(BeNil(), "the page's script did not run to its end")
		Expect(strconv.Atoi(m[1])).To(BeNumerically(">=", 3+4+4), "3 restarts, 4 faults and 4 attempt bands")

		By("taking a screenshot")
		shot := filepath.Join(dir, "report.png")
		chromium(ctx, bin, "--screenshot="+shot, "--window-size=1280,2000", url)
		if keep := os.Getenv("ONECOPY_SCREENSHOT"); keep != "" {
			b, err := os.ReadFile(shot)
			Expect(err).NotTo(HaveOccurred())
			Expect(os.WriteFile(keep, b, 0o644)).To(Succeed())
		}
		f, err := os.Open(shot)
		Expect(err).NotTo(HaveOccurred())
		defer f.Close()
		img, err := png.Decode(f)
		Expect(err).NotTo(HaveOccurred())

		By("finding the chart by its area's colour and counting what it drew")
		// The copies area is the page's only large patch of #9ecae1 (the
		// legend swatch has 12 pixels a row): its rows bound the chart.
		area, restart := rgb{0x9e, 0xca, 0xe1}, rgb{0x1f, 0x77, 0xb4}
		b := img.Bounds()
		top, bottom, areaPixels := -1, -1, 0
		for y := b.Min.Y; y < b.Max.Y; y++ {
			n := 0
			for x := b.Min.X; x < b.Max.X; x++ {
				if near(img, x, y, area) {
					n++
				}
			}
			if n >= 30 {
				areaPixels += n
				if top < 0 {
					top = y
				}
				bottom = y
			}
		}
		Expect(top).To(BeNumerically(">=", 0), "no chart area in the screenshot")
		Expect(areaPixels).To(BeNumerically(">", 20_000), "the copies area is drawn")
		// The marks' dashed lines cross the plot; the legend, with its own
		// restart-blue swatch, stays above it.
		chart := image.Rect(b.Min.X, top, b.Max.X, bottom+1)
		marks, ink := 0, 0
		for y := chart.Min.Y; y < chart.Max.Y; y++ {
			for x := chart.Min.X; x < chart.Max.X; x++ {
				if near(img, x, y, restart) {
					marks++
				}
				if r, g, bl, _ := img.At(x, y).RGBA(); r>>8 < 240 || g>>8 < 240 || bl>>8 < 240 {
					ink++
				}
			}
		}
		GinkgoWriter.Printf("chart rows %d-%d: %d area pixels, %d restart-mark pixels, %.0f%% ink\n",
			top, bottom, areaPixels, marks, 100*float64(ink)/float64(chart.Dx()*chart.Dy()))
		Expect(marks).To(BeNumerically(">", 3*30), "3 restart marks' lines drawn across the chart")
		Expect(float64(ink)/float64(chart.Dx()*chart.Dy())).To(BeNumerically(">", 0.1), "the chart area is not blank")
	}, NodeTimeout(2*time.Minute))
})

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
