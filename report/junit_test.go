package report_test

import (
	"encoding/xml"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/onsi/ginkgo/v2/reporters"
	"github.com/onsi/ginkgo/v2/types"

	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

// shape lists every element path and attribute of an XML document.
func shape(t *testing.T, path string) map[string]bool {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := xml.NewDecoder(f)
	var stack []string
	out := map[string]bool{}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("%s is not well-formed XML: %v", path, err)
		}
		switch el := tok.(type) {
		case xml.StartElement:
			stack = append(stack, el.Name.Local)
			p := strings.Join(stack, "/")
			out[p] = true
			for _, a := range el.Attr {
				out[p+"@"+a.Name.Local] = true
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
}

func TestJUnitHasGinkgosShape(t *testing.T) {
	dir := t.TempDir()
	ours := filepath.Join(dir, "ours.xml")
	pass := &report.Report{Verdict: verdict.ExactlyOnce, Expect: verdict.ExactlyOnce, Pass: true, Holds: []verdict.Level{verdict.ExactlyOnce}, DurationSeconds: 0.5}
	fail := &report.Report{Verdict: verdict.Fail, Expect: verdict.ExactlyOnce, Reason: "fail: 3 missing", Replay: "onecopy gate --only x --seed 1 -- ./s", DurationSeconds: 1}
	err := report.WriteJUnit(ours, "onecopy gate", []report.Case{
		{Name: "a", Class: "mode a", Report: pass},
		{Name: "b", Class: "mode b", Report: fail},
		{Name: "c", Class: "mode c", Skipped: "interrupted"},
	})
	if err != nil {
		t.Fatal(err)
	}

	theirs := filepath.Join(dir, "ginkgo.xml")
	now := time.Now()
	rep := types.Report{SuiteDescription: "s", SuitePath: "/p", StartTime: now, EndTime: now, SuiteSucceeded: false,
		SpecReports: types.SpecReports{
			{LeafNodeType: types.NodeTypeIt, LeafNodeText: "a", State: types.SpecStatePassed, CapturedStdOutErr: "out"},
			{LeafNodeType: types.NodeTypeIt, LeafNodeText: "b", State: types.SpecStateFailed, Failure: types.Failure{Message: "m"}, CapturedStdOutErr: "out"},
			{LeafNodeType: types.NodeTypeIt, LeafNodeText: "c", State: types.SpecStateSkipped},
		}}
	if err := reporters.GenerateJUnitReport(rep, theirs); err != nil {
		t.Fatal(err)
	}
	want := shape(t, theirs)
	got := shape(t, ours)
	var extra []string
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	sort.Strings(extra)
	if len(extra) > 0 {
		t.Errorf("our JUnit has elements or attributes Ginkgo's does not: %v", extra)
	}
	for _, k := range []string{"testsuites/testsuite/testcase@status", "testsuites/testsuite/testcase/failure@message", "testsuites/testsuite/testcase/skipped@message"} {
		if !got[k] {
			t.Errorf("our JUnit lacks %s", k)
		}
	}

	// And it reads back with Ginkgo's own types.
	b, _ := os.ReadFile(ours)
	var suites reporters.JUnitTestSuites
	if err := xml.Unmarshal(b, &suites); err != nil {
		t.Fatal(err)
	}
	s := suites.TestSuites[0]
	if suites.Tests != 3 || suites.Failures != 1 || s.Skipped != 1 || len(s.TestCases) != 3 {
		t.Fatalf("counts: tests=%d failures=%d skipped=%d cases=%d", suites.Tests, suites.Failures, s.Skipped, len(s.TestCases))
	}
	if f := s.TestCases[1].Failure; f == nil || !strings.Contains(f.Description, "onecopy gate --only x --seed 1") {
		t.Errorf("the failure text should carry the replay command: %+v", f)
	}
	if s.Properties.WithName("SuiteSucceeded") != "false" {
		t.Errorf("SuiteSucceeded = %q", s.Properties.WithName("SuiteSucceeded"))
	}
}
