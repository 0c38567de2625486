// JUnit XML reports, in the shape Ginkgo's --junit-report writes, so CI
// systems show one test case per run or scenario.

package report

import (
	"encoding/xml"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Case is one named report for a JUnit file.
type Case struct {
	Name string
	// Class is the failure mode; it goes into the case's name, as Ginkgo
	// puts a spec's text there, while classname is the suite.
	Class   string
	Report  *Report
	Skipped string // set to skip the case with this message
	// Error is a harness failure: the case could not be judged.
	Error string
}

type junitSuites struct {
	XMLName  xml.Name     `xml:"testsuites"`
	Tests    int          `xml:"tests,attr"`
	Disabled int          `xml:"disabled,attr"`
	Errors   int          `xml:"errors,attr"`
	Failures int          `xml:"failures,attr"`
	Time     float64      `xml:"time,attr"`
	Suites   []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name      string          `xml:"name,attr"`
	Package   string          `xml:"package,attr"`
	Tests     int             `xml:"tests,attr"`
	Disabled  int             `xml:"disabled,attr"`
	Skipped   int             `xml:"skipped,attr"`
	Errors    int             `xml:"errors,attr"`
	Failures  int             `xml:"failures,attr"`
	Time      float64         `xml:"time,attr"`
	Timestamp string          `xml:"timestamp,attr"`
	Props     []junitProperty `xml:"properties>property"`
	Cases     []junitCase     `xml:"testcase"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Status    string        `xml:"status,attr"`
	Time      float64       `xml:"time,attr"`
	Skipped   *junitMessage `xml:"skipped,omitempty"`
	Error     *junitFailure `xml:"error,omitempty"`
	Failure   *junitFailure `xml:"failure,omitempty"`
	SystemOut string        `xml:"system-out,omitempty"`
}

type junitMessage struct {
	Message string `xml:"message,attr"`
}

type junitFailure struct {
	Message string `xml:"message,attr"`
	Type    string `xml:"type,attr"`
	Text    string `xml:",chardata"`
}

// WriteJUnit writes cases as one JUnit test suite to path, with Ginkgo's
// semantics: the classname is the suite, a case that could not run is
// skipped, a harness failure is an error, and a run short of its level a
// failure whose text is the summary (not repeated in system-out).
func WriteJUnit(path, suite string, cases []Case) error {
	s := junitSuite{Name: suite, Package: "onecopy", Timestamp: time.Now().UTC().Format("2006-01-02T15:04:05")}
	for _, c := range cases {
		name := c.Name
		if c.Class != "" {
			name += ": " + c.Class
		}
		jc := junitCase{Name: name, Classname: suite, Status: "passed"}
		s.Tests++
		switch {
		case c.Skipped != "":
			jc.Status, jc.Skipped = "skipped", &junitMessage{Message: c.Skipped}
			s.Skipped++
		case c.Error != "":
			jc.Status, jc.Error = "errored", &junitFailure{Message: c.Error, Type: "error", Text: c.Error}
			s.Errors++
		case c.Report != nil:
			jc.Time = c.Report.DurationSeconds
			var out strings.Builder
			c.Report.Summary(&out)
			switch {
			case c.Report.Outcome == OutcomeInterrupted:
				jc.Status, jc.Skipped = "skipped", &junitMessage{Message: "interrupted: not judged"}
				s.Skipped++
			case c.Report.Outcome == OutcomeNeverConnected, c.Report.Outcome == OutcomeEscaped, c.Report.Outcome == OutcomeShort, c.Report.Outcome == OutcomeError:
				jc.Status = "errored"
				jc.Error = &junitFailure{Message: c.Report.Ended, Type: "error", Text: out.String()}
				s.Errors++
			case !c.Report.Pass:
				jc.Status = "failed"
				jc.Failure = &junitFailure{
					Message: fmt.Sprintf("%s, expected %s: %s", c.Report.Verdict, c.Report.Expect, c.Report.Reason),
					Type:    "failed",
					Text:    out.String(),
				}
				s.Failures++
			default:
				jc.SystemOut = out.String()
			}
		}
		s.Time += jc.Time
		s.Cases = append(s.Cases, jc)
	}
	s.Props = []junitProperty{{"SuiteSucceeded", strconv.FormatBool(s.Failures == 0 && s.Errors == 0)}}
	all := junitSuites{Tests: s.Tests, Disabled: s.Disabled, Errors: s.Errors, Failures: s.Failures, Time: s.Time, Suites: []junitSuite{s}}
	b, err := xml.MarshalIndent(all, "", "  ")
	if err != nil {
		return err
	}
	b = append([]byte(xml.Header), append(b, '\n')...)
	if err := writeFile(path, b); err != nil {
		return fmt.Errorf("writing JUnit report: %w", err)
	}
	return nil
}
