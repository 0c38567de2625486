// The metrics' shape, the alert rules and the Grafana dashboard of docs/,
// checked against the metrics we really export (no processes needed).

package harness_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/onecopy/onecopy/harness"
)

// names is a Registerer that only records the metric names it is given.
type names map[string]bool

var fqName = regexp.MustCompile(`fqName: "([^"]+)"`)

func (n names) Register(c prometheus.Collector) error {
	ch := make(chan *prometheus.Desc)
	go func() { c.Describe(ch); close(ch) }()
	for d := range ch {
		if m := fqName.FindStringSubmatch(d.String()); m != nil {
			n[m[1]] = true
		}
	}
	return nil
}

func (n names) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		n.Register(c)
	}
}

func (n names) Unregister(prometheus.Collector) bool { return false }

// exported returns the name of every metric harness.NewMetrics registers.
func exported(t *testing.T) names {
	t.Helper()
	n := names{}
	if _, err := harness.NewMetrics(n); err != nil {
		t.Fatal(err)
	}
	return n
}

func TestMetricsShape(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := harness.NewMetrics(reg); err != nil {
		t.Fatal(err)
	}
	problems, err := testutil.GatherAndLint(reg)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// The series alerts compare against exist at 0 before anything happens.
	for _, name := range []string{"onecopy_duplicate_copies_total", "onecopy_missing_recipients_total",
		"onecopy_copies_total", "onecopy_campaign_running", "onecopy_campaigns_total"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n == 0 {
			t.Errorf("%s: %d series before any run (err %v), want it at 0 from the start", name, n, err)
		}
	}
	// A second set on one registry is an error, not a panic: share one.
	if _, err := harness.NewMetrics(reg); err == nil {
		t.Error("NewMetrics twice on one registry: no error")
	}

	n := exported(t)
	for name := range n {
		if !strings.HasPrefix(name, "onecopy_") {
			t.Errorf("%s: want the onecopy_ prefix", name)
		}
	}
	for _, want := range []string{"onecopy_campaigns_total", "onecopy_copies_total", "onecopy_duplicate_copies_total",
		"onecopy_missing_recipients_total", "onecopy_unexpected_recipients_total", "onecopy_kills_total",
		"onecopy_pauses_total", "onecopy_restarts_total", "onecopy_faults_total", "onecopy_in_doubt_events_total",
		"onecopy_sender_attempt_duration_seconds", "onecopy_copies_per_recipient", "onecopy_campaign_running",
		"onecopy_campaign_expected_recipients", "onecopy_campaign_delivered_recipients",
		"onecopy_smtp_transactions_total", "onecopy_smtp_protocol_errors_total"} {
		if !n[want] {
			t.Errorf("NewMetrics does not register %s", want)
		}
	}
}

func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Skip("promtool not on PATH (Debian package prometheus): skipping `promtool check rules` and `promtool test rules`")
	}
	return p
}

func TestAlertRules(t *testing.T) {
	dir := filepath.Join("..", "docs", "prometheus")
	rules, err := os.ReadFile(filepath.Join(dir, "alerts.yml"))
	if err != nil {
		t.Fatal(err)
	}
	// Every metric a rule reads is one we export.
	n := exported(t)
	for _, m := range regexp.MustCompile(`onecopy_[a-z_]+`).FindAllString(string(rules), -1) {
		if !n[m] {
			t.Errorf("alerts.yml reads %s, which onecopy does not export", m)
		}
	}
	for _, alert := range []string{"OnecopyDuplicateNotInDoubt", "OnecopyMissingRecipients", "OnecopyNoProgress"} {
		if !strings.Contains(string(rules), "alert: "+alert) {
			t.Errorf("alerts.yml has no alert %s", alert)
		}
	}
	tool := promtool(t)
	for _, args := range [][]string{{"check", "rules", "alerts.yml"}, {"test", "rules", "alerts_test.yml"}} {
		cmd := exec.Command(tool, args...)
		cmd.Dir = dir
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// dashboard is the part of a Grafana dashboard the test reads.
type dashboard struct {
	Title      string `json:"title"`
	UID        string `json:"uid"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
	Panels []panel `json:"panels"`
}

type panel struct {
	Title      string `json:"title"`
	Type       string `json:"type"`
	Datasource *struct {
		Type string `json:"type"`
		UID  string `json:"uid"`
	} `json:"datasource"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

// DashboardExprs returns every query of the dashboard, by panel title.
func dashboardExprs(t *testing.T) (dashboard, map[string][]string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "grafana", "onecopy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("docs/grafana/onecopy.json is not valid JSON: %v", err)
	}
	exprs := map[string][]string{}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: want the datasource ${datasource}, got %+v", p.Title, p.Datasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, q := range p.Targets {
				exprs[p.Title] = append(exprs[p.Title], q.Expr)
			}
		}
	}
	walk(d.Panels)
	return d, exprs
}

func TestDashboard(t *testing.T) {
	d, exprs := dashboardExprs(t)
	if d.Title == "" || d.UID == "" {
		t.Errorf("dashboard without title or uid: %q %q", d.Title, d.UID)
	}
	hasDS := slices.ContainsFunc(d.Templating.List, func(v struct {
		Name  string `json:"name"`
		Type  string `json:"type"`
		Query any    `json:"query"`
	}) bool {
		return v.Name == "datasource" && v.Type == "datasource" && v.Query == "prometheus"
	})
	if !hasDS {
		t.Error("dashboard has no Prometheus datasource variable named datasource")
	}
	n := exported(t)
	metric := regexp.MustCompile(`onecopy_[a-z_]+`)
	seen := map[string]bool{}
	for title, es := range exprs {
		for _, e := range es {
			found := metric.FindAllString(e, -1)
			if len(found) == 0 {
				t.Errorf("panel %q: %q reads no onecopy metric", title, e)
			}
			for _, m := range found {
				base := m
				for _, suffix := range []string{"_bucket", "_sum", "_count"} {
					if b, ok := strings.CutSuffix(m, suffix); ok && n[b] {
						base = b
					}
				}
				if !n[base] {
					t.Errorf("panel %q reads %s, which onecopy does not export", title, m)
				}
				seen[base] = true
			}
		}
	}
	// What the issue asks the dashboard to show.
	for _, m := range []string{"onecopy_copies_total", "onecopy_duplicate_copies_total", "onecopy_missing_recipients_total",
		"onecopy_kills_total", "onecopy_faults_total", "onecopy_campaigns_total"} {
		if !seen[m] {
			t.Errorf("no panel shows %s", m)
		}
	}
}
