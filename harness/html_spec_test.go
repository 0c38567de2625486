// Specs for the reports people read (issue 7): duplicate attribution in the
// JSON report, the one-sentence cause, and the self-contained HTML report,
// parsed and checked part by part.

package harness_test

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	. "github.com/onsi/ginkgo/v2"
	. "github.com/onsi/gomega"
	"github.com/onsi/gomega/gexec"
	"golang.org/x/net/html"

	"github.com/onecopy/onecopy/fakesmtp"
	"github.com/onecopy/onecopy/harness"
	"github.com/onecopy/onecopy/report"
	"github.com/onecopy/onecopy/verdict"
)

var _ = Describe("The reports people read", func() {
	// report runs cfg and writes its JSON and HTML reports into a temp dir.
	runReport := func(ctx SpecContext, cfg harness.Config) (rep *report.Report, jsonFile, htmlFile string) {
		GinkgoHelper()
		dir := GinkgoT().TempDir()
		cfg.Timeout, cfg.Seed = 30*time.Second, 7
		rep, err := harness.Run(ctx, cfg)
		Expect(err).NotTo(HaveOccurred())
		rep.Summary(GinkgoWriter)
		jsonFile, htmlFile = filepath.Join(dir, "report.json"), filepath.Join(dir, "report.html")
		Expect(rep.WriteJSON(jsonFile)).To(Succeed())
		Expect(rep.WriteHTML(htmlFile)).To(Succeed())
		return rep, jsonFile, htmlFile
	}

	Describe("for the naive sender under the repro's chaos", Ordered, func() {
		var (
			rep      *report.Report
			jsonFile string
			doc      *html.Node
		)
		BeforeAll(func(ctx SpecContext) {
			By("running the naive sender on 1,000 recipients, the 501st rejected for good, 3 retries")
			reject, err := fakesmtp.ParseFault("reject=rcpt000501@onecopy.test")
			Expect(err).NotTo(HaveOccurred())
			var htmlFile string
			rep, jsonFile, htmlFile = runReport(ctx, harness.Config{
				Command:    builtin("naive"),
				Recipients: harness.Synthetic(1000),
				Faults:     []fakesmtp.FaultSpec{reject},
				Retries:    3,
				Replay:     "onecopy repro --seed 7",
			})
			Expect(rep.Attempts).To(Equal(4))
			doc = parseHTML(htmlFile)
		}, NodeTimeout(60*time.Second))

		It("traces every copy of the worst addresses to attempts 1, 2, 3 and 4, with new Message-IDs", func() {
			Expect(rep.Worst).NotTo(BeEmpty())
			for _, w := range rep.Worst {
				Expect(w.CopiesDetail).To(HaveLen(4), w.Address)
				for i, c := range w.CopiesDetail {
					Expect(c.Instance).To(Equal(1), w.Address)
					Expect(c.Attempt).To(Equal(i+1), w.Address)
					Expect(c.InDoubt).To(BeFalse(), "no kill, no in-doubt fault: %s copy %d", w.Address, i+1)
					if i == 0 {
						Expect(c.MessageIDRepeat).To(Equal(verdict.RepeatFirst))
						Expect(c.After).To(Equal("first start"))
						continue
					}
					Expect(c.MessageIDRepeat).To(Equal(verdict.RepeatNew), "the naive sender makes a new Message-ID each time")
					Expect(c.Explained).To(BeFalse(), "nothing explains a repeat with a new Message-ID")
					Expect(c.After).To(Equal("exit 1 after 550 for rcpt000501@onecopy.test"))
					Expect(c.Session).NotTo(Equal(w.CopiesDetail[i-1].Session))
				}
			}
		})

		It("keeps the contract's field names and adds copies_detail, cause and each attempt's after", func() {
			b, err := os.ReadFile(jsonFile)
			Expect(err).NotTo(HaveOccurred())
			var raw map[string]any
			Expect(json.Unmarshal(b, &raw)).To(Succeed())
			for _, k := range []string{"verdict", "expect", "pass", "seed", "holds", "recipients", "delivered", "missing",
				"duplicated", "unexpected", "bounced", "copies", "in_doubt", "histogram", "kills", "restarts", "attempts",
				"faults", "duration_seconds", "reason", "worst", "cause", "timeline"} {
				Expect(raw).To(HaveKey(k))
			}
			worst := raw["worst"].([]any)[0].(map[string]any)
			Expect(worst).To(HaveKey("address"))
			Expect(worst).To(HaveKey("message_ids"))
			detail := worst["copies_detail"].([]any)[1].(map[string]any)
			Expect(detail).To(HaveKeyWithValue("attempt", BeEquivalentTo(2)))
			Expect(detail).To(HaveKeyWithValue("instance", BeEquivalentTo(1)))
			Expect(detail).To(HaveKeyWithValue("message_id_repeat", "new"))
			Expect(detail).To(HaveKeyWithValue("in_doubt", false))
			Expect(detail).To(HaveKeyWithValue("after", "exit 1 after 550 for rcpt000501@onecopy.test"))
			Expect(detail).To(HaveKey("time"))
			Expect(detail).To(HaveKey("session"))
			Expect(rep.Senders[1].After).To(Equal("exit 1 after 550 for rcpt000501@onecopy.test"))
			Expect(rep.Senders[1].Resent).To(Equal(500))
		})

		It("names the cause in one sentence, in the report and the summary", func() {
			want := "1,500 extra copies: each restart re-sent from the top of the list (3 restarts, new Message-IDs)"
			Expect(rep.Cause).To(Equal(want))
			var sb strings.Builder
			rep.Summary(&sb)
			Expect(sb.String()).To(ContainSubstring("most likely cause: " + want))
			Expect(sb.String()).To(ContainSubstring("500 addresses: 4 copies each, sent by attempts 1-4, a new Message-ID each time, every repeat unexplained"))
		})

		It("writes an HTML page with the verdict, seed and replay on top", func() {
			Expect(text(byID(doc, "verdict"))).To(Equal("fail"))
			Expect(text(byID(doc, "expect"))).To(Equal("exactly-once"))
			Expect(text(byID(doc, "seed"))).To(Equal("7"))
			Expect(text(byID(doc, "replay"))).To(Equal("onecopy repro --seed 7"))
			Expect(text(byID(doc, "cause"))).To(Equal(rep.Cause))
		})

		It("draws the timeline as inline SVG: copies, a mark per restart and fault, a band per attempt", func() {
			svg := byID(doc, "timeline")
			Expect(svg.Data).To(Equal("svg"))
			Expect(find(svg, withClass("area"))).To(HaveLen(1))
			Expect(attr(find(svg, withClass("area"))[0], "d")).To(MatchRegexp(`^M[\d.]+,[\d.]+( L[\d.]+,[\d.]+)+ Z$`))
			Expect(find(svg, withClass("mark", "restart"))).To(HaveLen(3))
			Expect(find(svg, withClass("mark", "fault"))).To(HaveLen(4), "one reject per attempt")
			Expect(find(svg, withClass("mark", "kill"))).To(BeEmpty())
			bands := find(svg, withClass("band"))
			Expect(bands).To(HaveLen(4))
			for i, b := range bands {
				Expect(text(b)).To(ContainSubstring(fmt.Sprintf("instance 1 attempt %d", i+1)))
				Expect(attr(b, "class")).To(Equal("band failed"), "each attempt exited 1")
			}
		})

		It("draws the repeats in their own colour: attempts 2 to 4 sent nothing but unexplained repeats", func() {
			svg := byID(doc, "timeline")
			unexplained := find(svg, withClass("area-unexplained"))
			Expect(unexplained).To(HaveLen(1))
			Expect(find(svg, withClass("area-repeat"))).To(BeEmpty(), "no repeat is explained")
			// Its step path rises where attempt 2 starts and no earlier.
			Expect(attr(unexplained[0], "d")).To(MatchRegexp(`^M[\d.]+,[\d.]+( L[\d.]+,[\d.]+)+ Z$`))
			firstRise := stepRise(attr(unexplained[0], "d"))
			restarts := find(svg, withClass("mark", "restart"))
			Expect(firstRise).To(BeNumerically(">=", markX(restarts[0])-1), "no repeat before the first restart")
			Expect(rep.Timeline.Unexplained).To(HaveLen(len(rep.Timeline.Copies)))
			sum := 0
			for _, n := range rep.Timeline.Unexplained {
				sum += n
			}
			Expect(sum).To(Equal(rep.Unexplained), "every unexplained repeat is in the chart")
		})

		It("keys only what the chart drew, band colours included", func() {
			Expect(legendKeys(doc)).To(Equal([]string{"first", "unexplained", "cover", "restart", "fault", "band-failed"}))
		})

		It("draws the histogram with bounced addresses apart", func() {
			bars := map[string]string{}
			for _, g := range find(byID(doc, "histogram"), withClass("hbar")) {
				bars[attr(g, "data-label")] = attr(g, "data-count")
			}
			Expect(bars).To(Equal(map[string]string{"0": "499", "1": "0", "2": "0", "3": "0", "4+": "500", "bounced": "1"}))
		})

		It("groups the 500 addresses repeated alike into one block, the worst of them in full", func() {
			blocks := find(byID(doc, "repeated"), withClass("pattern"))
			Expect(blocks).To(HaveLen(1), "one pattern, not ten identical blocks")
			b := blocks[0]
			Expect(attr(b, "data-addresses")).To(Equal("500"))
			Expect(attr(b, "data-copies")).To(Equal("4"))
			Expect(text(find(b, func(n *html.Node) bool { return n.Data == "h3" })[0])).To(
				Equal("500 addresses: 4 copies each, sent by attempts 1-4, a new Message-ID each time, every repeat unexplained"))
			for _, w := range rep.Worst {
				Expect(text(b)).To(ContainSubstring(w.Address), "every worst address is named in its pattern")
			}
			rows := find(b, func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "copy") })
			Expect(rows).To(HaveLen(4), "the copies of one address, in full")
			for i, row := range rows {
				Expect(attr(row, "data-address")).To(Equal(rep.Worst[0].Address))
				Expect(attr(row, "data-attempt")).To(Equal(fmt.Sprint(i + 1)))
				Expect(text(row)).To(ContainSubstring(fmt.Sprintf("attempt %d", i+1)))
				if i > 0 {
					Expect(attr(row, "data-message-id")).To(Equal("new"))
					Expect(text(row)).To(ContainSubstring("nothing: unexplained"))
					Expect(text(row)).To(ContainSubstring("exit 1 after 550 for rcpt000501@onecopy.test"))
				}
			}
		})

		It("shows the sender's last stderr lines for each attempt", func() {
			attempts := find(byID(doc, "senders"), withClass("attempt"))
			Expect(attempts).To(HaveLen(4))
			for _, a := range attempts {
				pre := find(a, func(n *html.Node) bool { return n.Data == "pre" })
				Expect(pre).To(HaveLen(1))
				Expect(text(pre[0])).To(ContainSubstring("RCPT TO:<rcpt000501@onecopy.test>: 550"))
			}
		})

		It("loads nothing from the network", func() {
			Expect(offline(doc)).To(Succeed())
		})
	})

	Describe("for the ledger sender killed at in-doubt moments", Ordered, func() {
		var (
			rep *report.Report
			doc *html.Node
		)
		BeforeAll(func(ctx SpecContext) {
			By("killing the ledger sender twice between a message's commit and its 250")
			var htmlFile string
			rep, _, htmlFile = runReport(ctx, harness.Config{
				Command:    builtin("ledger"),
				Recipients: harness.Synthetic(300),
				Kills:      kills("in-doubt=2"),
			})
			Expect(rep.Kills).To(Equal(2))
			Expect(rep.InDoubt).To(Equal(2))
			Expect(rep.Extra).To(Equal(2))
			doc = parseHTML(htmlFile)
		}, NodeTimeout(60*time.Second))

		It("explains each extra copy by the transaction in flight at the kill, sent again by the attempt after it", func() {
			Expect(rep.Worst).To(HaveLen(2))
			for _, w := range rep.Worst {
				Expect(w.CopiesDetail).To(HaveLen(2), w.Address)
				first, extra := w.CopiesDetail[0], w.CopiesDetail[1]
				Expect(first.InDoubt).To(BeTrue(), "%s: the message in flight at the kill", w.Address)
				Expect(extra.InDoubt).To(BeFalse(), "%s: the repeat was acknowledged", w.Address)
				Expect(extra.Explained).To(BeTrue(), w.Address)
				Expect(extra.ExplainedBy).NotTo(BeNil())
				Expect(extra.ExplainedBy.Txn).To(Equal(first.Txn), "%s: explained by the first copy's transaction", w.Address)
				Expect(extra.ExplainedBy.Cause).To(BeEquivalentTo("kill"))
				Expect(extra.MessageIDRepeat).To(Equal(verdict.RepeatSame))
				Expect(extra.Attempt).To(Equal(first.Attempt + 1))
				Expect(extra.After).To(MatchRegexp(`^SIGKILL at \d+% \(--kill in-doubt=2, session \d+\)$`))
			}
			Expect(rep.Explained).To(Equal(2))
			Expect(rep.Unexplained).To(BeZero())
		})

		It("names the cause in one sentence", func() {
			Expect(rep.Cause).To(Equal("2 extra copies, each a message in flight at a kill, same Message-ID: in doubt"))
		})

		It("marks each kill on the timeline, with its in-doubt event, on the band of the instance it hit", func() {
			svg := byID(doc, "timeline")
			kills := find(svg, withClass("mark", "kill"))
			Expect(kills).To(HaveLen(2))
			for _, k := range kills {
				Expect(attr(k, "data-in-doubt")).To(Equal("1"))
				Expect(find(k, withClass("doubt"))).To(HaveLen(1))
				Expect(text(k)).To(ContainSubstring("--kill in-doubt"))
				hits := find(k, withClass("hit"))
				Expect(hits).To(HaveLen(1))
				Expect(attr(hits[0], "data-instance")).To(Equal("1"))
			}
			Expect(find(svg, withClass("mark", "restart"))).To(HaveLen(2))
			Expect(find(svg, withClass("band", "killed"))).To(HaveLen(2))
			Expect(find(svg, withClass("band", "ok"))).To(HaveLen(1))
		})

		It("keeps each kill visible beside the restart that follows it: drawn over it, its glyph set apart", func() {
			svg := byID(doc, "timeline")
			marks := find(svg, withClass("mark"))
			for _, k := range find(svg, withClass("mark", "kill")) {
				kx := markX(k)
				var next *html.Node
				for _, r := range find(svg, withClass("mark", "restart")) {
					if x := markX(r); x >= kx && (next == nil || x < markX(next)) {
						next = r
					}
				}
				Expect(next).NotTo(BeNil(), "a restart follows each kill")
				Expect(glyphX(next)-glyphX(k)).To(BeNumerically(">=", 12), "the glyphs do not overlap, however close the lines")
				Expect(slices.Index(marks, k)).To(BeNumerically(">", slices.Index(marks, next)), "the kill is drawn over the restart")
			}
		})

		It("draws the explained repeats in their own colour and keys only what it drew", func() {
			svg := byID(doc, "timeline")
			Expect(find(svg, withClass("area-repeat"))).To(HaveLen(1))
			Expect(find(svg, withClass("area-unexplained"))).To(BeEmpty(), "every repeat is explained")
			Expect(legendKeys(doc)).To(Equal([]string{"first", "repeat", "cover", "kill", "restart", "doubt", "hit", "band-ok", "band-killed"}))
		})

		It("shows each in-doubt copy and its explained repeat, and loads nothing from the network", func() {
			blocks := find(byID(doc, "repeated"), withClass("pattern"))
			Expect(blocks).To(HaveLen(2), "the two addresses were sent by different attempts")
			for _, b := range blocks {
				Expect(attr(b, "data-unexplained")).To(Equal("0"))
				rows := find(b, func(n *html.Node) bool { return n.Data == "tr" && hasClass(n, "copy") })
				Expect(rows).To(HaveLen(2))
				Expect(attr(rows[0], "data-in-doubt")).To(Equal("true"), "the copy in flight at the kill")
				Expect(attr(rows[1], "data-explained")).To(Equal("true"), "its repeat")
				Expect(text(b)).To(ContainSubstring("copy 1 in doubt, the repeat explained by an in-doubt transaction"))
			}
			Expect(offline(doc)).To(Succeed())
		})
	})

	It("marks a pause on the band of the one instance it froze", func(ctx SpecContext) {
		By("pausing the sending one of two ledger instances")
		rep, _, htmlFile := runReport(ctx, harness.Config{
			Command:    builtin("ledger"),
			Recipients: harness.Synthetic(200),
			Instances:  2,
			Kills:      kills("at=40%"),
			Signal:     harness.SigStop,
			Pause:      300 * time.Millisecond,
			Target:     harness.Target{Kind: harness.TargetSending},
		})
		Expect(rep.Pauses).To(Equal(1))
		doc := parseHTML(htmlFile)
		pauses := find(byID(doc, "timeline"), withClass("mark", "pause"))
		Expect(pauses).To(HaveLen(1))
		hits := find(pauses[0], withClass("hit"))
		Expect(hits).To(HaveLen(1), "one instance was frozen")
		Expect(attr(hits[0], "data-instance")).To(Equal(fmt.Sprint(rep.Timeline.Marks[slices.IndexFunc(rep.Timeline.Marks, func(m report.Mark) bool { return m.Kind == "pause" })].Instance)))
		Expect(legendKeys(doc)).To(ContainElements("pause", "hit", "band-ok"))
		Expect(legendKeys(doc)).NotTo(ContainElements("kill", "restart", "fault", "unexplained", "repeat"))
	}, NodeTimeout(60*time.Second))

	It("traces copies to the instance whose child process holds the connection", func(ctx SpecContext) {
		By("running two naive instances at once, each behind a shell that does not exec it")
		rep, _, _ := runReport(ctx, harness.Config{
			Command:    []string{"/bin/sh", "-c", shellQuoted(onecopyBin) + " sender naive; exit $?"},
			Recipients: harness.Synthetic(200),
			Instances:  2,
		})
		Expect(rep.Worst).NotTo(BeEmpty())
		for _, w := range rep.Worst {
			Expect(w.CopiesDetail).To(HaveLen(2))
			instances := []int{w.CopiesDetail[0].Instance, w.CopiesDetail[1].Instance}
			Expect(instances).To(ConsistOf(1, 2), w.Address)
		}
		Expect(rep.Cause).To(Equal("200 extra copies: 2 instances each sent the whole list"))
	}, NodeTimeout(60*time.Second))

	It("writes an HTML report per scenario from onecopy gate --report-dir", func(ctx SpecContext) {
		dir := GinkgoT().TempDir()
		session := onecopy(ctx, "gate", "--seed", "3", "--only", "crash-and-retry", "--report-dir", dir, "--sender", "builtin:ledger")
		Expect(session).To(gexec.Exit(0))
		doc := parseHTML(filepath.Join(dir, "crash-and-retry.html"))
		Expect(text(byID(doc, "seed"))).To(Equal("3"))
		Expect(text(byID(doc, "replay"))).To(ContainSubstring("onecopy gate --only crash-and-retry --seed 3"))
		Expect(byID(doc, "timeline").Data).To(Equal("svg"))
		Expect(offline(doc)).To(Succeed())
	}, NodeTimeout(60*time.Second))
})

// legendKeys are the timeline legend's keys, in order.
func legendKeys(doc *html.Node) []string {
	GinkgoHelper()
	var keys []string
	for _, n := range find(byID(doc, "legend"), func(n *html.Node) bool { return attr(n, "data-key") != "" }) {
		keys = append(keys, attr(n, "data-key"))
	}
	return keys
}

// markX is where a timeline mark's line is; glyphX where its glyph is.
func markX(n *html.Node) float64  { return attrFloat(n, "data-x") }
func glyphX(n *html.Node) float64 { return attrFloat(n, "data-glyph-x") }

func attrFloat(n *html.Node, key string) float64 {
	GinkgoHelper()
	f, err := strconv.ParseFloat(attr(n, key), 64)
	Expect(err).NotTo(HaveOccurred(), "%s=%q", key, attr(n, key))
	return f
}

// stepRise is the x where a step path first leaves the axis it starts on.
func stepRise(d string) float64 {
	GinkgoHelper()
	pts := regexp.MustCompile(`([\d.]+),([\d.]+)`).FindAllStringSubmatch(d, -1)
	Expect(pts).NotTo(BeEmpty())
	base := pts[0][2]
	for _, p := range pts[1:] {
		if p[2] != base {
			x, _ := strconv.ParseFloat(p[1], 64)
			return x
		}
	}
	return math.Inf(1)
}

// parseHTML parses an HTML file.
func parseHTML(path string) *html.Node {
	GinkgoHelper()
	f, err := os.Open(path)
	Expect(err).NotTo(HaveOccurred())
	defer f.Close()
	doc, err := html.Parse(f)
	Expect(err).NotTo(HaveOccurred())
	return doc
}

// find returns the elements under n (n included) that match, in document order.
func find(n *html.Node, match func(*html.Node) bool) []*html.Node {
	var out []*html.Node
	for d := range n.Descendants() {
		if d.Type == html.ElementNode && match(d) {
			out = append(out, d)
		}
	}
	if n.Type == html.ElementNode && match(n) {
		out = append([]*html.Node{n}, out...)
	}
	return out
}

// byID is the one element with that id.
func byID(doc *html.Node, id string) *html.Node {
	GinkgoHelper()
	found := find(doc, func(n *html.Node) bool { return attr(n, "id") == id })
	Expect(found).To(HaveLen(1), "one element with id %q", id)
	return found[0]
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	return strings.Contains(" "+attr(n, "class")+" ", " "+class+" ")
}

// withClass matches elements that have every one of classes.
func withClass(classes ...string) func(*html.Node) bool {
	return func(n *html.Node) bool {
		for _, c := range classes {
			if !hasClass(n, c) {
				return false
			}
		}
		return true
	}
}

// text is the text under n, spaces collapsed.
func text(n *html.Node) string {
	var sb strings.Builder
	for d := range n.Descendants() {
		if d.Type == html.TextNode {
			sb.WriteString(d.Data)
			sb.WriteByte(' ')
		}
	}
	return strings.Join(strings.Fields(sb.String()), " ")
}

// networkURL is a reference that would make a browser go out: an absolute
// http(s) URL or a protocol-relative one.
var networkURL = regexp.MustCompile(`(?i)^\s*(https?:|//)`)

// offline returns every reference in the page that would load something
// from the network: src and href attributes, stylesheets and CSS imports
// or url()s.
func offline(doc *html.Node) error {
	var errs []error
	for n := range doc.Descendants() {
		if n.Type == html.ElementNode {
			for _, a := range n.Attr {
				switch strings.ToLower(a.Key) {
				case "src", "href", "xlink:href", "srcset", "action", "poster", "data":
					if networkURL.MatchString(a.Val) {
						errs = append(errs, fmt.Errorf("<%s %s=%q>", n.Data, a.Key, a.Val))
					}
				}
			}
			if n.Data == "link" || n.Data == "script" && attr(n, "src") != "" || n.Data == "iframe" || n.Data == "img" {
				errs = append(errs, fmt.Errorf("<%s> loads a resource", n.Data))
			}
		}
		if n.Type == html.TextNode && n.Parent != nil && n.Parent.Data == "style" {
			if css := strings.ToLower(n.Data); strings.Contains(css, "@import") || strings.Contains(css, "url(") {
				errs = append(errs, errors.New("the stylesheet imports or loads a url()"))
			}
		}
	}
	return errors.Join(errs...)
}

// shellQuoted quotes s for /bin/sh.
func shellQuoted(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
