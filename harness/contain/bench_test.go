package contain

// The cost of containment, beside plain os/exec measured in the same run
// (interleaved, so that both see the same machine): start -> exit of
// /bin/true, and SIGKILL -> reaped of a running sleep. Each reports the
// mean microseconds of both and their ratio:
//
//	go test -run '^$' -bench . -benchtime 200x ./harness/contain/

import (
	"context"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

func BenchmarkStartExit(b *testing.B) {
	benchModes(b, func(b *testing.B, s *Supervisor) {
		var plain, contained time.Duration
		for b.Loop() {
			t0 := time.Now()
			if err := exec.Command("/bin/true").Run(); err != nil {
				b.Fatal(err)
			}
			t1 := time.Now()
			a, err := s.Start(context.Background(), Spec{Argv: []string{"/bin/true"}})
			if err != nil {
				b.Fatal(err)
			}
			<-a.Done()
			plain, contained = plain+t1.Sub(t0), contained+time.Since(t1)
			if e := a.Exit(); e.Code != 0 {
				b.Fatal(e)
			}
		}
		report(b, plain, contained)
	})
}

func BenchmarkKillReaped(b *testing.B) {
	benchModes(b, func(b *testing.B, s *Supervisor) {
		var plain, contained time.Duration
		for b.Loop() {
			cmd := exec.Command("/bin/sleep", "1000")
			if err := cmd.Start(); err != nil {
				b.Fatal(err)
			}
			a, err := s.Start(context.Background(), Spec{Argv: []string{"/bin/sleep", "1000"}})
			if err != nil {
				b.Fatal(err)
			}
			t0 := time.Now()
			cmd.Process.Kill()
			cmd.Wait()
			t1 := time.Now()
			if err := a.Signal(syscall.SIGKILL); err != nil {
				b.Fatal(err)
			}
			<-a.Done()
			plain, contained = plain+t1.Sub(t0), contained+time.Since(t1)
		}
		report(b, plain, contained)
	})
}

func benchModes(b *testing.B, fn func(b *testing.B, s *Supervisor)) {
	for _, m := range Modes() {
		b.Run(string(m), func(b *testing.B) {
			if err := Probe(m); err != nil {
				b.Skipf("%s is unavailable here: %v", m, err)
			}
			s, err := New(Options{Mode: m})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			fn(b, s)
		})
	}
}

func report(b *testing.B, plain, contained time.Duration) {
	n := float64(b.N)
	p, c := float64(plain.Microseconds())/n, float64(contained.Microseconds())/n
	b.ReportMetric(p, "exec-µs")
	b.ReportMetric(c, "contained-µs")
	b.ReportMetric(c/p, "ratio")
	b.ReportMetric(0, "ns/op") // the pair is the measure, not the loop
}
