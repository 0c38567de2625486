// The docs are tested: every shell block of the README runs as written, and
// the CI examples in docs/ci run their steps here, each command with the
// exit code its comment promises ("# exit 1"), 0 otherwise.
package examples_test

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// block is one shell block of a document.
type block struct {
	line  int // where it starts
	lines []string
}

// shellBlocks returns the ```sh blocks of a Markdown file.
func shellBlocks(t *testing.T, path string) []block {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []block
	var cur *block
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		l := sc.Text()
		switch {
		case cur == nil && strings.TrimSpace(l) == "```sh":
			cur = &block{line: n}
		case cur != nil && strings.TrimSpace(l) == "```":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.lines = append(cur.lines, l)
		}
	}
	return out
}

var exitRE = regexp.MustCompile(`#\s*exit (\d+)`)

// script turns a block into a bash script that checks each command's exit
// code and stops at the first that is not the one promised.
func script(b block, where string) string {
	var s strings.Builder
	s.WriteString("set -u\n")
	for i, l := range b.lines {
		cmd := strings.TrimSpace(l)
		if cmd == "" || strings.HasPrefix(cmd, "#") {
			continue
		}
		if strings.HasSuffix(cmd, "&") {
			s.WriteString(cmd + "\n")
			continue
		}
		want := 0
		if m := exitRE.FindStringSubmatch(cmd); m != nil {
			want, _ = strconv.Atoi(m[1])
		}
		fmt.Fprintf(&s, "%s\nrc=$?\nif [ $rc -ne %d ]; then echo '%s:%d: exit '$rc', want %d' >&2; kill $(jobs -p) 2>/dev/null; exit 1; fi\n",
			cmd, want, where, b.line+1+i, want)
	}
	s.WriteString("kill $(jobs -p) 2>/dev/null; wait 2>/dev/null; exit 0\n")
	return s.String()
}

// needs says which tool a block needs that is missing here, if any.
func needs(lines []string) string {
	for _, l := range lines {
		for _, tool := range []string{"python3", "node", "npm", "curl"} {
			if strings.Contains(" "+l+" ", " "+tool+" ") {
				if _, err := exec.LookPath(tool); err != nil {
					return tool
				}
			}
		}
		for _, port := range []string{"127.0.0.1:2525", "127.0.0.1:8025"} {
			if strings.Contains(l, "--smtp "+port) || strings.Contains(l, "--http "+port) {
				if ln, err := net.Listen("tcp", port); err != nil {
					return "a free " + port
				} else {
					ln.Close()
				}
			}
		}
	}
	return ""
}

func runScript(t *testing.T, dir, body string, env []string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", "-c", body)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
}

func root(t *testing.T) string {
	t.Helper()
	r, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestREADMECommands(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed: the README's commands are not run")
	}
	dir := root(t)
	for _, b := range shellBlocks(t, filepath.Join(dir, "README.md")) {
		t.Run(fmt.Sprintf("README.md:%d", b.line), func(t *testing.T) {
			var lines []string
			for _, l := range b.lines {
				if strings.HasPrefix(strings.TrimSpace(l), "make test") {
					continue // this test is part of it
				}
				lines = append(lines, l)
			}
			if tool := needs(lines); tool != "" {
				t.Skipf("needs %s, missing here", tool)
			}
			runScript(t, dir, script(block{b.line, lines}, "README.md"), nil)
		})
	}
}

func TestCIExamples(t *testing.T) {
	if _, err := exec.LookPath("bash"); err != nil {
		t.Skip("bash is not installed")
	}
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("python3 is not installed: the CI examples gate the Python example sender")
	}
	dir := root(t)

	t.Run("github-actions", func(t *testing.T) {
		var wf struct {
			Jobs map[string]struct {
				Steps []struct {
					Run string `yaml:"run"`
				} `yaml:"steps"`
			} `yaml:"jobs"`
		}
		readYAML(t, filepath.Join(dir, "docs/ci/github-actions.yml"), &wf)
		var lines []string
		for _, j := range wf.Jobs {
			for _, s := range j.Steps {
				if s.Run != "" {
					lines = append(lines, strings.Split(strings.TrimSpace(s.Run), "\n")...)
				}
			}
		}
		if len(lines) == 0 {
			t.Fatal("no run steps")
		}
		work := t.TempDir()
		summary := filepath.Join(work, "step-summary.md")
		runScript(t, dir, "cd "+dir+" && "+script(block{1, lines}, "docs/ci/github-actions.yml"), []string{"GITHUB_STEP_SUMMARY=" + summary})
		b, err := os.ReadFile(summary)
		if err != nil || !strings.Contains(string(b), "onecopy gate") {
			t.Errorf("the step summary: %q, %v", b, err)
		}
		for _, f := range []string{"gate.xml", "onecopy-reports/index.html", "onecopy-summary.md"} {
			if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
				t.Errorf("the job's artifact %s: %v", f, err)
			}
		}
		t.Cleanup(func() {
			for _, f := range []string{"gate.xml", "onecopy-reports", "onecopy-summary.md"} {
				os.RemoveAll(filepath.Join(dir, f))
			}
		})
	})

	t.Run("gitlab-ci", func(t *testing.T) {
		var ci map[string]struct {
			Script []string `yaml:"script"`
		}
		readYAML(t, filepath.Join(dir, "docs/ci/gitlab-ci.yml"), &ci)
		var lines []string
		for _, job := range ci {
			for _, l := range job.Script {
				if strings.HasPrefix(l, "apt-get ") {
					continue // the image's packages; python3 is here already
				}
				lines = append(lines, l)
			}
		}
		if len(lines) == 0 {
			t.Fatal("no script lines")
		}
		runScript(t, dir, script(block{1, lines}, "docs/ci/gitlab-ci.yml"), nil)
		if _, err := os.Stat(filepath.Join(dir, "gate.xml")); err != nil {
			t.Errorf("the job's JUnit report: %v", err)
		}
		t.Cleanup(func() {
			for _, f := range []string{"gate.xml", "onecopy-reports", "onecopy-summary.md"} {
				os.RemoveAll(filepath.Join(dir, f))
			}
		})
	})
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
