// Command sinkbench measures `onecopy fakesmtp` against Postfix's smtp-sink,
// both driven by Postfix's smtp-source (issue 8, figure 1).
//
// For every configuration (parallel sessions x recipients per message x
// connection reuse) it runs R rounds; each round starts a fresh fakesmtp
// (A) and a fresh smtp-sink (B) and drives each with the same smtp-source
// command, A then B. Per run it takes the wall time of smtp-source (msg/s)
// and the server's CPU time from /proc/PID/stat (utime+stime, every thread)
// before and after (µs per message). Per round it takes the paired ratio
// A/B; the table shows medians over rounds. After every fakesmtp run the
// count is checked against what smtp-source sent, over the HTTP API
// (/metrics: the oracle's copies-per-recipient histogram, whose sum is
// every copy counted and whose count is every distinct recipient): a
// mismatch fails the whole benchmark.
//
// Absolute numbers drift with the machine and its load; the paired ratio
// is the figure to quote.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/user"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	var cfg config
	flag.StringVar(&cfg.onecopy, "onecopy", "bin/onecopy", "the onecopy `BINARY` to measure")
	flag.StringVar(&cfg.sink, "smtp-sink", "/usr/sbin/smtp-sink", "Postfix smtp-sink `BINARY` (the reference)")
	flag.StringVar(&cfg.source, "smtp-source", "/usr/sbin/smtp-source", "Postfix smtp-source `BINARY` (the load)")
	flag.IntVar(&cfg.rounds, "rounds", 5, "rounds per configuration (each runs A then B)")
	flag.IntVar(&cfg.messages, "messages", 40000, "messages per run with reused connections (with R recipients: 2/R of it)")
	flag.IntVar(&cfg.messagesNew, "messages-noreuse", 10000, "messages per run with a connection per message")
	sessions := flag.String("sessions", "1,16,64", "comma-separated parallel session counts")
	rcpts := flag.String("rcpts", "1,10", "comma-separated recipients per message")
	reuse := flag.String("reuse", "yes,no", "connection reuse: yes, no or both")
	flag.StringVar(&cfg.jsonOut, "json", "", "also write every run as JSON lines to `FILE`")
	flag.StringVar(&cfg.fakesmtpEnv, "fakesmtp-env", "", "extra `VAR=VALUE` for the fakesmtp process (e.g. GOMAXPROCS=2)")
	flag.StringVar(&cfg.fakesmtpArgs, "fakesmtp-args", "", "extra space-separated `ARGS` for onecopy fakesmtp")
	flag.StringVar(&cfg.bare, "bare", "", "also run C, bench/baresmtpd built as `BINARY` (mhale/smtpd + a map), each round")
	flag.BoolVar(&cfg.pipeline, "pipeline", true, "also drive both servers with a pipelining Go client (RFC 2920: a message's final dot in one write with the next MAIL, RCPT and DATA), reused connections, 1 recipient; smtp-source cannot pipeline")
	only := flag.String("only", "", "run only the headline configuration (sessions=16, 1 recipient, reused) when set to \"headline\"")
	flag.Parse()
	var err error
	if cfg.sessions, err = ints(*sessions); err == nil {
		cfg.rcpts, err = ints(*rcpts)
	}
	if err != nil {
		fatal(err)
	}
	for _, r := range strings.Split(*reuse, ",") {
		cfg.reuse = append(cfg.reuse, r == "yes")
	}
	if *only == "headline" {
		cfg.sessions, cfg.rcpts, cfg.reuse = []int{16}, []int{1}, []bool{true}
	}
	if err := run(context.Background(), cfg); err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "sinkbench:", err)
	os.Exit(1)
}

func ints(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("%q: want positive whole numbers separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

type config struct {
	onecopy, sink, source string
	rounds                int
	messages, messagesNew int
	sessions, rcpts       []int
	reuse                 []bool
	jsonOut               string
	fakesmtpEnv           string
	fakesmtpArgs          string
	bare                  string
	pipeline              bool
}

// load is one smtp-source invocation.
type load struct {
	Sessions  int  `json:"sessions"`
	Rcpts     int  `json:"rcpts"`
	Reuse     bool `json:"reuse"`
	Messages  int  `json:"messages"`
	Pipelined bool `json:"pipelined,omitempty"` // the Go pipelining client instead of smtp-source
}

func (l load) String() string {
	r := "new conn/msg"
	if l.Reuse {
		r = "reused"
	}
	if l.Pipelined {
		r = "reused, pipelining client"
	}
	return fmt.Sprintf("s=%d r=%d %s", l.Sessions, l.Rcpts, r)
}

// result is one run of one server under one load.
type result struct {
	Server   string  `json:"server"`
	Round    int     `json:"round"`
	Load     load    `json:"load"`
	Seconds  float64 `json:"seconds"`
	MsgPerS  float64 `json:"msg_per_s"`
	CPUus    float64 `json:"server_cpu_us_per_msg"`
	ClientUs float64 `json:"client_cpu_us_per_msg"`
	Counted  int64   `json:"counted,omitempty"`
	Distinct int64   `json:"distinct,omitempty"`
}

func run(ctx context.Context, cfg config) error {
	for _, bin := range []string{cfg.onecopy, cfg.sink, cfg.source} {
		if _, err := os.Stat(bin); err != nil {
			return fmt.Errorf("%s: %w", bin, err)
		}
	}
	var jsonw io.Writer = io.Discard
	if cfg.jsonOut != "" {
		f, err := os.Create(cfg.jsonOut)
		if err != nil {
			return err
		}
		defer f.Close()
		jsonw = f
	}
	ticks, err := clockTicks()
	if err != nil {
		return err
	}
	fmt.Printf("sinkbench: %d rounds, A = %s fakesmtp %s(guard, counting, metrics, HTTP API), B = %s", cfg.rounds, cfg.onecopy, cfg.fakesmtpArgs, cfg.sink)
	if cfg.bare != "" {
		fmt.Printf(", C = %s (mhale/smtpd + a map)", cfg.bare)
	}
	fmt.Printf("; load: %s\n\n", cfg.source)
	header := "| load | fakesmtp msg/s | smtp-sink msg/s | **A/B msg/s** | fakesmtp CPU µs/msg | smtp-sink CPU µs/msg | A/B CPU |"
	rule := "|---|---:|---:|---:|---:|---:|---:|"
	if cfg.bare != "" {
		header += " bare msg/s | C/B msg/s | bare CPU µs/msg | A/C CPU |"
		rule += "---:|---:|---:|---:|"
	}
	fmt.Println(header + " smtp-source CPU µs/msg |")
	fmt.Println(rule + "---:|")
	var loads []load
	for _, reuse := range cfg.reuse {
		for _, rc := range cfg.rcpts {
			for _, s := range cfg.sessions {
				l := load{Sessions: s, Rcpts: rc, Reuse: reuse, Messages: cfg.messages}
				if !reuse {
					l.Messages = cfg.messagesNew
				}
				if rc > 1 { // about twice the copies of a 1-recipient run, not rc times
					l.Messages = max(l.Messages*2/rc, 1000)
				}
				loads = append(loads, l)
			}
		}
	}
	if cfg.pipeline {
		for _, s := range cfg.sessions {
			loads = append(loads, load{Sessions: s, Rcpts: 1, Reuse: true, Messages: cfg.messages, Pipelined: true})
		}
	}
	for _, l := range loads {
		var as, bs, cs []result
		var ratios, cpuRatios, bareRatios, bareCPU []float64
		for round := 1; round <= cfg.rounds; round++ {
			a, err := runFakesmtp(ctx, cfg, l, ticks)
			if err != nil {
				return fmt.Errorf("%s, round %d, fakesmtp: %w", l, round, err)
			}
			b, err := runSink(ctx, cfg, l, ticks)
			if err != nil {
				return fmt.Errorf("%s, round %d, smtp-sink: %w", l, round, err)
			}
			a.Round, b.Round = round, round
			round := []result{a, b}
			as, bs = append(as, a), append(bs, b)
			ratios = append(ratios, a.MsgPerS/b.MsgPerS)
			cpuRatios = append(cpuRatios, a.CPUus/b.CPUus)
			if cfg.bare != "" && !l.Pipelined {
				c, err := runBare(ctx, cfg, l, ticks)
				if err != nil {
					return fmt.Errorf("%s, round %d, bare mhale/smtpd: %w", l, a.Round, err)
				}
				c.Round = a.Round
				round = append(round, c)
				cs = append(cs, c)
				bareRatios = append(bareRatios, c.MsgPerS/b.MsgPerS)
				bareCPU = append(bareCPU, a.CPUus/c.CPUus)
			}
			for _, r := range round {
				line, _ := json.Marshal(r)
				fmt.Fprintf(jsonw, "%s\n", line)
			}
		}
		msgs := func(r result) float64 { return r.MsgPerS }
		cpu := func(r result) float64 { return r.CPUus }
		client := func(r result) float64 { return r.ClientUs }
		row := fmt.Sprintf("| %s | %.0f | %.0f | **%.2fx** (%s) | %.1f | %.1f | %.2fx |", l,
			median(field(as, msgs)), median(field(bs, msgs)), median(ratios), spread(ratios),
			median(field(as, cpu)), median(field(bs, cpu)), median(cpuRatios))
		switch {
		case cfg.bare != "" && l.Pipelined:
			row += " | | | |"
		case cfg.bare != "":
			row += fmt.Sprintf(" %.0f | %.2fx (%s) | %.1f | %.2fx |", median(field(cs, msgs)),
				median(bareRatios), spread(bareRatios), median(field(cs, cpu)), median(bareCPU))
		}
		fmt.Printf("%s %.1f |\n", row, median(field(append(append(slices.Clone(as), bs...), cs...), client)))
	}
	fmt.Println("\nA/B msg/s: fakesmtp / smtp-sink msg/s per round, median (min-max); CPU: server utime+stime per message, every thread, median;")
	fmt.Println("A/B and A/C CPU: paired per round, median. smtp-source CPU: the load generator, median over every run")
	fmt.Println("(for the pipelining client: sinkbench's own CPU, which drives the load).")
	return nil
}

func field(rs []result, f func(result) float64) []float64 {
	out := make([]float64, len(rs))
	for i, r := range rs {
		out[i] = f(r)
	}
	return out
}

func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func spread(xs []float64) string {
	return fmt.Sprintf("%.2f-%.2f", slices.Min(xs), slices.Max(xs))
}

// server is a started server process.
type server struct {
	cmd  *exec.Cmd
	addr string
}

func (s *server) stop() {
	s.cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { s.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-done
	}
}

func startServer(ctx context.Context, addr string, env []string, argv ...string) (*server, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	cmd.Stdout, cmd.Stderr = io.Discard, os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	s := &server{cmd: cmd, addr: addr}
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			// Read the greeting so the probe is a whole, harmless session.
			c.SetDeadline(time.Now().Add(2 * time.Second))
			bufio.NewReader(c).ReadString('\n')
			c.Write([]byte("QUIT\r\n"))
			c.Close()
			return s, nil
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("%s did not listen on %s: %w", argv[0], addr, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

func runFakesmtp(ctx context.Context, cfg config, l load, ticks float64) (result, error) {
	addr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	var env []string
	if cfg.fakesmtpEnv != "" {
		env = strings.Fields(cfg.fakesmtpEnv)
	}
	argv := append([]string{cfg.onecopy, "fakesmtp", "--smtp", addr, "--http", httpAddr}, strings.Fields(cfg.fakesmtpArgs)...)
	srv, err := startServer(ctx, addr, env, argv...)
	if err != nil {
		return result{}, err
	}
	defer srv.stop()
	base, err := counts(httpAddr)
	if err != nil {
		return result{}, err
	}
	r, err := drive(ctx, cfg, srv, l, ticks)
	if err != nil {
		return result{}, err
	}
	r.Server = "fakesmtp"
	got, err := counts(httpAddr)
	if err != nil {
		return result{}, err
	}
	r.Counted, r.Distinct = got.copies-base.copies, got.distinct-base.distinct
	if want := int64(l.Messages * l.Rcpts); r.Counted != want || r.Distinct != want {
		return r, fmt.Errorf("count not exact under load: %d copies to %d distinct recipients, want %d and %d", r.Counted, r.Distinct, want, want)
	}
	return r, nil
}

func runBare(ctx context.Context, cfg config, l load, ticks float64) (result, error) {
	addr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	httpAddr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	srv, err := startServer(ctx, addr, nil, cfg.bare, "-smtp", addr, "-http", httpAddr)
	if err != nil {
		return result{}, err
	}
	defer srv.stop()
	r, err := drive(ctx, cfg, srv, l, ticks)
	if err != nil {
		return r, err
	}
	r.Server = "bare"
	resp, err := http.Get("http://" + httpAddr + "/count")
	if err != nil {
		return r, err
	}
	defer resp.Body.Close()
	if _, err := fmt.Fscan(resp.Body, &r.Counted, &r.Distinct); err != nil {
		return r, err
	}
	if want := int64(l.Messages * l.Rcpts); r.Counted != want || r.Distinct != want {
		return r, fmt.Errorf("count not exact under load: %d copies to %d distinct recipients, want %d and %d", r.Counted, r.Distinct, want, want)
	}
	return r, nil
}

func runSink(ctx context.Context, cfg config, l load, ticks float64) (result, error) {
	addr, err := freeAddr()
	if err != nil {
		return result{}, err
	}
	argv := []string{cfg.sink}
	if u, err := user.Current(); err == nil && u.Uid == "0" {
		argv = append(argv, "-u", "nobody") // smtp-sink refuses to run as root
	}
	argv = append(argv, addr, "1000")
	srv, err := startServer(ctx, addr, nil, argv...)
	if err != nil {
		return result{}, err
	}
	defer srv.stop()
	r, err := drive(ctx, cfg, srv, l, ticks)
	r.Server = "smtp-sink"
	return r, err
}

// drive runs smtp-source (or the pipelining client) against srv and
// measures it.
func drive(ctx context.Context, cfg config, srv *server, l load, ticks float64) (result, error) {
	if l.Pipelined {
		return drivePipelined(srv, l, ticks)
	}
	// -N: a fresh recipient address for every recipient of every message,
	// as a real campaign has. -d: reuse the connection for the next message.
	argv := []string{"-s", strconv.Itoa(l.Sessions), "-m", strconv.Itoa(l.Messages), "-r", strconv.Itoa(l.Rcpts), "-N"}
	if l.Reuse {
		argv = append(argv, "-d")
	}
	argv = append(argv, srv.addr)
	cmd := exec.CommandContext(ctx, cfg.source, argv...)
	var stderr strings.Builder
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	cpu0, err := cpuSeconds(srv.cmd.Process.Pid, ticks)
	if err != nil {
		return result{}, err
	}
	began := time.Now()
	err = cmd.Run()
	elapsed := time.Since(began)
	cpu1, cerr := cpuSeconds(srv.cmd.Process.Pid, ticks)
	if err != nil {
		return result{}, fmt.Errorf("%s %s: %v: %s", cfg.source, strings.Join(argv, " "), err, stderr.String())
	}
	if cerr != nil {
		return result{}, cerr
	}
	return result{
		Load:    l,
		Seconds: elapsed.Seconds(),
		MsgPerS: float64(l.Messages) / elapsed.Seconds(),
		CPUus:   (cpu1 - cpu0) / float64(l.Messages) * 1e6,
		ClientUs: float64(cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime()) /
			float64(time.Microsecond) / float64(l.Messages),
	}, nil
}

// cpuSeconds reads utime+stime of every thread of pid.
func cpuSeconds(pid int, ticks float64) (float64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	// Fields after the command name, which is in parentheses and may hold spaces.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, errors.New("unexpected /proc/PID/stat")
	}
	f := strings.Fields(s[i+1:])
	// f[0] is field 3 (state); utime is field 14, stime field 15.
	if len(f) < 13 {
		return 0, errors.New("short /proc/PID/stat")
	}
	ut, err1 := strconv.ParseFloat(f[11], 64)
	st, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0, errors.New("unparsable /proc/PID/stat")
	}
	return (ut + st) / ticks, nil
}

// clockTicks is the unit of /proc/PID/stat times (USER_HZ). Linux fixes
// it at 100 on every architecture Go supports; getconf confirms it.
func clockTicks() (float64, error) {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if err != nil {
		return 100, nil
	}
	n, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
	if err != nil || n <= 0 {
		return 100, nil
	}
	return n, nil
}

type count struct{ copies, distinct int64 }

// counts reads the oracle's totals from /metrics: the copies-per-recipient
// histogram's sum is the oracle's copy count, its count the recipients
// with at least one copy.
func counts(httpAddr string) (count, error) {
	resp, err := http.Get("http://" + httpAddr + "/metrics")
	if err != nil {
		return count{}, err
	}
	defer resp.Body.Close()
	var c count
	var seen int
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		switch name {
		case "onecopy_smtp_copies_per_recipient_sum":
			f, _ := strconv.ParseFloat(val, 64)
			c.copies, seen = int64(f), seen+1
		case "onecopy_smtp_copies_per_recipient_count":
			n, _ := strconv.ParseInt(val, 10, 64)
			c.distinct, seen = n, seen+1
		}
	}
	if seen != 2 {
		return c, fmt.Errorf("%s/metrics: no onecopy_smtp_copies_per_recipient histogram", httpAddr)
	}
	return c, sc.Err()
}

// drivePipelined runs the pipelining client: l.Sessions connections, each
// sending its messages with the final dot in one write with the next
// message's MAIL, RCPT and DATA, a new recipient for every message (like
// smtp-source -N).
func drivePipelined(srv *server, l load, ticks float64) (result, error) {
	cpu0, err := cpuSeconds(srv.cmd.Process.Pid, ticks)
	if err != nil {
		return result{}, err
	}
	var ru0, ru1 syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	var seq atomic.Int64
	next := func() (string, bool) {
		i := seq.Add(1)
		return "r" + strconv.FormatInt(i, 10) + "@x.test", i <= int64(l.Messages)
	}
	errs := make(chan error, l.Sessions)
	began := time.Now()
	for range l.Sessions {
		go func() { errs <- pipelineSession(srv.addr, next) }()
	}
	var first error
	for range l.Sessions {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	elapsed := time.Since(began)
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
	cpu1, cerr := cpuSeconds(srv.cmd.Process.Pid, ticks)
	if first != nil {
		return result{}, fmt.Errorf("pipelining client: %w", first)
	}
	if cerr != nil {
		return result{}, cerr
	}
	used := func(r syscall.Rusage) time.Duration { return time.Duration(r.Utime.Nano() + r.Stime.Nano()) }
	return result{
		Load:     l,
		Seconds:  elapsed.Seconds(),
		MsgPerS:  float64(l.Messages) / elapsed.Seconds(),
		CPUus:    (cpu1 - cpu0) / float64(l.Messages) * 1e6,
		ClientUs: float64(used(ru1)-used(ru0)) / float64(time.Microsecond) / float64(l.Messages),
	}, nil
}

const pipeBody = "From: a@x.test\r\nSubject: pipelined\r\n\r\n" +
	"hello, world: a line of body text\r\nhello, world: a line of body text\r\n" +
	"hello, world: a line of body text\r\nhello, world: a line of body text\r\n.\r\n"

func pipelineSession(addr string, next func() (string, bool)) error {
	conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	r, w := bufio.NewReader(conn), bufio.NewWriter(conn)
	expect := func(firsts string) error {
		if err := w.Flush(); err != nil {
			return err
		}
		conn.SetReadDeadline(time.Now().Add(30 * time.Second))
		for i := 0; i < len(firsts); i++ {
			for {
				line, err := r.ReadSlice('\n')
				if err != nil {
					return err
				}
				if len(line) < 4 || line[0] != firsts[i] {
					return fmt.Errorf("unexpected reply %q", line)
				}
				if line[3] != '-' {
					break
				}
			}
		}
		return nil
	}
	if err := expect("2"); err != nil {
		return err
	}
	w.WriteString("EHLO pipeline.test\r\n")
	if err := expect("2"); err != nil {
		return err
	}
	to, ok := next()
	if !ok {
		return nil
	}
	w.WriteString("MAIL FROM:<a@x.test>\r\nRCPT TO:<" + to + ">\r\nDATA\r\n")
	if err := expect("223"); err != nil {
		return err
	}
	for {
		w.WriteString(pipeBody)
		if to, ok = next(); !ok {
			if err := expect("2"); err != nil {
				return err
			}
			w.WriteString("QUIT\r\n")
			return expect("2")
		}
		w.WriteString("MAIL FROM:<a@x.test>\r\nRCPT TO:<" + to + ">\r\nDATA\r\n")
		if err := expect("2223"); err != nil {
			return err
		}
	}
}
