// Run configuration and the parsing of what users type: kill schedules,
// signals and recipient lists. Bad input is a *UsageError that says what is
// wrong and where, before anything runs.

package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/harness/contain"
	"github.com/onecopy/onecopy/verdict"
)

// UsageError is bad input: the CLI exits 2 and nothing runs.
type UsageError struct{ Msg string }

func (e *UsageError) Error() string { return e.Msg }

func usagef(format string, args ...any) error {
	return &UsageError{Msg: fmt.Sprintf(format, args...)}
}

// Config is one run.
type Config struct {
	// Command is the sender's argv, started under the environment contract.
	Command []string
	// Env is added to the sender's environment.
	Env []string
	// Recipients is the list in order, as typed (case variants included).
	Recipients []string
	// Kills are the kill schedules; Signal, Grace and Pause say how.
	Kills  []KillSpec
	Signal Signal
	Grace  time.Duration // TERM, then KILL after Grace
	Pause  time.Duration // STOP, then CONT after Pause
	// Faults are SMTP faults injected by the server.
	Faults []fakesmtp.FaultSpec
	// Instances run at once; instance k starts at (k-1) x Stagger, or,
	// with StaggerAt, once (k-1) x StaggerAt percent of the list has a copy
	// (a job redelivered while its first worker still runs).
	Instances int
	Stagger   time.Duration
	StaggerAt float64
	// Retries is how many restarts after failed attempts are allowed.
	Retries int
	// Expect is the level the run must reach.
	Expect verdict.Level
	// Target says which running instances a kill or a pause hits
	// (default all).
	Target Target
	// Seed drives every random choice of the run.
	Seed uint64
	// Timeout ends the run; the report is still written.
	Timeout time.Duration
	// Campaign is the stable campaign id; default derived from the seed.
	Campaign string
	// WorkDir holds the state dir, the list, the history and the sender
	// logs. Empty: a temporary directory removed after the run.
	WorkDir string
	// Replay is the command line that reproduces this run, for the report.
	Replay string
	// SMTP sets the fake server's limits (its Addr too); hooks and faults
	// are added by the run.
	SMTP fakesmtp.Options
	// Progress, when set, receives a live progress line (for terminals).
	Progress io.Writer
	// Registry receives the fake SMTP server's metrics; nil keeps them
	// private. Ignored for the server when Metrics is set.
	Registry *prometheus.Registry
	// Metrics, from NewMetrics, are updated as the run goes: copies,
	// duplicates in doubt or not, kills, faults, progress, verdict. Runs
	// sharing them must run one at a time. Nil: no metrics.
	Metrics *Metrics
	// Containment forces a containment mode (cgroup-v2, cgroup-v1,
	// subreaper; docs/containment.md); "" takes the best available.
	Containment string
	// Logger receives the run's events as they happen; nil discards.
	Logger *slog.Logger
}

// Signal is how a scheduled kill hits the sender.
type Signal string

// The signals a kill can use.
const (
	SigKill Signal = "KILL"
	SigTerm Signal = "TERM"
	SigStop Signal = "STOP"
)

// ParseSignal accepts KILL, TERM or STOP (with or without SIG, any case).
func ParseSignal(s string) (Signal, error) {
	switch strings.TrimPrefix(strings.ToUpper(s), "SIG") {
	case "KILL":
		return SigKill, nil
	case "TERM":
		return SigTerm, nil
	case "STOP":
		return SigStop, nil
	}
	return "", usagef("--signal %q: want KILL, TERM or STOP", s)
}

func (s Signal) sys() syscall.Signal {
	switch s {
	case SigTerm:
		return syscall.SIGTERM
	case SigStop:
		return syscall.SIGSTOP
	}
	return syscall.SIGKILL
}

// Target says which running instances a kill or a pause hits.
type Target struct {
	Kind     TargetKind
	Instance int // for TargetInstance
}

// TargetKind is a kind of target.
type TargetKind string

// The targets (docs/cli.md).
const (
	TargetAll      TargetKind = "all"      // every running instance
	TargetOne      TargetKind = "one"      // one running instance, a seeded choice
	TargetSending  TargetKind = "sending"  // the instance whose session reached the kill point, or that delivered last
	TargetInstance TargetKind = "instance" // instance=K
)

const targetForms = "all | one | sending | instance=K"

// ParseTarget parses one --target value.
func ParseTarget(s string) (Target, error) {
	switch k := TargetKind(strings.TrimSpace(s)); k {
	case TargetAll, TargetOne, TargetSending:
		return Target{Kind: k}, nil
	}
	if v, ok := strings.CutPrefix(strings.TrimSpace(s), "instance="); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 1 {
			return Target{Kind: TargetInstance, Instance: n}, nil
		}
	}
	return Target{}, usagef("--target %q: want %s", s, targetForms)
}

func (t Target) String() string {
	if t.Kind == TargetInstance {
		return "instance=" + strconv.Itoa(t.Instance)
	}
	return string(t.Kind)
}

// KillKind is a kind of kill schedule.
type KillKind string

// The kill schedules (docs/cli.md).
const (
	KillAt         KillKind = "at"          // at=25%,50%: when that share of the list has a copy
	KillEvery      KillKind = "every"       // every=N: each time N more addresses have a copy
	KillRandom     KillKind = "random"      // random=K: K seeded points between 5% and 95%
	KillInDoubt    KillKind = "in-doubt"    // in-doubt=K: message counted, 250 not yet written
	KillDuringData KillKind = "during-data" // during-data=K: after 354, before the final dot
)

// KillSpec is one parsed --kill.
type KillSpec struct {
	Kind     KillKind
	Percents []float64 // at
	N        int       // every: addresses; random, in-doubt, during-data: kills
}

func (k KillSpec) String() string {
	if k.Kind == KillAt {
		parts := make([]string, len(k.Percents))
		for i, p := range k.Percents {
			parts[i] = strconv.FormatFloat(p, 'f', -1, 64) + "%"
		}
		return "at=" + strings.Join(parts, ",")
	}
	return string(k.Kind) + "=" + strconv.Itoa(k.N)
}

const killForms = "at=P%[,P%...] | every=N | random=K | in-doubt=K | during-data=K"

// ParseKill parses one --kill value.
func ParseKill(spec string) (KillSpec, error) {
	kind, val, ok := strings.Cut(strings.TrimSpace(spec), "=")
	if !ok || val == "" {
		return KillSpec{}, usagef("--kill %q: want %s", spec, killForms)
	}
	k := KillSpec{Kind: KillKind(kind)}
	switch k.Kind {
	case KillAt:
		for _, p := range strings.Split(val, ",") {
			f, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(p), "%"), 64)
			if err != nil || f <= 0 || f >= 100 || !strings.HasSuffix(strings.TrimSpace(p), "%") {
				return KillSpec{}, usagef("--kill %q: %q is not a percentage between 0%% and 100%% (form: at=25%%,50%%)", spec, p)
			}
			k.Percents = append(k.Percents, f)
		}
	case KillEvery, KillRandom, KillInDoubt, KillDuringData:
		n, err := strconv.Atoi(val)
		if err != nil || n < 1 {
			return KillSpec{}, usagef("--kill %q: %q is not a positive whole number (form: %s=N)", spec, val, kind)
		}
		k.N = n
	default:
		return KillSpec{}, usagef("--kill %q: unknown schedule %q; want %s", spec, kind, killForms)
	}
	return k, nil
}

// Synthetic returns n generated addresses.
func Synthetic(n int) []string {
	list := make([]string, n)
	for i := range list {
		list[i] = fmt.Sprintf("rcpt%06d@onecopy.test", i+1)
	}
	return list
}

// ReadList reads a recipient list: one address per line; blank lines and
// lines starting with # are skipped. A bad line is an error naming
// file:line.
func ReadList(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, usagef("--list: %v", err)
	}
	defer f.Close()
	return parseList(f, path)
}

func parseList(r io.Reader, name string) ([]string, error) {
	var list []string
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 64<<10)
	for n := 1; sc.Scan(); n++ {
		text := sc.Text()
		if n == 1 {
			text = strings.TrimPrefix(text, "\uFEFF") // a byte-order mark is not part of the first address
		}
		line := strings.TrimSpace(text)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := checkAddress(line); err != nil {
			return nil, usagef("%s:%d: %q: %v (want one address per line, like bob@example.com)", name, n, line, err)
		}
		list = append(list, line)
	}
	if err := sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return nil, usagef("%s: a line is longer than 64 KiB: is this a recipient list?", name)
		}
		return nil, usagef("%s: %v", name, err)
	}
	if len(list) == 0 {
		return nil, usagef("%s: no addresses (want one address per line)", name)
	}
	return list, nil
}

func checkAddress(a string) error {
	at := strings.LastIndexByte(a, '@')
	switch {
	case at <= 0 || at == len(a)-1:
		return errors.New("not an address: want local@domain")
	case strings.ContainsAny(a, " \t<>,;\"\\"):
		return errors.New("spaces, quotes, commas and angle brackets are not allowed")
	case len(a) > 254:
		return errors.New("longer than 254 characters")
	}
	for _, c := range a {
		if c < 0x20 || c == 0x7f {
			return errors.New("control character")
		}
	}
	return nil
}

// ContainmentAvailable reports whether a containment mode (cgroup-v2,
// cgroup-v1, subreaper) works on this machine.
func ContainmentAvailable(mode string) bool { return contain.Probe(contain.Mode(mode)) == nil }

// validate fills defaults and checks the config; errors are *UsageError.
func (c *Config) validate() error {
	if len(c.Command) == 0 {
		return usagef("no sender: give a command after -- or --sender builtin:NAME")
	}
	if len(c.Recipients) == 0 {
		return usagef("no recipients: give --recipients N or --list FILE")
	}
	if c.Instances == 0 {
		c.Instances = 1
	}
	if c.Instances < 0 || c.Instances > 64 {
		return usagef("--instances %d: want 1 to 64", c.Instances)
	}
	if c.Retries < 0 {
		return usagef("--retries %d: want 0 or more", c.Retries)
	}
	if c.Signal == "" {
		c.Signal = SigKill
	}
	if c.Expect == "" {
		c.Expect = verdict.ExactlyOnce
	}
	if c.Target.Kind == "" {
		c.Target.Kind = TargetAll
	}
	if c.Target.Kind == TargetInstance && (c.Target.Instance < 1 || c.Target.Instance > c.Instances) {
		return usagef("--target instance=%d: the run has instances 1 to %d", c.Target.Instance, c.Instances)
	}
	for i, a := range c.Recipients {
		if strings.TrimSpace(a) == "" || strings.ContainsAny(a, "\r\n") {
			return usagef("recipient %d (%q): want one address, not blank and without line breaks", i+1, a)
		}
	}
	if c.Grace == 0 {
		c.Grace = 5 * time.Second
	}
	if c.Pause == 0 {
		c.Pause = 3 * time.Second
	}
	if c.Timeout == 0 {
		c.Timeout = 10 * time.Minute
	}
	if c.Grace < 0 || c.Pause < 0 || c.Timeout < 0 || c.Stagger < 0 {
		return usagef("durations must not be negative")
	}
	if c.StaggerAt < 0 || c.StaggerAt >= 100 || c.StaggerAt > 0 && c.Stagger > 0 {
		return usagef("--stagger-at %v%%: want a share of the list above 0%% and below 100%%, and not with --stagger", c.StaggerAt)
	}
	if c.Campaign == "" {
		c.Campaign = "onecopy-" + strconv.FormatUint(c.Seed, 10)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}
