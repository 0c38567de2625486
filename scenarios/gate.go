// Running many scenarios: the gate (every selected scenario against one
// sender, in parallel, results in catalog order) and the self-test (every
// scenario against the correct built-ins, which must pass, and against the
// mutants it is named for, which must be caught).

package scenarios

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"

	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

// Job is one scenario to run against one sender.
type Job struct {
	Scenario Scenario
	Options  Options
	// Sender names the sender in tables ("ledger --batch 10").
	Sender string
}

// Result is a job's outcome: a report, or the error that kept the harness
// from running it.
type Result struct {
	Job
	Report *report.Report
	Err    error
}

// RunAll runs jobs, at most parallel at once (0: one per CPU), each with
// its own server and work dir. done, when set, is called for each result
// in job order, as soon as it and every job before it have ended, so a
// table printed from it reads the same as a sequential run. The results
// come back in job order.
func RunAll(ctx context.Context, jobs []Job, parallel int, done func(Result)) []Result {
	if parallel <= 0 {
		parallel = runtime.NumCPU()
	}
	results := make([]Result, len(jobs))
	finished := make([]chan struct{}, len(jobs))
	for i := range finished {
		finished[i] = make(chan struct{})
	}
	sem := make(chan struct{}, parallel)
	var wg sync.WaitGroup
	for i, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer close(finished[i])
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				results[i] = Result{Job: j, Err: ctx.Err()}
				return
			}
			defer func() { <-sem }()
			if ctx.Err() != nil {
				results[i] = Result{Job: j, Err: ctx.Err()}
				return
			}
			rep, err := Run(ctx, j.Scenario, j.Options)
			results[i] = Result{Job: j, Report: rep, Err: err}
		}()
	}
	for i := range jobs {
		<-finished[i]
		if done != nil {
			done(results[i])
		}
	}
	wg.Wait()
	return results
}

// Shape is a correct built-in sender in one of its shapes.
type Shape struct {
	Name string   // "ledger --batch 10"
	Args []string // after `onecopy sender`
}

// CorrectShapes are the shapes every scenario must pass: one connection
// and one recipient per transaction, batches of 10, a pool of 4.
func CorrectShapes(transport string) []Shape {
	if transport == "http" {
		return []Shape{{"ledger-http", []string{"ledger-http"}}, {"ledger-http-key", []string{"ledger-http-key"}}}
	}
	return []Shape{
		{"ledger", []string{"ledger"}},
		{"ledger --batch 10", []string{"ledger", "--batch", "10"}},
		{"ledger --connections 4", []string{"ledger", "--connections", "4"}},
	}
}

// Cell is one scenario against one sender in the self-test matrix.
type Cell struct {
	Sender string
	Mutant bool // the sender carries the bug the scenario is named for
	Result Result
}

// OK reports whether the cell came out as it must: a correct sender
// reached the scenario's level, a mutant fell short of it.
func (c Cell) OK() bool {
	if c.Result.Err != nil || c.Result.Report == nil || c.Result.Report.Outcome != report.OutcomeJudged && c.Result.Report.Outcome != report.OutcomeTimeout {
		return false
	}
	if c.Mutant {
		return !c.Result.Report.Pass
	}
	return c.Result.Report.Pass
}

// Word says what the cell shows: "ok", "caught", or what went wrong.
func (c Cell) Word() string {
	r := c.Result
	switch {
	case r.Err != nil:
		return "ERROR"
	case c.Mutant && c.OK():
		return "caught (" + string(r.Report.Verdict) + ")"
	case c.Mutant:
		return "MISSED (" + string(r.Report.Verdict) + ")"
	case c.OK():
		return "ok"
	}
	return "FAIL (" + string(r.Report.Verdict) + ")"
}

// Row is one scenario of the self-test.
type Row struct {
	Scenario Scenario
	Cells    []Cell
}

// SelfTest is the catalog proving itself: each scenario against every
// correct shape and against its mutants.
type SelfTest struct {
	Shapes []Shape
	Rows   []Row
	// Unnamed are mutants no selected scenario is named for.
	Unnamed []string
}

// OK reports whether every correct sender passed and every mutant was
// caught.
func (st SelfTest) OK() bool {
	for _, r := range st.Rows {
		for _, c := range r.Cells {
			if !c.OK() {
				return false
			}
		}
	}
	return true
}

// RunSelfTest runs the matrix of selected scenarios. opts.Command is the
// onecopy binary's `sender` command prefix ([]string{exe, "sender"});
// mutants are the names of the mutant built-ins of the transport (to find
// unnamed ones; over HTTP, the HTTP twins of the scenarios' mutants).
func RunSelfTest(ctx context.Context, selected []Scenario, opts Options, transport string, mutants []string, parallel int, done func(Result)) SelfTest {
	st := SelfTest{Shapes: CorrectShapes(transport)}
	var jobs []Job
	named := map[string]bool{}
	rowMutants := make([][]string, len(selected))
	for i, s := range selected {
		for _, sh := range st.Shapes {
			jobs = append(jobs, job(s, opts, sh.Name, sh.Args))
		}
		for _, m := range s.Mutants {
			if transport == "http" {
				// Over HTTP a scenario catches the HTTP twin of its mutant
				// (naive-http for naive), where there is one.
				if !slices.Contains(mutants, m+"-http") {
					continue
				}
				m += "-http"
			}
			named[m] = true
			rowMutants[i] = append(rowMutants[i], m)
			jobs = append(jobs, job(s, opts, m, []string{m}))
		}
	}
	results := RunAll(ctx, jobs, parallel, done)
	k := 0
	for i, s := range selected {
		row := Row{Scenario: s}
		for range st.Shapes {
			row.Cells = append(row.Cells, Cell{Sender: results[k].Sender, Result: results[k]})
			k++
		}
		for range rowMutants[i] {
			row.Cells = append(row.Cells, Cell{Sender: results[k].Sender, Mutant: true, Result: results[k]})
			k++
		}
		st.Rows = append(st.Rows, row)
	}
	for _, m := range mutants {
		if !named[m] {
			st.Unnamed = append(st.Unnamed, m)
		}
	}
	return st
}

func job(s Scenario, opts Options, sender string, args []string) Job {
	o := opts
	o.Command = append(slices.Clip(opts.Command), args...)
	if o.WorkDir != "" {
		o.WorkDir = o.WorkDir + "/" + strings.ReplaceAll(strings.ReplaceAll(sender, " ", ""), "--", "-")
	}
	return Job{Scenario: s, Options: o, Sender: sender}
}

// Matrix writes the self-test as a table: a row per scenario, a column per
// correct shape, then the mutants it must catch.
func (st SelfTest) Matrix() string {
	var b strings.Builder
	w := 22
	fmt.Fprintf(&b, "%-*s", w, "SCENARIO")
	for _, sh := range st.Shapes {
		fmt.Fprintf(&b, " %-24s", sh.Name)
	}
	b.WriteString(" MUTANTS IT MUST CATCH\n")
	for _, r := range st.Rows {
		fmt.Fprintf(&b, "%-*s", w, r.Scenario.Name)
		var muts []string
		for _, c := range r.Cells {
			if c.Mutant {
				muts = append(muts, c.Sender+": "+c.Word())
				continue
			}
			word := c.Word()
			if c.OK() && c.Result.Report.Verdict != r.Scenario.Expect {
				word = string(c.Result.Report.Verdict) // stronger than asked
			}
			fmt.Fprintf(&b, " %-24s", word)
		}
		fmt.Fprintf(&b, " %s\n", strings.Join(muts, ", "))
	}
	return b.String()
}

// Expected level overrides parse SCENARIO=LEVEL.
func ParseExpect(spec string) (string, verdict.Level, error) {
	name, level, ok := strings.Cut(spec, "=")
	if !ok || name == "" {
		return "", "", fmt.Errorf("--expect %q: want SCENARIO=LEVEL, like slow-ack=at-least-once", spec)
	}
	l, err := verdict.ParseLevel(level)
	if err != nil {
		return "", "", fmt.Errorf("--expect %q: %w", spec, err)
	}
	return name, l, nil
}
