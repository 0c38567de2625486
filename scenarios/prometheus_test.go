// The soak's metrics through a real Prometheus server (Debian's package):
// it scrapes a naive soak and a ledger soak on loopback, evaluates
// docs/prometheus/alerts.yml, and answers the queries of the Grafana
// dashboard.

package scenarios_test

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
)

// prometheusBin finds the prometheus server, or skips.
func prometheusBin() string {
	GinkgoHelper()
	if _, err := os.Stat("/usr/bin/prometheus"); err == nil {
		return "/usr/bin/prometheus"
	}
	if p, err := exec.LookPath("prometheus"); err == nil {
		return p
	}
	Skip("no prometheus server (/usr/bin/prometheus, Debian package prometheus, installed by .ci/run): skipping the real-Prometheus integration test")
	return ""
}

// freePort asks the kernel for a free loopback port.
func freePort() int {
	GinkgoHelper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	Expect(err).NotTo(HaveOccurred())
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startPrometheus runs prometheus with cfg in its own process group,
// killed at the end of the spec, and waits until it is ready.
func startPrometheus(cfg string) string {
	GinkgoHelper()
	bin := prometheusBin()
	dir := GinkgoT().TempDir()
	cfgFile := filepath.Join(dir, "prometheus.yml")
	Expect(os.WriteFile(cfgFile, []byte(cfg), 0o644)).To(Succeed())
	addr := fmt.Sprintf("127.0.0.1:%d", freePort())
	cmd := exec.Command(bin, "--config.file="+cfgFile, "--storage.tsdb.path="+filepath.Join(dir, "data"),
		"--web.listen-address="+addr, "--log.level=warn")
	cmd.Stdout, cmd.Stderr = GinkgoWriter, GinkgoWriter
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	Expect(cmd.Start()).To(Succeed())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	DeferCleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		Eventually(exited).WithTimeout(10 * time.Second).Should(Receive())
	})
	base := "http://" + addr
	Eventually(func(g Gomega) {
		g.Expect(exited).NotTo(Receive(), "prometheus exited")
		resp, err := http.Get(base + "/-/ready")
		g.Expect(err).NotTo(HaveOccurred())
		resp.Body.Close()
		g.Expect(resp.StatusCode).To(Equal(http.StatusOK))
	}).WithTimeout(30 * time.Second).WithPolling(100 * time.Millisecond).Should(Succeed())
	return base
}

type promSample struct {
	Metric map[string]string `json:"metric"`
	Value  [2]any            `json:"value"`
}

// query runs an instant query against Prometheus' HTTP API.
func query(g Gomega, base, q string) []promSample {
	resp, err := http.Get(base + "/api/v1/query?query=" + url.QueryEscape(q))
	g.Expect(err).NotTo(HaveOccurred())
	defer resp.Body.Close()
	var body struct {
		Status string `json:"status"`
		Error  string `json:"error"`
		Data   struct {
			ResultType string       `json:"resultType"`
			Result     []promSample `json:"result"`
		} `json:"data"`
	}
	g.Expect(json.NewDecoder(resp.Body).Decode(&body)).To(Succeed())
	g.Expect(body.Status).To(Equal("success"), "%s: %s", q, body.Error)
	return body.Data.Result
}

// scalar is the one value a query must return.
func scalar(g Gomega, base, q string) float64 {
	r := query(g, base, q)
	g.Expect(r).To(HaveLen(1), q)
	v, err := strconv.ParseFloat(r[0].Value[1].(string), 64)
	g.Expect(err).NotTo(HaveOccurred())
	return v
}

var _ = Describe("a soak scraped by a real Prometheus", func() {
	It("shows the naive sender's duplicates rise and fire the alert, and the ledger's stay at 0 while its copies rise", func(_ SpecContext) {
		prometheusBin()
		By("soaking the naive and the ledger senders under kills, each serving /metrics on a kernel-chosen port")
		naive := soak("--duration", "2m", "--sender", "builtin:naive", "--chaos", "kill", "--scale", "0.5", "--seed", "1", "--metrics-addr", "127.0.0.1:0")
		ledger := soak("--duration", "2m", "--sender", "builtin:ledger", "--chaos", "kill", "--scale", "0.5", "--seed", "1", "--metrics-addr", "127.0.0.1:0")
		target := func(s *gexec.Session) string {
			u, err := url.Parse(metricsAddr(s))
			Expect(err).NotTo(HaveOccurred())
			return u.Host
		}
		alerts, err := filepath.Abs(filepath.Join("..", "docs", "prometheus", "alerts.yml"))
		Expect(err).NotTo(HaveOccurred())

		By("starting Prometheus with a 250ms scrape interval and our alert rules")
		base := startPrometheus(fmt.Sprintf(`global:
  scrape_interval: 250ms
  scrape_timeout: 200ms
  evaluation_interval: 250ms
rule_files:
  - %s
scrape_configs:
  - job_name: naive
    static_configs: [{targets: ["%s"]}]
  - job_name: ledger
    static_configs: [{targets: ["%s"]}]
`, alerts, target(naive), target(ledger)))

		By("seeing the duplicate counter not in doubt rise above 0 for the naive sender")
		var naiveDups float64
		Eventually(func(g Gomega) {
			naiveDups = scalar(g, base, `onecopy_duplicate_copies_total{job="naive", in_doubt="false"}`)
			g.Expect(naiveDups).To(BeNumerically(">", 0))
		}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
		GinkgoWriter.Printf("naive: onecopy_duplicate_copies_total{in_doubt=\"false\"} = %v\n", naiveDups)

		By("seeing OnecopyDuplicateNotInDoubt fire for the naive job only")
		Eventually(func(g Gomega) {
			r := query(g, base, `ALERTS{alertname="OnecopyDuplicateNotInDoubt", alertstate="firing"}`)
			g.Expect(r).NotTo(BeEmpty())
			for _, s := range r {
				g.Expect(s.Metric).To(HaveKeyWithValue("job", "naive"))
			}
		}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())

		By("seeing the ledger's copies rise while its duplicates not in doubt stay at 0")
		var first float64
		Eventually(func(g Gomega) {
			first = scalar(g, base, `onecopy_copies_total{job="ledger"}`)
			g.Expect(first).To(BeNumerically(">", 0))
		}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
		var copies, judged float64
		Eventually(func(g Gomega) {
			copies = scalar(g, base, `onecopy_copies_total{job="ledger"}`)
			g.Expect(copies).To(BeNumerically(">", first))
			judged = scalar(g, base, `sum(onecopy_campaigns_total{job="ledger"})`)
			g.Expect(judged).To(BeNumerically(">=", 3))
		}).WithTimeout(30 * time.Second).WithPolling(250 * time.Millisecond).Should(Succeed())
		Expect(scalar(Default, base, `max_over_time(onecopy_duplicate_copies_total{job="ledger", in_doubt="false"}[5m])`)).To(BeZero())
		Expect(scalar(Default, base, `sum(onecopy_campaigns_total{job="ledger", pass="false"})`)).To(BeZero())
		Expect(scalar(Default, base, `max_over_time(onecopy_missing_recipients_total{job="ledger"}[5m])`)).To(BeZero())
		inDoubt := scalar(Default, base, `onecopy_duplicate_copies_total{job="ledger", in_doubt="true"}`)
		GinkgoWriter.Printf("ledger: %v copies, %v campaigns judged, duplicates in doubt %v, not in doubt 0\n", copies, judged, inDoubt)
		Expect(query(Default, base, `ALERTS{job="ledger"}`)).To(BeEmpty())

		By("running every query of the Grafana dashboard against it")
		_, exprs := readDashboard()
		for title, es := range exprs {
			for _, e := range es {
				q := strings.NewReplacer("$job", ".*", "$__rate_interval", "1m", "$__range", "5m").Replace(e)
				query(Default, base, q) // a bad query fails here, naming it
				_ = title
			}
		}

		By("stopping both soaks with Ctrl-C")
		naive.Interrupt()
		ledger.Interrupt()
		Eventually(naive).WithTimeout(20 * time.Second).Should(gexec.Exit(130))
		Eventually(ledger).WithTimeout(20 * time.Second).Should(gexec.Exit(130))
	}, NodeTimeout(2*time.Minute))
})

// readDashboard returns the queries of docs/grafana/onecopy.json by panel.
func readDashboard() (map[string]any, map[string][]string) {
	GinkgoHelper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "grafana", "onecopy.json"))
	Expect(err).NotTo(HaveOccurred())
	var d map[string]any
	Expect(json.Unmarshal(b, &d)).To(Succeed())
	exprs := map[string][]string{}
	var walk func(any)
	walk = func(v any) {
		ps, _ := v.([]any)
		for _, p := range ps {
			p, _ := p.(map[string]any)
			walk(p["panels"])
			ts, _ := p["targets"].([]any)
			for _, t := range ts {
				if e, ok := t.(map[string]any)["expr"].(string); ok {
					title, _ := p["title"].(string)
					exprs[title] = append(exprs[title], e)
				}
			}
		}
	}
	walk(d["panels"])
	Expect(exprs).NotTo(BeEmpty())
	return d, exprs
}
