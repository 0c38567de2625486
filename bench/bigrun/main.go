// Command bigrun measures a big run (issue 8, figure 3): by default
// `onecopy run --recipients 1000000 --kill random=4 --sender builtin:ledger`,
// its wall time and the harness's peak resident memory.
//
// The sender runs as its own process, so the memory of the process tree
// (what /usr/bin/time reports: wait4's ru_maxrss takes the largest of the
// child and everything it reaped) would be the ledger's SQLite as often as
// the harness. Two measurements keep the harness apart:
//
//   - in-process (default): harness.Run in this process, exactly as the CLI
//     calls it, and this process's own peak RSS (getrusage RUSAGE_SELF,
//     which leaves children out);
//   - -cli: the real CLI as a child, its VmHWM read from /proc every 20 ms
//     until it exits (a peak in the last 20 ms before exit could be missed;
//     the in-process figure cannot miss it).
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/onecopy/onecopy/harness"
)

func main() {
	onecopy := flag.String("onecopy", "bin/onecopy", "the onecopy `BINARY` (its `sender` subcommand is the sender)")
	n := flag.Int("recipients", 1_000_000, "recipients")
	kills := flag.String("kill", "random=4", "kill `SPEC`")
	sender := flag.String("sender", "ledger", "built-in sender `NAME`")
	seed := flag.Uint64("seed", 1, "seed")
	timeout := flag.Duration("timeout", 30*time.Minute, "run timeout")
	cli := flag.Bool("cli", false, "run the CLI as a child and poll its VmHWM instead of running the harness in-process")
	cpuProfile := flag.String("cpuprofile", "", "in-process: write a CPU profile of the run to `FILE`")
	memProfile := flag.String("memprofile", "", "in-process: write a heap profile to `FILE` each time the live heap reaches a new high (by 5%)")
	flag.Parse()
	exe, err := filepath.Abs(*onecopy)
	if err == nil {
		_, err = os.Stat(exe)
	}
	if err != nil {
		fatal(fmt.Errorf("%s: %w (build it: make build)", *onecopy, err))
	}
	if *cli {
		err = runCLI(exe, *n, *kills, *sender, *seed, *timeout)
	} else {
		err = runInProcess(exe, *n, *kills, *sender, *seed, *timeout, *cpuProfile, *memProfile)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "bigrun:", err)
	os.Exit(1)
}

func runInProcess(exe string, n int, kills, sender string, seed uint64, timeout time.Duration, cpuProfile, memProfile string) error {
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if memProfile != "" {
		stop := profilePeaks(memProfile)
		defer stop()
	}
	k, err := harness.ParseKill(kills)
	if err != nil {
		return err
	}
	cfg := harness.Config{
		Command:    []string{exe, "sender", sender},
		Recipients: harness.Synthetic(n),
		Kills:      []harness.KillSpec{k},
		Retries:    5, // the CLI's default
		Seed:       seed,
		Timeout:    timeout,
	}
	began := time.Now()
	rep, err := harness.Run(context.Background(), cfg)
	elapsed := time.Since(began)
	if err != nil {
		return err
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	fmt.Printf("in-process harness.Run, %d recipients, --kill %s, builtin:%s, seed %d\n", n, kills, sender, seed)
	fmt.Printf("  verdict %s (%s), %d copies, %d kills, %d attempts\n", rep.Verdict, rep.Ended, rep.Copies, rep.Kills, rep.Attempts)
	fmt.Printf("  wall %.1f s; harness peak RSS %.0f MB (getrusage RUSAGE_SELF: the list, the expected set, the oracle, the history, the report; no sender)\n",
		elapsed.Seconds(), float64(ru.Maxrss)/1024)
	fmt.Printf("  harness CPU %.1f s (user %.1f, sys %.1f)\n", tv(ru.Utime)+tv(ru.Stime), tv(ru.Utime), tv(ru.Stime))
	return nil
}

// profilePeaks writes a heap profile to path whenever the heap in use
// after a GC reaches a new high, so the profile shows what was live at
// the run's peak.
func profilePeaks(path string) (stop func()) {
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		var peak uint64
		var ms runtime.MemStats
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak+peak/20 {
				peak = ms.HeapInuse
				if f, err := os.Create(path); err == nil {
					pprof.Lookup("heap").WriteTo(f, 0)
					f.Close()
				}
			}
		}
	}()
	return func() { close(done); <-finished }
}

func tv(t syscall.Timeval) float64 { return float64(t.Sec) + float64(t.Usec)/1e6 }

func runCLI(exe string, n int, kills, sender string, seed uint64, timeout time.Duration) error {
	dir, err := os.MkdirTemp("", "bigrun-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	report := filepath.Join(dir, "report.json")
	args := []string{"run", "--recipients", strconv.Itoa(n), "--kill", kills, "--seed", strconv.FormatUint(seed, 10),
		"--timeout", timeout.String(), "--quiet", "--report", report, "--sender", "builtin:" + sender}
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	began := time.Now()
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var peak int64
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var werr error
loop:
	for {
		if kb := vmHWM(cmd.Process.Pid); kb > peak {
			peak = kb
		}
		select {
		case werr = <-done:
			break loop
		case <-tick.C:
		}
	}
	elapsed := time.Since(began)
	var ee *exec.ExitError
	if werr != nil && !(asExit(werr, &ee) && ee.ExitCode() == 1) {
		return fmt.Errorf("onecopy %s: %w", strings.Join(args, " "), werr)
	}
	var rep struct {
		Verdict  string `json:"verdict"`
		Copies   int64  `json:"copies"`
		Kills    int    `json:"kills"`
		Attempts int    `json:"attempts"`
		Ended    string `json:"ended"`
	}
	b, err := os.ReadFile(report)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return err
	}
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_CHILDREN, &ru)
	fmt.Printf("CLI: onecopy %s\n", strings.Join(args, " "))
	fmt.Printf("  verdict %s (%s), %d copies, %d kills, %d attempts\n", rep.Verdict, rep.Ended, rep.Copies, rep.Kills, rep.Attempts)
	fmt.Printf("  wall %.1f s; harness VmHWM %.0f MB (polled every 20 ms); largest process of the tree %.0f MB (ru_maxrss, the sender included)\n",
		elapsed.Seconds(), float64(peak)/1024, float64(ru.Maxrss)/1024)
	return nil
}

func asExit(err error, ee **exec.ExitError) bool {
	e, ok := err.(*exec.ExitError)
	*ee = e
	return ok
}

// vmHWM reads the peak resident set of pid, in kB (0 once it is gone).
func vmHWM(pid int) int64 {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return kb
		}
	}
	return 0
}
