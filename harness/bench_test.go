// Benchmarks of the supervisor (issue 8, figure 4): what a kill -> restart
// cycle costs under the harness, over the bare fork/exec floor measured in
// the same benchmark with the same child.

package harness_test

import (
	"bufio"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/harness/contain"
	"github.com/onecopy/onecopy/history"
	"github.com/onecopy/onecopy/verdict"
)

// cycleChild is a tiny static sender: it resumes at the index in its state
// dir, sends one message per address on one connection, and records each
// address after its 250. Every restart makes progress.
const cycleChild = `package main

import (
	"net/smtp"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

func main() {
	b, _ := os.ReadFile(os.Getenv("ONECOPY_RECIPIENTS"))
	list := strings.Fields(string(b))
	state := filepath.Join(os.Getenv("ONECOPY_STATE_DIR"), "next")
	s, _ := os.ReadFile(state)
	next, _ := strconv.Atoi(string(s))
	c, err := smtp.Dial(os.Getenv("ONECOPY_SMTP_ADDR"))
	if err != nil {
		os.Exit(1)
	}
	for ; next < len(list); next++ {
		if c.Mail("a@x.test") != nil || c.Rcpt(list[next]) != nil {
			os.Exit(1)
		}
		w, err := c.Data()
		if err != nil {
			os.Exit(1)
		}
		w.Write([]byte("Subject: cycle\r\n\r\nhi\r\n"))
		if w.Close() != nil {
			os.Exit(1)
		}
		// Aside and renamed: a kill between the truncation and the write
		// would otherwise restart it from 0.
		os.WriteFile(state+".tmp", []byte(strconv.Itoa(next+1)), 0o644)
		os.Rename(state+".tmp", state)
	}
	c.Quit()
}
`

func buildCycleChild(b *testing.B) string {
	dir := b.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(cycleChild), 0o644); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module child\n\ngo 1.26\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	bin := filepath.Join(dir, "child")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("building the child: %v\n%s", err, out)
	}
	return bin
}

func medianMs(ds []time.Duration) float64 {
	s := slices.Clone(ds)
	slices.Sort(s)
	return float64(s[len(s)/2]) / float64(time.Millisecond)
}

// BenchmarkKillRestartCycle kills the same static child `cycles` times
// each way and reports median milliseconds per cycle:
//
//   - floor-ms: exec.Cmd alone. When the child's copy is counted, SIGKILL,
//     Wait, Start again: from the kill to Start's return.
//   - harness-ms: harness.Run with --kill every=1 (a kill at each newly
//     covered address): from the history's signal event (written just
//     before the kill) to its start event for the next attempt (written
//     once the new process runs). The harness also kills every process of
//     the attempt and waits until none is left (its containment), writes
//     the history and the sender's log file, and starts the next attempt
//     inside a new containment.
//   - overhead-ms: harness-ms minus floor-ms. Target: <= 20 ms.
//   - react-ms: in the harness, from the copy that reached the kill point
//     to the signal (the floor has no equivalent: its kill is inline).
//
// Both sides must deliver every address (the run's report, the floor's
// oracle: a kill can land between a copy and the child's record of it, so
// a copy may repeat), and the harness must kill exactly once per point,
// or the benchmark fails.
//
// It runs once per containment mode this machine offers (docs/containment.md),
// each beside its own floor: what containment costs on top of the rest.
func BenchmarkKillRestartCycle(b *testing.B) {
	const cycles = 100
	child := buildCycleChild(b)
	for _, mode := range contain.Modes() {
		b.Run(string(mode), func(b *testing.B) {
			if err := contain.Probe(mode); err != nil {
				b.Skipf("containment %s is not available here: %v", mode, err)
			}
			var floor, under, react []time.Duration
			for b.Loop() {
				floor = append(floor, floorCycles(b, child, cycles)...)
				h, r := harnessCycles(b, child, cycles, mode)
				under, react = append(under, h...), append(react, r...)
			}
			f, h := medianMs(floor), medianMs(under)
			b.ReportMetric(f, "floor-ms")
			b.ReportMetric(h, "harness-ms")
			b.ReportMetric(h-f, "overhead-ms")
			b.ReportMetric(medianMs(react), "react-ms")
		})
	}
}

func floorCycles(b *testing.B, child string, cycles int) []time.Duration {
	dir := b.TempDir()
	list := filepath.Join(dir, "list")
	addrs := harness.Synthetic(cycles + 1)
	if err := os.WriteFile(list, []byte(strings.Join(addrs, "\n")+"\n"), 0o644); err != nil {
		b.Fatal(err)
	}
	copied := make(chan struct{}, 1024)
	srv, err := fakesmtp.Start(context.Background(), fakesmtp.Options{OnDelivery: func(fakesmtp.Delivery) {
		copied <- struct{}{}
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer srv.Close()
	env := append(os.Environ(), "ONECOPY_SMTP_ADDR="+srv.Addr(), "ONECOPY_RECIPIENTS="+list, "ONECOPY_STATE_DIR="+dir)
	start := func() *exec.Cmd {
		cmd := exec.Command(child)
		cmd.Env = env
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		return cmd
	}
	var ds []time.Duration
	cmd := start()
	for range cycles {
		<-copied
		t0 := time.Now()
		cmd.Process.Kill()
		cmd.Wait()
		cmd = start()
		ds = append(ds, time.Since(t0))
	}
	cmd.Wait() // it sends the rest and quits
	if n := srv.Oracle().Copies(); n < int64(len(addrs)) {
		b.Fatalf("floor: %d copies for %d addresses", n, len(addrs))
	}
	return ds
}

func harnessCycles(b *testing.B, child string, cycles int, mode contain.Mode) (restart, react []time.Duration) {
	work := b.TempDir()
	rep, err := harness.Run(context.Background(), harness.Config{
		Containment: string(mode),
		Command:     []string{child},
		Recipients:  harness.Synthetic(cycles + 1),
		Kills:       []harness.KillSpec{{Kind: harness.KillEvery, N: 1}},
		Expect:      verdict.AtLeastOnce,
		Timeout:     2 * time.Minute,
		WorkDir:     work,
	})
	if err != nil {
		b.Fatal(err)
	}
	// A point that comes due while the only sender is already dying (its
	// next copy was counted before the kill landed: slower kills, as in the
	// subreaper mode, make it likelier) waits for the next attempt, and
	// the last such points find none: every point is either applied or
	// reported missed.
	if rep.Missing != 0 || rep.Kills+len(rep.MissedKills) != cycles || rep.Copies < int64(cycles+1) || rep.Ended != "completed" {
		b.Fatalf("harness: %d kills, %d missed, %d copies, %d missing, ended %q; want %d kills or missed, %d copies or more, nothing missing, completed",
			rep.Kills, len(rep.MissedKills), rep.Copies, rep.Missing, rep.Ended, cycles, cycles+1)
	}
	f, err := os.Open(filepath.Join(work, "history.jsonl"))
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	var lastCopy, signal time.Time
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var ev struct {
			T    time.Time `json:"t"`
			Type string    `json:"type"`
		}
		if err := json.Unmarshal(sc.Bytes(), &ev); err != nil {
			b.Fatal(err)
		}
		switch history.Kind(ev.Type) {
		case history.KindCopy:
			lastCopy = ev.T
		case history.KindSignal:
			// A kill point reached while the last kill's sender is still
			// dying hits it again: the cycle starts at the first.
			if signal.IsZero() {
				signal = ev.T
				react = append(react, signal.Sub(lastCopy))
			}
		case history.KindStart:
			if !signal.IsZero() {
				restart = append(restart, ev.T.Sub(signal))
				signal = time.Time{}
			}
		}
	}
	if len(restart) < cycles/2 {
		b.Fatalf("harness: %d restarts after kills in the history, want about %d", len(restart), cycles)
	}
	return restart, react
}
