// Command soakmem measures a soak's memory over its campaigns: the live
// heap after a collection and the resident set after each campaign, and
// the growth per campaign fitted over them (a soak keeps each campaign's
// summary, not its report, so the slope should be near zero).
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/onecopy/onecopy/scenarios"
)

func main() {
	onecopy := flag.String("onecopy", "bin/onecopy", "the onecopy `BINARY` (its sender subcommand)")
	duration := flag.Duration("duration", time.Minute, "how long to soak")
	chaos := flag.String("chaos", "kill,cut-after-dot,fault", "what campaigns draw from")
	flag.Parse()
	exe, err := filepath.Abs(*onecopy)
	if err != nil {
		fail(err)
	}
	pool, err := scenarios.ParseChaos(*chaos)
	if err != nil {
		fail(err)
	}
	var heap, rss []float64
	opts := scenarios.SoakOptions{
		Options:  scenarios.Options{Command: []string{exe, "sender", "ledger"}, Seed: 1, Scale: 0.5},
		Duration: *duration,
		Chaos:    pool,
		OnCampaign: func(scenarios.SoakCampaign) {
			runtime.GC()
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			heap = append(heap, float64(ms.HeapAlloc))
			rss = append(rss, vmRSS())
		},
	}
	res, err := scenarios.Soak(context.Background(), opts)
	if err != nil {
		fail(err)
	}
	fmt.Printf("soak of %s: %d campaigns, %d failed\n", *duration, len(res.Campaigns), res.Failed())
	fmt.Printf("  live heap after GC: first %.1f MB, last %.1f MB, %+.0f B per campaign (least squares)\n", heap[0]/1e6, heap[len(heap)-1]/1e6, slope(heap))
	fmt.Printf("  resident set:       first %.1f MB, last %.1f MB, %+.0f B per campaign (least squares)\n", rss[0]/1e6, rss[len(rss)-1]/1e6, slope(rss))
}

// slope fits y = a + b·i and returns b.
func slope(y []float64) float64 {
	n := float64(len(y))
	if n < 2 {
		return 0
	}
	var sx, sy, sxx, sxy float64
	for i, v := range y {
		x := float64(i)
		sx, sy, sxx, sxy = sx+x, sy+v, sxx+x*x, sxy+x*v
	}
	return (n*sxy - sx*sy) / (n*sxx - sx*sx)
}

func vmRSS() float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, _ := strconv.ParseFloat(strings.Fields(v)[0], 64)
			return kb * 1024
		}
	}
	return 0
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "soakmem:", err)
	os.Exit(1)
}
